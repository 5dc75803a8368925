// The job list: pages loaded as the user scrolls (keyset cursors), cards, the status line
// with the filters' totals, and the empty state. Live updates are live.js's.

import { api, outputUrl } from './api.js';
import { isOffline, onResume, onStatusChange } from './connection.js';
import { disableExportLinks, filterParams, hasFilters, jobsUrl, upsideDownRange } from './filters.js';
import { isRandomSeed } from './generation.js';
import { changesUrl, startFollowing } from './live.js';
import { adoptUnsentRating, renderRatingWidget } from './rating.js';
import { renderReview } from './review.js';
import { markIfAllMatching, markIfSelected } from './selection.js';
import { keepJob, pageLoaded, setCount, setFailed, setPending, setPosition, state, unratedOnly } from './store.js';
import {
  $, basename, debounce, formatDuration, formatNumber, formatShortTime, formatTime, h, plural, relativeTime, samplerAndScheduler,
} from './util.js';

const PAGE_SIZE = 50;
const RELATIVE_TIME_REFRESH_MS = 30000;
const MAX_THUMBNAILS = 4;
const HEALTH_INTERVAL_MS = 10000;
const COUNT_DELAY_MS = 400;
const COUNT_RETRY_MS = 3000; // a count that failed (not offline) is asked again after this, twice as long each time
const COUNT_RETRY_MAX_MS = 60_000;
const LIST_RETRY_MS = 2000; // a page that failed (a 503: the service busy, its database away) is asked again after this, twice as long each time
const LIST_RETRY_MAX_MS = 30_000;

let sentinelObserver;
let indexBehind = false; // /api/health: the index does not hold every recorded job yet
let lastFailure = null;
let listRetry = null; // the one timer that asks again for a page that failed
let listFailures = 0;

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

// The first page is asked for only once the change feed's position is known: whatever
// arrives after that position comes through the feed, so nothing can fall in between.
async function fetchPage(generation) {
  setListMessage('Loading…');
  try {
    if (state.position === null) {
      const start = await api(changesUrl(null));
      if (generation !== state.generation) return;
      setPosition(start.next);
    }
    const first = state.cursor === null;
    const data = await api(jobsUrl(state.cursor, PAGE_SIZE));
    if (generation !== state.generation) return;
    const added = data.jobs.filter((job) => !state.jobs.has(job.job_id));
    $('job-list').append(...added.map(addJob));
    added.forEach(markIfAllMatching);
    pageLoaded(data.next_cursor);
    if (lastFailure) checkHealth(); // back: a banner it showed goes at once, not at the next look
    lastFailure = null;
    listFailures = 0;
    setListMessage('');
    if (first) {
      startFollowing();
      refreshCount();
    }
    if (!state.done) rearmSentinel();
  } catch (error) {
    if (generation !== state.generation) return;
    setFailed(true);
    lastFailure = error;
    if (error.refused) { // e.g. a search the service cannot run: its message says why
      setListMessage(`These jobs cannot be listed: ${error.message}`);
      disableExportLinks(error.message);
    } else {
      // Offline: the service's return resumes the list. Otherwise asked again by itself, later
      // after each failure (it stayed failed until a click on Retry or a reload).
      let when = ' The list goes on by itself once it is back.';
      let { message } = error;
      if (!error.offline) {
        listFailures += 1;
        const wait = Math.min(LIST_RETRY_MS * 2 ** (listFailures - 1), LIST_RETRY_MAX_MS);
        clearTimeout(listRetry);
        listRetry = setTimeout(() => {
          if (state.failed && generation === state.generation) retryLoading();
        }, wait);
        when = ` Trying again in ${Math.round(wait / 1000)}\u00a0s.`;
        message = message.replace(/[;,]? *try again( in a moment)?\.?$/, ''); // said once, by the line's own end
        checkHealth(); // why (the index being made anew, its database away): the banner says so now
      }
      setListMessage(`Could not load jobs: ${message}.${when}`, { retry: true });
    }
  }
  renderStatus();
}

function retryLoading() {
  clearTimeout(listRetry);
  setFailed(false);
  loadNextPage();
}

