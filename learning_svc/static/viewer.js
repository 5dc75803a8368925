// The full-screen viewer: one image large, through every image of the listing in order
// (loading further pages as it goes), zoom and pan, the parameters beside it, digits rate
// the image, p / x flag and t tags its job, c / s / C copy the prompt, the seed or all the
// parameters in A1111's format; in triage mode (a) rating moves on to the next image.

import { outputUrl } from './api.js';
import { onResume } from './connection.js';
import { pageUrl } from './filters.js';
import { a1111Text, jobDetail, parameters, renderPrompt } from './generation.js';
import { loadNextPage } from './list.js';
import { focusJob } from './nav.js';
import { imageRating, openTagEditor, rateImage, toggleFlag } from './review.js';
import { jobById, state } from './store.js';
import { $, basename, h, jobName, showToast } from './util.js';
import { Zoom } from './zoom.js';

const TRIAGE_KEY = 'learning-svc-triage';

let current = null; // {jobId, output}
let triage = localStorage.getItem(TRIAGE_KEY) === 'on';
const zoom = new Zoom((z) => {
  $('viewer-image').style.transform = z.transform();
  $('viewer-stage').classList.toggle('zoomed', z.zoomed);
});

export function viewerOpen() {
  return $('viewer').open;
}

// Back (or Forward) to an entry without the viewer.
export function viewerFromHistory() {
  if (viewerOpen() && !history.state?.viewer) $('viewer').close();
}

export function viewerJob() {
  return current && jobById(current.jobId);
}

// Opens on a job's image (the first, or `output`). `fromDetails`: details handed its history
// entry over (closing details went Back, which, arriving after the viewer's own step, closed it).
export function openViewer(job, output = 0, { fromDetails = false } = {}) {
  if (!job || !(job.outputs ?? []).length) {
    showToast('This job has no image to view', { info: true });
    return;
  }
  const dialog = $('viewer');
  if (!dialog.open) {
    dialog.showModal();
    dialog.focus();
    // A step in the history, as details is: Back closes the viewer (on a phone it left the
    // filtered view behind it too).
    if (fromDetails) history.replaceState({ viewer: true }, '', pageUrl());
    else history.pushState({ ...history.state, viewer: true }, '', location.href);
    dialog.addEventListener('close', () => {
      const shown = viewerJob();
      current = null;
      if (history.state?.viewer) history.back(); // closed by the user, not by Back
      if (shown?.element.isConnected) focusJob(shown.element);
    }, { once: true });
  }
  show(job.job_id, output);
}

function show(jobId, output) {
  const job = jobById(jobId);
  current = { jobId, output };
  zoom.reset();
  const image = $('viewer-image');
  const src = outputUrl(jobId, output);
  if (image.getAttribute('src') !== src) {
    // Until the new image is in, the old one is not shown beside the new one's stars and
    // parameters: a fast rater pressed 4 with the previous image still on screen.
    image.classList.add('loading');
    $('viewer-stage').setAttribute('aria-busy', 'true');
    image.src = src;
  }
  image.alt = `Output ${output + 1} of ${job.outputs.length} of job ${jobId}: ${basename(job.outputs[output])}`;
  $('viewer-position').textContent = `${jobName(job, output)} · image ${output + 1} of ${job.outputs.length}`;
  $('viewer-position').title = `job ${jobId}`;
  renderRating(job);
  renderInfo(job);
  preloadNeighbours();
}

function imageIn() {
  $('viewer-image').classList.remove('loading');
  $('viewer-stage').removeAttribute('aria-busy');
}

// The images before and after are fetched while this one is looked at (the browser keeps them:
// outputs are cached for an hour), so that j / k show the next one at once. Kept referenced: an
// image no longer referenced may be dropped before it is in.
let preloaded = [];

function preloadNeighbours() {
  preloaded = [1, -1].map(neighbour).filter(Boolean).map(({ jobId, output }) => {
    const image = new Image();
    image.src = outputUrl(jobId, output);
    return image;
  });
}

