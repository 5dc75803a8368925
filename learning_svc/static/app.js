// The learning_svc history page: job list with infinite scroll and live updates,
// filters kept in the URL, optimistic rating, a details dialog and keyboard triage.
// Text from records is always inserted as text nodes (textContent/append), never as HTML.

const PAGE_SIZE = 50;
const POLL_INTERVAL_MS = 3000;
const SEARCH_DEBOUNCE_MS = 300;
const TOAST_MS = 6000;
const RELATIVE_TIME_REFRESH_MS = 30000;
const MAX_THUMBNAILS = 4;
const PREFETCH_JOBS = 12; // focus this close to the last loaded job loads the next page
const DEFAULT_SORT = '-completed_at';
const FACET_FIELDS = ['pack', 'model', 'sampler', 'scheduler', 'lora', 'embedding', 'status'];
const LIST_PARAMS = [
  'pack', 'model', 'sampler', 'scheduler', 'lora', 'embedding', 'rating_min', 'rating_max',
  'rated', 'status', 'since', 'until', 'q', 'sort',
];
const STAR_LABELS = ['0 stars', '1 star', '2 stars', '3 stars', '4 stars', '5 stars'];
const RELATIVE_UNITS = [
  ['year', 31536000], ['month', 2592000], ['week', 604800], ['day', 86400],
  ['hour', 3600], ['minute', 60], ['second', 1],
];

const $ = (id) => document.getElementById(id);
const relativeFormat = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });
// A server bound beyond loopback needs a bearer token on writes. The user opens
// `/#token=...` once: the fragment never reaches the server or its logs, and the
// token is kept in this origin's localStorage rather than in any served HTML.
const TOKEN_KEY = 'learning-svc-token';
let token = takeTokenFromFragment() ?? localStorage.getItem(TOKEN_KEY) ?? '';

function takeTokenFromFragment() {
  const match = location.hash.match(/^#token=(.+)$/);
  if (!match) return null;
  const value = decodeURIComponent(match[1]);
  localStorage.setItem(TOKEN_KEY, value);
  history.replaceState(null, '', location.pathname + location.search);
  return value;
}

const view = {
  params: readParamsFromUrl(), // filters and sort, mirrored in the address bar
  jobs: new Map(),             // job_id -> summary (+ element, savedRating): the jobs shown
  cursor: null,
  done: false,
  failed: false,
  pending: null,               // promise of the page being loaded
  generation: 0,               // bumped on every filter change so stale responses are dropped
  newJobsAbove: 0,
  advancing: false,            // true while moving on waits for the next page to load
  typedAhead: [],              // keys pressed meanwhile, replayed on the job moved to
};

let sentinelObserver;
let toastTimer;

// ---------------------------------------------------------------- helpers

function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value != null) element.setAttribute(name, value);
  }
  element.append(...children.filter((child) => child != null)); // strings become text nodes
  return element;
}

function plural(count, word) {
  return `${count} ${word}${count === 1 ? '' : 's'}`;
}

function basename(path) {
  return path.split(/[\\/]/).pop();
}

function formatNumber(value) {
  return value == null ? '—' : String(Number(Number(value).toFixed(2)));
}

function formatTime(epochSeconds) {
  return epochSeconds == null ? '—' : new Date(epochSeconds * 1000).toLocaleString();
}

const shortTimeFormat = new Intl.DateTimeFormat(undefined, {
  month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit',
});
const shortTimeWithYearFormat = new Intl.DateTimeFormat(undefined, {
  year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit',
});

// "Nov 25, 10:41 PM" (with the year when it is not this year); the full time is in the tooltip.
function formatShortTime(date) {
  if (!date) return '—';
  const format = date.getFullYear() === new Date().getFullYear() ? shortTimeFormat : shortTimeWithYearFormat;
  return format.format(date);
}

function relativeTime(epochSeconds) {
  const delta = epochSeconds - Date.now() / 1000;
  const [unit, seconds] = RELATIVE_UNITS.find(([, size]) => Math.abs(delta) >= size) ?? ['second', 1];
  return relativeFormat.format(Math.trunc(delta / seconds), unit);
}

