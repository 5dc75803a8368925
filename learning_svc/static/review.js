// Reviewing beyond the star rating (reviews.py): pick / reject flags, reason tags (with the
// commonest a number key away), a note and sub-scores per job, and a rating per image. Each
// change is shown at once, stored, undone on a refusal, and leaves its undo (undo.js).

import { api, jobUrl } from './api.js';
import { detailsJob } from './details.js';
import {
  enqueueReview, flushUnsentRatings, hasUnsent, rateJob, sendWhileLeaving, showJobRating,
} from './rating.js';
import { jobById } from './store.js';
import { applySet, foldTag, pushUndo, trackAction } from './undo.js';
import { $, announce, h, plural, showToast } from './util.js';

export const SCORES = [
  ['anatomy', 'Anatomy'],
  ['composition', 'Composition'],
  ['prompt_adherence', 'Prompt adherence'],
  ['technical_quality', 'Technical quality'],
  ['expression', 'Expression'],
  ['structure', 'Structure'],
];  // reviews.py SCORES, in its order (a page test holds them together)
const FLAG_LABELS = { pick: 'Pick', reject: 'Reject' };
const COMMON_TAGS = 9; // the commonest tags, on the keys 1-9 of the tag editor
const MAX_TAG = 48; // characters (reviews.MAX_TAG): longer is refused with a hint, not cut
const MAX_NOTE = 4000; // characters (reviews.MAX_NOTE): said below the box as it is typed, not cut

// ---------------------------------------------------------------- drawing

// The review line of a card: flag, tags, a note mark, image ratings (empty: hidden). A job of
// one image has none apart from its own rating (README), as in the viewer: its stars say it.
export function renderReview(job) {
  const images = (job.outputs ?? []).length === 1
    ? []
    : Object.entries(job.image_ratings ?? {}).sort(([a], [b]) => Number(a) - Number(b));
  return h('div', { class: 'job-review' },
    job.flag ? h('span', { class: `flag flag-${job.flag}`, title: FLAG_LABELS[job.flag] }, job.flag === 'pick' ? '✓ Pick' : '✕ Reject') : null,
    ...(job.tags ?? []).map((tag) => h('span', { class: 'tag', title: `Tag: ${tag}` }, tag)),
    job.note ? h('span', { class: 'note-mark', title: `Note: ${job.note}`, 'aria-label': `Note: ${job.note}` }, '✎') : null,
    images.length
      ? h('span', { class: 'image-ratings', title: 'Image ratings' },
        images.map(([n, rating]) => `#${Number(n) + 1} ${'★'.repeat(rating) || '0'}`).join(' · '))
      : null);
}

// The rating shown for one of a job's images: a job of one image is rated with it (README), so
// the job's own rating is the one shown, wherever it was given (its image's own could be older).
export function imageRating(job, output) {
  return (job.outputs ?? []).length === 1 ? job.rating ?? null : job.image_ratings?.[output] ?? null;
}

// After a change: the card's review line and stars, and the details dialog if it shows the job.
export function redrawJob(job) {
  const line = job.element?.querySelector('.job-review');
  if (line) line.replaceWith(renderReview(job));
  job.element?.classList.toggle('flag-pick', job.flag === 'pick');
  job.element?.classList.toggle('flag-reject', job.flag === 'reject');
  showJobRating(job, job.rating);
  // The details and the viewer show it too (an undo, another tab's change: not only their own keys).
  window.dispatchEvent(new CustomEvent('learning-svc:redrawn', { detail: job }));
  if (detailsJob() === job) window.dispatchEvent(new CustomEvent('learning-svc:reviewed', { detail: job }));
}

// ---------------------------------------------------------------- storing

export function describe(set, count) {
  const what = 'rating' in set ? 'rating' : 'flag' in set ? 'flag' : 'note' in set ? 'note' : 'scores' in set ? 'scores' : 'tags';
  return count === 1 ? what : `${what} of ${plural(count, 'job')}`;
}