// Re-observing fires the callback again, so a sentinel that is still visible loads the next page.
function rearmSentinel() {
  sentinelObserver.unobserve($('sentinel'));
  sentinelObserver.observe($('sentinel'));
}

// A job's card, drawn (a rating still waiting to be sent shows as given).
export function drawJob(job) {
  job.savedRating = job.rating;
  job.ratingRequest = 0;
  job.element = renderJob(job);
  adoptUnsentRating(job);
  markIfSelected(job);
  return job.element;
}

export function addJob(job) {
  keepJob(job);
  return drawJob(job);
}

function setListMessage(text, { retry = false } = {}) {
  $('list-message').hidden = !text;
  $('list-message-text').textContent = text;
  $('retry').hidden = !retry;
}

// ---------------------------------------------------------------- the status line

let countRetry = null; // the one timer that asks again for a count that failed
let countFailures = 0;

async function refreshCount() {
  const { generation, arrived } = state;
  clearTimeout(countRetry);
  try {
    const count = await api(`/api/count?${filterParams()}`);
    countFailures = 0;
    if (generation !== state.generation) return;
    setCount({ ...count, arrived });
    renderStatus();
    window.dispatchEvent(new CustomEvent('learning-svc:count', { detail: count }));
  } catch (error) {
    // Asked again in a while, longer after each failure (a service restarting answers 503 at
    // first); not a request the service refused (asking again cannot help), nor while it cannot
    // be reached at all (its return asks: resume).
    if (generation !== state.generation || error.refused || error.offline) return;
    countFailures += 1;
    clearTimeout(countRetry);
    countRetry = setTimeout(refreshCountSoon, Math.min(COUNT_RETRY_MS * 2 ** (countFailures - 1), COUNT_RETRY_MAX_MS));
  }
}

export const refreshCountSoon = debounce(refreshCount, COUNT_DELAY_MS);

const formatCount = (value, exact) => `${value.toLocaleString('en-US')}${exact ? '' : '+'}`;

function statusText() {
  const shown = state.jobs.size;
  if (shown === 0 && !state.done) return state.failed ? 'No jobs loaded' : 'Loading…';
  if (shown === 0) return hasFilters() ? 'No matching jobs' : 'No jobs yet';
  const count = state.count;
  // More pages and no count yet: not "Showing 50 jobs", which reads as all there are (a scale run).
  if (!count) return state.done ? `Showing ${plural(shown, 'job')}` : `Showing ${plural(shown, 'job')} · counting…`;
  // A count asked before jobs that arrived since (it is asked again at once) is said with them
  // added: new jobs are unrated, unless the filters are on ratings (then that part waits for
  // the count). It said "all rated" of a page whose first job had just come in. (A count below
  // the jobs shown is no sign: a job rated in "Unrated only" stays on the page, out of the count.)
  const since = state.arrived - count.arrived;
  const ratingFiltered = ['rated', 'rating_min', 'rating_max'].some((name) => state.params.has(name));
  const total = Math.max(count.jobs + since, shown);
  let text = total === shown && count.exact
    ? `Showing ${plural(shown, 'job')}`
    : `Showing ${shown.toLocaleString('en-US')} of ${formatCount(total, count.exact)} jobs`;
  if (since > 0 && ratingFiltered) return text;
  const unrated = count.unrated + since;
  if (unrated > 0) text += ` · ${formatCount(unrated, count.unrated_exact)} unrated left`;
  else if (!ratingFiltered || unratedOnly()) text += ' · all rated'; // "Unrated only" done: said so
  return text;
}

export function renderStatus() {
  const text = statusText();
  $('status').textContent = isOffline() ? `Offline · ${text.charAt(0).toLowerCase()}${text.slice(1)}` : text;
  const empty = state.jobs.size === 0 && state.done;
  $('empty').hidden = !empty;
  $('empty-first').hidden = !empty || hasFilters() || indexBehind;
  $('empty-filtered').hidden = !empty || !hasFilters();
  const why = empty && hasFilters() ? upsideDownRange() : null;
  $('empty-why').textContent = why ?? '';
  $('empty-why').hidden = !why;
}