function formatDuration(seconds) {
  if (seconds == null) return '—';
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const total = Math.round(seconds);
  const hours = Math.floor(total / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  return hours ? `${hours} h ${minutes} min` : `${minutes} min ${total % 60} s`;
}

function jobUrl(jobId) {
  return `/api/jobs/${encodeURIComponent(jobId)}`;
}

function outputUrl(jobId, index) {
  return `${jobUrl(jobId)}/outputs/${index}`;
}

function showToast(message) {
  const toast = $('toast');
  toast.textContent = message;
  toast.classList.add('visible');
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => toast.classList.remove('visible'), TOAST_MS);
}

// ---------------------------------------------------------------- API

async function api(path, { method = 'GET', body } = {}) {
  const headers = {};
  if (method !== 'GET') {
    headers['Content-Type'] = 'application/json';
    if (token) headers.Authorization = `Bearer ${token}`;
  }
  let response;
  try {
    response = await fetch(path, { method, headers, body: body && JSON.stringify(body) });
  } catch {
    throw new Error('network error');
  }
  const data = await response.json().catch(() => null);
  if (response.status === 401 && method !== 'GET') {
    const entered = prompt('This server needs its access token (LEARNING_SVC_TOKEN) to save ratings:');
    if (entered) {
      token = entered.trim();
      localStorage.setItem(TOKEN_KEY, token);
      return api(path, { method, body });
    }
  }
  if (!response.ok) {
    throw new Error(data?.error?.message || `${response.status} ${response.statusText}`.trim());
  }
  return data;
}

// ---------------------------------------------------------------- filter state

function readParamsFromUrl() {
  const params = new URLSearchParams();
  for (const [key, value] of new URLSearchParams(location.search)) {
    if (LIST_PARAMS.includes(key) && value !== '') params.append(key, value);
  }
  return params;
}

function filterParams() {
  const params = apiParams(view.params);
  params.delete('sort');
  return params;
}

// The date pickers put days in the URL (since=2025-11-24); the API gets the bounds of those
// days in the browser's time zone, `until` inclusive. Other values (epoch seconds, full
// ISO times typed into the URL) pass through as they are.
const DAY = /^(\d{4})-(\d{2})-(\d{2})$/;

function apiParams(source) {
  const params = new URLSearchParams(source);
  for (const [name, endOfDay] of [['since', false], ['until', true]]) {
    const day = params.get(name)?.match(DAY);
    if (!day) continue;
    const start = new Date(Number(day[1]), Number(day[2]) - 1, Number(day[3]) + (endOfDay ? 1 : 0));
    params.set(name, new Date(start.getTime() - (endOfDay ? 1 : 0)).toISOString());
  }
  return params;
}

function hasFilters() {
  return filterParams().toString() !== '';
}

function sortOrder() {
  return view.params.get('sort') ?? DEFAULT_SORT;
}

function unratedOnly() {
  return view.params.get('rated') === 'false';
}

function jobsUrl(cursor) {
  const params = apiParams(view.params);
  params.set('limit', PAGE_SIZE);
  if (cursor) params.set('cursor', cursor);
  return `/api/jobs?${params}`;
}

function writeUrl() {
  const query = view.params.toString();
  history.replaceState(null, '', query ? `${location.pathname}?${query}` : location.pathname);
}

function updateExportLinks() {
  for (const format of ['jsonl', 'csv']) {
    const params = new URLSearchParams([['format', format], ...filterParams()]);
    $(`export-${format}`).href = `/api/export?${params}`;
  }
}

function ensureOption(select, value) {
  if (value && ![...select.options].some((option) => option.value === value)) {
    select.append(h('option', { value }, value));
  }
}

function syncControls() {
  for (const control of $('filters').elements) {
    if (!control.name) continue;
    const value = view.params.get(control.name) ?? '';
    if (control.type === 'checkbox') {
      control.checked = value === control.value;
    } else {
      if (control.tagName === 'SELECT') ensureOption(control, value);
      control.value = value || (control.name === 'sort' ? DEFAULT_SORT : '');
    }
  }
}

