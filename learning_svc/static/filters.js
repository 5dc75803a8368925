// Filters and sort: kept in the URL and the browser's history (Back undoes a filter),
// offered as pickers built from the server's field list (GET /api/fields) with facet counts
// that are refreshed as new values arrive, and mirrored in the export links. A picker takes
// several values of its field (any of them matches, as `?model=a&model=b` does in the API).

import { api } from './api.js';
import { loadNextPage, renderStatus } from './list.js';
import { hideNewJobsPill } from './live.js';
import { DEFAULT_SORT, setParams, startListing, state, unratedOnly } from './store.js';
import { $, debounce, h, showToast } from './util.js';

const SEARCH_DEBOUNCE_MS = 300;
const PICKER_REFRESH_MS = 5000; // new values seen in the change feed reach the pickers this soon
const OTHER_PARAMS = ['rating_min', 'rating_max', 'image_rating_min', 'rated', 'since', 'until', 'q', 'sort'];

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

// A range upside down matches no job: the empty list says so (a new-user run took "No jobs
// match these filters" for an honest answer, with the days picked the wrong way round).
export function upsideDownRange() {
  const params = apiParams(state.params);
  const [low, high] = [params.get('rating_min'), params.get('rating_max')];
  if (low && high && Number(high) < Number(low)) return `The rating range is upside down: at least ${low}, at most ${high}.`;
  const [since, until] = [instant(params.get('since')), instant(params.get('until'))];
  if (since != null && until != null && until < since) return 'The date range is upside down: its end is before its start.';
  return null;
}

function instant(value) {
  if (!value) return null;
  const time = /^-?\d+(\.\d+)?$/.test(value) ? Number(value) * 1000 : Date.parse(value);
  return Number.isNaN(time) ? null : time;
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
  const sort = state.params.get('sort');
  for (const format of ['jsonl', 'csv']) {
    // In the order shown: an export of a "best first" view starts with the best.
    const params = new URLSearchParams([['format', format], ...filterParams(), ...(sort ? [['sort', sort]] : [])]);
    const link = $(`export-${format}`);
    link.href = `/api/export?${params}`;
    link.removeAttribute('aria-disabled');
    link.title = '';
  }
}

// A view the service refuses to list (a search it cannot run) cannot be exported either: the
// links answered 400 JSON, which Chromium saved as a cancelled download with nothing said.
export function disableExportLinks(reason) {
  for (const format of ['jsonl', 'csv']) {
    const link = $(`export-${format}`);
    link.removeAttribute('href');
    link.setAttribute('aria-disabled', 'true');
    link.title = `Cannot export these jobs: ${reason}`;
  }
}

// One picker per facetable field, in the registry's order, before the rating range: a button
// naming what is chosen, opening a list of the field's values with checkboxes (and their counts).
export function buildPickers() {
  const pickers = facetFields().map((field) => h('div', { class: 'picker', 'data-field': field.name },
    h('button', {
      type: 'button', id: `filter-${field.name}`, class: 'facet', 'data-kind': field.kind, title: '',
      'aria-haspopup': 'true', 'aria-expanded': 'false', 'aria-controls': `picker-${field.name}`,
      'data-label': field.plural, // sizes the button (style.css): a value chosen does not move the bar
    }, h('span', {}, field.plural)),
    h('div', { id: `picker-${field.name}`, class: 'picker-panel', role: 'group', 'aria-label': field.plural, hidden: '' },
      h('input', { type: 'search', class: 'picker-find', 'aria-label': `Find ${field.plural.toLowerCase()}`,
        placeholder: `Find ${field.plural.toLowerCase()}`, autocomplete: 'off' }),
      h('div', { class: 'picker-values' }),
      h('button', { type: 'button', class: 'link-button picker-any' }, `Any ${field.label.toLowerCase()}`))));
  $('filters').prepend(...pickers);
}

function setPickerTitle(button) {
  button.title = [button.dataset.chosen, button.dataset.sampled].filter(Boolean).join(' · ');
}

function chosen(name) {
  return state.params.getAll(name);
}

