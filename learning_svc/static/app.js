// The learning_svc history page: a job list with infinite scroll and live updates, filters
// and the open job kept in the URL and history, optimistic rating that survives an outage,
// a details dialog, keyboard triage, flags, tags, notes, selection and bulk actions with
// undo, a full-screen viewer and compare. Each part is a module (see the imports); this one
// starts them in order.

import { api } from './api.js';
import { detailsFromHistory, initDetails } from './details.js';
import { applyFilters, bindFilterBar, buildPickers, filtersFromHistory, readParamsFromUrl, syncControls } from './filters.js';
import { initCompare } from './compare.js';
import { initKeys } from './keys.js';
import { initList } from './list.js';
import { initLive } from './live.js';
import { initTouchSelection, onListClick, onListMouseDown } from './nav.js';
import { initRating } from './rating.js';
import { initReview } from './review.js';
import { initSelection } from './selection.js';
import { initUndo } from './undo.js';
import { setFields, setOpenJob, setParams } from './store.js';
import { $, showToast } from './util.js';
import { initViewer, viewerFromHistory } from './viewer.js';

// Small thumbnails for culling, large for judging; remembered in this browser.
const THUMB_SIZE_KEY = 'learning-svc-thumb-size';

function setThumbSize(size) {
  document.body.dataset.thumbs = size;
  for (const button of document.querySelectorAll('.thumb-size [data-size]')) {
    button.setAttribute('aria-pressed', String(button.dataset.size === size));
  }
  localStorage.setItem(THUMB_SIZE_KEY, size);
}

function initThumbSize() {
  const stored = localStorage.getItem(THUMB_SIZE_KEY);
  setThumbSize(['s', 'm', 'l'].includes(stored) ? stored : 'm');
  document.querySelector('.thumb-size').addEventListener('click', (event) => {
    const button = event.target.closest('[data-size]');
    if (button) setThumbSize(button.dataset.size);
  });
}

function trackTopbarHeight() {
  const topbar = $('topbar');
  const bar = $('selection-bar');
  new ResizeObserver(() => {
    document.documentElement.style.setProperty('--topbar-height', `${topbar.offsetHeight}px`);
    document.documentElement.style.setProperty('--selection-height', `${bar.offsetHeight}px`);
  }).observe(topbar);
  new ResizeObserver(() => { // hidden: 0
    document.documentElement.style.setProperty('--selection-height', `${bar.offsetHeight}px`);
  }).observe(bar);
}

async function loadFields() {
  try {
    return (await api('/api/fields')).fields;
  } catch (error) {
    showToast(`Could not load the filter fields: ${error.message}`);
    return [];
  }
}

const jobInUrl = () => new URLSearchParams(location.search).get('job');

async function init() {
  setFields(await loadFields());
  buildPickers();
  setParams(readParamsFromUrl());
  syncControls();
  bindFilterBar();
  trackTopbarHeight();
  initKeys();
  initThumbSize();
  initDetails();
  initReview();
  initUndo();
  initSelection();
  initViewer();
  initCompare();
  $('job-list').addEventListener('click', onListClick);
  $('job-list').addEventListener('mousedown', onListMouseDown);
  initTouchSelection($('job-list'));
  initList();
  initLive();
  initRating();
  const linked = jobInUrl(); // a link to a job opens it over the list
  if (linked) setOpenJob(linked);
  applyFilters();
  if (linked) detailsFromHistory(linked);
  window.addEventListener('popstate', () => {
    viewerFromHistory();
    filtersFromHistory();
    detailsFromHistory(jobInUrl());
  });
}

init();
