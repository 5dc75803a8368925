// Selecting jobs for one action on all of them: Ctrl/⌘-click or Space toggles a job,
// Shift-click or Shift+arrows select a range, Ctrl/⌘+A every loaded job, and "Select all N
// matching" every job the filters match
// (confirmed with its count). With a selection, the rating, flag and tag keys act on all of
// it in one request (POST /api/ratings:batch: one fsync), and `u` undoes it.

import { api } from './api.js';
import { apiParams, filterParams } from './filters.js';
import { describe, openTagEditor, redrawJob, review } from './review.js';
import { state } from './store.js';
import { applySet, pushUndo, trackAction } from './undo.js';
import { $, h, plural, showToast } from './util.js';

export function selectedJobs() {
  return [...state.selected].map((jobId) => state.jobs.get(jobId)).filter(Boolean);
}

export function hasSelection() {
  return state.selected.size > 0 || state.selectAll !== null;
}

// What the keys act on: the selection when there is one, else the job given.
export function targetsOf(job) {
  return state.selected.size ? selectedJobs() : job ? [job] : [];
}

// The mark: a class for the eye, a word for a screen reader (an article has no aria-selected).
function markElement(element, on) {
  element.classList.toggle('selected', on);
  const word = element.querySelector('.selected-word');
  if (on && !word) element.querySelector('.job-body')?.prepend(h('span', { class: 'selected-word visually-hidden' }, 'Selected.'));
  if (!on) word?.remove();
}

function mark(jobId, on) {
  const job = state.jobs.get(jobId);
  if (job?.element) markElement(job.element, on);
}

export function toggleSelected(element) {
  const jobId = element.dataset.jobId;
  state.selectAll = null;
  if (state.selected.has(jobId)) state.selected.delete(jobId);
  else state.selected.add(jobId);
  mark(jobId, state.selected.has(jobId));
  state.anchor = jobId;
  state.rangeBase = null;
  state.rangeEnd = null;
  renderBar();
}

// Shift-click, Shift+arrow: the jobs from the anchor (the last one toggled) to this one, in the
// list's order, beside what was selected before the range began. Another Shift-click or arrow
// moves the range's end, as in a file manager: going back towards the anchor gives jobs up again.
export function selectRange(element) {
  const cards = [...$('job-list').children];
  const from = cards.findIndex((card) => card.dataset.jobId === state.anchor);
  const to = cards.indexOf(element);
  if (from < 0 || to < 0) {
    toggleSelected(element);
    return;
  }
  state.selectAll = null;
  state.rangeBase ??= new Set(state.selected);
  const range = new Set(cards.slice(Math.min(from, to), Math.max(from, to) + 1).map((card) => card.dataset.jobId));
  for (const jobId of [...state.selected]) {
    if (range.has(jobId) || state.rangeBase.has(jobId)) continue;
    state.selected.delete(jobId);
    mark(jobId, false);
  }
  for (const jobId of range) {
    state.selected.add(jobId);
    mark(jobId, true);
  }
  state.rangeEnd = element.dataset.jobId;
  renderBar();
}

// Shift+arrow on a job: the range goes on when the job is where the last range ended; else a
// new one starts at it (selected; a job selected already stays so), beside what is selected.
export function rangeFrom(element) {
  if (state.rangeEnd === element.dataset.jobId && state.selected.has(state.anchor)) return;
  if (!state.selected.has(element.dataset.jobId)) {
    toggleSelected(element);
    return;
  }
  state.anchor = element.dataset.jobId;
  state.rangeBase = null;
  state.rangeEnd = null;
}

// Ctrl/⌘+A in the list: every loaded job (the bar then offers all the matching ones).
export function selectLoaded() {
  state.selectAll = null;
  state.rangeBase = null;
  state.rangeEnd = null;
  for (const card of $('job-list').children) {
    state.selected.add(card.dataset.jobId);
    mark(card.dataset.jobId, true);
  }
  renderBar();
}

export function clearSelection() {
  for (const jobId of state.selected) mark(jobId, false);
  state.selected.clear();
  state.selectAll = null;
  state.rangeBase = null;
  state.rangeEnd = null;
  renderBar();
}

// A job drawn again (live update) keeps its mark.
export function markIfSelected(job) {
  if (state.selected.has(job.job_id)) markElement(job.element, true);
}

// With "all matching" chosen, the jobs of a page loaded later (scrolling on) are among them:
// marked too. Not jobs arriving since: the count confirmed did not hold them.
export function markIfAllMatching(job) {
  if (!state.selectAll) return;
  state.selected.add(job.job_id);
  markElement(job.element, true);
}