// The image's stars (a radio group, as on the cards) and its job's flag and tags.
function renderRating(job) {
  const rating = imageRating(job, current.output);
  const stars = [0, 1, 2, 3, 4, 5].map((n) => h('button', {
    type: 'button',
    role: 'radio',
    class: n === 0 ? 'star-zero' : `star${rating != null && n > 0 && n <= rating ? ' lit' : ''}`,
    'aria-checked': String(rating === n),
    'aria-label': `${n} star${n === 1 ? '' : 's'}`,
    'data-rating': n,
    tabindex: rating === n || (rating == null && n === 0) ? '0' : '-1',
  }, n === 0 ? '0' : '★'));
  $('viewer-rating').replaceChildren(...[ // replaceChildren writes a null as the text "null": left out
    h('div', { class: 'stars', role: 'radiogroup', 'aria-label': 'Image rating' }, ...stars),
    // A job of several images keeps a rating of its own (README): said here, since the stars are the image's.
    job.outputs.length > 1
      ? h('span', { class: 'viewer-job-rating', id: 'viewer-job-rating' },
        job.rating == null ? 'Job: unrated' : `Job: ${'★'.repeat(job.rating) || '0 stars'}`)
      : null,
    h('span', { class: 'viewer-flags' },
      job.flag ? h('span', { class: `flag flag-${job.flag}` }, job.flag === 'pick' ? '✓ Pick' : '✕ Reject') : null,
      ...(job.tags ?? []).map((tag) => h('span', { class: 'tag' }, tag)))].filter(Boolean));
  $('viewer-triage').setAttribute('aria-pressed', String(triage));
}

let infoAwaitsService = false;
const RETRY_UNAVAILABLE_MS = 2000;

async function renderInfo(job) {
  infoAwaitsService = false;
  const panel = $('viewer-info');
  const shown = current;
  panel.replaceChildren(h('p', { class: 'muted' }, 'Loading…'));
  let record;
  try {
    ({ record } = await jobDetail(job.job_id));
  } catch (error) {
    if (shown !== current) return;
    panel.replaceChildren(h('p', { class: 'error' }, `Could not load the job: ${error.message}`));
    if (error.offline) infoAwaitsService = true; // loaded again when the service is back (onResume)
    else if (error.status === 503) { // the service answers, its index is away for now: ask again
      setTimeout(() => { if (shown === current && viewerOpen()) renderInfo(job); }, RETRY_UNAVAILABLE_MS);
    }
    return;
  }
  if (shown !== current) return;
  panel.replaceChildren(
    h('h3', {}, 'Prompt'), renderPrompt(record.prompt, record),
    h('h3', {}, 'Negative prompt'), renderPrompt(record.negative_prompt, record),
    h('dl', { class: 'generation' }, ...parameters(record).flatMap(([label, value]) => [
      h('dt', {}, label), h('dd', {}, value == null || value === '' ? '—' : String(value)),
    ]), h('dt', {}, 'Image'), h('dd', { id: 'viewer-pixels' })),
    h('div', { class: 'copy-buttons' },
      h('button', { type: 'button', 'data-copy': 'prompt', title: 'c' }, 'Copy prompt'),
      h('button', { type: 'button', 'data-copy': 'seed', title: 's' }, 'Copy seed'),
      h('button', { type: 'button', 'data-copy': 'all', title: 'Shift+C' }, 'Copy parameters')));
  renderPixels();
}

// The shown file's own pixels beside the generation's size: an upscale's differ, and a record
// may not give a size at all ("Size —" while the image was in front of the user). Not the size
// of the tile shown for a missing or unreadable file (it said 480×480): the service marks it.
async function renderPixels() {
  const image = $('viewer-image');
  const cell = document.getElementById('viewer-pixels');
  if (!cell) return;
  if (!image.complete || !image.naturalWidth) {
    cell.textContent = '…';
    return;
  }
  const [src, size] = [image.currentSrc, `${image.naturalWidth}×${image.naturalHeight}`];
  let placeholder = null;
  try {
    placeholder = (await fetch(src, { method: 'HEAD' })).headers.get('X-Learning-Placeholder');
  } catch {
    // the service away: the size as loaded
  }
  if (image.currentSrc === src && cell.isConnected) cell.textContent = placeholder ? '—' : size;
}

// ---------------------------------------------------------------- moving

