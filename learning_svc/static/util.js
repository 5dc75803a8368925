// Small helpers shared by every part of the page: elements, words, numbers and times.
// Text from records is always inserted as text nodes (textContent/append), never as HTML.

export const $ = (id) => document.getElementById(id);

export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value != null) element.setAttribute(name, value);
  }
  element.append(...children.filter((child) => child != null)); // strings become text nodes
  return element;
}

export function plural(count, word) {
  return `${count} ${word}${count === 1 ? '' : 's'}`;
}

export function basename(path) {
  return path.split(/[\\/]/).pop();
}

// What a job is called where one name is shown (the viewer, details): a job without packs (an
// imported image, most often: its id a content hash) by its image's file, as its card is.
export function jobName(job, output = 0) {
  return !(job.packs ?? []).length && job.outputs?.length ? basename(job.outputs[output]) : job.job_id;
}

export function formatNumber(value) {
  return value == null ? '—' : String(Number(Number(value).toFixed(2)));
}

// A sampler and its scheduler as a card says them: once, where the sampler's name already ends
// with it (Fooocus' `DPM++ 2M SDE Karras` with `Scheduler: karras`).
export function samplerAndScheduler(sampler, scheduler) {
  const named = sampler && scheduler && sampler.toLowerCase().endsWith(` ${scheduler.toLowerCase()}`);
  return [sampler, named ? null : scheduler].filter(Boolean);
}

// "Dec 7, 2026, 11:13:33 AM": the details, the history and a card's tooltip say a time this way,
// in the same words as the card's short "Dec 7, 11:13 AM".
const fullTimeFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });

export function formatTime(epochSeconds) {
  return epochSeconds == null ? '—' : fullTimeFormat.format(new Date(epochSeconds * 1000));
}

const shortTimeFormat = new Intl.DateTimeFormat(undefined, {
  month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit',
});
const shortTimeWithYearFormat = new Intl.DateTimeFormat(undefined, {
  year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit',
});

// "Nov 25, 10:41 PM" (with the year when it is not this year); the full time is in the tooltip.
export function formatShortTime(date) {
  if (!date) return '—';
  const format = date.getFullYear() === new Date().getFullYear() ? shortTimeFormat : shortTimeWithYearFormat;
  return format.format(date);
}

const relativeFormats = {
  long: new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' }),
  narrow: new Intl.RelativeTimeFormat(undefined, { numeric: 'auto', style: 'narrow' }), // "9mo ago": a card's header
};
const RELATIVE_UNITS = [
  ['year', 31536000], ['month', 2592000], ['week', 604800], ['day', 86400],
  ['hour', 3600], ['minute', 60], ['second', 1],
];

// Days count calendar days here ("yesterday" is the day before today, not 24-47 hours ago: a
// job of the day before yesterday at a later hour than now was "yesterday").
export function relativeTime(epochSeconds, now = new Date(), style = 'long') {
  const format = relativeFormats[style];
  const delta = epochSeconds - now.getTime() / 1000;
  const [unit, seconds] = RELATIVE_UNITS.find(([, size]) => Math.abs(delta) >= size) ?? ['second', 1];
  if (unit === 'day') return format.format(calendarDays(new Date(epochSeconds * 1000), now), unit);
  return format.format(Math.trunc(delta / seconds), unit);
}

function calendarDays(then, now) {
  const day = (date) => Date.UTC(date.getFullYear(), date.getMonth(), date.getDate()) / 86400000;
  return day(then) - day(now);
}

export function formatDuration(seconds) {
  if (seconds == null) return '—';
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const total = Math.round(seconds);
  const hours = Math.floor(total / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  return hours ? `${hours} h ${minutes} min` : `${minutes} min ${total % 60} s`;
}

export function debounce(fn, ms) {
  let timer;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

const TOAST_MS = 6000;
let toastTimer;

// A toast says what went wrong (red), or with `{ info: true }` what was done (an undo, a copy:
// a new-user run read "Undone: …" in red as a failure).
// A polite word to a screen reader about what a key just did (the page shows it; it said nothing).
export function announce(text) {
  const region = document.getElementById('announce');
  if (!region || !text) return;
  region.textContent = '';
  requestAnimationFrame(() => { region.textContent = text[0].toUpperCase() + text.slice(1); });
}

export function showToast(message, { info = false } = {}) {
  const toast = $('toast');
  toast.textContent = message;
  toast.classList.toggle('info', info);
  toast.classList.add('visible');
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => toast.classList.remove('visible'), TOAST_MS);
}
