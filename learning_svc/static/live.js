// Live updates. The page follows the index's change feed (GET /api/changes) from a position
// taken before its first listing, so no job that arrives meanwhile can be skipped, however
// many arrive or however late: a new job goes to its place in the sort order (one that sorts
// below the loaded jobs comes with scrolling), an amended job is redrawn (or arrives, when the
// amendment brought it into the filters), a rating given elsewhere is shown. A hidden tab stops asking and catches up when it is shown again.

import { api } from './api.js';
import { isOffline, onResume } from './connection.js';
import { filterParams, refreshPickersSoon } from './filters.js';
import { addJob, checkHealth, jobsArrived, refreshCountSoon, renderJob, renderStatus } from './list.js';
import { adoptUnsentRating, ratedElsewhere } from './rating.js';
import { reviewedElsewhere } from './review.js';
import { markIfSelected } from './selection.js';
import { arrivesBefore, countNewAbove, setPosition, state } from './store.js';
import { $, plural } from './util.js';

const POLL_INTERVAL_MS = 1000; // a watched folder's image is listed ~0.5 s after its last write: on the page ≤ 1.5 s later

let timer = null;
let polling = false;
let feedFailed = false; // the last poll was answered with an error (a 503): health was asked why

export function changesUrl(position) {
  const params = filterParams();
  if (position) params.set('after', position);
  return `/api/changes?${params}`;
}

export function startFollowing() {
  clearTimeout(timer);
  timer = setTimeout(poll, POLL_INTERVAL_MS);
}

async function poll() {
  clearTimeout(timer);
  if (polling) {
    timer = setTimeout(poll, POLL_INTERVAL_MS);
    return;
  }
  polling = true;
  const { generation } = state;
  try {
    let more = true;
    while (more && state.position && !isOffline() && document.visibilityState === 'visible') {
      const asked = performance.now();
      const data = await api(changesUrl(state.position));
      if (generation !== state.generation) return;
      applyChanges(data, asked);
      setPosition(data.next);
      more = data.more;
    }
    if (feedFailed) checkHealth(); // answering again: the banner goes at once
    feedFailed = false;
  } catch (error) {
    // Unreachable: the offline banner says so and the feed resumes from the same position. A
    // service that answers 503 (its database away): the banner says so, once.
    if (!error.offline && !feedFailed) checkHealth();
    feedFailed = !error.offline;
  } finally {
    polling = false;
    clearTimeout(timer);
    timer = setTimeout(poll, POLL_INTERVAL_MS);
  }
}

// `asked`: when the request left. A job changed here since is newer than what the feed says
// of it (an answer that took long must not put an older state back).
function applyChanges({ jobs, amended, rated }, asked) {
  const arrived = [];
  for (const job of jobs) (state.jobs.has(job.job_id) ? amended : arrived).push(job);
  for (const summary of amended) {
    // An amendment can bring a job into the filters (StableNew's pack comes in a later line):
    // it arrives then. One amended out of them stays until the list is loaded again, as a job
    // rated here stays in "Unrated only": cards do not vanish from under the reader.
    if (state.jobs.has(summary.job_id)) redraw(summary);
    else if (summary.matches && !arrived.some((job) => job.job_id === summary.job_id)) arrived.push(summary);
  }
  for (const summary of rated) {
    if ((state.jobs.get(summary.job_id)?.changedHere ?? -Infinity) >= asked) continue;
    ratedElsewhere(summary.job_id, summary.rating);
    reviewedElsewhere(summary);
  }
  if (arrived.length) place(arrived);
  if (jobs.length || amended.length) refreshPickersSoon();
  if (jobs.length || amended.length || rated.length) refreshCountSoon();
}

// The first listed job that a newly arrived one sorts before; undefined: it sorts after them all.
function placeOf(job) {
  for (let element = $('job-list').firstElementChild; element; element = element.nextElementSibling) {
    if (arrivesBefore(job, state.jobs.get(element.dataset.jobId))) return element;
  }
  return undefined;
}

export function firstVisibleJob() {
  const top = $('topbar').getBoundingClientRect().bottom;
  return [...$('job-list').children].find((element) => element.getBoundingClientRect().bottom > top);
}

// Inserting above what the reader looks at keeps the same jobs in view, and the pill says so.
function place(jobs) {
  const anchor = window.scrollY > 0 ? firstVisibleJob() : null;
  const anchorTop = anchor?.getBoundingClientRect().top;
  let above = 0;
  for (const job of jobs) {
    const before = placeOf(job);
    if (!before && !state.done) continue; // below the loaded jobs: the next pages bring it
    const element = addJob(job);
    state.arrived += 1;
    $('job-list').insertBefore(element, before ?? null);
    if (anchor && element.compareDocumentPosition(anchor) & Node.DOCUMENT_POSITION_FOLLOWING) above += 1;
  }
  if (anchor) window.scrollBy(0, anchor.getBoundingClientRect().top - anchorTop);
  if (above) showNewJobsPill(above);
  renderStatus();
  if (jobs.length) jobsArrived();
}

// An amended job: its card is drawn again in place (keeping focus and the rating shown).
function redraw(summary) {
  const job = state.jobs.get(summary.job_id);
  if (!job) return;
  const { rating } = job;
  Object.assign(job, summary, { rating });
  const focused = job.element.contains(document.activeElement);
  const element = renderJob(job);
  job.element.replaceWith(element);
  job.element = element;
  adoptUnsentRating(job);
  markIfSelected(job);
  if (focused) element.focus({ preventScroll: true });
}

function showNewJobsPill(count) {
  countNewAbove(count);
  const pill = $('new-jobs');
  pill.textContent = `↑ ${plural(state.newJobsAbove, 'new job')}`;
  pill.hidden = false;
}

export function hideNewJobsPill() {
  countNewAbove(0);
  $('new-jobs').hidden = true;
}

// The pill scrolls to the top and focuses the first job, so the next key acts on it.
function goToTop() {
  hideNewJobsPill();
  window.scrollTo(0, 0);
  $('job-list').firstElementChild?.focus({ preventScroll: true });
}

export function initLive() {
  $('new-jobs').addEventListener('click', goToTop);
  window.addEventListener('scroll', () => { if (window.scrollY === 0) hideNewJobsPill(); }, { passive: true });
  document.addEventListener('visibilitychange', () => { if (document.visibilityState === 'visible') poll(); });
  onResume(poll);
}
