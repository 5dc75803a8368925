// The one table of keys: what each does in the list, the details dialog, the viewer and
// compare, whether it may be typed ahead while the next page loads, and its line in the help.

import {
  chooseCompared, compareOpen, flagCompared, openCompare, rateCompared, toggleSlider, zoomCompare,
} from './compare.js';
import { closeDetailsForViewer, detailsJob, openDetails, stepDetails, toggleHelp } from './details.js';
import { firstVisibleJob } from './live.js';
import { focusJob, focusJobAbove, focusJobBelow, focusNextJob, focusPreviousJob } from './nav.js';
import { moveInRadioGroup, rateAndAdvance, rateJob, rateJobInDetails } from './rating.js';
import { openTagEditor, toggleFlag } from './review.js';
import {
  applyToSelection, clearSelection, flagSelection, hasSelection, rangeFrom, selectLoaded, selectRange, selectedJobs, toggleSelected,
} from './selection.js';
import { nextTypedKey, state, typeAhead } from './store.js';
import { undoLast } from './undo.js';
import { $, h } from './util.js';
import {
  copyShown, flagShown, openViewer, rateShown, step, tagShown, toggleInfo, toggleTriage, viewerOpen, zoomShown,
} from './viewer.js';

const job = (element) => state.jobs.get(element.dataset.jobId);

// With a selection the list's review keys act on all of it, in one request.
function rateInList(element, rating) {
  if (hasSelection()) return applyToSelection({ rating });
  return rating === null ? rateJob(job(element), null) : rateAndAdvance(element, rating);
}

function flagInList(element, flag) {
  if (!hasSelection()) return toggleFlag([job(element)], flag);
  return flagSelection(flag);
}

function tagInList(element) {
  if (!hasSelection()) return openTagEditor([job(element)]);
  return openTagEditor(selectedJobs(), state.selectAll && { ...state.selectAll, apply: applyToSelection });
}

const inDetails = (action) => () => {
  const shown = detailsJob();
  if (shown) action(shown);
};

