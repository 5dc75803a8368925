// The job list: pages loaded as the user scrolls (keyset cursors), cards, the status line,
// live updates that keep the view in place, and the empty state.

import { api, outputUrl } from './api.js';
import { hasFilters, jobsUrl } from './filters.js';
import { renderRatingWidget } from './rating.js';
import { countNewAbove, keepJob, pageLoaded, setFailed, setPending, sortOrder, state } from './store.js';
import { $, basename, formatDuration, formatNumber, formatShortTime, formatTime, h, plural, relativeTime } from './util.js';

const PAGE_SIZE = 50;
const POLL_INTERVAL_MS = 3000;
const RELATIVE_TIME_REFRESH_MS = 30000;
const MAX_THUMBNAILS = 4;
const HEALTH_INTERVAL_MS = 10000;

let sentinelObserver;

export function loadNextPage() {
  if (state.done || state.failed) return Promise.resolve();
  if (!state.pending) {
    const promise = fetchPage(state.generation).finally(() => {
      if (state.pending === promise) setPending(null);
    });
    setPending(promise);
  }
  return state.pending;
}

async function fetchPage(generation) {
  setListMessage('Loading…');
  try {
    const data = await api(jobsUrl(state.cursor, PAGE_SIZE));
    if (generation !== state.generation) return;
    $('job-list').append(...data.jobs.filter((job) => !state.jobs.has(job.job_id)).map(addJob));
    pageLoaded(data.next_cursor);
    setListMessage('');
    if (!state.done) rearmSentinel();
  } catch (error) {
    if (generation !== state.generation) return;
    setFailed(true);
    setListMessage(`Could not load jobs: ${error.message}`, { retry: true });
  }
  renderStatus();
}

function retryLoading() {
  setFailed(false);
  loadNextPage();
}

// Re-observing fires the callback again, so a sentinel that is still visible loads the next page.
function rearmSentinel() {
  sentinelObserver.unobserve($('sentinel'));
  sentinelObserver.observe($('sentinel'));
}

function addJob(job) {
  job.savedRating = job.rating;
  job.ratingRequest = 0;
  job.element = renderJob(job);
  keepJob(job);
  return job.element;
}

function setListMessage(text, { retry = false } = {}) {
  $('list-message').hidden = !text;
  $('list-message-text').textContent = text;
  $('retry').hidden = !retry;
}

export function renderStatus() {
  const count = state.jobs.size;
  const loadingFirstPage = count === 0 && !state.done && !state.failed;
  let status = `Showing ${plural(count, 'job')}`;
  if (loadingFirstPage) status = 'Loading…';
  else if (count === 0 && state.done) status = hasFilters() ? 'No matching jobs' : 'No jobs yet';
  $('status').textContent = status;
  const empty = count === 0 && state.done;
  $('empty').hidden = !empty;
  $('empty-first').hidden = !empty || hasFilters();
  $('empty-filtered').hidden = !empty || !hasFilters();
}

function refreshRelativeTimes() {
  for (const span of document.querySelectorAll('.relative-time')) {
    span.textContent = relativeTime(Number(span.dataset.epoch));
  }
}

// ---------------------------------------------------------------- live updates

function schedulePoll() {
  setTimeout(pollNewJobs, POLL_INTERVAL_MS);
}

function canPoll() {
  const firstPageLoaded = state.cursor !== null || state.done;
  return document.visibilityState === 'visible' && sortOrder() === '-completed_at'
    && firstPageLoaded && !state.failed;
}

async function pollNewJobs() {
  const { generation } = state;
  try {
    if (canPoll()) {
      const data = await api(jobsUrl(null, PAGE_SIZE));
      const fresh = newerThanShown(data.jobs);
      if (generation === state.generation && fresh.length) prependJobs(fresh);
    }
  } catch {
    // A missed poll is harmless: the next one catches up.
  } finally {
    schedulePoll();
  }
}

// The jobs of a fresh first page that are newer than those shown. Not every job missing from
// the list is new: in a filtered view (e.g. unrated only) older jobs move up into the first
// page as others leave it; those are loaded below by scrolling, in their place.
function newerThanShown(jobs) {
  const firstShown = jobs.findIndex((job) => state.jobs.has(job.job_id));
  if (firstShown >= 0) return jobs.slice(0, firstShown);
  const newest = state.jobs.get($('job-list').firstElementChild?.dataset.jobId);
  return newest ? jobs.filter((job) => job.completed_at > newest.completed_at) : jobs;
}

export function firstVisibleJob() {
  const top = $('topbar').getBoundingClientRect().bottom;
  return [...$('job-list').children].find((element) => element.getBoundingClientRect().bottom > top);
}