// One change for these jobs: shown at once, stored (one request, however many jobs), put
// back with the reason when refused. Resolves to true when stored.
export function review(jobs, set, options = {}) {
  return trackAction(store(jobs, set, options));
}

// Review requests go one after another in the order given: two sent at once may be applied
// in the other order (add a tag, remove it again: the service would end with it).
let sending = Promise.resolve();

async function store(jobs, set, { output = null, undoInto = null } = {}) {
  if (!jobs.length) return false;
  announce(said(set, output, jobs.length));
  const before = jobs.map((job) => ({ job, snapshot: snapshot(job) }));
  for (const job of jobs) {
    applySet(job, output, set);
    job.changedHere = performance.now(); // the change feed's older news of it is ignored (live.js)
    job.reviewing = (job.reviewing ?? 0) + 1;
    redrawJob(job);
  }
  const queueable = output == null && !('rating' in set);
  // Kept to be sent later, after those waiting, in order; `u` undoes it as any other change.
  const queue = () => {
    enqueueReview(jobs, set);
    const undo = before.map(({ job, snapshot: saved }) => undoOf(job, saved, set)).filter(Boolean);
    if (undoInto) undoInto.push(...undo);
    else pushUndo(describe(set, jobs.length), undo);
    return false;
  };
  if (queueable && hasUnsent()) {
    for (const job of jobs) job.reviewing -= 1;
    queue();
    flushUnsentRatings();
    return false;
  }
  const turn = sending;
  let sent;
  sending = new Promise((resolve) => { sent = resolve; });
  try {
    await turn;
    if (queueable && hasUnsent()) return queue(); // the change ahead was queued meanwhile: not overtaken
    let undo;
    if (jobs.length === 1 && !('rating' in set && output == null)) {
      const [job] = jobs;
      const url = output == null ? `${jobUrl(job.job_id)}/review` : `${jobUrl(job.job_id)}/outputs/${output}/rating`;
      const body = output == null ? { ...set, source: 'web' } : { rating: set.rating, source: 'web' };
      const result = set.rating === null && output != null
        ? await api(url, { method: 'DELETE', body: { source: 'web' } })
        : await api(url, { method: output == null ? 'POST' : 'PUT', body });
      undo = result.changed.length ? [{ job_id: job.job_id, output, set: result.previous, expect: result.expect }] : [];
    } else {
      const items = jobs.map((job) => ({ job_id: job.job_id, output, set }));
      const result = await api('/api/ratings:batch', { method: 'POST', body: { items, source: 'web' } });
      undo = result.previous;
    }
    for (const job of jobs) if (output == null && 'rating' in set) job.savedRating = set.rating;
    if (undoInto) undoInto.push(...undo);
    else pushUndo(describe(set, jobs.length), undo);
    return true;
  } catch (error) {
    if (queueable && (error.offline || !error.refused)) { // away or busy: kept, sent once it answers
      if (!error.offline) setTimeout(flushUnsentRatings, 5000);
      return queue();
    }
    for (const { job, snapshot: saved } of before) { // only what this change touched
      for (const key of touched(set, output)) job[key] = saved[key];
      redrawJob(job);
    }
    showToast(`Not saved: ${error.message}`);
    return false;
  } finally {
    sent();
    for (const job of jobs) job.reviewing -= 1;
  }
}

// The undo item of a change kept to be sent later, from the job as it was (the service's
// `previous` is not known yet): the values it replaced, and those it left (`expect`).
function undoOf(job, saved, set) {
  const back = {};
  const expect = {};
  if ('flag' in set) {
    back.flag = saved.flag;
    expect.flag = set.flag;
  }
  if ('note' in set) {
    back.note = saved.note;
    expect.note = set.note || null;
  }
  if (set.scores) {
    back.scores = Object.fromEntries(Object.keys(set.scores).map((name) => [name, saved.scores[name] ?? null]));
    expect.scores = set.scores;
  }
  const had = (tag) => saved.tags.some((t) => foldTag(t) === foldTag(tag));
  const added = (set.tags_add ?? []).filter((tag) => !had(tag));
  const removed = (set.tags_remove ?? []).filter(had);
  if (added.length) back.tags_remove = added;
  if (removed.length) back.tags_add = removed;
  if (!Object.keys(back).length) return null;
  return { job_id: job.job_id, output: null, set: back, ...(Object.keys(expect).length ? { expect } : {}) };
}