// keys: the KeyboardEvent.key values; shown: how the help writes them. list(element, key,
// event): on the focused job; details(key), viewer(key), compare(key): with that dialog open;
// global(): anywhere (no dialog but help is open).
export const KEYS = [
  { keys: ['0', '1', '2', '3', '4', '5'], shown: ['0', '–', '5'], help: 'Rate the focused job, the selection, the job in details, the image in the viewer or compare’s chosen image',
    typeAhead: true, bulk: true, list: (element, key) => rateInList(element, Number(key)), details: (key) => rateJobInDetails(Number(key)),
    viewer: (key) => rateShown(Number(key)), compare: (key) => rateCompared(Number(key)) },
  { keys: ['Backspace', 'Delete'], shown: ['Backspace'], help: 'Clear the rating', typeAhead: true, bulk: true,
    list: (element) => rateInList(element, null), details: () => rateJobInDetails(null), viewer: () => rateShown(null),
    compare: () => rateCompared(null) },
  { keys: ['p'], shown: ['p'], help: 'Flag as pick (again: unflag)', bulk: true, list: (element) => flagInList(element, 'pick'),
    details: inDetails((shown) => toggleFlag([shown], 'pick')), viewer: () => flagShown('pick'),
    compare: () => flagCompared('pick') },
  { keys: ['x'], shown: ['x'], help: 'Flag as reject (again: unflag)', bulk: true, list: (element) => flagInList(element, 'reject'),
    details: inDetails((shown) => toggleFlag([shown], 'reject')), viewer: () => flagShown('reject'),
    compare: () => flagCompared('reject') },
  { keys: ['t'], shown: ['t'], help: 'Tags: type one, or 1–9 for the commonest', bulk: true, list: (element) => tagInList(element),
    details: inDetails((shown) => openTagEditor([shown])), viewer: () => tagShown() },
  { keys: ['u'], shown: ['u'], help: 'Undo the last rating, flag, tag, note, sub-score or bulk action', global: () => undoLast() },
  { keys: [' '], shown: ['Space'], help: 'Select the focused job (Ctrl+click: select, Shift+click or Shift+arrows: a range, Ctrl+A: every loaded job)',
    list: (element) => toggleSelected(element), onlyOnCard: true },
  { keys: ['j', 'ArrowRight'], shown: ['j', ' / ', '→'], help: 'Next job (next image in the viewer, the next image chosen in compare)', typeAhead: true,
    list: (element) => focusNextJob(element), details: () => stepDetails(true), viewer: () => step(1), compare: () => chooseCompared(1) },
  { keys: ['k', 'ArrowLeft'], shown: ['k', ' / ', '←'], help: 'Previous job (previous image in the viewer, the previous one chosen in compare)', typeAhead: true,
    list: (element) => focusPreviousJob(element), details: () => stepDetails(false), viewer: () => step(-1), compare: () => chooseCompared(-1) },
  { keys: ['ArrowDown'], shown: ['↓', ' / ', '↑'], help: 'Job below / above', list: (element) => focusJobBelow(element) },
  { keys: ['ArrowUp'], list: (element) => focusJobAbove(element) },
  { keys: ['Enter'], shown: ['Enter'], help: 'Open details (large images, prompts, note, sub-scores, history)',
    list: (element, key, event) => (event.target === element ? openDetails(element) : null), onlyOnCard: true },
  { keys: ['v'], shown: ['v'], help: 'View the job’s images full screen (or click a thumbnail)',
    list: (element) => openViewer(job(element)), details: inDetails((shown) => { closeDetailsForViewer(); openViewer(shown, 0, { fromDetails: true }); }) },
  { keys: ['c'], shown: ['c'], help: 'Compare the 2–4 selected jobs (or the focused job’s images); in the viewer: copy the prompt',
    list: (element) => openCompare(selectedJobs(), element && job(element)), viewer: () => copyShown('prompt') },
  { keys: ['s'], shown: ['s'], help: 'Viewer: copy the seed; compare: slider or side by side',
    viewer: () => copyShown('seed'), compare: () => toggleSlider() },
  { keys: ['C'], shown: ['Shift+C'], help: 'Viewer: copy all parameters (A1111 format)', viewer: () => copyShown('all') },
  { keys: ['z'], shown: ['z'], help: 'Viewer, compare: zoom to actual pixels and back (wheel zooms, drag pans)',
    viewer: () => zoomShown(), compare: () => zoomCompare() },
  { keys: ['a'], shown: ['a'], help: 'Viewer: triage mode (rating moves on to the next image)', viewer: () => toggleTriage() },
  { keys: ['i'], shown: ['i'], help: 'Viewer: show or hide the parameters', viewer: () => toggleInfo() },
  { keys: ['Escape'], shown: ['Esc'], help: 'Close the dialog; in the list: clear the selection',
    list: () => clearSelection(), anywhereInList: true },
  { keys: ['?'], shown: ['?'], help: 'Show or hide this help', global: () => toggleHelp() },
];
const BY_KEY = new Map(KEYS.flatMap((entry) => entry.keys.map((key) => [key, entry])));
const MOVE_INTO_LIST = ['j', 'ArrowDown', 'ArrowRight'];
const IN_RADIO_GROUP = ['ArrowLeft', 'ArrowRight', 'ArrowUp', 'ArrowDown', 'Home', 'End'];

// Controls that take the keys typed at them. A checkbox (Unrated only) does not: j and 0-5 went
// nowhere after one was clicked, until the focus was moved.
const TAKES_KEYS = 'input:not([type="checkbox"]):not([type="radio"]):not([type="button"]), select, textarea, [contenteditable]';

function isEditable(target) {
  return target.matches?.(TAKES_KEYS);
}

// A dropdown chosen with the pointer gives the keys back to the list (chosen with the keys, it
// keeps them: the arrows go on choosing).
let pointerSelect = null;

function givesKeysBack(event) {
  if (event.type === 'pointerdown') pointerSelect = event.target.closest?.('select') ?? null;
  else if (event.target === pointerSelect) {
    pointerSelect = null;
    event.target.blur();
  }
}

// The dialog whose keys apply (the top one), or null for the list.
function context() {
  if (viewerOpen()) return 'viewer';
  if (compareOpen()) return 'compare';
  if ($('details').open) return 'details';
  return null;
}

// The action a key takes on a job (element), in the open dialog, or null.
function actionFor(key, element, event) {
  const entry = BY_KEY.get(key);
  if (!entry) return null;
  const dialog = context();
  if (dialog) return entry[dialog] ? () => entry[dialog](key) : null;
  if (entry.anywhereInList && entry.list) return () => entry.list(element, key, event);
  if (!element && entry.bulk && hasSelection()) return () => entry.list(null, key, event); // e.g. from the bar
  if (!element || !entry.list) return null;
  if (entry.onlyOnCard && event?.target !== element) return null;
  return () => entry.list(element, key, event);
}

