// Undo (`u`): every rating, flag, tag, note or bulk action leaves the values it replaced;
// undoing posts them back (POST /api/ratings:batch `items`), which appends them as new events:
// the history keeps both. Each item carries what the action left (`expect`): a job changed
// since (another tab, another person) is left as it is, and said so.

import { api } from './api.js';
import { flushUnsentRatings } from './rating.js';
import { redrawJob } from './review.js';
import { jobById, state } from './store.js';
import { $, showToast } from './util.js';

const MAX_UNDO = 50;
const inFlight = new Set(); // actions not answered yet: `u` right after one undoes that one

// An action's request, so that an undo pressed before its answer waits for it.
export function trackAction(promise) {
  inFlight.add(promise);
  promise.finally(() => inFlight.delete(promise));
  return promise;
}

// items: [{job_id, output, set}] that put back what an action changed.
export function pushUndo(label, items) {
  if (!items.length) return;
  state.undo.push({ label, items });
  if (state.undo.length > MAX_UNDO) state.undo.shift();
  renderUndoButton();
}

// The top bar's ↶: undo without a keyboard (a phone had no way to undo a bulk reject).
function renderUndoButton() {
  const button = $('undo-button');
  const last = state.undo.at(-1);
  button.disabled = !last;
  button.title = last ? `Undo ${last.label} (u)` : 'Nothing to undo';
  button.setAttribute('aria-label', last ? `Undo ${last.label}` : 'Undo');
}

export function initUndo() {
  $('undo-button').addEventListener('click', undoLast);
}

export async function undoLast() {
  await Promise.allSettled([...inFlight]);
  await flushUnsentRatings(); // a rating kept while offline goes first: its undo expects it stored
  const last = state.undo.pop();
  renderUndoButton();
  if (!last) {
    showToast('Nothing to undo', { info: true });
    return;
  }
  let result;
  try {
    result = await api('/api/ratings:batch', { method: 'POST', body: { items: last.items, source: 'web' } });
  } catch (error) {
    state.undo.push(last);
    renderUndoButton();
    showToast(`Could not undo ${last.label}: ${error.message}`);
    return;
  }
  const conflicted = new Set((result.conflicted ?? []).map((item) => `${item.job_id}\n${item.output}`));
  for (const { job_id: jobId, output, set } of last.items) {
    const job = jobById(jobId);
    if (!job || conflicted.has(`${jobId}\n${output ?? null}`)) continue;
    job.changedHere = performance.now();
    applySet(job, output, set);
    if (output == null && 'rating' in set) job.savedRating = set.rating;
    redrawJob(job);
  }
  if (!conflicted.size) showToast(`Undone: ${last.label}`, { info: true });
  else if (conflicted.size >= last.items.length) showToast(`Not undone: ${last.label} was changed since (another tab or person)`);
  else showToast(`Undone: ${last.label}, except where it was changed since (another tab or person)`);
}

// A `set` (reviews.py) applied to a job shown here, as the service applies it.
// Tags match case- and space-insensitively, as the service compares them (reviews.clean_tags).
export function foldTag(tag) {
  return tag.trim().replace(/\s+/g, ' ').toLowerCase();
}

export function applySet(job, output, set) {
  if (output != null) {
    const images = { ...(job.image_ratings ?? {}) };
    if (set.rating == null) delete images[output];
    else images[output] = set.rating;
    job.image_ratings = images;
    return;
  }
  if ('rating' in set) job.rating = set.rating;
  if ('flag' in set) job.flag = set.flag;
  if ('note' in set) job.note = set.note || null;
  let tags = [...(job.tags ?? [])];
  if (set.tags) tags = [...set.tags];
  const folded = foldTag;
  for (const tag of set.tags_add ?? []) {
    if (!tags.some((have) => folded(have) === folded(tag))) tags.push(tag.trim().replace(/\s+/g, ' '));
  }
  if (set.tags_remove) tags = tags.filter((have) => !set.tags_remove.some((tag) => folded(tag) === folded(have)));
  job.tags = tags;
  if (set.scores) {
    const scores = { ...(job.scores ?? {}) };
    for (const [name, value] of Object.entries(set.scores)) {
      if (value == null) delete scores[name];
      else scores[name] = value;
    }
    job.scores = scores;
  }
}