// What a change did, in words for a screen reader (a key pressed on a card said nothing).
function said(set, output, count) {
  const stars = (rating) => (rating == null ? 'rating cleared' : `${plural(rating, 'star')}`);
  const parts = [];
  if ('rating' in set) parts.push(output == null ? stars(set.rating) : `image ${output + 1}: ${stars(set.rating)}`);
  if ('flag' in set) parts.push(set.flag ? `flagged ${set.flag}` : 'flag cleared');
  if (set.tags_add) parts.push(`tag ${set.tags_add.join(', ')} added`);
  if (set.tags_remove) parts.push(`tag ${set.tags_remove.join(', ')} removed`);
  if ('note' in set) parts.push(set.note ? 'note saved' : 'note cleared');
  if (set.scores) parts.push('sub-score set');
  const text = parts.join(', ');
  return count > 1 ? `${text}, ${plural(count, 'job')}` : text;
}

const REVIEW_KEYS = ['flag', 'tags', 'note', 'scores', 'image_ratings'];

// A review given elsewhere (another tab, the API, a bulk action), seen in the change feed.
export function reviewedElsewhere(summary) {
  const job = jobById(summary.job_id);
  if (!job || job.reviewing) return;
  if (REVIEW_KEYS.every((key) => JSON.stringify(job[key] ?? null) === JSON.stringify(summary[key] ?? null))) return;
  for (const key of REVIEW_KEYS) job[key] = summary[key];
  redrawJob(job);
}

function touched(set, output) {
  if (output != null) return ['image_ratings'];
  return Object.keys(set).map((key) => (key.startsWith('tags') ? 'tags' : key));
}

function snapshot(job) {
  return {
    rating: job.rating,
    flag: job.flag ?? null,
    tags: [...(job.tags ?? [])],
    note: job.note ?? null,
    scores: { ...(job.scores ?? {}) },
    image_ratings: { ...(job.image_ratings ?? {}) },
  };
}

// p / x: the flag, or none when every job already has it.
export function toggleFlag(jobs, flag) {
  const all = jobs.every((job) => job.flag === flag);
  return review(jobs, { flag: all ? null : flag });
}

// An image's rating. A job of one image has one rating, the job's (README): rated in the viewer
// or compare, its image is the job. It was both, and rated again in the list, the job changed
// and its image kept the old value (the Image rating filter and the export said that one).
export function rateImage(job, output, rating) {
  if ((job.outputs ?? []).length === 1) return rateJob(job, rating);
  return review([job], { rating }, { output });
}

// ---------------------------------------------------------------- the tag editor

let tagTargets = [];
// {count, where, apply}: the selection is every job the filters match, most of them not loaded,
// so whether they all have a tag is asked of the service (allHave), never judged from the cards.
let allMatching = null;
const allHave = new Map(); // folded tag -> every matching job has it
let commonTags = [];
let chipsNumbered = false; // once the commonest tags are in: before, chip 1 was the job's own first tag

async function loadCommonTags() {
  try {
    await sending; // the tags stored from here a moment ago are among them (CI: asked too early)
    const { facets } = await api('/api/facets?facet_size=50');
    return (facets.tag ?? []).map((bucket) => bucket.value);
  } catch {
    return [];
  }
}