function updateParam(control) {
  const value = control.type === 'checkbox' ? (control.checked ? control.value : '') : control.value.trim();
  const before = view.params.toString();
  if (value === '' || (control.name === 'sort' && value === DEFAULT_SORT)) {
    view.params.delete(control.name);
  } else {
    view.params.set(control.name, value);
  }
  if (view.params.toString() !== before) applyFilters();
}

function clearFilters() {
  const sort = view.params.get('sort');
  view.params = new URLSearchParams(sort ? { sort } : {});
  syncControls();
  applyFilters();
}

// A filter in use stands out, and one button clears them all.
function markActiveFilters() {
  for (const control of $('filters').elements) {
    if (!control.name || control.name === 'sort') continue;
    control.closest('label')?.classList.toggle('active', view.params.has(control.name));
    control.classList.toggle('active', view.params.has(control.name));
  }
  $('clear-filters-bar').hidden = !hasFilters();
}

function applyFilters() {
  writeUrl();
  updateExportLinks();
  markActiveFilters();
  document.body.classList.toggle('unrated-only', unratedOnly());
  view.generation += 1;
  view.jobs.clear();
  view.cursor = null;
  view.done = false;
  view.failed = false;
  view.pending = null;
  view.advancing = false;
  view.typedAhead = [];
  hideNewJobsPill();
  $('job-list').replaceChildren();
  loadNextPage();
  loadFacets();
  renderStatus();
}

// ---------------------------------------------------------------- facets

async function loadFacets() {
  const generation = view.generation;
  const requests = new Map();
  // Each select lists the values available under the *other* filters, so a different
  // value can still be picked once one is selected.
  const facetsWithout = (field) => {
    const params = filterParams();
    params.delete(field);
    const query = params.toString();
    if (!requests.has(query)) requests.set(query, api(`/api/facets?${query}`));
    return requests.get(query);
  };
  try {
    const results = await Promise.all(FACET_FIELDS.map(facetsWithout));
    if (generation !== view.generation) return;
    FACET_FIELDS.forEach((field, i) => fillSelect(field, results[i].facets[field] ?? [], results[i].sampled));
  } catch (error) {
    if (generation === view.generation) showToast(`Could not load filter values: ${error.message}`);
  }
}

function fillSelect(field, buckets, sampled) {
  const select = $(`filter-${field}`);
  // Under a filter matching many jobs the server counts only the newest of them.
  select.title = sampled ? `Counts over the newest ${sampled.jobs.toLocaleString('en-US')} matching jobs` : '';
  const selected = view.params.get(field) ?? '';
  const values = buckets.filter((bucket) => bucket.value != null && bucket.value !== '');
  const match = values.find((bucket) => String(bucket.value).toLowerCase() === selected.toLowerCase());
  const options = values.map(({ value, count }) => h('option', { value }, `${value} (${count})`));
  if (selected && !match) options.unshift(h('option', { value: selected }, `${selected} (0)`));
  select.replaceChildren(select.options[0], ...options);
  select.value = match ? String(match.value) : selected;
}

// ---------------------------------------------------------------- list

function loadNextPage() {
  if (view.done || view.failed) return Promise.resolve();
  if (!view.pending) {
    const promise = fetchPage(view.generation).finally(() => {
      if (view.pending === promise) view.pending = null;
    });
    view.pending = promise;
  }
  return view.pending;
}

async function fetchPage(generation) {
  setListMessage('Loading…');
  try {
    const data = await api(jobsUrl(view.cursor));
    if (generation !== view.generation) return;
    $('job-list').append(...data.jobs.filter((job) => !view.jobs.has(job.job_id)).map(addJob));
    view.cursor = data.next_cursor;
    view.done = !data.next_cursor;
    setListMessage('');
    if (!view.done) rearmSentinel();
  } catch (error) {
    if (generation !== view.generation) return;
    view.failed = true;
    setListMessage(`Could not load jobs: ${error.message}`, { retry: true });
  }
  renderStatus();
}

function retryLoading() {
  view.failed = false;
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
  view.jobs.set(job.job_id, job);
  return job.element;
}

function setListMessage(text, { retry = false } = {}) {
  $('list-message').hidden = !text;
  $('list-message-text').textContent = text;
  $('retry').hidden = !retry;
}