// The button names the values chosen: the field's name for none, else the first (+ how many more).
function labelPicker(picker) {
  const field = state.fields.find((f) => f.name === picker.dataset.field);
  const values = chosen(field.name);
  const button = picker.querySelector('button.facet');
  // The first value chosen, cut to the picker's width, and how many more, never cut (the "+1" of
  // a second model was cut off); every value in its tooltip.
  if (button.dataset.chosen !== values.join(', ') || !button.querySelector('.facet-value')) {
    const more = values.length > 1 ? h('span', { class: 'facet-more' }, ` +${values.length - 1}`) : null;
    button.firstElementChild.replaceChildren(h('span', { class: 'facet-value' }, values[0] ?? field.plural), more ?? '');
    button.setAttribute('aria-label', values.length ? `${field.plural}: ${values.join(', ')}` : field.plural);
    button.dataset.chosen = values.join(', ');
    setPickerTitle(button);
  }
  button.classList.toggle('active', values.length > 0);
  const boxes = picker.querySelectorAll('.picker-values input');
  const lowered = new Set(values.map((value) => value.toLowerCase()));
  for (const box of boxes) box.checked = lowered.has(box.value.toLowerCase());
}

export function syncControls() {
  for (const picker of document.querySelectorAll('.picker')) labelPicker(picker);
  for (const control of $('filters').elements) {
    if (!control.name) continue;
    const value = state.params.get(control.name) ?? '';
    if (control.type === 'checkbox') {
      control.checked = value === control.value;
    } else {
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

// A field's values set from its picker: a new listing, and a step Back undoes.
function setValues(name, values) {
  const params = new URLSearchParams(state.params);
  params.delete(name);
  for (const value of values) params.append(name, value);
  if (params.toString() === state.params.toString()) return;
  setParams(params);
  syncControls();
  applyFilters({ push: true });
}

// A value ticked or unticked: added to or taken from its field's values.
function toggleValue(name, value, on) {
  const others = chosen(name).filter((v) => v.toLowerCase() !== value.toLowerCase());
  setValues(name, on ? [...others, value] : others);
}

function openPicker(picker, open) {
  const button = picker.querySelector('button.facet');
  const panel = picker.querySelector('.picker-panel');
  if (open) {
    for (const other of document.querySelectorAll('.picker')) if (other !== picker) openPicker(other, false);
  }
  panel.hidden = !open;
  button.setAttribute('aria-expanded', String(open));
  panel.classList.remove('from-right'); // a picker near the right edge opens its list leftwards
  if (open && panel.getBoundingClientRect().right > document.documentElement.clientWidth) panel.classList.add('from-right');
  if (open) (panel.querySelector('.picker-values input') ?? panel.querySelector('.picker-find')).focus();
}

function findInPicker(picker) {
  const words = picker.querySelector('.picker-find').value.trim().toLowerCase();
  for (const row of picker.querySelectorAll('.picker-values label')) {
    row.hidden = words !== '' && !row.dataset.value.toLowerCase().includes(words);
  }
}

// A key that types a character (not Space, which ticks a box, nor a shortcut with Ctrl/Alt/Cmd).
function typesText(event) {
  return event.key.length === 1 && event.key !== ' ' && !(event.ctrlKey || event.metaKey || event.altKey);
}

function bindPickers() {
  for (const picker of document.querySelectorAll('.picker')) {
    const name = picker.dataset.field;
    const button = picker.querySelector('button.facet');
    button.addEventListener('click', () => openPicker(picker, button.getAttribute('aria-expanded') !== 'true'));
    picker.querySelector('.picker-values').addEventListener('change', (event) => {
      event.stopPropagation();
      toggleValue(name, event.target.value, event.target.checked);
    });
    picker.querySelector('.picker-find').addEventListener('input', () => findInPicker(picker));
    picker.querySelector('.picker-any').addEventListener('click', () => setValues(name, []));
    picker.addEventListener('keydown', (event) => {
      if (event.key === 'Escape' && button.getAttribute('aria-expanded') === 'true') {
        event.preventDefault();
        event.stopPropagation(); // closes the list, not a dialog or the selection
        openPicker(picker, false);
        button.focus();
      } else if (event.key === 'Enter' && event.target.matches('.picker-find')) {
        event.preventDefault(); // not the form's submit
        picker.querySelector('.picker-values label:not([hidden]) input')?.click();
      } else if (typesText(event) && event.target.matches('.picker-values input')) {
        picker.querySelector('.picker-find').focus(); // typing on a value finds: the letter goes there
      }
    });
  }
  // A click elsewhere, or the focus leaving a picker, closes its list.
  document.addEventListener('click', (event) => {
    for (const picker of document.querySelectorAll('.picker')) {
      if (!picker.contains(event.target)) openPicker(picker, false);
    }
  });
  $('filters').addEventListener('focusout', (event) => {
    const picker = event.target.closest('.picker');
    if (picker && event.relatedTarget && !picker.contains(event.relatedTarget)) openPicker(picker, false);
  });
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

const FACETS_RETRY_MS = 3000; // facets that failed (a 503: the service busy, its database away) are asked again, twice as long each time
const FACETS_RETRY_MAX_MS = 60_000;
let facetsRetry = null;
let facetsFailures = 0;

async function loadFacets() {
  clearTimeout(facetsRetry);
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
    if (respell(results)) {
      loadFacets(); // each picker counted under the address as respelled (an implied scheduler)
      return;
    }
    fields.forEach((field, i) => fillPicker(field.name, results[i].facets[field.name] ?? [], results[i].sampled));
    facetsFailures = 0;
  } catch (error) {
    if (generation !== state.generation || error.refused) return; // a search it cannot run: the listing says so, once
    if (!facetsFailures) showToast(`Could not load filter values: ${error.message}`); // once, not at every retry
    // Asked again by itself: after a 503 the pickers stayed empty until a reload (an outside run).
    facetsFailures += 1;
    facetsRetry = setTimeout(() => {
      if (generation === state.generation) loadFacets();
    }, Math.min(FACETS_RETRY_MS * 2 ** (facetsFailures - 1), FACETS_RETRY_MAX_MS));
  }
}

// A link may spell a value otherwise than the facets list it (`sampler=dpmpp_2m` filters the
// "DPM++ 2M" jobs): the facets say how (`filter_values`; each field's own values come with the
// other fields' requests), and the address takes their spelling, so that the picker ticks the
// value it lists. A sampler named with its scheduler (`DPM++ 2M Karras`) filters that scheduler
// too (`implied`): the address says so in each field's own values. The jobs listed stay the same.
// True when the address changed.
function respell(results) {
  const spelled = new Map(); // "name=value" -> its facet spelling (Maps: a value may be `__proto__`)
  const implied = new Map(); // name -> values the others imply
  for (const result of results) {
    for (const [name, values] of Object.entries(result.filter_values ?? {})) {
      for (const [value, shown] of Object.entries(values)) spelled.set(`${name}=${value}`, String(shown));
    }
    for (const [name, values] of Object.entries(result.implied ?? {})) implied.set(name, values.map(String));
  }
  const params = new URLSearchParams();
  const seen = new Set();
  for (const [name, value] of state.params) {
    const shown = spelled.get(`${name}=${value}`) ?? value;
    const key = `${name}=${shown.toLowerCase()}`;
    if (spelled.has(`${name}=${value}`) && seen.has(key)) continue;
    seen.add(key);
    params.append(name, shown);
  }
  for (const [name, values] of implied) {
    const given = new Set(params.getAll(name).map((value) => value.toLowerCase()));
    for (const value of values) if (!given.has(value.toLowerCase())) params.append(name, value);
  }
  if (params.toString() === state.params.toString()) return false;
  setParams(params);
  writeUrl();
  updateExportLinks();
  markActiveFilters();
  return true;
}

// The values of a field with their counts under the other filters; a chosen value that has
// none there is listed first with 0. The focus stays on the value it was on.
function fillPicker(name, buckets, sampled) {
  const picker = document.querySelector(`.picker[data-field="${name}"]`);
  // Under a filter matching many jobs the server counts only the newest of them.
  const button = $(`filter-${name}`);
  button.dataset.sampled = sampled ? `Counts over the newest ${sampled.jobs.toLocaleString('en-US')} matching jobs` : '';
  setPickerTitle(button);
  const values = buckets.filter((bucket) => bucket.value != null && bucket.value !== '')
    .map(({ value, count }) => ({ value: String(value), count }));
  const listed = new Set(values.map(({ value }) => value.toLowerCase()));
  const missing = chosen(name).filter((value) => !listed.has(value.toLowerCase())).map((value) => ({ value, count: 0 }));
  const list = picker.querySelector('.picker-values');
  const focused = list.contains(document.activeElement) ? document.activeElement.value : null;
  list.replaceChildren(...[...missing, ...values].map(({ value, count }) => h('label', { 'data-value': value },
    h('input', { type: 'checkbox', value }), h('span', { class: 'picker-value' }, value),
    h('span', { class: 'picker-count' }, count.toLocaleString('en-US')))));
  if (!values.length && !missing.length) list.append(h('p', { class: 'picker-none' }, 'No values under these filters'));
  labelPicker(picker);
  findInPicker(picker);
  if (focused != null) [...list.querySelectorAll('input')].find((box) => box.value === focused)?.focus();
}

// Search and sort sit in the title row but belong to the form (their `form` attribute),
// so the listeners are on the whole top bar.
export function bindFilterBar() {
  const search = $('filter-q');
  const searchLater = debounce(() => updateParam(search), SEARCH_DEBOUNCE_MS);
  $('topbar').addEventListener('change', (event) => {
    if (event.target.form === $('filters') && event.target.name) updateParam(event.target);
  });
  bindPickers();
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
