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

export function unratedOnly() {
  return state.params.get('rated') === 'false';
}
