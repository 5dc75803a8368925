// The JSON API: one fetch wrapper with the error shape of SPEC §2, and the URLs of a job.

import { wentOffline } from './connection.js';

// A failed request: `status` is the HTTP status (0: no answer at all, the service is offline).
export class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }

  get offline() {
    return this.status === 0;
  }

  get refused() { // the request itself was wrong: asking again cannot help
    return this.status >= 400 && this.status < 500 && this.status !== 408 && this.status !== 429;
  }
}

// A server bound beyond loopback needs a bearer token on writes. The user opens
// `/#token=...` once: the fragment never reaches the server or its logs, and the
// token is kept in this origin's localStorage rather than in any served HTML.
const TOKEN_KEY = 'learning-svc-token';
let token = takeTokenFromFragment() ?? localStorage.getItem(TOKEN_KEY) ?? '';
// `#token=...` typed into the address of a page already open loads nothing: taken here too.
addEventListener('hashchange', () => { token = takeTokenFromFragment() ?? token; });

function takeTokenFromFragment() {
  const match = location.hash.match(/^#token=(.+)$/);
  if (!match) return null;
  const value = decodeURIComponent(match[1]);
  localStorage.setItem(TOKEN_KEY, value);
  history.replaceState(null, '', location.pathname + location.search);
  return value;
}

// A JSON integer past 2^53 (a 64-bit seed: Fooocus, ComfyUI) loses its last digits in
// JSON.parse, and a copied seed that is off by a few cannot make the image again: such
// integers are read as strings of their exact digits. Strings in the text are matched first,
// so digits inside them are left alone.
const BIG_INTEGER = /"(?:[^"\\]|\\.)*"|(?<![\d.eE+-])-?\d{16,}(?![.\deE])/g;

export function parseJson(text) {
  return JSON.parse(text.replace(BIG_INTEGER, (token) => (
    token[0] === '"' || Number.isSafeInteger(Number(token)) ? token : `"${token}"`)));
}

// A refused body's fields in the page's words: "invalid review: tags_add.0: a tag must not …"
// named the request's field path in a toast; it says "a tag must not …".
const FIELD_WORDS = { tags: 'tag', tags_add: 'tag', tags_remove: 'tag', note: 'note', flag: 'flag', scores: 'score', rating: 'rating' };

function refusal(error) {
  const fields = Array.isArray(error?.fields) ? error.fields : [];
  if (error?.code !== 'invalid' || !fields.length) return error?.message;
  return fields.slice(0, 3).map(({ loc, msg }) => {
    const word = FIELD_WORDS[String(loc).split('.')[0]];
    return word && !String(msg).toLowerCase().includes(word) ? `${word}: ${msg}` : String(msg);
  }).join('; ');
}

export async function api(path, { method = 'GET', body, keepalive = false } = {}) {
  const headers = {};
  if (method !== 'GET') {
    headers['Content-Type'] = 'application/json';
    if (token) headers.Authorization = `Bearer ${token}`;
  }
  let response;
  try {
    response = await fetch(path, { method, headers, body: body && JSON.stringify(body), keepalive });
  } catch {
    wentOffline();
    throw new ApiError('the service cannot be reached', 0);
  }
  const data = await response.text().then(parseJson).catch(() => null);
  if (response.status === 401 && method !== 'GET') {
    const entered = prompt('This server needs its access token (LEARNING_SVC_TOKEN) to save ratings:');
    if (entered) {
      token = entered.trim();
      localStorage.setItem(TOKEN_KEY, token);
      return api(path, { method, body });
    }
  }
  if (response.status === 401) { // the server's message speaks to curl users ("Authorization: Bearer …")
    const how = `open ${location.origin}${location.pathname}#token=<the token> once, or save again and enter it`;
    throw new ApiError(`${token ? 'the access token given here is not the server\'s' : 'this server needs its access token (LEARNING_SVC_TOKEN) to save'}: ${how}`, 401);
  }
  if (!response.ok) {
    throw new ApiError(refusal(data?.error) || `${response.status} ${response.statusText}`.trim(), response.status);
  }
  return data;
}

export function jobUrl(jobId) {
  return `/api/jobs/${encodeURIComponent(jobId)}`;
}

export function outputUrl(jobId, index) {
  return `${jobUrl(jobId)}/outputs/${index}`;
}
