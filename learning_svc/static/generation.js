// A job's generation parameters as a reviewer reads them: the list shown beside an image,
// the prompt with its LoRAs and embeddings picked out, and A1111's text format (what its
// "PNG Info" and "Send to txt2img" read) for copying into a UI.

import { api, jobUrl } from './api.js';
import { formatNumber, h } from './util.js';

const records = new Map(); // job id -> promise of GET /api/jobs/<id> (prompts are not in the summary)

export function jobDetail(jobId) {
  if (!records.has(jobId)) {
    const promise = api(jobUrl(jobId)).catch((error) => {
      records.delete(jobId);
      throw error;
    });
    records.set(jobId, promise);
  }
  return records.get(jobId);
}

export function forgetDetail(jobId) {
  records.delete(jobId);
}

// LoRAs or embeddings as `name (weight)`, comma-separated.
export const weighted = (items) => (items ?? [])
  .map((item) => (item.weight == null ? item.name : `${item.name} (${formatNumber(item.weight)})`)).join(', ');

// A seed as shown: -1 is what a UI or StableNew records for "random", not the seed that was used.
export const isRandomSeed = (seed) => String(seed) === '-1';
export const seedText = (seed) => (seed == null ? null : isRandomSeed(seed) ? '-1 (random)' : String(seed));

// [label, value] pairs; the rows of compare's table too.
export function parameters(record) {
  return [
    ['Generator', record.generator], // AUTOMATIC1111, ComfyUI, …: an imported image's UI
    ['Model', record.model],
    ['VAE', record.vae],
    ['Sampler', record.sampler],
    ['Scheduler', record.scheduler],
    ['Steps', record.steps || null],
    ['CFG', record.cfg_scale ? formatNumber(record.cfg_scale) : null],
    ['Seed', seedText(record.seed)],
    ['Size', record.width && record.height ? `${record.width}×${record.height}` : null],
    ['LoRAs', weighted(record.loras) || null],
    ['Embeddings', weighted(record.embeddings) || null],
    ['Packs', (record.packs ?? []).join(', ') || null],
    ['Variant', record.variant_total ? `${(record.variant_index ?? 0) + 1} / ${record.variant_total}` : null], // as the card
  ];
}

const EXTRA_NETWORK = /<(lora|lyco|hypernet):([^:>]+)(?::[^>]*)?>/gi;

// The prompt as text, with <lora:…> tags and the job's embeddings marked.
export function renderPrompt(text, record) {
  const prompt = h('p', { class: 'prompt-text' });
  if (!text) {
    prompt.append('—');
    return prompt;
  }
  const embeddings = (record.embeddings ?? []).map((item) => item.name).filter(Boolean);
  const words = embeddings.length
    ? new RegExp(`\\b(${embeddings.map((name) => name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|')})\\b`, 'g')
    : null;
  let at = 0;
  for (const match of text.matchAll(EXTRA_NETWORK)) {
    appendWithEmbeddings(prompt, text.slice(at, match.index), words);
    prompt.append(h('mark', { class: 'lora', title: `${match[1]} ${match[2]}` }, match[0]));
    at = match.index + match[0].length;
  }
  appendWithEmbeddings(prompt, text.slice(at), words);
  return prompt;
}

function appendWithEmbeddings(parent, text, words) {
  if (!words) {
    parent.append(text);
    return;
  }
  let at = 0;
  for (const match of text.matchAll(words)) {
    parent.append(text.slice(at, match.index), h('mark', { class: 'embedding', title: 'embedding' }, match[0]));
    at = match.index + match[0].length;
  }
  parent.append(text.slice(at));
}

// A1111's infotext: the prompt, "Negative prompt: …", then "Steps: 30, Sampler: …, …". An image
// that carries one (A1111, Forge, SD.Next, Fooocus' A1111 scheme) gives its own, whole: hires fix,
// clip skip, Flux's distilled CFG and the hashes with it, as PNG Info reads it. `amendments`: the
// job's (GET /api/jobs/<id>); once amended, the text is built from what the job now says.
export function a1111Text(record, amendments = []) {
  return (amendments?.length ? null : ownInfotext(record)) ?? builtInfotext(record);
}

// The image's `parameters` text as the importer kept it (run_config.metadata): an infotext (its
// settings line has `Steps: `), not JSON (Fooocus' own scheme) nor a note that it was not read,
// that says the job's prompts.
function ownInfotext(record) {
  const text = record.run_config?.metadata?.parameters;
  if (typeof text !== 'string' || !/(^|\n)Steps: \d/.test(text) || isJson(text)) return null;
  const negative = record.negative_prompt ? `Negative prompt: ${record.negative_prompt}` : '';
  return text.startsWith(`${[record.prompt, negative].filter(Boolean).join('\n')}\n`) ? text : null;
}

function isJson(text) {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

function builtInfotext(record) {
  // "juggernautXL.safetensors [dd08fa32f9]" (A1111's checkpoint title) is a name and a hash.
  const titled = /^(.*?)\s*\[([0-9a-fA-F]{8,64})\]$/.exec(record.model ?? '');
  const settings = [
    ['Steps', record.steps || null],
    ['Sampler', record.sampler],
    ['Schedule type', record.scheduler],
    ['CFG scale', record.cfg_scale ? formatNumber(record.cfg_scale) : null],
    ['Seed', record.seed],
    ['Size', record.width && record.height ? `${record.width}x${record.height}` : null],
    ['Model hash', a1111Hash(record.model_hash ?? record.run_config?.model_hash ?? titled?.[2])], // an imported image's: run_config
    ['Model', a1111Name(titled ? titled[1] : record.model)],
    ['VAE', record.vae],
  ].filter(([, value]) => value != null && value !== '');
  const lines = [withLoras(record.prompt ?? '', record.loras)];
  if (record.negative_prompt) lines.push(`Negative prompt: ${record.negative_prompt}`);
  lines.push(settings.map(([name, value]) => `${name}: ${value}`).join(', '));
  return lines.join('\n');
}

// A1111 reads LoRAs from the prompt: those the record names and its prompt does not (ComfyUI's
// loader nodes, InvokeAI's and SwarmUI's lists) are added to it as <lora:name:weight>.
function withLoras(prompt, loras) {
  const named = new Set([...prompt.matchAll(/<lora:([^:>]+)/gi)].map((match) => a1111Name(match[1]).toLowerCase()));
  const missing = (loras ?? []).filter((lora) => !named.has(a1111Name(lora.name).toLowerCase()));
  return [prompt, ...missing.map((lora) => `<lora:${a1111Name(lora.name)}:${formatNumber(lora.weight ?? 1)}>`)]
    .filter(Boolean).join(' ');
}

// A file's name as A1111 names a model or LoRA: without its folder and extension. A ComfyUI
// loader's `styles/film_grain_xl.safetensors` pasted as such was a LoRA A1111 did not find.
function a1111Name(name) {
  if (name == null || name === '') return name;
  return String(name).split(/[\\/]/).pop().replace(/\.(safetensors|ckpt|pt|pth|bin)$/i, '');
}

// A1111's model hash is 10 hex digits (a SHA-256's first ten); another kind (InvokeAI's
// blake3) would be a hash A1111 does not know: left out.
function a1111Hash(hash) {
  if (/^[0-9a-f]{64}$/i.test(hash ?? '')) return hash.slice(0, 10);
  return /^[0-9a-f]{8,12}$/i.test(hash ?? '') ? hash : null;
}
