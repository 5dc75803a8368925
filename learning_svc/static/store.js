// The page's state, in one place. Other modules read `state` and change it only through
// the functions below, so that every change has a name.

export const DEFAULT_SORT = '-completed_at';

export const state = {
  fields: [],            // the filterable fields (GET /api/fields): name, label, plural, ...
  params: new URLSearchParams(), // filters and sort, mirrored in the address bar
  jobs: new Map(),       // job_id -> summary (+ element, savedRating): the jobs shown
  cursor: null,
  done: false,
  failed: false,
  pending: null,         // promise of the page being loaded
  generation: 0,         // bumped on every filter change so stale responses are dropped
  newJobsAbove: 0,
  position: null,        // where the change feed (GET /api/changes) is followed from
  count: null,           // {jobs, exact, unrated, unrated_exact} of the filters (GET /api/count), and `arrived` when asked
  arrived: 0,            // jobs the change feed added to this listing
  openJob: null,         // the job id open in details (in the URL as `job=`)
  detached: null,        // a job opened from the URL that is not in the loaded list
  selected: new Set(),   // job ids selected for a bulk action (click / shift-click / space)
  selectAll: null,       // {count, where}: "every job matching these filters" was chosen
  anchor: null,          // the job a shift-click selects from
  rangeBase: null,       // what was selected before a Shift range began (Shift moves it, not adds to it)
  rangeEnd: null,        // the job the last Shift range ended on (a Shift+arrow from it goes on with that range)
  undo: [],              // [{label, items}] of POST /api/ratings:batch that put things back
  advancing: false,      // true while moving on waits for the next page to load
  typedAhead: [],        // keys pressed meanwhile, replayed on the job moved to
};

export function setFields(fields) {
  state.fields = fields;
}

export function setParams(params) {
  state.params = params;
}

// A new listing (filters or sort changed): everything shown so far is dropped.
export function startListing() {
  state.generation += 1;
  state.jobs.clear();
  state.cursor = null;
  state.done = false;
  state.failed = false;
  state.pending = null;
  state.advancing = false;
  state.typedAhead = [];
  state.newJobsAbove = 0;
  state.position = null;
  state.count = null;
  state.arrived = 0;
  state.selected.clear();
  state.selectAll = null;
  state.anchor = null;
  state.rangeBase = null;
  state.rangeEnd = null;
}

export function setPosition(position) {
  state.position = position;
}

export function setCount(count) {
  state.count = count;
}

export function setOpenJob(jobId, detached = null) {
  state.openJob = jobId;
  state.detached = detached;
}

// A job shown in the list, or the one opened from the URL outside it.
export function jobById(jobId) {
  return state.jobs.get(jobId) ?? (state.detached?.job_id === jobId ? state.detached : undefined);
}

export function setPending(promise) {
  state.pending = promise;
}

export function pageLoaded(nextCursor) {
  state.cursor = nextCursor;
  state.done = !nextCursor;
}

export function setFailed(failed) {
  state.failed = failed;
}

export function keepJob(job) {
  state.jobs.set(job.job_id, job);
}

export function countNewAbove(count) {
  state.newJobsAbove = count === 0 ? 0 : state.newJobsAbove + count;
}

export function setAdvancing(advancing) {
  state.advancing = advancing;
}

export function typeAhead(key) {
  state.typedAhead.push(key);
}

export function nextTypedKey() {
  return state.typedAhead.shift();
}

export function forgetTypedAhead() {
  state.typedAhead = [];
}

export function sortOrder() {
  return state.params.get('sort') ?? DEFAULT_SORT;
}

// The server's sort keys (index/plan.py SORTS): unrated sorts last both ways, an unknown
// duration as -1. Among equal keys the job that arrived later comes first when descending.
const SORT_KEYS = {
  completed_at: (job) => job.completed_at ?? 0,
  '-rating': (job) => job.rating ?? -1,
  rating: (job) => job.rating ?? 6,
  duration_sec: (job) => job.duration_sec ?? -1,
};

// Whether a job that has just arrived belongs before `other` (a job already listed).
export function arrivesBefore(job, other) {
  const sort = sortOrder();
  const descending = sort.startsWith('-');
  const key = SORT_KEYS[sort] ?? SORT_KEYS[sort.replace(/^-/, '')];
  return descending ? key(job) >= key(other) : key(job) < key(other);
}

export function unratedOnly() {
  return state.params.get('rated') === 'false';
}
