// Whether the service can be reached. A request that gets no answer at all shows the offline
// banner and starts probing; once the service answers again the banner goes and every part
// that waits on it resumes by itself (the listing, the change feed, unsent ratings, images).

import { $ } from './util.js';

const PROBE_INTERVAL_MS = 2000;

let offline = false;
const resumers = [];

export function isOffline() {
  return offline;
}

export function onResume(resume) {
  resumers.push(resume);
}

export function onStatusChange(listener) {
  window.addEventListener('learning-svc:connection', listener);
}

export function wentOffline() {
  if (offline) return;
  offline = true;
  $('offline').hidden = false;
  window.dispatchEvent(new Event('learning-svc:connection'));
  setTimeout(probe, PROBE_INTERVAL_MS);
}

// Any answer, even an error, means the service is reachable again.
async function probe() {
  try {
    await fetch('/api/health', { cache: 'no-store' });
  } catch {
    setTimeout(probe, PROBE_INTERVAL_MS);
    return;
  }
  offline = false;
  $('offline').hidden = true;
  window.dispatchEvent(new Event('learning-svc:connection'));
  for (const resume of resumers) resume();
}