function refreshRelativeTimes() {
  for (const span of document.querySelectorAll('.relative-time')) {
    setRelativeTime(span, Number(span.dataset.epoch));
  }
}

// A card's header is narrow (a failed job's holds a badge too): the short form, the long one as its tooltip.
function setRelativeTime(span, epoch) {
  const now = new Date();
  span.textContent = relativeTime(epoch, now, 'narrow');
  span.title = relativeTime(epoch, now);
  return span;
}

// ---------------------------------------------------------------- cards

export function renderJob(job) {
  const classes = ['job', job.rating == null ? null : 'rated', job.flag ? `flag-${job.flag}` : null].filter(Boolean);
  // Its name, said when it takes focus (it had none): its packs and time, else its id.
  const when = job.completed_at == null ? null : formatShortTime(new Date(job.completed_at * 1000));
  const file = (job.outputs ?? []).length ? basename(job.outputs[0]) : null;
  const name = [(job.packs ?? []).join(', ') || file || `Job ${job.job_id}`, when].filter(Boolean).join(', ');
  return h('article', {
    class: classes.join(' '), 'data-job-id': job.job_id, 'data-status': job.status, tabindex: '0', 'aria-label': name,
  },
    renderThumbnails(job),
    h('div', { class: 'job-body' },
      renderWhen(job),
      renderPacks(job.packs ?? [], job.outputs ?? []),
      renderFacts(job),
      job.error ? h('p', { class: 'job-failure', title: job.error }, `Failed: ${job.error}`) : null,
      h('div', { class: 'job-rating' },
        renderRatingWidget(job.rating),
        h('span', { class: 'output-count' }, outputCount(job))),
      renderReview(job),
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
    job.status === 'completed' ? null : h('span', { class: `badge status-${job.status}` }, job.status),
    completed && setRelativeTime(h('span', { class: 'relative-time', 'data-epoch': job.completed_at }), job.completed_at),
    h('span', { class: 'duration', title: 'Duration' }, formatDuration(job.duration_sec)));
}

// A job without packs (an imported image, most often) is named by its image's file: "No pack"
// on every card, and a content-hash id elsewhere, left a user no way to tell them apart.
function renderPacks(packs, outputs) {
  if (!packs.length && outputs.length) {
    return h('p', { class: 'packs file-name', title: outputs[0] }, basename(outputs[0]));
  }
  if (!packs.length) return h('p', { class: 'packs muted' }, 'No pack');
  return h('ul', { class: 'packs', 'aria-label': 'Packs' }, ...packs.map((pack) => h('li', { title: pack }, pack)));
}

// One line per fact; long values are cut with an ellipsis and shown whole in a tooltip.
function renderFacts(job) {
  const sampler = [
    ...samplerAndScheduler(job.sampler, job.scheduler),
    job.steps ? `${job.steps} steps` : null,
    job.cfg_scale ? `CFG ${formatNumber(job.cfg_scale)}` : null,
  ];
  const variant = [
    `${job.variant_index + 1} / ${job.variant_total}`,
    job.width && job.height ? `${job.width}×${job.height}` : null,
    job.seed == null ? null : isRandomSeed(job.seed) ? 'random seed' : `seed ${job.seed}`,
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
    'data-output': index,
    title: 'Click: view full screen (v)',
    alt: `Output ${index + 1} of ${job.outputs.length}: ${basename(path)}`,
  });
  if (job.width && job.height) { // reserves the right aspect ratio before the image loads
    image.width = job.width;
    image.height = job.height;
  }
  return image;
}

// An image that could not load (the service was down: a missing file gets a placeholder
// image, not an error) is loaded again once the service is back. A thumbnail is also asked for
// again a moment later, and again, less often each time (1 s, then up to every 10 s) for as long
// as the page shows it: the service makes a large image's one at a time and answers the others
// 503 at once (Retry-After: 1), rather than let them hold its threads and the browser's
// connections; a page of forty 6000 x 6000 images takes a minute. While it waits, the tile is
// blank (style.css), not a broken-image icon.
const THUMB_RETRY_MS = 1000;
const THUMB_RETRY_MAX_MS = 10_000;

