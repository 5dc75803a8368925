// Compare: two to four selected jobs' images side by side at the same zoom and pan (one Zoom
// drives them all), or, for two, one over the other with a slider between them; below, their
// parameters with the differences marked. One job of several images (focused, or the one
// selected) compares its own images: the first four. One pane is the chosen one (outlined; ←/→
// or a click choose another): 0–5, Backspace, p and x rate and flag its image there, as in the
// viewer, and every pane's caption says its rating and flag.

import { outputUrl } from './api.js';
import { jobDetail, parameters } from './generation.js';
import { imageRating, rateImage, toggleFlag } from './review.js';
import { selectedJobs } from './selection.js';
import { $, announce, basename, h, showToast } from './util.js';
import { Zoom } from './zoom.js';

let shown = []; // the panes: {job, output}
let slider = false;
let chosen = 0; // the pane the review keys act on
const zoom = new Zoom((z) => {
  for (const image of $('compare-stage').querySelectorAll('img')) image.style.transform = z.transform();
});

export function compareOpen() {
  return $('compare').open;
}

export function openCompare(jobs = selectedJobs(), focused = null) {
  const single = jobs.length <= 1 ? jobs[0] ?? focused : null;
  const panes = single && (single.outputs ?? []).length >= 2
    ? single.outputs.slice(0, 4).map((_, output) => ({ job: single, output }))
    : jobs.filter((job) => (job.outputs ?? []).length).map((job) => ({ job, output: 0 }));
  if (panes.length < 2 || panes.length > 4) {
    showToast('Select two to four jobs with images to compare them (Space or Ctrl+click), or focus a job of several images', { info: true });
    return;
  }
  shown = panes;
  slider = false;
  chosen = 0;
  zoom.reset();
  render();
  if (!$('compare').open) {
    $('compare').showModal();
    $('compare').focus();
  }
  renderDifferences();
}

function image({ job, output }, i, extra = {}) {
  return h('img', {
    src: outputUrl(job.job_id, output),
    alt: `Image ${i + 1}: job ${job.job_id}, ${basename(job.outputs[output])}`,
    draggable: 'false',
    ...extra,
  });
}

// "2 · job-id", and which of its images when the job has several.
// A pane is named by its image's file (an imported image's job id is 40 hex digits; jobs of one
// pack share their pack name), its job's id in the tooltip.
function caption({ job, output }, i) {
  return `${i + 1} · ${basename(job.outputs[output])}${job.outputs.length > 1 ? ` · image ${output + 1}` : ''}`;
}

// "★★★ · ✓ Pick": the rating of the pane's image (a job of one image: the job's) and its job's flag.
function reviewText({ job, output }) {
  const rating = imageRating(job, output);
  const stars = rating == null ? 'unrated' : '★'.repeat(rating) || '0 stars';
  return job.flag ? `${stars} · ${job.flag === 'pick' ? '✓ Pick' : '✕ Reject'}` : stars;
}

function captionOf(i) {
  return h('span', { class: `compare-caption${i === chosen ? ' chosen' : ''}` },
    h('span', { title: `Job ${shown[i].job.job_id}: ${shown[i].job.outputs[shown[i].output]}` }, caption(shown[i], i)), ' ',
    h('span', { class: 'compare-review' }, reviewText(shown[i])));
}

// The captions again (a rating, a flag, another pane chosen), the images left as they are.
function renderCaptions() {
  const captions = $('compare-stage').querySelectorAll('figcaption');
  if (slider && captions.length === 1) captions[0].replaceChildren(captionOf(0), ' | ', captionOf(1));
  else captions.forEach((figcaption, i) => figcaption.replaceChildren(captionOf(i)));
  $('compare-stage').querySelectorAll('.compare-pane').forEach((pane, i) => {
    pane.classList.toggle('chosen', !slider && i === chosen);
    pane.setAttribute('aria-current', String(!slider && i === chosen));
  });
}

function render() {
  const stage = $('compare-stage');
  stage.classList.toggle('slider', slider);
  stage.style.setProperty('--panes', String(slider ? 1 : shown.length));
  alignTable();
  if (slider) { // the second image over the first, cut at the slider
    const [first, second] = shown;
    stage.replaceChildren(h('figure', { class: 'compare-pane' },
      h('div', { class: 'compare-box' }, image(first, 0), image(second, 1, { class: 'compare-top' })),
      h('figcaption', {})));
    setSlider();
  } else {
    stage.replaceChildren(...shown.map((pane, i) => h('figure', { class: 'compare-pane', 'data-pane': i },
      h('div', { class: 'compare-box' }, image(pane, i)),
      h('figcaption', {}))));
  }
  renderCaptions();
  for (const img of stage.querySelectorAll('img')) img.style.transform = zoom.transform();
  $('compare-slider-label').hidden = !slider;
  $('compare-mode').textContent = slider ? 'Side by side (s)' : 'Slider (s)';
  $('compare-mode').disabled = shown.length !== 2;
}