function renderStatus() {
  const count = view.jobs.size;
  const loadingFirstPage = count === 0 && !view.done && !view.failed;
  let status = `Showing ${plural(count, 'job')}`;
  if (loadingFirstPage) status = 'Loading…';
  else if (count === 0 && view.done) status = hasFilters() ? 'No matching jobs' : 'No jobs yet';
  $('status').textContent = status;
  const empty = count === 0 && view.done;
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
  const firstPageLoaded = view.cursor !== null || view.done;
  return document.visibilityState === 'visible' && sortOrder() === DEFAULT_SORT
    && firstPageLoaded && !view.failed;
}

async function pollNewJobs() {
  const generation = view.generation;
  try {
    if (canPoll()) {
      const data = await api(jobsUrl(null));
      const fresh = newerThanShown(data.jobs);
      if (generation === view.generation && fresh.length) prependJobs(fresh);
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
  const firstShown = jobs.findIndex((job) => view.jobs.has(job.job_id));
  if (firstShown >= 0) return jobs.slice(0, firstShown);
  const newest = view.jobs.get($('job-list').firstElementChild?.dataset.jobId);
  return newest ? jobs.filter((job) => job.completed_at > newest.completed_at) : jobs;
}

function firstVisibleJob() {
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
  view.newJobsAbove += count;
  const pill = $('new-jobs');
  pill.textContent = `↑ ${plural(view.newJobsAbove, 'new job')}`;
  pill.hidden = false;
}

function hideNewJobsPill() {
  view.newJobsAbove = 0;
  $('new-jobs').hidden = true;
}

function scrollToTop() {
  hideNewJobsPill();
  window.scrollTo(0, 0);
}

// ---------------------------------------------------------------- job rendering

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
    job.status === 'completed' ? null : h('span', { class: `badge status-${job.status}` }, job.status),
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
    job.steps == null ? null : `${job.steps} steps`,
    job.cfg_scale == null ? null : `CFG ${formatNumber(job.cfg_scale)}`,
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

// ---------------------------------------------------------------- rating

function renderRatingWidget(rating) {
  const radios = STAR_LABELS.map((label, value) => h('button', {
    type: 'button',
    role: 'radio',
    class: value === 0 ? 'star-zero' : 'star',
    'aria-label': label,
    'data-rating': value,
    tabindex: '-1',
  }, value === 0 ? '0' : '★'));
  const widget = h('div', { class: 'rating' },
    h('div', { class: 'stars', role: 'radiogroup', 'aria-label': 'Rating' }, ...radios),
    h('button', { type: 'button', class: 'clear-rating', 'aria-label': 'Clear rating', title: 'Clear rating', tabindex: '-1' }, '✕'));
  showRating(widget, rating);
  return widget;
}

function showRating(widget, rating) {
  for (const radio of widget.querySelectorAll('[role="radio"]')) {
    const value = Number(radio.dataset.rating);
    radio.setAttribute('aria-checked', String(value === rating));
    radio.classList.toggle('lit', rating != null && value > 0 && value <= rating);
  }
  widget.classList.toggle('unrated', rating == null);
  widget.closest('.job')?.classList.toggle('rated', rating != null);
}

function ratingWidgets(job) {
  const widgets = [job.element.querySelector('.rating')];
  if (detailsJob() === job) widgets.push($('details-rating').querySelector('.rating'));
  return widgets.filter(Boolean);
}

function showJobRating(job, rating) {
  for (const widget of ratingWidgets(job)) showRating(widget, rating);
}

function setJobError(job, message) {
  job.element.querySelector('.job-error').textContent = message;
  if (detailsJob() === job) $('details-error').textContent = message;
}

// Shows the new rating at once, stores it, and reverts with a message if storing fails.
// Resolves to true when stored.
async function rateJob(job, rating) {
  if (rating === null && job.rating === null) return true;
  const request = ++job.ratingRequest;
  job.rating = rating;
  showJobRating(job, rating);
  setJobError(job, '');
  const url = `${jobUrl(job.job_id)}/rating`;
  try {
    await (rating === null
      ? api(url, { method: 'DELETE' })
      : api(url, { method: 'PUT', body: { rating, source: 'web' } }));
    job.savedRating = rating;
    return true;
  } catch (error) {
    if (request === job.ratingRequest) {
      job.rating = job.savedRating;
      showJobRating(job, job.savedRating);
      setJobError(job, `Rating not saved: ${error.message}`);
    }
    return false;
  }
}

// In the "unrated only" view, rating moves focus on to the next job still unrated.
function rateAndAdvance(element, rating) {
  const job = view.jobs.get(element.dataset.jobId);
  const saved = rateJob(job, rating);
  if (unratedOnly() && rating !== null) focusNextJob(element, isUnrated);
  return saved;
}

function isUnrated(job) {
  return job.rating === null;
}

function rateJobInDetails(rating) {
  const job = detailsJob();
  if (!job) return;
  rateJob(job, rating).then((saved) => {
    if (saved) refreshDetailsRating(job.job_id);
  });
  if (unratedOnly() && rating !== null) stepDetails(true, isUnrated);
}

// ---------------------------------------------------------------- focus and keys

function focusJob(element) {
  element.focus({ preventScroll: true });
  element.scrollIntoView({ block: 'nearest' });
  if (!hasJobsAfter(element, PREFETCH_JOBS)) loadNextPage(); // rating never waits at a page end
}

function hasJobsAfter(element, count) {
  let next = element;
  for (let i = 0; i < count; i += 1) {
    next = next.nextElementSibling;
    if (!next) return false;
  }
  return true;
}

function adjacentJob(element, direction, matches = () => true) {
  for (let next = element[direction]; next; next = next[direction]) {
    if (matches(view.jobs.get(next.dataset.jobId))) return next;
  }
  return null;
}

// Moves on to the next matching job: at once when it is loaded (pages are prefetched as
// focus nears the end), else once the next page has arrived. Keys typed while waiting are
// queued and replayed on the job moved to, so fast typing never rates one job twice.
function advance(element, matches, moveTo) {
  const next = adjacentJob(element, 'nextElementSibling', matches);
  if (next || view.done || view.failed) {
    if (next) moveTo(next);
    return;
  }
  const { generation } = view;
  view.advancing = true;
  loadUntilNext(element, matches).then((found) => {
    if (generation !== view.generation) return; // the filters changed meanwhile
    view.advancing = false;
    if (found) moveTo(found);
    else view.typedAhead = []; // nothing left to move to
    replayTypedAhead();
  });
}

async function loadUntilNext(element, matches) {
  let next = null;
  while (!next && !view.done && !view.failed && element.isConnected) {
    await loadNextPage();
    next = adjacentJob(element, 'nextElementSibling', matches);
  }
  return next;
}

const TYPE_AHEAD_KEYS = /^([0-5]|j|k|ArrowLeft|ArrowRight|Backspace|Delete)$/;

function replayTypedAhead() {
  while (view.typedAhead.length && !view.advancing) {
    const key = view.typedAhead.shift();
    const element = document.activeElement?.closest?.('.job');
    let action = null;
    if ($('details').open) action = detailsKeyAction(key);
    else if (element) action = jobKeyAction({ key, target: null }, element);
    action?.();
  }
}

function focusNextJob(element, matches) {
  advance(element, matches, (next) => {
    if (!$('details').open) focusJob(next);
  });
}

function focusPreviousJob(element) {
  const previous = adjacentJob(element, 'previousElementSibling');
  if (previous) focusJob(previous);
}

// The job in the row below (or above) whose centre is nearest: the list is a grid.
function jobInAdjacentRow(element, direction) {
  const box = element.getBoundingClientRect();
  const centre = box.left + box.width / 2;
  let best = null;
  let bestDistance = Infinity;
  let rowTop = null;
  for (let other = element[direction]; other; other = other[direction]) {
    const rect = other.getBoundingClientRect();
    if (rowTop === null) {
      if (Math.abs(rect.top - box.top) < 1) continue;
      rowTop = rect.top;
    } else if (Math.abs(rect.top - rowTop) >= 1) {
      break;
    }
    const distance = Math.abs(rect.left + rect.width / 2 - centre);
    if (distance < bestDistance) [best, bestDistance] = [other, distance];
  }
  return best;
}

async function focusJobBelow(element) {
  let below = jobInAdjacentRow(element, 'nextElementSibling');
  if (!below && !view.done && !view.failed) {
    await loadNextPage();
    below = jobInAdjacentRow(element, 'nextElementSibling');
  }
  if (below) focusJob(below);
}

function focusJobAbove(element) {
  const above = jobInAdjacentRow(element, 'previousElementSibling');
  if (above) focusJob(above);
}

function isEditable(target) {
  return target.matches?.('input, select, textarea, [contenteditable]');
}

const CLEAR_KEYS = ['Backspace', 'Delete'];

function jobKeyAction(event, element) {
  const { key } = event;
  const job = view.jobs.get(element.dataset.jobId);
  if (/^[0-5]$/.test(key)) return () => rateAndAdvance(element, Number(key));
  if (CLEAR_KEYS.includes(key)) return () => rateJob(job, null);
  if (key === 'j' || key === 'ArrowRight') return () => focusNextJob(element);
  if (key === 'k' || key === 'ArrowLeft') return () => focusPreviousJob(element);
  if (key === 'ArrowDown') return () => focusJobBelow(element);
  if (key === 'ArrowUp') return () => focusJobAbove(element);
  if (key === 'Enter' && event.target === element) return () => openDetails(element);
  return null;
}

function detailsKeyAction(key) {
  if (/^[0-5]$/.test(key)) return () => rateJobInDetails(Number(key));
  if (CLEAR_KEYS.includes(key)) return () => rateJobInDetails(null);
  if (key === 'j' || key === 'ArrowRight') return () => stepDetails(true);
  if (key === 'k' || key === 'ArrowLeft') return () => stepDetails(false);
  return null; // Esc is handled by the dialog itself
}

function onKeydown(event) {
  if (event.ctrlKey || event.metaKey || event.altKey || isEditable(event.target)) return;
  if (event.key === '?') {
    event.preventDefault();
    toggleHelp();
    return;
  }
  if ($('help').open) return;
  if (view.advancing && TYPE_AHEAD_KEYS.test(event.key)) {
    event.preventDefault();
    view.typedAhead.push(event.key);
    return;
  }
  const element = event.target.closest?.('.job');
  let action;
  if ($('details').open) {
    action = detailsKeyAction(event.key);
  } else if (element) {
    action = jobKeyAction(event, element);
  } else if (['j', 'ArrowDown', 'ArrowRight'].includes(event.key) && $('job-list').firstElementChild) {
    action = () => focusJob(firstVisibleJob() ?? $('job-list').firstElementChild);
  }
  if (action) {
    event.preventDefault();
    action();
  }
}

function onListClick(event) {
  const element = event.target.closest('.job');
  if (!element) return;
  const radio = event.target.closest('[data-rating]');
  if (radio) {
    rateAndAdvance(element, Number(radio.dataset.rating));
  } else if (event.target.closest('.clear-rating')) {
    rateJob(view.jobs.get(element.dataset.jobId), null);
  } else if (!event.target.closest('.rating')) {
    openDetails(element);
  }
}

// ---------------------------------------------------------------- dialogs

function openDialog(dialog, restoreFocus) {
  const previous = document.activeElement;
  dialog.showModal();
  dialog.addEventListener('close', () => {
    if (restoreFocus) restoreFocus();
    else previous?.focus({ preventScroll: true });
  }, { once: true });
}

function closeOnBackdropClick(dialog) {
  dialog.addEventListener('click', (event) => {
    const box = dialog.getBoundingClientRect();
    const outside = event.clientX < box.left || event.clientX > box.right
      || event.clientY < box.top || event.clientY > box.bottom;
    if (event.target === dialog && outside) dialog.close();
  });
}

function toggleHelp() {
  if ($('help').open) $('help').close();
  else openDialog($('help'));
}

function detailsJob() {
  const dialog = $('details');
  return dialog.open ? view.jobs.get(dialog.dataset.shownJob) : undefined;
}

// Closing the details focuses the job shown last, so that j/k in the dialog also move in the list.
function openDetails(element) {
  const dialog = $('details');
  if (!dialog.open) {
    openDialog(dialog, () => {
      const job = view.jobs.get(dialog.dataset.shownJob);
      if (job?.element.isConnected) focusJob(job.element);
    });
    dialog.focus(); // not its first button: Enter or Space there would act on it
  }
  showDetails(element);
}

function showDetails(element) {
  const job = view.jobs.get(element.dataset.jobId);
  $('details').dataset.shownJob = job.job_id;
  $('details-title').textContent = job.job_id;
  $('details-error').textContent = '';
  $('details-rating').replaceChildren(renderRatingWidget(job.rating));
  $('details-previous').disabled = !element.previousElementSibling;
  $('details-next').disabled = !element.nextElementSibling && view.done;
  $('details-body').replaceChildren(h('p', { class: 'muted' }, 'Loading…'));
  $('details-body').scrollTop = 0;
  loadDetails(job.job_id);
  if (!hasJobsAfter(element, PREFETCH_JOBS)) loadNextPage();
}

function stepDetails(forward, matches) {
  const job = detailsJob();
  if (!job) return;
  const show = (next) => {
    if (detailsJob() === job) showDetails(next);
  };
  if (forward) {
    advance(job.element, matches, show);
  } else {
    const previous = adjacentJob(job.element, 'previousElementSibling', matches);
    if (previous) show(previous);
  }
}

function onDetailsRatingClick(event) {
  const radio = event.target.closest('[data-rating]');
  if (radio) rateJobInDetails(Number(radio.dataset.rating));
  else if (event.target.closest('.clear-rating')) rateJobInDetails(null);
}

async function loadDetails(jobId) {
  const isCurrent = () => $('details').open && $('details').dataset.shownJob === jobId;
  try {
    const data = await api(jobUrl(jobId));
    if (isCurrent()) $('details-body').replaceChildren(...renderDetails(data));
  } catch (error) {
    if (isCurrent()) {
      $('details-body').replaceChildren(h('p', { class: 'error', role: 'alert' }, `Could not load the job: ${error.message}`));
    }
  }
}

// After a rating is stored, only the summary and the history change: the images stay put.
async function refreshDetailsRating(jobId) {
  try {
    const data = await api(jobUrl(jobId));
    if ($('details').dataset.shownJob !== jobId || !$('details-history')) return;
    $('details-summary').replaceWith(renderDetailsSummary(data));
    $('details-history').replaceWith(renderRatingHistory(data.rating_history ?? []));
  } catch {
    // The rating itself is stored; a stale history is corrected on the next opening.
  }
}

function renderDetailsSummary({ record, rating }) {
  const summary = [
    formatTime(record.completed_at),
    record.status,
    `variant ${record.variant_index + 1} / ${record.variant_total}`,
    plural((record.outputs ?? []).length, 'output'),
    formatDuration(record.duration_sec),
    rating == null ? 'unrated' : `rated ${plural(rating, 'star')}`,
  ];
  return h('p', { id: 'details-summary', class: 'details-summary' }, summary.filter(Boolean).join(' · '));
}

function renderDetails(data) {
  const { record } = data;
  return [
    renderDetailsSummary(data),
    renderOutputs(record.job_id, record.outputs ?? []),
    detailsSection('Packs', h('p', {}, (record.packs ?? []).join(', ') || '—')),
    detailsSection('Prompt', h('pre', { class: 'prompt' }, record.prompt || '—')),
    detailsSection('Negative prompt', h('pre', { class: 'prompt' }, record.negative_prompt || '—')),
    detailsSection('Generation', renderGeneration(record)),
    detailsSection('Rating history', renderRatingHistory(data.rating_history ?? [])),
    detailsSection('Run config', h('pre', { class: 'json' }, JSON.stringify(record.run_config ?? {}, null, 2))),
    h('details', { class: 'full-record' },
      h('summary', {}, 'Full stored record'),
      h('pre', { class: 'json' }, JSON.stringify(record, null, 2))),
  ];
}

function detailsSection(title, content) {
  return h('section', {}, h('h3', {}, title), content);
}

function weighted(items) {
  return (items ?? []).map((item) => (item.weight == null ? item.name : `${item.name} (${formatNumber(item.weight)})`)).join(', ');
}

function renderGeneration(record) {
  const facts = [
    ['Model', record.model],
    ['VAE', record.vae],
    ['Sampler', [record.sampler, record.scheduler].filter(Boolean).join(' · ')],
    ['Steps', record.steps],
    ['CFG', record.cfg_scale == null ? null : formatNumber(record.cfg_scale)],
    ['Size', record.width && record.height ? `${record.width}×${record.height}` : null],
    ['Seed', record.seed],
    ['LoRAs', weighted(record.loras)],
    ['Embeddings', weighted(record.embeddings)],
    ['Run', record.run_id],
  ];
  return h('dl', { class: 'generation' }, ...facts.flatMap(([label, value]) => [
    h('dt', {}, label),
    h('dd', {}, value == null || value === '' ? '—' : String(value)),
  ]));
}

function renderOutputs(jobId, outputs) {
  if (!outputs.length) return h('p', { class: 'outputs muted' }, 'No outputs');
  return h('div', { class: 'outputs' }, ...outputs.map((path, index) => h('figure', {},
    h('a', { href: outputUrl(jobId, index), target: '_blank', rel: 'noopener' },
      h('img', { src: outputUrl(jobId, index), alt: `Output ${index + 1}: ${basename(path)}` })),
    h('figcaption', { title: path }, path))));
}

function renderRatingHistory(history) {
  if (!history.length) return h('p', { id: 'details-history', class: 'muted' }, 'Never rated');
  return h('ol', { id: 'details-history', class: 'rating-history', reversed: '' }, ...[...history].reverse().map((event) => h('li', {},
    h('span', { class: 'history-rating' }, event.rating == null ? 'cleared' : plural(event.rating, 'star')),
    ` · ${formatTime(event.timestamp)}`,
    event.source ? ` · ${event.source}` : null)));
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

// ---------------------------------------------------------------- start

function debounce(fn, ms) {
  let timer;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

// Search and sort sit in the title row but belong to the form (their `form` attribute),
// so the listeners are on the whole top bar.
function bindFilterBar() {
  const search = $('filter-q');
  const searchLater = debounce(() => updateParam(search), SEARCH_DEBOUNCE_MS);
  $('topbar').addEventListener('change', (event) => {
    if (event.target.form === $('filters')) updateParam(event.target);
  });
  $('filters').addEventListener('submit', (event) => {
    event.preventDefault();
    updateParam(search);
  });
  search.addEventListener('input', searchLater);
  $('clear-filters').addEventListener('click', clearFilters);
  $('clear-filters-bar').addEventListener('click', clearFilters);
}

function trackTopbarHeight() {
  const topbar = $('topbar');
  new ResizeObserver(() => {
    document.documentElement.style.setProperty('--topbar-height', `${topbar.offsetHeight}px`);
  }).observe(topbar);
}

function init() {
  syncControls();
  bindFilterBar();
  trackTopbarHeight();
  document.addEventListener('keydown', onKeydown);
  $('job-list').addEventListener('click', onListClick);
  $('retry').addEventListener('click', retryLoading);
  $('new-jobs').addEventListener('click', scrollToTop);
  $('help-button').addEventListener('click', toggleHelp);
  $('help-close').addEventListener('click', () => $('help').close());
  $('details-close').addEventListener('click', () => $('details').close());
  $('details-previous').addEventListener('click', () => stepDetails(false));
  $('details-next').addEventListener('click', () => stepDetails(true));
  $('details-rating').addEventListener('click', onDetailsRatingClick);
  closeOnBackdropClick($('help'));
  closeOnBackdropClick($('details'));
  $('copy-curl').addEventListener('click', copyCurlCommand);
  window.addEventListener('scroll', () => { if (window.scrollY === 0) hideNewJobsPill(); }, { passive: true });
  sentinelObserver = new IntersectionObserver((entries) => {
    if (entries.some((entry) => entry.isIntersecting)) loadNextPage();
  }, { rootMargin: '800px 0px' });
  sentinelObserver.observe($('sentinel'));
  renderCurlCommand();
  applyFilters();
  setInterval(refreshRelativeTimes, RELATIVE_TIME_REFRESH_MS);
  schedulePoll();
}

init();