function markFailedImage(event) {
  const image = event.target;
  if (!(image instanceof HTMLImageElement)) return;
  image.dataset.failed = '';
  const tries = Number(image.dataset.tries ?? 0);
  if (image.src.endsWith('/thumbnail')) {
    const wait = Math.min(THUMB_RETRY_MS * 1.5 ** tries, THUMB_RETRY_MAX_MS);
    setTimeout(() => reloadImage(image, tries + 1), wait * (1 + Math.random() / 2));
  }
}

function reloadImage(image, tries) {
  if (!image.isConnected || !('failed' in image.dataset)) return; // gone, or loaded again since
  const fresh = image.cloneNode();
  delete fresh.dataset.failed;
  fresh.dataset.tries = String(tries);
  image.replaceWith(fresh);
}

function reloadFailedImages() {
  for (const image of document.querySelectorAll('img[data-failed]')) reloadImage(image, 0);
}

// ---------------------------------------------------------------- empty state

// The data folder as one word of the command: single-quoted for a POSIX shell; a Windows path
// (a drive letter) double-quoted, as cmd and PowerShell both read it (their .venv\Scripts).
function shellWord(text) {
  if (/^[\w@%+=:,./~-]+$/.test(text)) return text;
  return windowsPath(text) ? `"${text}"` : `'${text.replaceAll("'", "'\\''")}'`;
}

function windowsPath(text) {
  return /^[A-Za-z]:[\\/]/.test(text);
}

// Where this service keeps its history and what it watches: a new-user run imported into another
// data folder than the one served, and a mistyped --watch folder showed only "No jobs yet".
// Each part written when it changes only: rewritten at every look, it undid a selection of the command.
let whereSaid = '';

function renderWhere(health) {
  if (!health.data_dir) return;
  const program = windowsPath(health.data_dir) ? '.venv\\Scripts\\learning-svc' : '.venv/bin/learning-svc';
  const command = `${program} import --data-dir ${shellWord(health.data_dir)} ~/stable-diffusion-webui/outputs`;
  if ($('import-command').textContent !== command) $('import-command').textContent = command;
  const watch = health.watch ?? [];
  const said = JSON.stringify([health.data_dir, watch.map((folder) => [folder.folder, watchState(folder)])]);
  if (said === whereSaid) return;
  whereSaid = said;
  const where = $('empty-where');
  const watched = watch.map((folder) => h('li', {}, h('code', {}, folder.folder), ` — ${watchState(folder)}`));
  where.replaceChildren(
    'This service keeps its history in ', h('code', {}, health.data_dir), watched.length ? ' and watches:' : '. It watches no folder.',
    ...(watched.length ? [h('ul', {}, ...watched)] : []),
  );
  where.hidden = false;
}

function watchState(folder) {
  const found = `${plural(folder.imported, 'image')} taken in`;
  if (folder.state === 'missing') return 'not there (looked for again every few seconds)';
  if (folder.state === 'starting') return 'starting';
  return folder.recent_problems?.length ? `${found}; some files could not be read` : found;
}

// A watched folder that is not there (a disk or share away, a mistyped path), or images in it
// that could not be read, said on the page: they were only in the log and /api/health. Each
// line dismissed stays away while it holds (this page view); once it no longer does, it is
// said again if it comes back. A folder coming back no longer brings back a dismissed problem.
const watchDismissed = new Set();
let watchLines = [];

function renderWatch(folders) {
  const lines = [];
  for (const folder of folders) {
    if (folder.state === 'missing') {
      lines.push(`The watched folder ${folder.folder} is not there; it is looked for again every few seconds, and its images come in once it is back.`);
    }
    const problems = folder.recent_problems ?? [];
    if (problems.length) {
      const more = problems.length > 1 ? " (and others: /api/health and the service's log list them)" : '';
      lines.push(`Not taken in from ${folder.folder}: ${problems.at(-1)}${more}.`);
    }
  }
  for (const line of watchDismissed) if (!lines.includes(line)) watchDismissed.delete(line);
  watchLines = lines.filter((line) => !watchDismissed.has(line));
  $('watch-text').textContent = watchLines.join(' ');
  $('watch-banner').hidden = !watchLines.length;
}

