// The REST API client of the dashboard: fetch with the access token, JSON
// answers parsed losslessly (a key's value kept as its text: json.js),
// errors as APIError with ctxd's error code.

import { parse } from './json.js';

const TOKEN_KEY = 'ctxd.token';

// token is the access token of this tab ('' when none). It lives in
// sessionStorage only (gone when the tab closes, never in localStorage);
// where storage is disabled, in memory until the page reloads.
let memoryToken = '';

export function token() {
  try { return sessionStorage.getItem(TOKEN_KEY) || ''; } catch { return memoryToken; }
}

export function setToken(t) {
  try {
    if (t) sessionStorage.setItem(TOKEN_KEY, t);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch { memoryToken = t || ''; }
}

// APIError is a failed request: status 0 when the server could not be
// reached, else the HTTP status and ctxd's {"error":{"code","message",...}}.
export class APIError extends Error {
  constructor(status, code, message, detail = {}) {
    super(message);
    this.status = status;
    this.code = code;
    this.detail = detail; // the error object: current_version, compacted_revision, ...
  }
}

let askToken = null; // async (reason) => token, or '' when the user gives none
let prompting = null; // the prompt in progress, shared by concurrent 401s
// declined is set when the user cancelled the prompt: 401s then fail
// without asking again, until the user asks for the dialog (askedToken).
let declined = false;

// askedToken says that the user opened the token dialog: a later 401 may
// ask again.
export function askedToken() { declined = false; }

// onTokenNeeded sets what asks the user for a token when the API answers
// 401: an async function of the reason, returning the token or ''.
export function onTokenNeeded(fn) { askToken = fn; }

let noToken = null; // () => void

// onNoToken sets what runs when a request fails for want of a token: the
// user gave none (cancelled the prompt, which then stays closed).
export function onNoToken(fn) { noToken = fn; }

async function tokenAfter401(sent) {
  if (token() !== sent) return token(); // another request got a new one meanwhile
  if (!askToken || declined) return '';
  if (!prompting) {
    const reason = sent ? 'The server refused the token. Enter another one.' : 'The server asks for an access token.';
    prompting = askToken(reason).then((t) => {
      declined = !t;
      return t;
    }).finally(() => { prompting = null; });
  }
  return prompting;
}

// request sends one API request and answers the parsed JSON body, its
// "value" members (keys' values) as JSONText (or, with raw, the Response
// itself). path is the escaped path; query an object of
// parameters (undefined and '' values left out); body a string sent as is.
// timeout, when set, is how many ms the server has to answer, body
// included (a token prompt in between does not count): past it the
// request is abandoned and fails as unreachable does (status 0, code
// "timeout"). fetch has no timeout of its own, and a periodic read that
// never ends would stop its polling. Only for reads: an abandoned write
// may still be applied.
export async function request(method, path, { query, body, headers, raw, timeout } = {}) {
  const url = new URL(path, location.href);
  for (const [k, v] of Object.entries(query || {})) {
    if (v !== undefined && v !== null && v !== '') url.searchParams.set(k, String(v));
  }
  for (let attempt = 0; ; attempt++) {
    const h = new Headers(headers || {});
    const sent = token();
    if (sent) h.set('Authorization', 'Bearer ' + sent);
    if (body !== undefined && !h.has('Content-Type')) h.set('Content-Type', 'application/json');
    const abort = new AbortController();
    let timedOut = false;
    const timer = timeout ? setTimeout(() => { timedOut = true; abort.abort(); }, timeout) : 0;
    const failed = (e) => (timedOut
      ? new APIError(0, 'timeout', `the server did not answer within ${timeout / 1000} s`)
      : new APIError(0, 'unreachable', `cannot reach the server (${e.message})`));
    let res;
    let text;
    try {
      try {
        res = await fetch(url, { method, headers: h, body, cache: 'no-store', signal: abort.signal });
      } catch (e) {
        throw failed(e);
      }
      if (res.status === 401 && attempt < 5) {
        clearTimeout(timer); // the user's time at the prompt is not the server's
        const next = await tokenAfter401(sent);
        if (next) continue;
        if (noToken) noToken();
        throw new APIError(401, 'unauthorized', 'the server needs an access token: use the "Access token" button');
      }
      if (res.ok && raw) return res;
      try {
        text = await res.text();
      } catch (e) {
        throw failed(e);
      }
    } finally {
      clearTimeout(timer);
    }
    if (res.ok) return text ? parse(text, { keepText: ['value'] }) : null;
    let err = null;
    try { err = parse(text).error; } catch { /* not ctxd's error format */ }
    if (err && typeof err === 'object') {
      throw new APIError(res.status, String(err.code || 'error'), String(err.message || res.statusText), err);
    }
    throw new APIError(res.status, 'http_' + res.status, `${res.status} ${res.statusText}`.trim());
  }
}

// keyPath is the path of a key: the key is escaped whole ("/" as %2F), as
// the API expects. A key named "." or ".." cannot be sent from a browser:
// URL parsing takes it for a folder step, escaped (%2E) or not, and the
// request would name another resource; it is refused here, with a way
// around it.
export function keyPath(ns, key) {
  if (key === '.' || key === '..') {
    throw new APIError(400, 'bad_request', `a key named "${key}" cannot be sent in a URL from a browser (it reads as a folder step): use the CLI (ctxd get/put/del/history '${key}') or curl --path-as-is`);
  }
  return `/v1/ns/${encodeURIComponent(ns)}/keys/${encodeURIComponent(key)}`;
}

// watchURL is the WebSocket URL of the change feed with these parameters,
// and the token as ?token= (browsers cannot set headers on a WebSocket).
export function watchURL(params) {
  const url = new URL('/v1/watch', location.href);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') url.searchParams.set(k, String(v));
  }
  const t = token();
  if (t) url.searchParams.set('token', t);
  return url.href;
}

// download saves the file at path. Without a token a plain link does it
// (the browser streams it to disk); with one, the file is fetched with the
// token and saved from memory.
export async function download(path, filename) {
  const a = document.createElement('a');
  a.download = filename;
  let blobURL = '';
  if (token()) {
    const res = await request('GET', path, { raw: true });
    blobURL = URL.createObjectURL(await res.blob());
    a.href = blobURL;
  } else {
    a.href = path;
  }
  document.body.append(a);
  a.click();
  a.remove();
  if (blobURL) setTimeout(() => URL.revokeObjectURL(blobURL), 60000);
}
