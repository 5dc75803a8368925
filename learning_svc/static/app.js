// The learning_svc history page: a job list with infinite scroll and live updates, filters
// kept in the URL, optimistic rating, a details dialog and keyboard triage. Each part is a
// module (see the imports); this one starts them in order.

import { api } from './api.js';
import { initDetails } from './details.js';
import { applyFilters, bindFilterBar, buildPickers, readParamsFromUrl, syncControls } from './filters.js';
import { initKeys } from './keys.js';
import { initList } from './list.js';
import { onListClick } from './nav.js';
import { setFields, setParams } from './store.js';
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
  applyFilters();
}

init();