function dismissWatch() {
  for (const line of watchLines) watchDismissed.add(line);
  watchLines = [];
  $('watch-banner').hidden = true;
}

// While a banner says what a watched folder lacks, a job arriving may mean it has it now: look
// again at once (the look every 10 s left "is not there" seconds after its images were listed).
export function jobsArrived() {
  if (!$('watch-banner').hidden) checkHealth();
}

function renderCurlCommand() {
  // A fresh id each time, so that a command copied on another visit does not conflict.
  const jobId = `first-job-${Math.random().toString(16).slice(2, 10)}`;
  const body = JSON.stringify({ job_id: jobId, completed_at: Math.floor(Date.now() / 1000), packs: ['demo'] });
  $('curl-command').textContent = `curl -X POST ${location.origin}/api/jobs -H 'Content-Type: application/json' -d '${body}'`;
}

async function copyCommand(code, button) {
  try {
    await navigator.clipboard.writeText(code.textContent);
    button.textContent = 'Copied';
  } catch { // no clipboard access (e.g. plain http on another host): select it instead
    getSelection().selectAllChildren(code);
    button.textContent = 'Press Ctrl+C';
  }
}

function resume() {
  if (state.failed && lastFailure?.offline) retryLoading();
  reloadFailedImages();
  checkHealth();
  refreshCountSoon();
}

export function initList() {
  $('retry').addEventListener('click', retryLoading);
  $('copy-curl').addEventListener('click', () => copyCommand($('curl-command'), $('copy-curl')));
  $('copy-import').addEventListener('click', () => copyCommand($('import-command'), $('copy-import')));
  $('watch-dismiss').addEventListener('click', dismissWatch);
  document.addEventListener('error', markFailedImage, true); // error events do not bubble
  sentinelObserver = new IntersectionObserver((entries) => {
    if (entries.some((entry) => entry.isIntersecting)) loadNextPage();
  }, { rootMargin: '800px 0px' });
  sentinelObserver.observe($('sentinel'));
  renderCurlCommand();
  setInterval(refreshRelativeTimes, RELATIVE_TIME_REFRESH_MS);
  onResume(resume);
  onStatusChange(renderStatus);
  checkHealth();
  setInterval(checkHealth, HEALTH_INTERVAL_MS);
}

// The service's own state: an index that is behind the journal (it cannot be written: a full
// disk) is said here, so that jobs not yet listed are not taken for lost.
// A service that answers 503 to everything (its index database away) is said too: an idle page
// showed nothing while its reads failed (an outside run), only a rating's toast did.
export async function checkHealth() {
  const banner = $('banner');
  try {
    const health = await api('/api/health');
    renderWhere(health);
    renderWatch(health.watch ?? []);
    const problem = health.index?.problem;
    banner.hidden = !problem;
    if (problem) {
      // null: being made anew; else the journal's lines past the index (jobs, and changes to them)
      const waiting = problem.jobs_not_indexed == null ? 'the jobs not listed yet'
        : `${plural(problem.jobs_not_indexed, 'recorded job or change')}`;
      banner.textContent = `Not every job is listed yet (${problem.message}). Every job the service acknowledged is `
        + `saved on disk; ${waiting} will show here once the index catches up.`;
    }
    if (indexBehind !== Boolean(problem)) {
      indexBehind = Boolean(problem); // "No jobs yet" and how to bring some in, under "not every job is listed"
      renderStatus();
    }
  } catch (error) {
    if (error.offline) return; // an unreachable service has its own banner
    banner.hidden = false;
    banner.textContent = `The service cannot answer right now (${error.message.replace(/;? *try again\.?$/, '')}). `
      + 'Ratings and reviews given meanwhile are kept and sent again; the page carries on by itself once it answers.';
  }
}