function renderBar() {
  const bar = $('selection-bar');
  const count = state.selectAll ? state.selectAll.count : state.selected.size;
  bar.hidden = count === 0;
  const total = state.count?.jobs;
  // Jobs arrived (or went) since "all N" was confirmed: said now, with the button to confirm
  // the new count, rather than by a 409 at the next action.
  const moved = state.selectAll && total != null && total !== state.selectAll.count;
  $('selection-count').textContent = state.selectAll
    ? `All ${plural(count, 'matching job')} selected${moved ? ` · ${total.toLocaleString('en-US')} match now` : ''}`
    : `${plural(count, 'job')} selected`;
  $('select-all').hidden = state.selectAll ? !moved : !total || total <= state.selected.size;
  $('select-all').textContent = total ? `Select all ${total.toLocaleString('en-US')} matching` : 'Select all matching';
  $('compare-selected').hidden = state.selectAll !== null || state.selected.size < 2 || state.selected.size > 4;
}

// "Select all N matching": confirmed, since it can be far more than what is loaded.
async function selectAllMatching() {
  const total = state.count?.jobs;
  if (!total) return;
  const dialog = $('confirm');
  $('confirm-text').textContent = `Select all ${total.toLocaleString('en-US')} jobs matching these filters? `
    + 'An action then applies to every one of them, also those not loaded.';
  dialog.returnValue = '';
  dialog.showModal();
  dialog.addEventListener('close', () => {
    if (dialog.returnValue !== 'yes') return;
    state.selectAll = { count: total, where: apiParams(filterParams()).toString() };
    for (const job of state.jobs.values()) {
      state.selected.add(job.job_id);
      mark(job.job_id, true);
    }
    renderBar();
  }, { once: true });
}

// One change for the whole selection (what the keys and the bar's buttons do).
export function applyToSelection(set) {
  if (!state.selectAll) return review(selectedJobs(), set);
  return trackAction(applyToAllMatching(set));
}

async function applyToAllMatching(set) {
  const { count, where } = state.selectAll;
  try {
    const result = await api('/api/ratings:batch', { method: 'POST', body: { where, expect: count, set, source: 'web' } });
    for (const job of state.jobs.values()) {
      job.changedHere = performance.now();
      applySet(job, null, set);
      if ('rating' in set) job.savedRating = set.rating;
      redrawJob(job);
    }
    pushUndo(describe(set, count), result.previous); // "tags of 3229 jobs", not the API key "tags_add of 3229 jobs"
    showToast(`Changed ${plural(result.changed, 'job')}`, { info: true });
    return true;
  } catch (error) {
    showToast(`Not saved: ${error.message}`);
    if (error.status === 409) { // the filter matches another count now: offer "Select all N" again
      state.selectAll = null;
      renderBar();
    }
    return false;
  }
}

// p / x on a selection: flag them all, or unflag them when they all have that flag already
// (for "all matching", not all loaded: the service counts those of them with the flag).
export function flagSelection(flag) {
  if (!state.selectAll) {
    return applyToSelection({ flag: selectedJobs().every((job) => job.flag === flag) ? null : flag });
  }
  return trackAction((async () => {
    const { count, where } = state.selectAll;
    let flagged;
    try {
      const query = new URLSearchParams(where);
      query.set('flag', flag);
      flagged = (await api(`/api/count?${query}`)).jobs;
    } catch (error) {
      showToast(`Not saved: ${error.message}`);
      return false;
    }
    return applyToAllMatching({ flag: flagged === count ? null : flag });
  })());
}

function onBarClick(event) {
  const button = event.target.closest('button');
  if (!button) return;
  if (button.dataset.tags !== undefined) {
    openTagEditor(selectedJobs(), state.selectAll && { ...state.selectAll, apply: applyToSelection });
  } else if (button.dataset.rating !== undefined) applyToSelection({ rating: Number(button.dataset.rating) });
  else if (button.dataset.flag) flagSelection(button.dataset.flag);
}

export function initSelection() {
  $('selection-actions').addEventListener('click', onBarClick);
  $('select-all').addEventListener('click', selectAllMatching);
  $('clear-selection').addEventListener('click', clearSelection);
  $('confirm-yes').addEventListener('click', () => $('confirm').close('yes'));
  $('confirm-no').addEventListener('click', () => $('confirm').close('no'));
  window.addEventListener('learning-svc:count', renderBar);
}
