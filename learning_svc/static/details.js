// The details dialog (large outputs, prompts, generation, rating history, the stored
// record) and the help dialog. The open job is in the URL (`job=`): a link opens it, Back
// closes it.

import { api, jobUrl, outputUrl } from './api.js';
import { onResume } from './connection.js';
import { writeUrl } from './filters.js';
import { seedText, weighted } from './generation.js';
import { drawJob, loadNextPage } from './list.js';
import { adjacentJob, advance, focusJob, hasJobsAfter } from './nav.js';
import { rateJobInDetails, renderRatingWidget } from './rating.js';
import { openTagEditor, renderNoteAndScores, renderReview, saveUnsavedNote, toggleFlag } from './review.js';
import { jobById, setOpenJob, state } from './store.js';
import {
  $, basename, formatDuration, formatNumber, formatTime, h, jobName, plural, samplerAndScheduler, showToast,
} from './util.js';

const PREFETCH_JOBS = 12;

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

export function toggleHelp() {
  if ($('help').open) $('help').close();
  else openDialog($('help'));
}

export function detailsJob() {
  const dialog = $('details');
  return dialog.open ? jobById(dialog.dataset.shownJob) : undefined;
}

// Closing the details focuses the job shown last, so that j/k in the dialog also move in the
// list. Opening is a step in the history (Back closes it) unless it comes from the history.
export function openDetails(element, { fromHistory = false } = {}) {
  const dialog = $('details');
  if (!dialog.open) {
    openDialog(dialog, () => {
      saveUnsavedNote();
      const job = jobById(dialog.dataset.shownJob);
      if (state.openJob) { // closed by the user, not by Back
        setOpenJob(null);
        if (history.state?.details) history.back();
        else writeUrl();
      }
      if (job?.element.isConnected) focusJob(job.element);
    });
    dialog.focus(); // not its first button: Enter or Space there would act on it
    const job = jobById(element.dataset.jobId);
    setOpenJob(job.job_id, state.jobs.has(job.job_id) ? null : job);
    if (!fromHistory) writeUrl({ push: true, details: true });
  }
  showDetails(element);
}

// `v` in details: the viewer takes over details' history entry (see viewer.openViewer).
export function closeDetailsForViewer() {
  setOpenJob(null); // the close below then leaves the history to the viewer
  $('details').close();
}

// Back or Forward to an entry with (or without) an open job; or a link that opens one.
export async function detailsFromHistory(jobId) {
  const dialog = $('details');
  if (!jobId) {
    if (dialog.open) {
      setOpenJob(null);
      dialog.close();
    }
    return;
  }
  if (dialog.open && dialog.dataset.shownJob === jobId) return;
  await state.pending; // the first page, which probably holds it
  let job = state.jobs.get(jobId);
  if (!job) {
    try {
      const data = await api(jobUrl(jobId));
      job = data.summary;
      drawJob(job); // drawn but not listed: details can show and rate it
      setOpenJob(jobId, job);
    } catch (error) {
      showToast(`Could not open job ${jobId}: ${error.message}`);
      setOpenJob(null);
      writeUrl();
      return;
    }
  }
  if (dialog.open) showDetails(job.element);
  else openDetails(job.element, { fromHistory: true });
}

function showDetails(element) {
  saveUnsavedNote(); // of the job shown so far
  const job = jobById(element.dataset.jobId);
  if (state.openJob !== job.job_id) {
    setOpenJob(job.job_id, state.jobs.has(job.job_id) ? null : job);
    writeUrl(); // stepping with j/k replaces the entry: Back closes the dialog
  }
  $('details').dataset.shownJob = job.job_id;
  $('details-title').textContent = jobName(job);
  $('details-title').title = `job ${job.job_id}`;
  $('details-error').textContent = '';
  $('details-rating').replaceChildren(renderRatingWidget(job.rating));
  $('details-previous').disabled = !element.previousElementSibling;
  $('details-next').disabled = !element.isConnected || (!element.nextElementSibling && state.done);
  $('details-body').replaceChildren(h('p', { class: 'muted' }, 'Loading…'));
  $('details-body').scrollTop = 0;
  loadDetails(job.job_id);
  if (element.isConnected && !hasJobsAfter(element, PREFETCH_JOBS)) loadNextPage();
}

export function stepDetails(forward, matches) {
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

let awaitingService = null; // the job whose details could not be loaded while the service was away

async function loadDetails(jobId) {
  const isCurrent = () => $('details').open && $('details').dataset.shownJob === jobId;
  try {
    const data = await api(jobUrl(jobId));
    if (isCurrent()) $('details-body').replaceChildren(...renderDetails(data));
  } catch (error) {
    if (isCurrent()) {
      // The review is the page's own: a flag, tags and a note are given here while the service
      // is away (kept and sent when it is back); details had no note box at all then.
      $('details-body').replaceChildren(
        h('p', { class: 'error', role: 'alert' }, `Could not load the job: ${error.message}`),
        detailsSection('Review', renderDetailsReview(jobId)));
      if (error.offline) awaitingService = jobId;
    }
  }
}

// The service is back: the details that could not be loaded are (a note typed meanwhile saved first).
function detailsOnResume() {
  const jobId = awaitingService;
  awaitingService = null;
  if (!jobId || !$('details').open || $('details').dataset.shownJob !== jobId) return;
  saveUnsavedNote();
  loadDetails(jobId);
}

// After a rating is stored, only the summary and the history change: the images stay put.
export async function refreshDetailsRating(jobId) {
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
    jobName(record) === record.job_id ? null : `job ${record.job_id}`, // the title names its file
    formatTime(record.completed_at),
    record.status,
    `variant ${record.variant_index + 1} / ${record.variant_total}`,
    plural((record.outputs ?? []).length, 'output'),
    record.duration_sec == null ? 'no duration recorded' : formatDuration(record.duration_sec),
    rating == null ? 'unrated' : `rated ${plural(rating, 'star')}`,
  ];
  return h('p', { id: 'details-summary', class: 'details-summary' }, summary.filter(Boolean).join(' · '));
}