// t: tags for the focused job, the selection, or the job in details or the viewer.
// `all`: {count, where, apply} when "Select all N matching" was chosen.
export async function openTagEditor(jobs, all = null) {
  if (!jobs.length && !all) return;
  tagTargets = jobs.map((job) => job.job_id);
  allMatching = all;
  allHave.clear();
  const dialog = $('tag-editor');
  $('tag-editor-title').textContent = all
    ? `Tags of all ${plural(all.count, 'matching job')}`
    : jobs.length === 1 ? 'Tags' : `Tags of ${plural(jobs.length, 'job')}`;
  $('tag-input').value = '';
  $('tag-hint').textContent = '';
  chipsNumbered = false;
  renderTagEditor();
  if (!dialog.open) dialog.showModal();
  $('tag-input').focus(); // at once: what is typed next is the tag
  commonTags = (await loadCommonTags()).slice(0, 50);
  chipsNumbered = true;
  if (dialog.open) renderTagEditor(); // at once: a number key pressed now finds its chip
  await askWhoHasThem();
  if (dialog.open) renderTagEditor();
}

// For "all matching": whether every matching job has each offered tag (a count with the tag
// added to the filters). Within a field the filters' values are alternatives, so with tags in
// the filters it is known only for the one tag they name; unknown is "not all" (Enter adds).
async function askWhoHasThem() {
  const asked = allMatching; // an answer for another opening of the editor is dropped
  if (!asked) return;
  const { count, where } = asked;
  const named = new URLSearchParams(where).getAll('tag');
  const unknown = offeredTags(targets()).filter((tag) => !allHave.has(foldTag(tag))).slice(0, ASK_AT_MOST);
  await Promise.all(unknown.map(async (tag) => {
    if (named.length) {
      allHave.set(foldTag(tag), named.length === 1 && foldTag(named[0]) === foldTag(tag));
      return;
    }
    const query = new URLSearchParams(where);
    query.append('tag', tag);
    try {
      const { jobs } = await api(`/api/count?${query}`);
      if (asked === allMatching) allHave.set(foldTag(tag), jobs === count);
    } catch {
      // not known: shown as not all, and Enter adds it to all
    }
  }));
}

// The chips asked about (the commonest and the loaded jobs' first ones): one count each, so not
// every tag of thousands of loaded jobs. One not asked shows as not all: a click adds it to all.
const ASK_AT_MOST = 24;

function targets() {
  return tagTargets.map(jobById).filter(Boolean);
}

// The tags shown as chips: the commonest first (on the keys 1-9), then the targets' own; one
// chip per tag whatever its case or spacing, in the spelling most jobs use.
// The commonest are in alphabetical order, so that a number key stays on its tag while the
// counts change (chip 1 was "bad hands" at one opening and "blurry" at the next).
function offeredTags(jobs) {
  const offered = new Map();
  const commonest = commonTags.slice(0, COMMON_TAGS).sort((a, b) => foldTag(a).localeCompare(foldTag(b)));
  for (const tag of [...commonest, ...jobs.flatMap((job) => job.tags ?? [])]) {
    if (!offered.has(foldTag(tag))) offered.set(foldTag(tag), tag);
  }
  return [...offered.values()];
}

function hasTag(jobs, tag) {
  if (allMatching) return allHave.get(foldTag(tag)) === true;
  return jobs.length > 0 && jobs.every((job) => jobHas(job, tag));
}

const jobHas = (job, tag) => (job.tags ?? []).some((t) => foldTag(t) === foldTag(tag));

// A chip's state for a screen reader: "mixed" when some of several jobs have it.
function pressed(jobs, tag) {
  if (hasTag(jobs, tag)) return 'true';
  return !allMatching && jobs.length > 1 && jobs.some((job) => jobHas(job, tag)) ? 'mixed' : 'false';
}

function renderTagEditor() {
  const jobs = targets();
  $('tag-choices').setAttribute('aria-busy', String(!chipsNumbered)); // the commonest still to come
  $('tag-choices').replaceChildren(...offeredTags(jobs).map((tag, i) => h('button', {
    type: 'button',
    class: 'tag-choice',
    'aria-pressed': pressed(jobs, tag),
    'data-tag': tag,
    title: chipsNumbered && i < COMMON_TAGS ? `${i + 1} and Enter in the box, or ${i + 1} on a chip` : null,
  }, chipsNumbered && i < COMMON_TAGS ? h('kbd', {}, String(i + 1)) : null, tag)));
  // Suggested while typing: the tags in use that a target still lacks (one they all have, as a
  // tag just given, is a pressed chip already).
  const lacking = commonTags.filter((tag) => !hasTag(jobs, tag));
  $('tag-suggestions').replaceChildren(...lacking.map((tag) => h('option', { value: tag })));
}

