// The 0–5 star widget (WAI-ARIA radio group) and storing a rating: shown at once, stored
// with a PUT (or a DELETE to clear), reverted with the reason when storing fails.

import { api, jobUrl } from './api.js';
import { detailsJob, refreshDetailsRating, stepDetails } from './details.js';
import { focusNextJob } from './nav.js';
import { state, unratedOnly } from './store.js';
import { $, h } from './util.js';

const STAR_LABELS = ['0 stars', '1 star', '2 stars', '3 stars', '4 stars', '5 stars'];

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
export async function rateJob(job, rating) {
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

export function rateJobInDetails(rating) {
  const job = detailsJob();
  if (!job) return;
  rateJob(job, rating).then((saved) => {
    if (saved) refreshDetailsRating(job.job_id);
  });
  if (unratedOnly() && rating !== null) stepDetails(true, isUnrated);
}