export function replayTypedAhead() {
  while (state.typedAhead.length && !state.advancing) {
    const key = nextTypedKey();
    const element = document.activeElement?.closest?.('.job');
    if (key === EXTEND) {
      if (element) selectRange(element);
    } else if (key.startsWith('Shift+')) {
      if (element) extendSelection(element, key.slice('Shift+'.length));
    } else {
      actionFor(key, element, null)?.();
    }
  }
}

const SHIFT_MOVES = new Set(['ArrowLeft', 'ArrowRight', 'ArrowUp', 'ArrowDown']);

// Shift+arrow on a card: move, and select the range from where it began (selection.rangeFrom).
// Shift+→ past the loaded jobs waits for the next page (nav.advance): the range is extended on
// arrival, before the keys typed meanwhile (a Shift+→ among them extends it on, not a plain →).
const EXTEND = 'extend the range';

function extendSelection(element, key) {
  rangeFrom(element);
  const moved = BY_KEY.get(key).list(element, key, null);
  const extend = () => {
    const now = document.activeElement?.closest?.('.job');
    if (now && now !== element) selectRange(now);
  };
  if (state.advancing) typeAhead(EXTEND);
  else if (moved?.then) moved.then(extend); // ↓ past the loaded jobs waits for the next page
  else extend();
}

// Ctrl/⌘+A with the keys in the list (not in a box or a dialog): every loaded job.
function selectsAll(event) {
  return (event.ctrlKey || event.metaKey) && !event.altKey && !event.shiftKey && event.key.toLowerCase() === 'a'
    && !isEditable(event.target) && !context() && !document.querySelector('dialog[open]')
    && !event.target.closest?.('.picker-panel') && $('job-list').firstElementChild;
}

function onKeydown(event) {
  if (selectsAll(event)) {
    event.preventDefault();
    selectLoaded();
    return;
  }
  if (event.ctrlKey || event.metaKey || event.altKey || isEditable(event.target)) return;
  // An open filter list has the keys (its boxes, typing to find): `u` there undid a rating, `x`
  // rejected the selected jobs.
  if (event.target.closest?.('.picker-panel')) return;
  if (event.target.matches?.('input') && (event.key === ' ' || event.key === 'Enter')) return; // ticks a box
  const entry = BY_KEY.get(event.key);
  if (event.key === '?') {
    event.preventDefault();
    toggleHelp();
    return;
  }
  if ($('help').open || $('tag-editor').open || $('confirm').open) return; // their own keys
  if (entry?.global) { // u: not while a modal of one's own has the keys
    event.preventDefault();
    entry.global();
    return;
  }
  if (event.target.matches?.('[role="radio"]') && IN_RADIO_GROUP.includes(event.key)) {
    event.preventDefault(); // arrows move between the stars there, not between jobs
    moveInRadioGroup(event.target, event.key);
    return;
  }
  // While moving on waits for the next page, moves and ratings wait too, in order (↑/↓ as well:
  // one pressed meanwhile moved at once, and the page's arrival then moved focus away).
  if (state.advancing && (entry?.typeAhead || (SHIFT_MOVES.has(event.key) && !context()))) {
    event.preventDefault();
    typeAhead(event.shiftKey && SHIFT_MOVES.has(event.key) ? `Shift+${event.key}` : event.key);
    return;
  }
  const element = event.target.closest?.('.job');
  if (event.shiftKey && SHIFT_MOVES.has(event.key) && element && event.target === element && !context()) {
    event.preventDefault();
    extendSelection(element, event.key);
    return;
  }
  let action = actionFor(event.key, element, event);
  if (!action && !element && !context() && MOVE_INTO_LIST.includes(event.key) && $('job-list').firstElementChild) {
    action = () => focusJob(firstVisibleJob() ?? $('job-list').firstElementChild);
  }
  if (action) {
    event.preventDefault();
    action();
  }
}

function renderHelp() {
  const rows = KEYS.filter((entry) => entry.help).flatMap((entry) => [
    h('dt', {}, ...entry.shown.map((part) => (part.trim() === part && part !== '–' ? h('kbd', {}, part) : part))),
    h('dd', {}, entry.help),
  ]);
  $('help-keys').replaceChildren(...rows);
}

export function initKeys() {
  renderHelp();
  document.addEventListener('keydown', onKeydown);
  document.addEventListener('pointerdown', givesKeysBack, true);
  document.addEventListener('change', givesKeysBack, true);
}

