// Moving through the list: focus, the next/previous job, the row below/above (the list is
// a grid), and moving on past the loaded jobs without losing keys typed meanwhile.

import { openDetails } from './details.js';
import { replayTypedAhead } from './keys.js';
import { loadNextPage } from './list.js';
import { clearRating, rateAndAdvance } from './rating.js';
import { selectRange, toggleSelected } from './selection.js';
import { forgetTypedAhead, setAdvancing, state } from './store.js';
import { openViewer } from './viewer.js';

const PREFETCH_JOBS = 12; // focus this close to the last loaded job loads the next page

export function focusJob(element) {
  element.focus({ preventScroll: true });
  element.scrollIntoView({ block: 'nearest' });
  if (!hasJobsAfter(element, PREFETCH_JOBS)) loadNextPage(); // rating never waits at a page end
}

export function hasJobsAfter(element, count) {
  let next = element;
  for (let i = 0; i < count; i += 1) {
    next = next.nextElementSibling;
    if (!next) return false;
  }
  return true;
}

export function adjacentJob(element, direction, matches = () => true) {
  for (let next = element[direction]; next; next = next[direction]) {
    if (matches(state.jobs.get(next.dataset.jobId))) return next;
  }
  return null;
}

// Moves on to the next matching job: at once when it is loaded (pages are prefetched as
// focus nears the end), else once the next page has arrived. Keys typed while waiting are
// queued and replayed on the job moved to, so fast typing never rates one job twice.
export function advance(element, matches, moveTo) {
  const next = adjacentJob(element, 'nextElementSibling', matches);
  if (next || state.done || state.failed) {
    if (next) moveTo(next);
    return;
  }
  const { generation } = state;
  setAdvancing(true);
  loadUntilNext(element, matches).then((found) => {
    if (generation !== state.generation) return; // the filters changed meanwhile
    setAdvancing(false);
    if (found) moveTo(found);
    else forgetTypedAhead(); // nothing left to move to
    replayTypedAhead();
  });
}

async function loadUntilNext(element, matches) {
  let next = null;
  while (!next && !state.done && !state.failed && element.isConnected) {
    await loadNextPage();
    next = adjacentJob(element, 'nextElementSibling', matches);
  }
  return next;
}

export function focusNextJob(element, matches) {
  advance(element, matches, (next) => {
    if (!document.getElementById('details').open) focusJob(next);
  });
}

export function focusPreviousJob(element) {
  const previous = adjacentJob(element, 'previousElementSibling');
  if (previous) focusJob(previous);
}

// The job in the row below (or above) whose centre is nearest: the list is a grid.
function jobInAdjacentRow(element, direction) {
  const box = element.getBoundingClientRect();
  const centre = box.left + box.width / 2;
  let best = null;
  let bestDistance = Infinity;
  let rowTop = null;
  for (let other = element[direction]; other; other = other[direction]) {
    const rect = other.getBoundingClientRect();
    if (rowTop === null) {
      if (Math.abs(rect.top - box.top) < 1) continue;
      rowTop = rect.top;
    } else if (Math.abs(rect.top - rowTop) >= 1) {
      break;
    }
    const distance = Math.abs(rect.left + rect.width / 2 - centre);
    if (distance < bestDistance) [best, bestDistance] = [other, distance];
  }
  return best;
}

export async function focusJobBelow(element) {
  let below = jobInAdjacentRow(element, 'nextElementSibling');
  if (!below && !state.done && !state.failed) {
    await loadNextPage();
    below = jobInAdjacentRow(element, 'nextElementSibling');
  }
  if (below) focusJob(below);
}

export function focusJobAbove(element) {
  const above = jobInAdjacentRow(element, 'previousElementSibling');
  if (above) focusJob(above);
}

// Touch has no Ctrl or Space: a long press on a card selects it, and while jobs are selected a
// tap toggles a card (as photo apps do); the selection bar then acts on them.
const LONG_PRESS_MS = 500;
let press = null; // {timer, x, y} of a touch on a card
let pressed = false; // the click that ends a long press does nothing more

export function initTouchSelection(list) {
  const cancel = () => {
    if (press) clearTimeout(press.timer);
    press = null;
  };
  list.addEventListener('pointerdown', (event) => {
    const element = event.target.closest('.job');
    cancel();
    pressed = false; // a long press that no click followed (the browser may not send one)
    if (event.pointerType !== 'touch' || !element || event.target.closest('[data-rating], .clear-rating')) return;
    press = {
      x: event.clientX,
      y: event.clientY,
      timer: setTimeout(() => {
        press = null;
        pressed = true;
        toggleSelected(element);
        swallowNextClick();
        navigator.vibrate?.(10);
      }, LONG_PRESS_MS),
    };
  });
  list.addEventListener('pointermove', (event) => {
    if (press && Math.hypot(event.clientX - press.x, event.clientY - press.y) > 10) cancel(); // a scroll
  });
  for (const type of ['pointerup', 'pointercancel']) list.addEventListener(type, cancel);
  list.addEventListener('contextmenu', (event) => { // the browser's own long-press menu
    if (pressed || press) event.preventDefault();
  });
}

// The click that ends a long press, wherever it lands: the selection bar appears while the
// finger is down and pushes the cards down, and the release pressed its "3" (the job just
// selected was rated 3). Not a later touch's: the next pointerdown ends the wait.
function swallowNextClick() {
  const swallow = (event) => {
    event.preventDefault();
    event.stopPropagation();
    pressed = false;
    done();
  };
  const done = () => {
    document.removeEventListener('click', swallow, true);
    document.removeEventListener('pointerdown', done, true);
    clearTimeout(timer);
  };
  const timer = setTimeout(done, 2000);
  document.addEventListener('click', swallow, true);
  document.addEventListener('pointerdown', done, true);
}

// Shift+click selects a range of cards, not the text between them (the browser extends a text
// selection on Shift's mousedown, before the click).
export function onListMouseDown(event) {
  if (event.shiftKey && event.button === 0 && event.target.closest('.job')) event.preventDefault();
}

// A click on a card: Ctrl/⌘ toggles its selection, Shift selects the range to it, a
// thumbnail opens the viewer on that image, the stars rate, anywhere else opens details.
export function onListClick(event) {
  const element = event.target.closest('.job');
  if (!element) return;
  const radio = event.target.closest('[data-rating]');
  const thumbnail = event.target.closest('img.thumb');
  if (pressed) {
    pressed = false;
    event.preventDefault();
    return;
  }
  if (event.pointerType === 'touch' && state.selected.size && !radio) {
    event.preventDefault();
    toggleSelected(element);
  } else if (event.ctrlKey || event.metaKey) {
    event.preventDefault();
    toggleSelected(element);
    element.focus({ preventScroll: true });
  } else if (event.shiftKey) {
    event.preventDefault();
    selectRange(element);
    element.focus({ preventScroll: true });
  } else if (thumbnail) {
    openViewer(state.jobs.get(element.dataset.jobId), Number(thumbnail.dataset.output));
  } else if (radio) {
    rateAndAdvance(element, Number(radio.dataset.rating));
  } else if (event.target.closest('.clear-rating')) {
    clearRating(element);
  } else if (!event.target.closest('.rating')) {
    openDetails(element);
  }
}
