// The 0–5 star widget (a WAI-ARIA radio group with one tab stop) and storing a rating: shown
// at once, stored with a PUT (or a DELETE to clear). A refusal (a 4xx: asking again cannot
// help) reverts it with the reason; a service that cannot be reached, or that answers it is
// busy (503: the index rebuilt, the database restarting), keeps it in a queue (in
// localStorage, so a reload keeps it too) that is sent in order once the service answers again.

import { ApiError, api, jobUrl } from './api.js';
import { onResume } from './connection.js';
import { detailsJob, refreshDetailsRating, stepDetails } from './details.js';
import { refreshCountSoon } from './list.js';
import { focusNextJob } from './nav.js';
import { redrawJob } from './review.js';
import { jobById, state, unratedOnly } from './store.js';
import { applySet, pushUndo, trackAction } from './undo.js';
import { $, announce, h } from './util.js';

const STAR_LABELS = ['0 stars', '1 star', '2 stars', '3 stars', '4 stars', '5 stars'];
const RETRY_BUSY_MS = 5000;
const QUEUE_KEY = 'learning-svc-unsent-ratings';
const UNSENT = 'Not saved yet: the service cannot be reached. It is sent as soon as the service is back.';
const busyMessage = (error) => `Not saved yet: ${error.message}. It is sent again in a few seconds.`;

export function renderRatingWidget(rating) {
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
    h('button', { type: 'button', class: 'clear-rating', 'aria-label': 'Clear rating', title: 'Clear rating' }, '✕'));
  showRating(widget, rating);
  return widget;
}

// The checked star is the group's one tab stop (the first when none is checked).
function showRating(widget, rating) {
  const radios = [...widget.querySelectorAll('[role="radio"]')];
  for (const radio of radios) {
    const value = Number(radio.dataset.rating);
    radio.setAttribute('aria-checked', String(value === rating));
    radio.classList.toggle('lit', rating != null && value > 0 && value <= rating);
  }
  const tabStop = radios.find((radio) => Number(radio.dataset.rating) === rating) ?? radios[0];
  const focused = radios.find((radio) => radio === document.activeElement);
  for (const radio of radios) radio.tabIndex = radio === (focused ?? tabStop) ? 0 : -1;
  widget.classList.toggle('unrated', rating == null);
  widget.closest('.job')?.classList.toggle('rated', rating != null);
}

// Arrow keys (and Home / End) move between the stars; Space or Enter gives that rating.
export function moveInRadioGroup(radio, key) {
  const radios = [...radio.closest('[role="radiogroup"]').querySelectorAll('[role="radio"]')];
  const at = radios.indexOf(radio);
  const step = { ArrowRight: 1, ArrowDown: 1, ArrowLeft: -1, ArrowUp: -1 }[key];
  const next = key === 'Home' ? 0 : key === 'End' ? radios.length - 1 : Math.min(radios.length - 1, Math.max(0, at + step));
  for (const other of radios) other.tabIndex = other === radios[next] ? 0 : -1;
  radios[next].focus();
}

function ratingWidgets(job) {
  const widgets = [job.element.querySelector('.rating')];
  if (detailsJob() === job) widgets.push($('details-rating').querySelector('.rating'));
  return widgets.filter(Boolean);
}

export function showJobRating(job, rating) {
  for (const widget of ratingWidgets(job)) showRating(widget, rating);
}

function setJobError(job, message, { unsent = false } = {}) {
  const line = job.element.querySelector('.job-error');
  line.textContent = message;
  line.classList.toggle('unsent', unsent);
  if (detailsJob() === job) $('details-error').textContent = message;
}

// `output`: an image's rating instead of the job's (a one-image job's image, kept with its job's).
function send(jobId, rating, output = null) {
  const url = output == null ? `${jobUrl(jobId)}/rating` : `${jobUrl(jobId)}/outputs/${output}/rating`;
  return rating === null
    ? api(url, { method: 'DELETE', body: { source: 'web' } })
    : api(url, { method: 'PUT', body: { rating, source: 'web' } });
}

// ---------------------------------------------------------------- the queue of unsent ratings

let queue = readQueue();
let flushing = false;