// New jobs go on top; a reader who has scrolled down keeps the same jobs in view.
function prependJobs(jobs) {
  const anchor = window.scrollY > 0 ? firstVisibleJob() : null;
  const anchorTop = anchor?.getBoundingClientRect().top;
  $('job-list').prepend(...jobs.map(addJob));
  if (anchor) {
    window.scrollBy(0, anchor.getBoundingClientRect().top - anchorTop);
    showNewJobsPill(jobs.length);
  }
  renderStatus();
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

function scrollToTop() {
  hideNewJobsPill();
  window.scrollTo(0, 0);
}

// ---------------------------------------------------------------- cards

function renderJob(job) {
  return h('article', { class: job.rating == null ? 'job' : 'job rated', 'data-job-id': job.job_id, 'data-status': job.status, tabindex: '0' },
    renderThumbnails(job),
    h('div', { class: 'job-body' },
      renderWhen(job),
      renderPacks(job.packs ?? []),
      renderFacts(job),
      h('div', { class: 'job-rating' },
        renderRatingWidget(job.rating),
        h('span', { class: 'output-count' }, outputCount(job))),
      h('p', { class: 'job-error', role: 'alert' })));
}

function outputCount(job) {
  const count = job.num_outputs ?? (job.outputs ?? []).length;
  return count ? plural(count, 'output') : 'No outputs';
}

function renderWhen(job) {
  const completed = job.completed_at == null ? null : new Date(job.completed_at * 1000);
  return h('p', { class: 'job-when' },
    h('time', { datetime: completed?.toISOString(), title: formatTime(job.completed_at) }, formatShortTime(completed)),
    job.status === 'completed' ? null : h('span', { class: `badge status-${job.status}`, title: job.error ?? null }, job.status),
    completed && h('span', { class: 'relative-time', 'data-epoch': job.completed_at }, relativeTime(job.completed_at)),
    h('span', { class: 'duration', title: 'Duration' }, formatDuration(job.duration_sec)));
}

function renderPacks(packs) {
  if (!packs.length) return h('p', { class: 'packs muted' }, 'No pack');
  return h('ul', { class: 'packs', 'aria-label': 'Packs' }, ...packs.map((pack) => h('li', { title: pack }, pack)));
}

// One line per fact; long values are cut with an ellipsis and shown whole in a tooltip.
function renderFacts(job) {
  const sampler = [
    job.sampler,
    job.scheduler,
    job.steps ? `${job.steps} steps` : null,
    job.cfg_scale ? `CFG ${formatNumber(job.cfg_scale)}` : null,
  ];
  const variant = [
    `${job.variant_index + 1} / ${job.variant_total}`,
    job.width && job.height ? `${job.width}×${job.height}` : null,
    job.seed == null ? null : `seed ${job.seed}`,
  ];
  const facts = [
    ['Model', job.model],
    ['Sampler', sampler.filter((part) => part != null && part !== '').join(' · ')],
    ['LoRAs', (job.loras ?? []).join(', ')],
    ['Variant', variant.filter(Boolean).join(' · ')],
  ];
  return h('dl', { class: 'facts' }, ...facts.flatMap(([label, value]) => {
    const text = value == null || value === '' ? '—' : String(value);
    return [h('dt', {}, label), h('dd', { title: text }, text)];
  }));
}

// The first output large, the others stacked beside it: a job's images are what gets rated.
function renderThumbnails(job) {
  const outputs = job.outputs ?? [];
  if (!outputs.length) {
    return h('div', { class: 'job-thumbs no-outputs' }, h('span', {}, job.status === 'completed' ? 'No outputs' : job.status));
  }
  const [first, ...others] = outputs.slice(0, MAX_THUMBNAILS).map((path, index) => renderThumbnail(job, path, index));
  const hidden = outputs.length - MAX_THUMBNAILS;
  return h('div', { class: `job-thumbs stack-${others.length}` },
    first,
    others.length ? h('div', { class: 'thumb-stack' }, ...others) : null,
    hidden > 0 ? h('span', { class: 'more-thumbs', title: `${plural(hidden, 'more output')}` }, `+${hidden}`) : null);
}

function renderThumbnail(job, path, index) {
  const image = h('img', {
    class: 'thumb',
    loading: 'lazy',
    decoding: 'async',
    src: `${outputUrl(job.job_id, index)}/thumbnail`,
    alt: `Output ${index + 1} of ${job.outputs.length}: ${basename(path)}`,
  });
  if (job.width && job.height) { // reserves the right aspect ratio before the image loads
    image.width = job.width;
    image.height = job.height;
  }
  return image;
}

// ---------------------------------------------------------------- empty state

function renderCurlCommand() {
  // A fresh id each time, so that a command copied on another visit does not conflict.
  const jobId = `first-job-${Math.random().toString(16).slice(2, 10)}`;
  const body = JSON.stringify({ job_id: jobId, completed_at: Math.floor(Date.now() / 1000), packs: ['demo'] });
  $('curl-command').textContent = `curl -X POST ${location.origin}/api/jobs -H 'Content-Type: application/json' -d '${body}'`;
}

async function copyCurlCommand() {
  const code = $('curl-command');
  try {
    await navigator.clipboard.writeText(code.textContent);
    $('copy-curl').textContent = 'Copied';
  } catch { // no clipboard access (e.g. plain http on another host): select it instead
    getSelection().selectAllChildren(code);
    $('copy-curl').textContent = 'Press Ctrl+C';
  }
}

export function initList() {
  $('retry').addEventListener('click', retryLoading);
  $('new-jobs').addEventListener('click', scrollToTop);
  $('copy-curl').addEventListener('click', copyCurlCommand);
  window.addEventListener('scroll', () => { if (window.scrollY === 0) hideNewJobsPill(); }, { passive: true });
  sentinelObserver = new IntersectionObserver((entries) => {
    if (entries.some((entry) => entry.isIntersecting)) loadNextPage();
  }, { rootMargin: '800px 0px' });
  sentinelObserver.observe($('sentinel'));
  renderCurlCommand();
  setInterval(refreshRelativeTimes, RELATIVE_TIME_REFRESH_MS);
  schedulePoll();
  checkHealth();
  setInterval(checkHealth, HEALTH_INTERVAL_MS);
}

// The service's own state: an index that is behind the journal (it cannot be written: a full
// disk) is said here, so that jobs not yet listed are not taken for lost.
async function checkHealth() {
  const banner = $('banner');
  try {
    const health = await api('/api/health');
    const problem = health.index?.problem;
    banner.hidden = !problem;
    if (problem) {
      banner.textContent = `The index is behind the journal (${problem.message}). Every acknowledged job is safe `
        + `in the JSONL; ${plural(problem.jobs_not_indexed, 'new job')} will show here once the index catches up.`;
    }
  } catch {
    // An unreachable service is the list's to say (its requests fail too).
  }
}
