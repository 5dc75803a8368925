// Filters and sort: kept in the URL and the browser's history (Back undoes a filter),
// offered as pickers built from the server's field list (GET /api/fields) with facet counts
// that are refreshed as new values arrive, and mirrored in the export links.

import { api } from './api.js';
import { loadNextPage, renderStatus } from './list.js';
import { hideNewJobsPill } from './live.js';
import { DEFAULT_SORT, setParams, startListing, state, unratedOnly } from './store.js';
import { $, debounce, h, showToast } from './util.js';

const SEARCH_DEBOUNCE_MS = 300;
const PICKER_REFRESH_MS = 5000; // new values seen in the change feed reach the pickers this soon
const OTHER_PARAMS = ['rating_min', 'rating_max', 'rated', 'since', 'until', 'q', 'sort'];

function listParams() {
  return [...state.fields.map((field) => field.name), ...OTHER_PARAMS];
}

function facetFields() {
  return state.fields.filter((field) => field.facet);
}

export function readParamsFromUrl() {
  const known = listParams();
  const params = new URLSearchParams();
  for (const [key, value] of new URLSearchParams(location.search)) {
    if (known.includes(key) && value !== '') params.append(key, value);
  }
  return params;
}

export function filterParams() {
  const params = apiParams(state.params);
  params.delete('sort');
  return params;
}

// The date pickers put days in the URL (since=2025-11-24); the API gets the bounds of those
// days in the browser's time zone, `until` inclusive. Other values (epoch seconds, full
// ISO times typed into the URL) pass through as they are.
const DAY = /^(\d{4})-(\d{2})-(\d{2})$/;

export function apiParams(source) {
  const params = new URLSearchParams(source);
  for (const [name, endOfDay] of [['since', false], ['until', true]]) {
    const day = params.get(name)?.match(DAY);
    if (!day) continue;
    const start = new Date(Number(day[1]), Number(day[2]) - 1, Number(day[3]) + (endOfDay ? 1 : 0));
    params.set(name, new Date(start.getTime() - (endOfDay ? 1 : 0)).toISOString());
  }
  return params;
}

export function hasFilters() {
  return filterParams().toString() !== '';
}

export function jobsUrl(cursor, limit) {
  const params = apiParams(state.params);
  params.set('limit', limit);
  if (cursor) params.set('cursor', cursor);
  return `/api/jobs?${params}`;
}

// The page's address: the filters and sort, and the job open in details.
export function pageUrl() {
  const params = new URLSearchParams(state.params);
  if (state.openJob) params.set('job', state.openJob);
  const query = params.toString();
  return query ? `${location.pathname}?${query}` : location.pathname;
}

export function writeUrl({ push = false, details = false } = {}) {
  if (pageUrl() === location.pathname + location.search) return;
  if (push) history.pushState({ details }, '', pageUrl());
  else history.replaceState(history.state, '', pageUrl());
}

function updateExportLinks() {
  for (const format of ['jsonl', 'csv']) {
    const params = new URLSearchParams([['format', format], ...filterParams()]);
    $(`export-${format}`).href = `/api/export?${params}`;
  }
}

// One picker per facetable field, in the registry's order, before the rating range.
export function buildPickers() {
  const pickers = facetFields().map((field) => h('label', {},
    h('span', { class: 'visually-hidden' }, field.label),
    h('select', { name: field.name, id: `filter-${field.name}`, class: 'facet', 'data-kind': field.kind, title: '' },
      h('option', { value: '' }, field.plural))));
  $('filters').prepend(...pickers);
}

function ensureOption(select, value) {
  if (value && ![...select.options].some((option) => option.value === value)) {
    select.append(h('option', { value }, value));
  }
}

export function syncControls() {
  for (const control of $('filters').elements) {
    if (!control.name) continue;
    const value = state.params.get(control.name) ?? '';
    if (control.type === 'checkbox') {
      control.checked = value === control.value;
    } else {
      if (control.tagName === 'SELECT') ensureOption(control, value);
      control.value = value || (control.name === 'sort' ? DEFAULT_SORT : '');
    }
  }
}

function updateParam(control) {
  const value = control.type === 'checkbox' ? (control.checked ? control.value : '') : control.value.trim();
  const params = new URLSearchParams(state.params);
  if (value === '' || (control.name === 'sort' && value === DEFAULT_SORT)) {
    params.delete(control.name);
  } else {
    params.set(control.name, value);
  }
  if (params.toString() !== state.params.toString()) {
    setParams(params);
    applyFilters({ push: true });
  }
}