// Side by side, each image's values sit under it (style.css: .compare-table.aligned): the names
// share the first image's column, so only when that leaves its values room (four images on a
// 900 px window left them 49 px, a prompt 2,000 px high); else the table lays itself out.
const NAMES_REM = 9;
const FIRST_VALUES_MIN_REM = 12;

function alignTable() {
  const table = $('compare-table');
  const rem = parseFloat(getComputedStyle(document.documentElement).fontSize);
  const pane = $('compare-stage').clientWidth / Math.max(1, shown.length);
  table.classList.toggle('aligned', !slider && pane - NAMES_REM * rem >= FIRST_VALUES_MIN_REM * rem);
  table.style.setProperty('--panes', String(shown.length));
}

// The cut is at `percent` of the width both images span together, at one place for both: two
// images of other shapes are fitted to other widths, and a cut at a percent of the top one's own
// width did not meet the other image there.
function setSlider(percent = Number($('compare-slider').value)) {
  const top = $('compare-stage').querySelector('.compare-top');
  if (!top) return;
  const images = [...top.parentElement.querySelectorAll('img')];
  const left = Math.min(...images.map((image) => image.offsetLeft));
  const right = Math.max(...images.map((image) => image.offsetLeft + image.offsetWidth));
  const cut = left + ((right - left) * percent) / 100 - top.offsetLeft;
  top.style.clipPath = `inset(0 0 0 ${Math.max(0, cut)}px)`;
}

// The parameters of each image, the rows that differ marked (a word too, not only a colour).
async function renderDifferences() {
  const table = $('compare-table');
  table.replaceChildren(h('caption', {}, 'Loading parameters…'));
  const panes = shown;
  let details;
  try {
    details = await Promise.all(panes.map(({ job }) => jobDetail(job.job_id)));
  } catch (error) {
    table.replaceChildren(h('caption', {}, `Could not load the parameters: ${error.message}`));
    return;
  }
  if (panes !== shown) return;
  const columns = details.map(({ record }) => [...parameters(record), ['Prompt', record.prompt], ['Negative prompt', record.negative_prompt]]);
  const rows = columns[0].map(([label], i) => {
    const values = columns.map((column) => column[i][1] ?? '—');
    const differs = new Set(values.map(String)).size > 1;
    return h('tr', { class: differs ? 'differs' : null },
      h('th', { scope: 'row' }, label, differs ? h('span', { class: 'differs-mark' }, ' ≠') : null),
      ...values.map((value) => h('td', {}, String(value))));
  });
  table.replaceChildren(
    h('caption', {}, new Set(panes.map(({ job }) => job)).size > 1 ? 'Parameters (rows marked ≠ differ)' : 'Parameters (the images of one job)'),
    h('colgroup', {}, h('col', { class: 'names' }), ...panes.map((_, i) => h('col', { class: i ? 'pane' : 'first-pane' }))),
    h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Parameter'), ...panes.map((_, i) => h('th', { scope: 'col' }, `${i + 1}`)))),
    h('tbody', {}, ...rows));
}

export function toggleSlider() {
  if (shown.length !== 2) return;
  slider = !slider;
  render();
}

// ←/→: choose the next or previous pane (the slider's two images too).
export function chooseCompared(step) {
  if (!shown.length) return;
  chosen = (chosen + step + shown.length) % shown.length;
  renderCaptions();
  const { job, output } = shown[chosen];
  announce(`Image ${chosen + 1} of ${shown.length}: ${basename(job.outputs[output])}, ${reviewText(shown[chosen])}`);
}

export function rateCompared(rating) {
  const pane = shown[chosen];
  if (!pane) return;
  rateImage(pane.job, pane.output, rating).then(() => renderCaptions());
  renderCaptions();
}

export function flagCompared(flag) {
  const pane = shown[chosen];
  if (!pane) return;
  toggleFlag([pane.job], flag).then(() => renderCaptions());
  renderCaptions();
}

export function zoomCompare() {
  const first = $('compare-stage').querySelector('img');
  if (first) zoom.toggle(first);
}

export function initCompare() {
  zoom.attach($('compare-stage'));
  // After zoom's own listeners have fitted the images to the box: the cut follows their place.
  $('compare-stage').addEventListener('load', () => setSlider(), true);
  new ResizeObserver(() => {
    setSlider();
    alignTable();
  }).observe($('compare-stage'));
  $('compare-close').addEventListener('click', () => $('compare').close());
  $('compare-mode').addEventListener('click', toggleSlider);
  $('compare-zoom').addEventListener('click', zoomCompare);
  $('compare-slider').addEventListener('input', () => setSlider());
  $('compare-selected').addEventListener('click', () => openCompare());
  $('compare-stage').addEventListener('click', (event) => { // a click (not a drag: it pans) chooses a pane
    const pane = event.target.closest('.compare-pane[data-pane]');
    if (pane && !slider && Number(pane.dataset.pane) !== chosen) {
      chosen = Number(pane.dataset.pane);
      renderCaptions();
    }
  });
  // A change shown elsewhere (an undo, another tab, the change feed) shows here too.
  window.addEventListener('learning-svc:redrawn', (event) => {
    if (compareOpen() && shown.some(({ job }) => job === event.detail)) renderCaptions();
  });
}