function storeTags(set, refused = () => {}) {
  const jobs = targets();
  const all = allMatching;
  (all ? all.apply(set) : review(jobs, set)).then(async (saved) => {
    if (saved === false) refused();
    if (all && all === allMatching) { // asked again: what the change made of its tags
      for (const tag of [...(set.tags_add ?? []), ...(set.tags_remove ?? [])]) allHave.delete(foldTag(tag));
      await askWhoHasThem();
    }
    renderTagEditor();
  });
  renderTagEditor();
}

function toggleTag(tag) {
  storeTags(hasTag(targets(), tag) ? { tags_remove: [tag] } : { tags_add: [tag] });
}

// Typed tags are added (never removed: Enter on a tag the job has keeps it), each in the
// spelling of the chip it matches if one does; several (`bad hands, oversaturated`) in one change.
function addTags(typed) {
  const tags = [];
  for (const part of typed) {
    const tag = offeredTags(targets()).find((t) => foldTag(t) === foldTag(part)) ?? part.trim().replace(/\s+/g, ' ');
    if (!tags.some((t) => foldTag(t) === foldTag(tag))) tags.push(tag);
  }
  const fresh = tags.filter((tag) => !commonTags.some((t) => foldTag(t) === foldTag(tag)));
  commonTags.push(...fresh);
  // A tag the service refuses (one that shows nothing, say) is no chip: it stayed, a blank one.
  const forget = () => { commonTags = commonTags.filter((t) => !fresh.includes(t)); };
  const adding = tags.filter((tag) => !hasTag(targets(), tag));
  if (adding.length) storeTags({ tags_add: adding }, forget);
  else if (allMatching) {
    $('tag-hint').textContent = `All ${plural(allMatching.count, 'matching job')} have “${tags.join('”, “')}” already.`;
  }
}

// What is typed in the box, stored (Enter, or Done with text left in the box: it was dropped
// without a word): a lone 1-9 toggles that chip, else the tags it names, split at commas.
// False when it cannot be (the hint says why), so that Done keeps the dialog open.
function commitTyped() {
  const typed = $('tag-input').value.trim();
  const isKey = /^[0-9]$/.test(typed); // a chip's key, never a tag of its own (it was tag "1")
  const chip = isKey ? chipTag(typed) : null;
  const parts = isKey ? [] : typed.split(',').map((part) => part.trim()).filter(Boolean);
  const long = parts.find((part) => [...part].length > MAX_TAG); // characters as the service counts them
  if (isKey && !chip) {
    $('tag-hint').textContent = chipsNumbered
      ? `There is no chip ${typed}: type a tag's name to add it.`
      : 'The chips are numbered once the commonest tags are in: press Enter again in a moment.';
    return false;
  }
  if (long) { // the box's maxlength cut it silently (and an emoji tag at half)
    const which = parts.length === 1 ? 'this one' : `“${[...long].slice(0, 12).join('')}…”`;
    $('tag-hint').textContent = `A tag is at most ${MAX_TAG} characters; ${which} has ${[...long].length}.`;
    return false;
  }
  $('tag-hint').textContent = '';
  $('tag-input').value = '';
  if (chip) toggleTag(chip);
  else if (parts.length) addTags(parts);
  return true;
}

function chipTag(key) {
  if (!chipsNumbered) return undefined;
  return $('tag-choices').querySelectorAll('.tag-choice')[Number(key) - 1]?.dataset.tag;
}

