// The learning_svc history page: a job list with infinite scroll and live updates, filters
// and the open job kept in the URL and history, optimistic rating that survives an outage,
// a details dialog and keyboard triage. Each part is a module (see the imports); this one
// starts them in order.

import { api } from './api.js';
import { detailsFromHistory, initDetails } from './details.js';
import { applyFilters, bindFilterBar, buildPickers, filtersFromHistory, readParamsFromUrl, syncControls } from './filters.js';
import { initKeys } from './keys.js';
import { initList } from './list.js';
import { initLive } from './live.js';
import { onListClick } from './nav.js';
import { initRating } from './rating.js';
import { setFields, setOpenJob, setParams } from './store.js';
import { $, showToast } from './util.js';

function trackTopbarHeight() {
  const topbar = $('topbar');
  new ResizeObserver(() => {
    document.documentElement.style.setProperty('--topbar-height', `${topbar.offsetHeight}px`);
  }).observe(topbar);
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
  initDetails();
  $('job-list').addEventListener('click', onListClick);
  initList();
  initLive();
  initRating();
  const linked = jobInUrl(); // a link to a job opens it over the list
  if (linked) setOpenJob(linked);
  applyFilters();
  if (linked) detailsFromHistory(linked);
  window.addEventListener('popstate', () => {
    filtersFromHistory();
    detailsFromHistory(jobInUrl());
  });
}

init();
