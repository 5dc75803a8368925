// The one table of keys: what each does in the list and in the details dialog, whether it
// may be typed ahead while the next page loads, and its line in the help dialog.

import { openDetails, stepDetails, toggleHelp } from './details.js';
import { firstVisibleJob } from './live.js';
import { focusJob, focusJobAbove, focusJobBelow, focusNextJob, focusPreviousJob } from './nav.js';
import { moveInRadioGroup, rateAndAdvance, rateJob, rateJobInDetails } from './rating.js';
import { nextTypedKey, state, typeAhead } from './store.js';
import { $, h } from './util.js';

const job = (element) => state.jobs.get(element.dataset.jobId);

// keys: the KeyboardEvent.key values; shown: how the help writes them.
// list(element, key, event): on the focused job; details(key): with the dialog open.
export const KEYS = [
  { keys: ['0', '1', '2', '3', '4', '5'], shown: ['0', '–', '5'], help: 'Rate the focused job (or the job open in details)',
    typeAhead: true, list: (element, key) => rateAndAdvance(element, Number(key)), details: (key) => rateJobInDetails(Number(key)) },
  { keys: ['Backspace', 'Delete'], shown: ['Backspace'], help: 'Clear its rating', typeAhead: true,
    list: (element) => rateJob(job(element), null), details: () => rateJobInDetails(null) },
  { keys: ['j', 'ArrowRight'], shown: ['j', ' / ', '→'], help: 'Next job', typeAhead: true,
    list: (element) => focusNextJob(element), details: () => stepDetails(true) },
  { keys: ['k', 'ArrowLeft'], shown: ['k', ' / ', '←'], help: 'Previous job', typeAhead: true,
    list: (element) => focusPreviousJob(element), details: () => stepDetails(false) },
  { keys: ['ArrowDown'], shown: ['↓', ' / ', '↑'], help: 'Job below / above', list: (element) => focusJobBelow(element) },
  { keys: ['ArrowUp'], list: (element) => focusJobAbove(element) },
  { keys: ['Enter'], shown: ['Enter'], help: 'Open details (large images, prompts, history)',
    list: (element, key, event) => (event.target === element ? openDetails(element) : null), onlyOnCard: true },
  { keys: ['Escape'], shown: ['Esc'], help: 'Close details or this help' }, // the dialogs close themselves
  { keys: ['?'], shown: ['?'], help: 'Show or hide this help', global: () => toggleHelp() },
];
const BY_KEY = new Map(KEYS.flatMap((entry) => entry.keys.map((key) => [key, entry])));
const MOVE_INTO_LIST = ['j', 'ArrowDown', 'ArrowRight'];
const IN_RADIO_GROUP = ['ArrowLeft', 'ArrowRight', 'ArrowUp', 'ArrowDown', 'Home', 'End'];

function isEditable(target) {
  return target.matches?.('input, select, textarea, [contenteditable]');
}

// The action a key takes on a job (element) or in the open details dialog, or null.
function actionFor(key, element, event) {
  const entry = BY_KEY.get(key);
  if (!entry) return null;
  if ($('details').open) return entry.details ? () => entry.details(key) : null;
  if (!element || !entry.list) return null;
  if (entry.onlyOnCard && event?.target !== element) return null;
  return () => entry.list(element, key, event);
}

export function replayTypedAhead() {
  while (state.typedAhead.length && !state.advancing) {
    const key = nextTypedKey();
    const element = document.activeElement?.closest?.('.job');
    actionFor(key, element, null)?.();
  }
}

function onKeydown(event) {
  if (event.ctrlKey || event.metaKey || event.altKey || isEditable(event.target)) return;
  const entry = BY_KEY.get(event.key);
  if (entry?.global) {
    event.preventDefault();
    entry.global();
    return;
  }
  if ($('help').open) return;
  if (event.target.matches?.('[role="radio"]') && IN_RADIO_GROUP.includes(event.key)) {
    event.preventDefault(); // arrows move between the stars there, not between jobs
    moveInRadioGroup(event.target, event.key);
    return;
  }
  if (state.advancing && entry?.typeAhead) {
    event.preventDefault();
    typeAhead(event.key);
    return;
  }
  const element = event.target.closest?.('.job');
  let action = actionFor(event.key, element, event);
  if (!action && !element && !$('details').open && MOVE_INTO_LIST.includes(event.key) && $('job-list').firstElementChild) {
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
}