function clearFilters() {
  const sort = state.params.get('sort');
  setParams(new URLSearchParams(sort ? { sort } : {}));
  syncControls();
  applyFilters({ push: true });
}

// A filter in use stands out, and one button clears them all.
function markActiveFilters() {
  for (const control of $('filters').elements) {
    if (!control.name || control.name === 'sort') continue;
    control.closest('label')?.classList.toggle('active', state.params.has(control.name));
    control.classList.toggle('active', state.params.has(control.name));
  }
  $('clear-filters-bar').hidden = !hasFilters();
  const active = filterParams();
  const count = [...new Set(active.keys())].length;
  $('filters-toggle').textContent = count ? `Filters (${count})` : 'Filters';
}

// A new listing for the filters in state.params; `push` makes it a step Back can undo (the
// address already is that of an entry Back or Forward went to).
export function applyFilters({ push = false, fromHistory = false } = {}) {
  if (!fromHistory) writeUrl({ push });
  updateExportLinks();
  markActiveFilters();
  document.body.classList.toggle('unrated-only', unratedOnly());
  startListing();
  hideNewJobsPill();
  $('job-list').replaceChildren();
  loadNextPage();
  loadFacets();
  renderStatus();
}

// Values that arrived in the change feed (a new pack, model, ...) are offered soon after;
// not while a picker is open or focused, which would change under the user's hand.
let pickerTimer = null;

export function refreshPickersSoon() {
  if (pickerTimer) return;
  pickerTimer = setTimeout(() => {
    pickerTimer = null;
    if (document.activeElement?.closest?.('#filters')) refreshPickersSoon();
    else loadFacets();
  }, PICKER_REFRESH_MS);
}

async function loadFacets() {
  const generation = state.generation;
  const requests = new Map();
  // Each select lists the values available under the *other* filters, so a different
  // value can still be picked once one is selected.
  const facetsWithout = (name) => {
    const params = filterParams();
    params.delete(name);
    const query = params.toString();
    if (!requests.has(query)) requests.set(query, api(`/api/facets?${query}`));
    return requests.get(query);
  };
  const fields = facetFields();
  try {
    const results = await Promise.all(fields.map((field) => facetsWithout(field.name)));
    if (generation !== state.generation) return;
    fields.forEach((field, i) => fillSelect(field.name, results[i].facets[field.name] ?? [], results[i].sampled));
  } catch (error) {
    if (generation === state.generation) showToast(`Could not load filter values: ${error.message}`);
  }
}

function fillSelect(name, buckets, sampled) {
  const select = $(`filter-${name}`);
  // Under a filter matching many jobs the server counts only the newest of them.
  select.title = sampled ? `Counts over the newest ${sampled.jobs.toLocaleString('en-US')} matching jobs` : '';
  const selected = state.params.get(name) ?? '';
  const values = buckets.filter((bucket) => bucket.value != null && bucket.value !== '');
  const match = values.find((bucket) => String(bucket.value).toLowerCase() === selected.toLowerCase());
  const options = values.map(({ value, count }) => h('option', { value }, `${value} (${count})`));
  if (selected && !match) options.unshift(h('option', { value: selected }, `${selected} (0)`));
  select.replaceChildren(select.options[0], ...options);
  select.value = match ? String(match.value) : selected;
}

// Search and sort sit in the title row but belong to the form (their `form` attribute),
// so the listeners are on the whole top bar.
export function bindFilterBar() {
  const search = $('filter-q');
  const searchLater = debounce(() => updateParam(search), SEARCH_DEBOUNCE_MS);
  $('topbar').addEventListener('change', (event) => {
    if (event.target.form === $('filters')) updateParam(event.target);
  });
  $('filters').addEventListener('submit', (event) => {
    event.preventDefault();
    updateParam(search);
  });
  search.addEventListener('input', searchLater);
  $('clear-filters').addEventListener('click', clearFilters);
  $('clear-filters-bar').addEventListener('click', clearFilters);
  $('filters-toggle').addEventListener('click', () => {
    const open = $('topbar').classList.toggle('filters-open');
    $('filters-toggle').setAttribute('aria-expanded', String(open));
  });
}

// Back and Forward: the filters of that entry are listed again (no new history entry).
export function filtersFromHistory() {
  const params = readParamsFromUrl();
  if (params.toString() === state.params.toString()) return;
  setParams(params);
  syncControls();
  applyFilters({ fromHistory: true });
}