// Only entries of the shapes this page writes: the storage is the browser's, and a wrong one
// (another version's, a hand-edited one) wedged the queue for good or left the page with no
// cards; what is not an array is removed.
function readQueue() {
  try {
    const stored = JSON.parse(localStorage.getItem(QUEUE_KEY) ?? '[]');
    if (Array.isArray(stored)) return lastRatings(stored.filter(wellFormed));
  } catch {
    // not JSON
  }
  localStorage.removeItem(QUEUE_KEY);
  return [];
}

// Of the ratings a job (or one of its images) was given while they waited, the last: each is an
// fsynced event, and 100,000 kept took 17 s to show the page and hours to send one by one.
function lastRatings(entries) {
  const key = (entry) => `${entry.job_id}\n${entry.output ?? ''}`;
  const last = new Map();
  entries.forEach((entry, i) => { if (!entry.review) last.set(key(entry), i); });
  return entries.filter((entry, i) => entry.review || last.get(key(entry)) === i);
}

// (Declarations, not consts: readQueue runs as the module loads, before a const below is made.)
function isPlain(value) {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function wellFormed(entry) {
  if (!isPlain(entry) || typeof entry.job_id !== 'string') return false;
  if ('review' in entry) {
    return isPlain(entry.review) && Array.isArray(entry.jobs) && entry.jobs.length > 0
      && entry.jobs.every((id) => typeof id === 'string') && (entry.expect === undefined || isPlain(entry.expect));
  }
  const stars = entry.rating === null || (Number.isInteger(entry.rating) && entry.rating >= 0 && entry.rating <= 5);
  return stars && (entry.output == null || (Number.isInteger(entry.output) && entry.output >= 0));
}

function saveQueue() {
  if (queue.length) localStorage.setItem(QUEUE_KEY, JSON.stringify(queue));
  else localStorage.removeItem(QUEUE_KEY);
}

// The rating last given to a job and not sent yet (undefined: none waits).
export function unsentRating(jobId) {
  for (let i = queue.length - 1; i >= 0; i -= 1) {
    if (queue[i].job_id === jobId && queue[i].output == null && !queue[i].review) return queue[i].rating;
  }
  return undefined;
}

export function hasUnsent() {
  return queue.length > 0;
}

// A review (flag, tags, note, sub-scores) the service could not take now: kept in the same
// queue, in order with the ratings, and shown as given until it is sent (a flag, a tag or a
// note given while the service restarted was thrown away; only stars were kept).
export function enqueueReview(jobs, set, message = UNSENT, expect = null) {
  queue.push({ job_id: jobs[0].job_id, jobs: jobs.map((job) => job.job_id), review: set, ...(expect ? { expect } : {}) });
  saveQueue();
  for (const job of jobs) if (job.element) setJobError(job, message, { unsent: true });
}

function sendReview({ jobs, review: set, expect = null }, options = {}) {
  if (expect) { // only while the job still holds what it had: a note sent again is no newer one's undoing
    const items = jobs.map((jobId) => ({ job_id: jobId, output: null, set, expect }));
    return api('/api/ratings:batch', { method: 'POST', body: { items, source: 'web' }, ...options });
  }
  if (jobs.length === 1) {
    return api(`${jobUrl(jobs[0])}/review`, { method: 'POST', body: { ...set, source: 'web' }, ...options });
  }
  const items = jobs.map((jobId) => ({ job_id: jobId, output: null, set }));
  return api('/api/ratings:batch', { method: 'POST', body: { items, source: 'web' }, ...options });
}

// The page is left (reload, tab closed) with a note typed: queued (the next page sends it if
// this request does not get out) and sent with keepalive, which outlives the page. Both only
// while the job holds what it had (`expect`): sent again by the next page after the first got
// out, or after the note was changed elsewhere meanwhile, it changes nothing.
export function sendWhileLeaving(job, set, expect) {
  enqueueReview([job], set, UNSENT, expect);
  sendReview({ jobs: [job.job_id], review: set, expect }, { keepalive: true }).catch(() => {});
}

const waitsFor = (jobId) => queue.some((entry) => entry.job_id === jobId || entry.jobs?.includes(jobId));

// A job's rating kept to be sent once the service answers (queue entries with an `output`, an
// image's rating, come only from an older page's storage: still sent, in order).
function enqueue(job, rating, message = UNSENT) {
  queue.push({ job_id: job.job_id, rating });
  saveQueue();
  setJobError(job, message, { unsent: true });
}

// Sends the queued ratings one by one, oldest first; stops while the service is unreachable.
export async function flushUnsentRatings() {
  if (flushing) return;
  flushing = true;
  try {
    while (queue.length) {
      const entry = queue[0];
      const { job_id: jobId, rating, output = null } = entry;
      let refusal = null;
      try {
        await (entry.review ? sendReview(entry) : send(jobId, rating, output));
      } catch (error) {
        const answered = error instanceof ApiError; // else one this page cannot send at all: dropped
        if (answered && error.offline) return; // resumed once the service answers again
        if (answered && !error.refused) { // busy (503): try again shortly
          setTimeout(flushUnsentRatings, RETRY_BUSY_MS);
          return;
        }
        refusal = error;
      }
      queue.shift();
      saveQueue();
      if (entry.review) {
        for (const id of entry.jobs) {
          const job = jobById(id);
          if (!job) continue;
          if (refusal) reviewRefused(job, refusal);
          else if (!waitsFor(id)) setJobError(job, '');
        }
        continue;
      }
      const job = jobById(jobId);
      if (output != null) {
        if (job && !refusal) applySet(job, output, { rating });
        if (job) redrawJob(job);
        continue;
      }
      if (!job || unsentRating(jobId) !== undefined) continue;
      if (refusal) {
        job.rating = job.savedRating;
        showJobRating(job, job.rating);
        setJobError(job, `Rating not saved: ${refusal.message}`);
      } else {
        job.savedRating = rating;
        setJobError(job, '');
      }
    }
    refreshCountSoon();
  } finally {
    flushing = false;
  }
}

// A queued review the service refused after all: the job as the service has it, and why.
async function reviewRefused(job, refusal) {
  setJobError(job, `Not saved: ${refusal.message}`);
  try {
    const { summary } = await api(jobUrl(job.job_id));
    for (const key of ['flag', 'tags', 'note', 'scores']) job[key] = summary[key];
    redrawJob(job);
  } catch {
    // shown as given until the next look at it
  }
}

// A job about to be shown: a rating or review waiting in the queue is what the user last gave it.
export function adoptUnsentRating(job) {
  const reviews = queue.filter((entry) => entry.review && entry.jobs.includes(job.job_id));
  for (const entry of reviews) applySet(job, null, entry.review);
  if (reviews.length) {
    redrawJob(job);
    setJobError(job, UNSENT, { unsent: true });
  }
  const rating = unsentRating(job.job_id);
  if (rating === undefined) return;
  job.rating = rating;
  showJobRating(job, rating);
  setJobError(job, UNSENT, { unsent: true });
}

// ---------------------------------------------------------------- rating a job

// Shows the new rating at once and stores it. Resolves to true when stored.
// `undoInto`: a list that takes the undo item instead of the undo stack (an action of several
// requests that `u` undoes as one).
export function rateJob(job, rating, undoInto = null) {
  return trackAction(storeRating(job, rating, undoInto));
}

async function storeRating(job, rating, undoInto) {
  if (rating === null && job.rating === null) return true;
  announce(rating === null ? 'Rating cleared' : `${rating} star${rating === 1 ? '' : 's'}`);
  const request = ++job.ratingRequest;
  job.changedHere = performance.now(); // the change feed's older news of it is ignored (live.js)
  job.rating = rating;
  showJobRating(job, rating);
  if (queue.length) { // keep the order: this one goes after those still waiting
    undoQueued(job, rating, undoInto);
    enqueue(job, rating);
    flushUnsentRatings();
    return false;
  }
  setJobError(job, '');
  job.inFlight = (job.inFlight ?? 0) + 1;
  // A job's ratings go one after another: sent at once, a 4 pressed after a clear could be
  // written before the clear (the job ended cleared while the page said 4).
  const ahead = job.ratingSent ?? Promise.resolve();
  let sent;
  job.ratingSent = new Promise((resolve) => { sent = resolve; });
  await ahead;
  if (queue.length) { // the one ahead was kept for later: this one goes after it
    job.inFlight -= 1;
    sent();
    undoQueued(job, rating, undoInto);
    enqueue(job, rating);
    flushUnsentRatings();
    return false;
  }
  const previous = job.savedRating;
  try {
    await send(job.job_id, rating);
    if (request === job.ratingRequest) job.savedRating = rating;
    if ((job.outputs ?? []).length === 1 && job.image_ratings?.[0] != null) dropStaleImageRating(job);
    if (previous !== rating) {
      // expect: undone only while the job still has this rating (not over one given since)
      const item = { job_id: job.job_id, output: null, set: { rating: previous }, expect: { rating } };
      if (undoInto) undoInto.push(item);
      else pushUndo('rating', [item]);
    }
    refreshCountSoon();
    return true;
  } catch (error) {
    if (error.offline || !error.refused) undoQueued(job, rating, undoInto);
    if (error.offline) {
      enqueue(job, rating);
    } else if (!error.refused) { // busy: kept, and sent again shortly
      enqueue(job, rating, busyMessage(error));
      setTimeout(flushUnsentRatings, RETRY_BUSY_MS);
    } else if (request === job.ratingRequest) {
      job.rating = job.savedRating;
      showJobRating(job, job.savedRating);
      setJobError(job, `Rating not saved: ${error.message}`);
    }
    return false;
  } finally {
    job.inFlight -= 1;
    sent();
  }
}

// A one-image job rated by an older page in the viewer has an image rating beside its own (the
// job's rating is the one: README): it is cleared at the job's next rating, or the Image rating
// filter and the export went on giving the old value. Tried again at the next rating if it fails.
function dropStaleImageRating(job) {
  api(`${jobUrl(job.job_id)}/outputs/0/rating`, { method: 'DELETE', body: { source: 'web' } }).then(() => {
    const images = { ...job.image_ratings };
    delete images[0];
    job.image_ratings = images;
  }, () => {});
}

// A rating kept to be sent later: `u` can undo it once sent (it could never be undone). What it
// puts back is what the job had before it: a rating still waiting to be sent, else the stored one.
function undoQueued(job, rating, undoInto) {
  const waiting = unsentRating(job.job_id);
  const before = waiting === undefined ? job.savedRating : waiting;
  if (before === rating) return;
  const item = { job_id: job.job_id, output: null, set: { rating: before }, expect: { rating } };
  if (undoInto) undoInto.push(item);
  else pushUndo('rating', [item]);
}

// A rating given elsewhere (another tab, the API), seen in the change feed.
export function ratedElsewhere(jobId, rating) {
  const job = state.jobs.get(jobId);
  if (!job || job.inFlight || unsentRating(jobId) !== undefined || job.rating === rating) return;
  job.rating = rating;
  job.savedRating = rating;
  showJobRating(job, rating);
}

export function isUnrated(job) {
  return job.rating === null;
}

// In the "unrated only" view, rating moves focus on to the next job still unrated.
export function rateAndAdvance(element, rating) {
  const job = state.jobs.get(element.dataset.jobId);
  const saved = rateJob(job, rating);
  if (unratedOnly() && rating !== null) focusNextJob(element, isUnrated);
  return saved;
}

// Clearing hides the ✕ that was clicked: focus goes back to the job, so keys go on working.
export function clearRating(element) {
  rateJob(state.jobs.get(element.dataset.jobId), null);
  element.focus({ preventScroll: true });
}

export function rateJobInDetails(rating) {
  const job = detailsJob();
  if (!job) return;
  rateJob(job, rating).then((saved) => {
    if (saved) refreshDetailsRating(job.job_id);
  });
  if (rating === null) $('details').focus();
  if (unratedOnly() && rating !== null) stepDetails(true, isUnrated);
}

export function initRating() {
  onResume(flushUnsentRatings);
  // Back to a page kept by the browser (back/forward cache): what it queued as it was left goes now.
  window.addEventListener('pageshow', (event) => { if (event.persisted) flushUnsentRatings(); });
  if (queue.length) flushUnsentRatings();
}
