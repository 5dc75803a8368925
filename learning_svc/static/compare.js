// Compare: two to four selected jobs' images side by side at the same zoom and pan (one Zoom
// drives them all), or, for two, one over the other with a slider between them; below, their
// parameters with the differences marked.

import { outputUrl } from './api.js';
import { jobDetail, parameters } from './generation.js';
import { selectedJobs } from './selection.js';
import { $, basename, h, showToast } from './util.js';
import { Zoom } from './zoom.js';

let shown = [];
let slider = false;
const zoom = new Zoom((z) => {
  for (const image of $('compare-stage').querySelectorAll('img')) image.style.transform = z.transform();
});

export function compareOpen() {
  return $('compare').open;
}

export function openCompare(jobs = selectedJobs()) {
  const withImages = jobs.filter((job) => (job.outputs ?? []).length);
  if (withImages.length < 2 || withImages.length > 4) {
    showToast('Select two to four jobs with images to compare them (Space or Ctrl+click)');
    return;
  }
  shown = withImages;
  slider = false;
  zoom.reset();
  render();
  if (!$('compare').open) {
    $('compare').showModal();
    $('compare').focus();
  }
  renderDifferences();
}

function image(job, i, extra = {}) {
  return h('img', {
    src: outputUrl(job.job_id, 0),
    alt: `Image ${i + 1}: job ${job.job_id}, ${basename(job.outputs[0])}`,
    draggable: 'false',
    ...extra,
  });
}

function render() {
  const stage = $('compare-stage');
  stage.classList.toggle('slider', slider);
  stage.style.setProperty('--panes', String(slider ? 1 : shown.length));
  if (slider) { // the second image over the first, cut at the slider
    const [first, second] = shown;
    stage.replaceChildren(h('figure', { class: 'compare-pane' },
      h('div', { class: 'compare-box' }, image(first, 0), image(second, 1, { class: 'compare-top' })),
      h('figcaption', {}, `1 · ${first.job_id} | 2 · ${second.job_id}`)));
    setSlider(Number($('compare-slider').value));
  } else {
    stage.replaceChildren(...shown.map((job, i) => h('figure', { class: 'compare-pane' },
      h('div', { class: 'compare-box' }, image(job, i)),
      h('figcaption', {}, `${i + 1} · ${job.job_id}`))));
  }
  for (const img of stage.querySelectorAll('img')) img.style.transform = zoom.transform();
  $('compare-slider-label').hidden = !slider;
  $('compare-mode').textContent = slider ? 'Side by side (s)' : 'Slider (s)';
  $('compare-mode').disabled = shown.length !== 2;
}

function setSlider(percent) {
  const top = $('compare-stage').querySelector('.compare-top');
  if (top) top.style.clipPath = `inset(0 0 0 ${percent}%)`;
}

// The parameters of each image, the rows that differ marked (a word too, not only a colour).
async function renderDifferences() {
  const table = $('compare-table');
  table.replaceChildren(h('caption', {}, 'Loading parameters…'));
  const jobs = shown;
  let details;
  try {
    details = await Promise.all(jobs.map((job) => jobDetail(job.job_id)));
  } catch (error) {
    table.replaceChildren(h('caption', {}, `Could not load the parameters: ${error.message}`));
    return;
  }
  if (jobs !== shown) return;
  const columns = details.map(({ record }) => [...parameters(record), ['Prompt', record.prompt], ['Negative prompt', record.negative_prompt]]);
  const rows = columns[0].map(([label], i) => {
    const values = columns.map((column) => column[i][1] ?? '—');
    const differs = new Set(values.map(String)).size > 1;
    return h('tr', { class: differs ? 'differs' : null },
      h('th', { scope: 'row' }, label, differs ? h('span', { class: 'differs-mark' }, ' ≠') : null),
      ...values.map((value) => h('td', {}, String(value))));
  });
  table.replaceChildren(
    h('caption', {}, 'Parameters (rows marked ≠ differ)'),
    h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Parameter'), ...jobs.map((job, i) => h('th', { scope: 'col' }, `${i + 1}`)))),
    h('tbody', {}, ...rows));
}

export function toggleSlider() {
  if (shown.length !== 2) return;
  slider = !slider;
  render();
}

export function zoomCompare() {
  const first = $('compare-stage').querySelector('img');
  if (first) zoom.toggle(first);
}

export function initCompare() {
  zoom.attach($('compare-stage'));
  $('compare-close').addEventListener('click', () => $('compare').close());
  $('compare-mode').addEventListener('click', toggleSlider);
  $('compare-zoom').addEventListener('click', zoomCompare);
  $('compare-slider').addEventListener('input', (event) => setSlider(Number(event.target.value)));
  $('compare-selected').addEventListener('click', () => openCompare());
}