function failure(record) {
  const error = record.extra?.error ?? record.error_message;
  return typeof error === 'string' && error ? error : null;
}

function renderDetails(data) {
  const { record } = data;
  const error = failure(record);
  return [
    renderDetailsSummary(data),
    error ? h('p', { class: 'details-failure', role: 'note' }, `Failed: ${error}`) : null,
    renderOutputs(record.job_id, record.outputs ?? []),
    detailsSection('Review', renderDetailsReview(record.job_id)),
    detailsSection('Packs', h('p', {}, (record.packs ?? []).join(', ') || '—')),
    detailsSection('Prompt', h('pre', { class: 'prompt' }, record.prompt || '—')),
    detailsSection('Negative prompt', h('pre', { class: 'prompt' }, record.negative_prompt || '—')),
    detailsSection('Generation', renderGeneration(record)),
    detailsSection('Rating history', renderRatingHistory(data.rating_history ?? [])),
    detailsSection('Review history', renderReviewHistory(data.review_history ?? [])),
    detailsSection('Run config', h('pre', { class: 'json' }, JSON.stringify(record.run_config ?? {}, null, 2))),
    h('details', { class: 'full-record' },
      h('summary', {}, 'Full stored record'),
      h('pre', { class: 'json' }, JSON.stringify(record, null, 2))),
  ].filter(Boolean);
}

function detailsSection(title, content) {
  return h('section', {}, h('h3', {}, title), content);
}

function renderGeneration(record) {
  const facts = [
    ['Model', record.model],
    ['VAE', record.vae],
    ['Sampler', samplerAndScheduler(record.sampler, record.scheduler).join(' · ')],
    ['Steps', record.steps || null],
    ['CFG', record.cfg_scale ? formatNumber(record.cfg_scale) : null],
    ['Size', record.width && record.height ? `${record.width}×${record.height}` : null],
    ['Seed', seedText(record.seed)],
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

// Flag, tags and image ratings (as on the card, with buttons), the note and the sub-scores.
function renderDetailsReview(jobId) {
  const job = jobById(jobId);
  if (!job) return h('p', { class: 'muted' }, '—');
  return h('div', { id: 'details-review', class: 'details-review' },
    h('div', { class: 'details-review-line' },
      renderReview(job),
      h('button', { type: 'button', 'data-review': 'pick', title: 'p', 'aria-pressed': String(job.flag === 'pick') }, '✓ Pick'),
      h('button', { type: 'button', 'data-review': 'reject', title: 'x', 'aria-pressed': String(job.flag === 'reject') }, '✕ Reject'),
      h('button', { type: 'button', 'data-review': 'tags', title: 't' }, 'Tags…')),
    renderNoteAndScores(job));
}

function onDetailsReviewClick(event) {
  const button = event.target.closest('[data-review]');
  const job = detailsJob();
  if (!button || !job) return;
  if (button.dataset.review === 'tags') openTagEditor([job]);
  else toggleFlag([job], button.dataset.review);
}

// A review of the job shown changed (here, in the viewer, elsewhere): its line and scores follow.
function onReviewed({ detail: job }) {
  const section = $('details-review');
  if (!section || detailsJob() !== job) return;
  section.querySelector('.job-review').replaceWith(renderReview(job));
  for (const flag of ['pick', 'reject']) {
    section.querySelector(`[data-review="${flag}"]`)?.setAttribute('aria-pressed', String(job.flag === flag));
  }
  for (const button of section.querySelectorAll('[data-score]')) {
    button.setAttribute('aria-checked', String(job.scores?.[button.dataset.score] === Number(button.dataset.value)));
  }
  const note = $('details-note');
  if (note && document.activeElement !== note) note.value = job.note ?? '';
}

const REVIEW_WORDS = { flag: 'flag', tags: 'tags', note: 'note', scores: 'scores', rating: 'image rating' };

function renderReviewHistory(history) {
  if (!history.length) return h('p', { class: 'muted' }, 'No flags, tags, notes or sub-scores yet');
  return h('ol', { class: 'rating-history', reversed: '' }, ...[...history].reverse().map((event) => h('li', {},
    event.output == null ? '' : `image ${event.output + 1}: `,
    Object.entries(event.set ?? {}).map(([key, value]) => `${REVIEW_WORDS[key] ?? key} ${JSON.stringify(value)}`).join(', '),
    ` · ${formatTime(event.timestamp)}`,
    event.source ? ` · ${event.source}` : null)));
}

export function initDetails() {
  onResume(detailsOnResume);
  $('details-body').addEventListener('click', onDetailsReviewClick);
  window.addEventListener('learning-svc:reviewed', onReviewed);
  $('help-button').addEventListener('click', toggleHelp);
  $('help-close').addEventListener('click', () => $('help').close());
  $('details-close').addEventListener('click', () => $('details').close());
  $('details-previous').addEventListener('click', () => stepDetails(false));
  $('details-next').addEventListener('click', () => stepDetails(true));
  $('details-rating').addEventListener('click', onDetailsRatingClick);
  closeOnBackdropClick($('help'));
  closeOnBackdropClick($('details'));
}