// The images of the listing in order: each job's outputs, then the next job's.
function neighbour(step) {
  const job = viewerJob();
  const next = current.output + step;
  if (next >= 0 && next < job.outputs.length) return { jobId: job.job_id, output: next };
  let element = job.element;
  do {
    element = step > 0 ? element?.nextElementSibling : element?.previousElementSibling;
  } while (element && !(state.jobs.get(element.dataset.jobId)?.outputs ?? []).length);
  if (!element) return null;
  const other = state.jobs.get(element.dataset.jobId);
  return { jobId: other.job_id, output: step > 0 ? 0 : other.outputs.length - 1 };
}

export async function step(direction) {
  if (!current) return;
  let next = neighbour(direction);
  while (!next && direction > 0 && !state.done && !state.failed && viewerJob()?.element.isConnected) {
    await loadNextPage(); // across pages: the viewer goes on where the list goes on
    next = neighbour(direction);
  }
  if (next && viewerOpen()) show(next.jobId, next.output);
  else if (!next) showToast(direction > 0 ? 'The last image' : 'The first image', { info: true });
}

// ---------------------------------------------------------------- acting

export function rateShown(rating) {
  const job = viewerJob();
  if (!job) return;
  rateImage(job, current.output, rating).then(() => {
    if (viewerJob() === job) renderRating(job);
  });
  renderRating(job);
  if (triage && rating !== null) step(1);
}

export function flagShown(flag) {
  const job = viewerJob();
  if (job) toggleFlag([job], flag).then(() => renderRating(job));
  if (job) renderRating(job);
}

export function tagShown() {
  const job = viewerJob();
  if (job) openTagEditor([job]);
}

export function zoomShown() {
  zoom.toggle($('viewer-image'));
}

export function toggleTriage() {
  triage = !triage;
  localStorage.setItem(TRIAGE_KEY, triage ? 'on' : 'off');
  $('viewer-triage').setAttribute('aria-pressed', String(triage));
  showToast(triage ? 'Triage: rating moves on to the next image' : 'Triage off', { info: true });
}

export function toggleInfo() {
  const hidden = $('viewer').classList.toggle('info-hidden');
  $('viewer-info-toggle').setAttribute('aria-pressed', String(!hidden));
}

export async function copyShown(what) {
  const job = viewerJob();
  if (!job) return;
  const { record, amendments } = await jobDetail(job.job_id);
  const text = { prompt: record.prompt ?? '', seed: String(record.seed ?? ''), all: a1111Text(record, amendments) }[what];
  try {
    await navigator.clipboard.writeText(text);
    showToast({ prompt: 'Prompt copied', seed: `Seed ${text} copied`, all: 'Parameters copied (A1111 format)' }[what], { info: true });
  } catch {
    showToast('The browser refused the clipboard (it needs https or localhost)');
  }
}

export function initViewer() {
  onResume(() => {
    if (infoAwaitsService && viewerOpen()) renderInfo(viewerJob());
  });
  window.addEventListener('learning-svc:redrawn', ({ detail: job }) => {
    if (viewerOpen() && current?.jobId === job.job_id) renderRating(job);
  });
  zoom.attach($('viewer-stage'));
  $('viewer-image').addEventListener('load', () => {
    imageIn();
    renderPixels();
  });
  $('viewer-image').addEventListener('error', imageIn);
  $('viewer-close').addEventListener('click', () => $('viewer').close());
  $('viewer-previous').addEventListener('click', () => step(-1));
  $('viewer-next').addEventListener('click', () => step(1));
  $('viewer-zoom').addEventListener('click', zoomShown);
  $('viewer-triage').addEventListener('click', toggleTriage);
  $('viewer-info-toggle').addEventListener('click', toggleInfo);
  $('viewer-rating').addEventListener('click', (event) => {
    const star = event.target.closest('[data-rating]');
    if (star) rateShown(Number(star.dataset.rating));
  });
  $('viewer-info').addEventListener('click', (event) => {
    const copy = event.target.closest('[data-copy]');
    if (copy) copyShown(copy.dataset.copy);
  });
  // On the stage, not the image: once zoomed, a drag captures the pointer to the stage and the
  // image never got the next double-click (it zoomed in and never back out).
  $('viewer-stage').addEventListener('dblclick', (event) => {
    if (zoom.zoomed || event.target === $('viewer-image')) zoomShown();
  });
}