// In the box, digits are text ("3d render"); a lone 1-9 and Enter toggles that chip. On a chip
// (Tab), 1-9 toggle at once.
function onTagKey(event) {
  const inInput = event.target === $('tag-input');
  if (!inInput && /^[1-9]$/.test(event.key) && !event.ctrlKey && !event.metaKey && !event.altKey) {
    const tag = chipTag(event.key);
    if (tag) {
      event.preventDefault();
      toggleTag(tag);
    }
  } else if (event.key === 'Enter' && inInput) {
    event.preventDefault();
    if (!$('tag-input').value.trim()) $('tag-editor').close(); // Enter on an empty box: done
    else commitTyped();
  }
  event.stopPropagation(); // the page's keys do not act behind the dialog
}

// ---------------------------------------------------------------- details: note and sub-scores

// The note typed in details and not saved yet is saved when details shows another job or
// closes, or the box loses focus: leaving does not throw it away (Save and Ctrl+Enter save at once).
let unsavedNote = null;

export function saveUnsavedNote({ unloading = false } = {}) {
  const save = unsavedNote;
  unsavedNote = null;
  save?.({ leaving: true, unloading });
}

export function renderNoteAndScores(job) {
  const note = h('textarea', { id: 'details-note', rows: '2', placeholder: 'A note on this job (Ctrl+Enter saves)' }, job.note ?? '');
  const save = h('button', { type: 'button', id: 'details-note-save' }, 'Save note');
  const hint = h('p', { id: 'details-note-hint', class: 'tag-hint', role: 'status' });
  const tooLong = () => { // characters as the service counts them (the API's 400 came as a toast)
    const length = [...note.value.trim()].length;
    hint.textContent = length > MAX_NOTE
      ? `A note is at most ${MAX_NOTE.toLocaleString('en-US')} characters; this one has ${length.toLocaleString('en-US')}.`
      : '';
    return length > MAX_NOTE;
  };
  const saveNote = ({ leaving = false, unloading = false } = {}) => {
    const value = note.value.trim();
    if (value === (job.note ?? '')) return;
    if (tooLong()) {
      if (leaving) showToast(`The note on ${job.job_id} was not saved: ${hint.textContent}`);
    } else if (unloading) {
      sendWhileLeaving(job, { note: value }, { note: job.note ?? null });
    } else {
      review([job], { note: value });
    }
  };
  unsavedNote = saveNote;
  save.addEventListener('click', () => saveNote());
  note.addEventListener('change', () => saveNote());
  note.addEventListener('input', tooLong);
  note.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) {
      saveNote();
      note.closest('dialog')?.focus(); // out of the box: the next key rates (a 4 typed after it went into the note)
    }
    event.stopPropagation();
  });
  const scores = SCORES.map(([name, label]) => {
    const value = job.scores?.[name];
    const group = h('div', { class: 'score', role: 'radiogroup', 'aria-label': label },
      h('span', { class: 'score-label' }, label),
      ...[0, 1, 2, 3, 4, 5].map((n) => h('button', {
        type: 'button',
        role: 'radio',
        'aria-checked': String(value === n),
        'aria-label': `${label} ${n}`,
        'data-score': name,
        'data-value': n,
      }, String(n))));
    return group;
  });
  const section = h('div', { class: 'note-scores' },
    h('label', { class: 'note-label', for: 'details-note' }, 'Note'), note, hint, save,
    h('div', { class: 'scores' }, ...scores));
  section.addEventListener('click', (event) => {
    const button = event.target.closest('[data-score]');
    if (!button) return;
    const name = button.dataset.score;
    const value = Number(button.dataset.value);
    review([job], { scores: { [name]: job.scores?.[name] === value ? null : value } });
  });
  return section;
}

export function initReview() {
  // A reload or a closed tab with a note typed and not saved: it is kept (it was lost without a word).
  window.addEventListener('pagehide', () => saveUnsavedNote({ unloading: true }));
  $('tag-editor').addEventListener('keydown', onTagKey);
  $('tag-choices').addEventListener('click', (event) => {
    const choice = event.target.closest('.tag-choice');
    if (choice) toggleTag(choice.dataset.tag);
  });
  $('tag-editor-done').addEventListener('click', () => { if (commitTyped()) $('tag-editor').close(); });
}
