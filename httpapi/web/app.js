// The ctxd dashboard: server status, keys, a key's value, history and
// diffs, set and delete with compare-and-swap, the live change feed,
// snapshots and dumps. Plain DOM, no framework: every panel is a load
// function (REST) and a render function, and the live feed patches what is
// on screen. README.md "Dashboard" describes it.

import { APIError, askedToken, download, keyPath, onNoToken, onTokenNeeded, request, setToken, token } from './api.js';
import { memberNames, parse, pretty, preview, textAt } from './json.js';
import { LiveFeed } from './live.js';
import { diffLines, hunks } from './diff.js';
import { $, fmtBytes, fmtDuration, h, show, time } from './util.js';

const WHO_KEY = 'ctxd.who'; // who the dashboard's writes name (localStorage: not a secret)
const MAX_EVENTS = 500; // live events kept in memory (without their values: a preview)
const MAX_KEPT_VALUES = 16 << 20; // characters of values kept for the list (state.values)
const HISTORY_PAGE = 20;
const STATUS_EVERY = 5000; // ms from a status poll's answer to the next poll
const READY_EVERY = 3000; // ms between /readyz polls, only while the server is not ready
// ms the server has to answer a polled read (status, what the token may
// do, readiness): one left unanswered would stop its poll.
const POLL_TIMEOUT = 10000;
const NS_RE = /^[A-Za-z0-9._-]{1,64}$/;
// The panels of data: hidden for a token that may not read (renderSelf).
const DATA_PANELS = ['status', 'keys', 'detail', 'editor', 'live', 'snapshots', 'dumps'];

const state = {
  ns: 'default',
  prefix: '',
  // asked: the namespace and prefix the address named, or the user chose
  // since (listFrom); null for one not named. The list shows them while
  // the token may read them (fitToToken).
  asked: { ns: null, prefix: null },
  pageSize: 50,
  pages: [''], // the "after" cursor of each page visited; the last is the page shown
  next: '', // cursor of the next page; '' when there is none
  keys: [], // records of the page shown
  values: new Map(), // "ns\0key" -> {revision, value}: values read or pushed, for the list
  valuesSize: 0, // characters of their text
  namespaces: [],
  selected: null, // {ns, key} shown in the key panel
  record: null, // its current record; null when it does not exist
  deleted: null, // {revision, who, time} when it was deleted while shown
  pit: null, // the record at a revision (point-in-time view), with atRev
  history: [],
  historyNext: null,
  historyTruncated: false, // compaction discarded what is before the oldest change
  editing: null, // {ns, key} the editor was loaded from
  saving: null, // {changes}: a save of the editor in flight, and the feed's changes of its key meanwhile
  status: null,
  // notReady: why GET /readyz answered 503 (the store unavailable: etcd
  // down, a failed disk); '' while ready or not known (checkReady).
  notReady: '',
  // self: what the tab's token may do (GET /v1/auth/self: access_control,
  // name, roles, rights, namespaces, prefixes); null until known, when
  // the page offers everything and the server refuses what it must.
  self: null,
  lastRev: 0, // newest revision seen (status or live feed)
  events: [], // live changes, newest first
  paused: false,
  held: 0, // changes received while paused
  feed: null,
  // needToken: a request failed for want of an access token, and the user
  // gave none. Until one is given the feed is stopped and the status not
  // polled: every try would be refused.
  needToken: false,
};

// ---------------------------------------------------------------- helpers

const enc = encodeURIComponent;

function errorText(e) {
  if (e instanceof APIError) return e.status ? `${e.message} (${e.status} ${e.code})` : e.message;
  return String(e && e.message ? e.message : e);
}

let noticeTimer = 0;
function notify(text) {
  const n = $('notice');
  n.textContent = text;
  n.hidden = false;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => { n.textContent = ''; n.hidden = true; }, 8000);
}

function who() {
  return $('set-who').value.trim() || 'dashboard';
}

// throttled returns a function that runs fn at most once per ms
// milliseconds, and once more after a call that came in meanwhile.
function throttled(fn, ms) {
  let timer = 0;
  let again = false;
  return function run() {
    if (timer) { again = true; return; }
    fn();
    timer = setTimeout(() => {
      timer = 0;
      if (again) { again = false; run(); }
    }, ms);
  };
}

// latest wraps an async loader so that only the newest call's result is
// used: the loader gets a function telling whether it is still the newest.
function latest(loader) {
  let seq = 0;
  return (...args) => {
    const mine = ++seq;
    return loader(() => mine === seq, ...args);
  };
}

function setHash() {
  const p = new URLSearchParams();
  if (state.ns !== 'default') p.set('ns', state.ns);
  if (state.prefix) p.set('prefix', state.prefix);
  if (state.selected) {
    if (state.selected.ns !== state.ns) p.set('kns', state.selected.ns);
    p.set('key', state.selected.key);
  }
  const s = p.toString();
  history.replaceState(null, '', s ? '#' + s : location.pathname + location.search);
}

// ---------------------------------------------------------------- dialogs

let tokenPrompt = null;

// askToken opens the token dialog and resolves to the token entered, or
// '' when the user cancels or forgets it.
function askToken(reason) {
  if (tokenPrompt) return tokenPrompt;
  const d = $('token-dialog');
  const input = $('token-input');
  $('token-why').textContent = reason;
  input.value = '';
  $('token-forget').hidden = !token();
  const had = token();
  tokenPrompt = new Promise((resolve) => {
    d.addEventListener('close', () => {
      tokenPrompt = null;
      const v = d.returnValue;
      if (v === 'ok' && input.value.trim()) setToken(input.value.trim());
      else if (v === 'forget') setToken('');
      input.value = '';
      resolve(v === 'ok' ? token() : '');
      // The first load asks before it starts the feed and reads the
      // panels: the status read that asked goes on with the token, and
      // the first load after it. Nothing is to be read again yet.
      if (!state.feed) return;
      // Whoever asked (the button, or a 401 of any panel), every panel is
      // read again with the new token, and the feed connects with it. The
      // same token given again is tried again where it was missing.
      if (token() === had && !(v === 'ok' && state.needToken)) return;
      if (token() !== had) forgetReads();
      resync();
    }, { once: true });
  });
  d.returnValue = '';
  d.showModal();
  input.focus();
  return tokenPrompt;
}

// forgetReads clears what the page read with the token just replaced
// before it reads again with the new one, which may see less: the live
// events, the values kept for the list, the rows listed, and the key
// shown (it stays selected, to be read again). The feed, connected with
// the old token, stops until resync restarts it with the new one. The
// editor keeps what the user typed.
function forgetReads() {
  if (state.feed) state.feed.stop();
  state.events = [];
  state.held = 0;
  renderEvents();
  forgetValues();
  state.keys = [];
  state.next = '';
  renderKeys();
  if (state.selected) clearDetail();
}

// enterToken opens the token dialog at the user's request (the "Access
// token" button, or a panel's "Enter the access token").
function enterToken() {
  askedToken(); // a 401 may ask again, even after a Cancel
  askToken(token() ? 'Replace or forget the access token of this tab.' : 'Enter the access token for this server.');
}

// tokenMissing runs when a request failed for want of a token that the
// user did not give (Cancel): the feed stops trying to connect, and the
// live panel says why, until a token is given (askToken).
function tokenMissing() {
  state.needToken = true;
  if (state.feed) state.feed.stop();
  renderLiveState();
}

// showTokenNeeded says in the panel line el that what cannot be done
// without an access token, with a button that asks for one.
function showTokenNeeded(el, what, more = '') {
  el.replaceChildren(`${what} needs an access token${more}. `,
    h('button', { type: 'button', class: 'link', onclick: enterToken }, 'Enter the access token'));
  el.hidden = false;
}

// confirmDialog asks a yes/no question; Cancel has the focus.
function confirmDialog({ title, body, ok }) {
  const d = $('confirm-dialog');
  $('confirm-h').textContent = title;
  $('confirm-body').replaceChildren(...body.map((b) => (b instanceof Node ? b : h('p', null, b))));
  $('confirm-ok').textContent = ok;
  return new Promise((resolve) => {
    d.addEventListener('close', () => resolve(d.returnValue === 'ok'), { once: true });
    d.returnValue = '';
    d.showModal();
  });
}

// ---------------------------------------------------------------- status

let lastCounts = '';

// loadStatus answers the status it read (undefined when it could not),
// newer or not than another read's: resync starts the feed after it.
const loadStatus = latest(async (current) => {
  if (!may('read')) return undefined; // refused (403): renderSelf says why
  try {
    const s = await request('GET', '/v1/status', { timeout: POLL_TIMEOUT });
    if (!current()) return s;
    state.status = s;
    state.lastRev = Math.max(state.lastRev, Number(s.revision));
    show($('st-error'), '');
    renderStatus();
    // The live feed re-reads them on creates and deletes; this catches
    // what it missed (while it reconnects).
    const counts = `${s.keys}/${s.namespaces}`;
    if (counts !== lastCounts) {
      lastCounts = counts;
      loadNamespaces();
    }
    return s;
  } catch (e) {
    if (!current()) return;
    if (e.status === 401) showTokenNeeded($('st-error'), 'Reading the status');
    else show($('st-error'), 'Cannot read the status: ' + errorText(e));
    suspectNotReady(e);
  }
});
const statusSoon = throttled(() => loadStatus(), 1000);

// ---------------------------------------------------------------- readiness

let readyTimer = 0;
let readyAsking = false;
// readyUnanswered: the last /readyz got no answer (the server away).
let readyUnanswered = false;

// suspectNotReady asks /readyz after a request failed with a 5xx: the
// live feed may be connected (the server is up) while the store behind it
// is not (etcd down), and every read fails.
function suspectNotReady(e) {
  if (e.status >= 500 && !readyTimer && !readyAsking) checkReady();
}

// checkReady asks GET /readyz whether the server is ready. While it is
// not, the badge and a banner say so with the reason it gives, and it asks
// again every READY_EVERY ms; once it is, the banner goes and everything
// shown is read again (those reads failed meanwhile). Without an answer
// (the server away: the live feed says so) what was known stays, and it
// asks again, but the banner goes: the server is not up.
async function checkReady() {
  clearTimeout(readyTimer);
  readyTimer = 0;
  readyAsking = true;
  const was = state.notReady;
  readyUnanswered = false;
  try {
    await request('GET', '/readyz', { timeout: POLL_TIMEOUT });
    state.notReady = '';
  } catch (e) {
    if (e.status === 503) state.notReady = (e.message || 'no reason given').replace(/^not ready: /, '');
    else if (e.status === 0) readyUnanswered = true;
    else state.notReady = '';
  } finally {
    readyAsking = false;
  }
  renderReady();
  if (state.notReady) readyTimer = setTimeout(checkReady, READY_EVERY);
  else if (was) reloadAll();
}

function renderReady() {
  show($('ready-alarm'), state.notReady && !readyUnanswered
    ? `The server is up but not ready (${state.notReady}): reads and writes fail until it is. This notice goes by itself once it is ready.`
    : '');
  renderLiveState();
}

function renderStatus() {
  const s = state.status;
  if (!s) return;
  $('st-version').textContent = s.version || '?';
  $('st-revision').textContent = String(Math.max(Number(s.revision), state.lastRev));
  $('st-keys').textContent = String(s.keys);
  $('st-namespaces').textContent = String(s.namespaces);
  $('st-file').textContent = fmtBytes(s.file_size_bytes ?? s.db_size_bytes);
  $('st-inuse').textContent = s.in_use_bytes !== undefined ? fmtBytes(s.in_use_bytes) : '?';
  $('st-clients').textContent = String(s.clients);
  $('st-uptime').textContent = fmtDuration(s.uptime_seconds);
  $('st-uptime').title = s.started_at ? 'since ' + s.started_at : '';
  // Used against the quota (what counts: README, "Disk space, retention
  // and the quota"); past it, writes that add data answer 507 and the
  // banner at the top says what to do.
  const quota = Number(s.quota_bytes);
  $('st-quota').textContent = quota > 0 ? `${fmtBytes(s.used_bytes)} of ${fmtBytes(quota)}` : 'none';
  show($('quota-alarm'), s.alarm ? 'Writes are refused: ' + (s.alarm_message || s.alarm) : '');
  // History below this revision is gone: reads there answer 410.
  $('st-compacted').textContent = Number(s.compacted_revision) ? 'below r' + s.compacted_revision : 'none';
}

// ---------------------------------------------------------------- what the token may do

// selfToken is the token state.self was read with.
let selfToken = '';

// loadSelf asks what the tab's token may do and shows it (renderSelf).
// Without a token (a 401, the prompt cancelled) it is not known, and the
// page offers everything, as before; without an answer (the server away,
// a 5xx) what was known of the same token stays, and nothing of another
// one (a token entered meanwhile is not the one it replaced). It answers
// whether that changed (false when a newer call superseded it).
const loadSelf = latest(async (current) => {
  let s = null;
  try {
    s = await request('GET', '/v1/auth/self', { timeout: POLL_TIMEOUT });
  } catch (e) {
    // A 401 asked for the token; the panels say what failed.
    if (e.status !== 401 && selfToken === token()) s = state.self;
  }
  if (!current()) return false;
  const changed = JSON.stringify(s) !== JSON.stringify(state.self);
  state.self = s;
  selfToken = token();
  renderSelf();
  return changed;
});

// recheckSelf asks again what the token may do (a reload of the tokens
// file may have changed it) and, when that changed, re-reads everything
// for the new rights, as after a token change.
async function recheckSelf() {
  if (await loadSelf()) resync();
}

// may reports whether the token has the right (read, write, metrics,
// admin), given or implied; true while that is not known.
function may(right) {
  return !state.self || state.self.rights.includes(right);
}

// tokenText names the token and its roles, for the messages that say why
// a control is off.
function tokenText() {
  const s = state.self;
  return `The access token "${s.name}" (roles ${s.roles.join(', ')})`;
}

// renderSelf disables the write controls (the editor, a field's save,
// Edit and Delete) for a token that may not write, and the snapshot and
// dump controls for one without the admin right, saying why above them
// and as their tooltip, and says which namespaces and key prefixes a
// limited token may read.
function renderSelf() {
  // A token that may not read (a metrics one) would see every panel
  // refused: one notice says so instead, and the panels are hidden (and
  // not read: the loaders ask may('read')).
  const read = may('read');
  show($('noread'), read ? '' : `${tokenText()} may not read keys or the status: ` +
    (may('metrics') ? 'it may only scrape the metrics (GET /metrics). ' : '') +
    'Enter a token that may read with the "Access token" button.');
  for (const id of DATA_PANELS) $(id).hidden = !read;
  renderLiveState();
  const write = may('write');
  const why = write ? '' : `${tokenText()} may not write: saving and deleting keys are off.`;
  for (const id of ['set-fields', 'field-fields']) {
    $(id).disabled = !write;
    $(id).title = why;
  }
  show($('set-readonly'), why);
  renderAdmin();
  const s = state.self;
  const limits = [];
  if (s && s.namespaces) limits.push(`namespaces ${s.namespaces.join(', ')}`);
  if (s && s.prefixes) limits.push(`keys starting with ${s.prefixes.map((p) => `"${p}"`).join(', ')}`);
  show($('keys-limits'), limits.length ? `${tokenText()} may read only ${limits.join(' and ')}.` : '');
  renderNamespaces();
  renderDetail();
}

// renderAdmin disables the snapshot and dump controls for a token without
// the admin right (their routes need it: the server would answer 403),
// saying why above them and as their tooltip. Their lists are not read
// then (loadSnapshots, loadDumps).
function renderAdmin() {
  const admin = may('admin');
  const why = (what) => (admin ? '' : `${tokenText()} may not ${what}: that needs the admin role.`);
  const snap = why('list, create or restore snapshots');
  $('snap-create').disabled = !admin || !snapshotsEnabled;
  $('snap-refresh').disabled = !admin;
  for (const id of ['snap-create', 'snap-refresh']) $(id).title = snap;
  show($('snap-admin'), snap);
  const dump = why('list or write dumps');
  $('dump-fields').disabled = !admin;
  $('dump-fields').title = dump;
  show($('dump-admin'), dump);
}

// fitToToken moves the list to what the token may read: the first of its
// namespaces when it may not read the one shown, the first of its key
// prefixes when it may list only under them (the server refuses a list
// outside them). What was asked for (state.asked) is listed whenever the
// token may read it, also after the list was moved off it for rights
// since widened; with keep (the first load), even when it may not: the
// server's refusal says why.
function fitToToken(keep) {
  const s = state.self;
  if (!s) return;
  const mayNs = (ns) => !s.namespaces || s.namespaces.includes(ns);
  const mayPrefix = (prefix) => !s.prefixes || s.prefixes.some((p) => prefix.startsWith(p));
  const { ns, prefix } = state.asked;
  if (ns !== null && (keep || mayNs(ns))) state.ns = ns;
  else if (!mayNs(state.ns)) state.ns = s.namespaces[0];
  if (prefix !== null && (keep || mayPrefix(prefix))) state.prefix = prefix;
  else if (!mayPrefix(state.prefix)) state.prefix = s.prefixes[0];
  state.pages = [''];
  $('prefix').value = state.prefix;
  if (!$('dump-ns').value || !mayNs($('dump-ns').value)) $('dump-ns').value = state.ns;
  renderNamespaces();
  setHash();
}

// ---------------------------------------------------------------- namespaces and keys

const loadNamespaces = latest(async (current) => {
  if (!may('read')) return; // refused (403): renderSelf says why
  try {
    const r = await request('GET', '/v1/ns');
    if (!current()) return;
    state.namespaces = r.namespaces || [];
    renderNamespaces();
  } catch (e) {
    if (!current()) return;
    if (e.status === 401) showTokenNeeded($('keys-error'), 'Listing the keys');
    else show($('keys-error'), 'Cannot list the namespaces: ' + errorText(e));
  }
});
const namespacesSoon = throttled(() => loadNamespaces(), 1000);

function renderNamespaces() {
  // A token limited to namespaces is offered those (GET /v1/ns lists only
  // the ones that hold keys), no other.
  const allowed = state.self && state.self.namespaces;
  const listed = state.namespaces.filter((n) => !allowed || allowed.includes(n.name));
  for (const n of allowed || []) {
    if (!listed.some((l) => l.name === n)) listed.push({ name: n, keys: 0 });
  }
  listed.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const [id, selected] of [['ns-select', state.ns], ['dump-ns', $('dump-ns').value || state.ns]]) {
    const sel = $(id);
    const names = listed.map((n) => n.name);
    const opts = listed.map((n) => h('option', { value: n.name }, `${n.name} (${n.keys} ${n.keys === 1 ? 'key' : 'keys'})`));
    if (!names.includes(selected)) opts.unshift(h('option', { value: selected }, `${selected} (no keys)`));
    sel.replaceChildren(...opts);
    sel.value = selected;
  }
}

const loadKeys = latest(async (current) => {
  if (!may('read')) return; // refused (403): renderSelf says why
  const after = state.pages[state.pages.length - 1];
  // Changes the feed applies to the list while the page is read may be
  // newer than the answer, which would then overwrite them: read again.
  const changesBefore = state.listChanges;
  try {
    // Without values: a page of keys with large values stays small; a
    // row's value is read when asked for (showValue) or pushed by the feed.
    const r = await request('GET', `/v1/ns/${enc(state.ns)}/keys`, { query: { prefix: state.prefix, after, limit: state.pageSize, values: 'false' } });
    if (!current()) return;
    state.keys = (r.keys || []).map(withKnownValue);
    state.next = r.next || '';
    show($('keys-error'), '');
    renderKeys();
    if (state.listChanges !== changesBefore) keysSoon();
  } catch (e) {
    if (!current()) return;
    if (e.status === 401) showTokenNeeded($('keys-error'), 'Listing the keys');
    else show($('keys-error'), 'Cannot list the keys: ' + errorText(e));
    suspectNotReady(e);
    state.keys = []; // not the rows of what was listed before
    state.next = '';
    renderKeys();
  }
});
const keysSoon = throttled(() => loadKeys(), 500);

function isSelected(ns, key) {
  return !!state.selected && state.selected.ns === ns && state.selected.key === key;
}

function keyRow(r) {
  const sel = isSelected(r.ns, r.key);
  const value = 'value' in r
    ? h('code', null, preview(r.value, 60))
    : h('button', { type: 'button', class: 'link show-value', 'aria-label': `Show the value of ${r.key}`, onclick: () => showValue(r.ns, r.key) }, 'Show value');
  return h('tr', { class: sel ? 'selected' : null, 'aria-current': sel ? 'true' : null, dataset: { key: r.key } },
    h('th', { scope: 'row' }, h('button', { type: 'button', class: 'link', onclick: () => selectKey(r.ns, r.key, true) }, r.key)),
    h('td', { class: 'value' }, value),
    h('td', { class: 'num' }, String(r.version)),
    h('td', { class: 'num wide' }, String(r.revision)),
    h('td', { class: 'wide' }, r.who),
    h('td', { class: 'wide' }, time(r.updated_at)),
    h('td', { class: 'expires' }, expiresIn(r.expires_at)));
}

// expiresIn shows when a key expires: a countdown ("in 29s") that
// tickExpiries keeps current, with the deadline as its title; "—" for a
// key that never expires.
function expiresIn(at) {
  const d = new Date(at);
  if (!at || Number.isNaN(d.getTime())) return h('span', { class: 'muted', title: 'never expires' }, '—');
  const e = h('time', { class: 'countdown', datetime: at, title: `expires at ${at}` });
  countdownText(e, Date.now());
  return e;
}

// countdownText sets a countdown's text from its deadline; it answers
// whether the deadline has passed.
function countdownText(e, now) {
  const left = Math.ceil((Date.parse(e.getAttribute('datetime')) - now) / 1000);
  e.textContent = left > 0 ? `in ${fmtDuration(left)}` : 'expiring…';
  return left <= 0;
}

// tickExpiries, every second, moves the countdowns on. When one reaches
// its deadline the key's expiry (a delete by ctxd:ttl) comes on the feed,
// which removes the row; the list and the key shown are read again once
// too, in case a keepalive (which is not on the feed) moved the deadline.
const refreshedAt = new Set();
function tickExpiries() {
  const now = Date.now();
  let due = false;
  for (const e of document.querySelectorAll('time.countdown')) {
    if (!countdownText(e, now)) continue;
    const at = e.getAttribute('datetime');
    if (!refreshedAt.has(at)) {
      refreshedAt.add(at);
      due = true;
    }
  }
  if (!due) return;
  if (refreshedAt.size > 1000) refreshedAt.clear();
  keysSoon();
  const sel = state.selected;
  if (sel && state.record && !state.pit) loadRecord(sel.ns, sel.key);
}

const valueKey = (ns, key) => ns + '\0' + key;

// remember keeps a record's value for the list, at its revision.
// They are bounded, 10,000 values and MAX_KEPT_VALUES of text: a page
// left open all day sees every change of every namespace.
function remember(r) {
  const size = textOf(r).length;
  if (size > MAX_KEPT_VALUES) return;
  if (state.values.size >= 10000 || state.valuesSize + size > MAX_KEPT_VALUES) forgetValues();
  const k = valueKey(r.ns, r.key);
  state.valuesSize += size - textOf(state.values.get(k)).length;
  state.values.set(k, { revision: r.revision, value: r.value });
}

function forgetValues() {
  state.values.clear();
  state.valuesSize = 0;
}

// withKnownValue gives a listed record the value already read for it, if
// the key has not changed since.
function withKnownValue(r) {
  const known = state.values.get(valueKey(r.ns, r.key));
  return known && known.revision === r.revision ? { ...r, value: known.value } : r;
}

// showValue reads one row's value, which the listing left out.
async function showValue(ns, key) {
  try {
    const r = await request('GET', keyPath(ns, key));
    replaceRow({ ...r });
  } catch (e) {
    if (e.status === 404) keysSoon();
    else show($('keys-error'), `Cannot read ${ns}/${key}: ${errorText(e)}`);
  }
}

// replaceRow puts r in place of the row of its key, when it is on the page.
function replaceRow(r) {
  if ('value' in r) remember(r);
  if (r.ns !== state.ns) return;
  const i = state.keys.findIndex((k) => k.key === r.key);
  if (i < 0) return;
  state.keys[i] = r;
  const row = $('key-rows').children[i];
  if (row) row.replaceWith(keyRow(r));
}

function renderKeys() {
  $('key-rows').replaceChildren(...state.keys.map(keyRow));
  const where = state.prefix ? `starting with "${state.prefix}" in ${state.ns}` : `in ${state.ns}`;
  $('keys-caption').textContent = `Keys ${where}, page ${state.pages.length}`;
  show($('keys-empty'), state.keys.length ? '' : state.pages.length > 1 ? 'No more keys.' : `No keys ${where}.`);
  $('prev-page').disabled = state.pages.length <= 1;
  $('next-page').disabled = !state.next;
  $('page-info').textContent = `Page ${state.pages.length}`;
}

function listFrom(ns, prefix) {
  state.asked = { ns, prefix };
  state.ns = ns;
  state.prefix = prefix;
  state.pages = [''];
  $('prefix').value = prefix;
  renderNamespaces();
  setHash();
  return loadKeys();
}

// keysOnChange applies a live change to the page of keys: a row on the page
// is updated at once; anything else (a new key, a delete) reloads the page.
function keysOnChange(m) {
  if (m.op === 'put') remember({ ns: m.ns, key: m.key, revision: m.rev, value: m.value });
  if (m.ns !== state.ns || !m.key.startsWith(state.prefix)) return;
  state.listChanges = (state.listChanges || 0) + 1;
  const i = state.keys.findIndex((r) => r.key === m.key);
  if (i >= 0 && m.op === 'put') {
    replaceRow({ ...state.keys[i], value: m.value, version: m.version, revision: m.rev, who: m.who, updated_at: m.timestamp, expires_at: m.expires_at });
    return;
  }
  keysSoon();
}

// ---------------------------------------------------------------- one key

const loadRecord = latest(async (current, ns, key) => {
  try {
    const r = await request('GET', keyPath(ns, key));
    if (!current() || !isSelected(ns, key)) return;
    // The feed may have brought a newer change while this was read: an
    // answer older than what is shown does not replace it.
    const shown = state.record ? Number(state.record.revision) : state.deleted ? Number(state.deleted.revision) : 0;
    if (Number(r.revision) >= shown) {
      state.record = r;
      state.deleted = null;
    }
    state.recordError = null;
  } catch (e) {
    if (!current() || !isSelected(ns, key)) return;
    if (e.status === 404) {
      state.record = null;
      state.recordError = null;
    } else {
      // No answer about the key (the server unreachable, a token
      // refused, ...): it is not "deleted". What was read stays, marked
      // unknown, and the key is read again once the feed is back.
      state.recordError = errorText(e);
    }
  }
  renderDetail();
});

async function selectKey(ns, key, focus) {
  if (!may('read')) return; // refused (403): renderSelf says why
  state.selected = { ns, key };
  setHash();
  for (const row of $('key-rows').children) {
    const sel = state.ns === ns && row.dataset.key === key;
    row.classList.toggle('selected', sel);
    if (sel) row.setAttribute('aria-current', 'true');
    else row.removeAttribute('aria-current');
  }
  $('detail-empty').hidden = true;
  $('detail-body').hidden = false;
  $('d-key').textContent = key;
  $('d-ns').textContent = ns;
  clearDetail();
  if (focus) $('detail-h').focus();
  await Promise.all([loadRecord(ns, key), loadHistory(true)]);
}

// clearDetail empties the key panel of what was read of the selected key
// (its record, value at a revision, history and diff) until it is read
// again.
function clearDetail() {
  state.record = null;
  state.recordError = null;
  state.deleted = null;
  state.pit = null;
  state.history = [];
  state.historyTruncated = false;
  state.historyNext = null;
  show($('d-state'), '');
  for (const id of ['d-version', 'd-revision', 'd-created', 'd-who', 'd-updated', 'd-expires']) $(id).textContent = '—';
  $('d-value').textContent = '…';
  $('d-value').hidden = false;
  $('pit-current').hidden = true;
  show($('detail-error'), '');
  $('diff-out').hidden = true;
  $('pit-rev').value = '';
  renderHistory();
}

function renderDetail() {
  const sel = state.selected;
  if (!sel) return;
  const r = state.pit || state.record;
  const banner = $('d-state');
  if (state.pit) {
    const now = state.record ? `version ${state.record.version}` : 'deleted';
    show(banner, `Value at revision ${state.pit.atRev}: version ${r.version}, written at revision ${r.revision} by ${r.who}. Now: ${now}.`);
  } else if (state.recordError) {
    show(banner, `Cannot read ${sel.ns}/${sel.key} now (${state.recordError}): ` +
      (r ? 'shown as last read' : 'whether it exists is not known') + '. It is read again when the live feed is connected.');
  } else if (!r) {
    const d = state.deleted;
    show(banner, !d ? 'This key does not exist now. Its history, if any, is below.'
      : d.expired ? `Expired at revision ${d.revision}: its ttl ran out (deleted by ${d.who}). Its history is kept below.`
        : `Deleted at revision ${d.revision} by ${d.who}. Its history is kept below.`);
  } else {
    show(banner, '');
  }
  $('d-version').textContent = r ? String(r.version) : '—';
  $('d-revision').textContent = r ? String(r.revision) : state.deleted ? String(state.deleted.revision) : '—';
  $('d-created').textContent = r && r.create_revision !== undefined ? String(r.create_revision) : '—';
  $('d-who').textContent = r ? r.who : state.deleted ? state.deleted.who : '—';
  $('d-updated').replaceChildren(r ? time(r.updated_at) : state.deleted ? time(state.deleted.time) : '—');
  $('d-expires').replaceChildren(!r ? '—' : state.pit ? (r.expires_at ? time(r.expires_at) : 'never') : r.expires_at ? expiresIn(r.expires_at) : 'never');
  $('d-value').textContent = r ? pretty(r.value) : '';
  $('d-value').hidden = !r;
  $('pit-current').hidden = !state.pit;
  const why = may('write') ? '' : `${tokenText()} may not write.`;
  $('delete-btn').disabled = !!why || !state.record || !!state.pit;
  $('delete-btn').title = why;
  renderFieldEditor();
  $('edit-btn').textContent = state.pit ? 'Edit from this value' : state.record ? 'Edit' : 'Create it again';
  $('edit-btn').disabled = !!why || (!state.record && !state.pit && !!state.recordError);
  $('edit-btn').title = why;
}

// detailOnChange applies a live change to the key shown.
function detailOnChange(m) {
  if (!isSelected(m.ns, m.key)) return;
  if (m.op === 'delete') {
    state.record = null;
    state.deleted = { revision: m.rev, who: m.who, time: m.timestamp, expired: !!m.expired };
  } else {
    const created = Number(m.version) === 1 ? m.rev : state.record ? state.record.create_revision : undefined;
    state.record = {
      ns: m.ns, key: m.key, value: m.value, version: m.version, create_revision: created,
      revision: m.rev, who: m.who, updated_at: m.timestamp, expires_at: m.expires_at,
    };
    state.deleted = null;
  }
  renderDetail();
  historySoon();
  const ed = state.editing;
  if (!ed || ed.ns !== m.ns || ed.key !== m.key) return;
  if (state.saving) {
    // This tab's save is in flight, and the feed may bring its change
    // before the answer: saveKey judges the changes after it once it
    // knows its revision.
    state.saving.changes.push(m);
    return;
  }
  warnStale(m);
}

// warnStale says that the key being edited changed after it was loaded,
// when m is not the version the next save expects.
function warnStale(m) {
  const expected = $('set-version').value.trim();
  if (expected === '' || String(m.version) === expected) return;
  show($('set-stale'), m.op === 'delete'
    ? `${m.ns}/${m.key} was deleted by ${m.who} after you loaded it: saving will report a conflict.`
    : `${m.ns}/${m.key} changed after you loaded it: now version ${m.version}, by ${m.who}. Saving will report a conflict.`);
}

async function showAt(rev) {
  const sel = state.selected;
  show($('detail-error'), '');
  try {
    const r = await request('GET', keyPath(sel.ns, sel.key), { query: { rev } });
    if (!isSelected(sel.ns, sel.key)) return;
    state.pit = { ...r, atRev: rev };
    $('pit-rev').value = String(rev);
    renderDetail();
  } catch (e) {
    let msg = errorText(e);
    if (e.code === 'not_found') msg = `${sel.key} did not exist at revision ${rev}.`;
    else if (e.code === 'compacted') msg = `Revision ${rev} can no longer be read: history before revision ${e.detail.compacted_revision ?? '?'} has been compacted.`;
    else if (e.code === 'future_revision') msg = `Revision ${rev} has not happened yet (the server is at revision ${state.lastRev}).`;
    show($('detail-error'), msg);
  }
}

// ---------------------------------------------------------------- history and diff

const loadHistory = latest(async (current, reset) => {
  const sel = state.selected;
  if (!sel) return;
  const query = reset
    ? { limit: Math.min(1000, Math.max(HISTORY_PAGE, state.history.length)) }
    : { limit: HISTORY_PAGE, before: state.historyNext };
  try {
    const r = await request('GET', keyPath(sel.ns, sel.key) + '/history', { query });
    if (!current() || !isSelected(sel.ns, sel.key)) return;
    const changes = r.changes || [];
    state.history = reset ? changes : state.history.concat(changes);
    state.historyNext = r.next ?? null;
    state.historyTruncated = !!r.truncated;
  } catch (e) {
    if (!current() || !isSelected(sel.ns, sel.key)) return;
    if (e.status !== 404) show($('detail-error'), 'Cannot read the history: ' + errorText(e));
    if (reset) { state.history = []; state.historyNext = null; }
  }
  renderHistory();
});
const historySoon = throttled(() => loadHistory(true), 500);

function changeLabel(c) {
  return `revision ${c.revision}, version ${c.version}, ${c.op} by ${c.who}`;
}

function renderHistory() {
  const list = state.history;
  $('history-rows').replaceChildren(...list.map((c, i) => {
    const older = list[i + 1];
    return h('tr', { dataset: { rev: c.revision } },
      h('td', { class: 'num' }, String(c.revision)),
      h('td', { class: 'op-' + c.op }, c.op),
      h('td', { class: 'num' }, String(c.version)),
      h('td', null, c.who),
      h('td', null, time(c.time)),
      h('td', { class: 'value' }, c.op === 'delete' ? h('span', { class: 'muted' }, c.expired ? '(expired)' : '(deleted)') : h('code', null, preview(c.value, 40))),
      h('td', { class: 'actions' },
        c.op === 'put' ? h('button', { type: 'button', 'aria-label': `View the value at revision ${c.revision}`, onclick: () => showAt(c.revision) }, 'View') : null,
        older ? h('button', { type: 'button', 'aria-label': `Diff revision ${older.revision} to ${c.revision}`, onclick: () => showDiff(older.revision, c.revision) }, 'Diff') : null));
  }));
  if (!list.length) {
    $('history-rows').append(h('tr', null, h('td', { colspan: 7, class: 'muted' }, state.selected ? 'No history.' : '')));
  }
  $('history-more').hidden = state.historyNext === null;
  show($('history-cut'), state.historyNext === null && state.historyTruncated ? 'Older changes were discarded by compaction.' : '');
  for (const [id, def] of [['diff-from', 1], ['diff-to', 0]]) {
    const sel = $(id);
    const keep = sel.value;
    sel.replaceChildren(...list.map((c) => h('option', { value: c.revision }, changeLabel(c))));
    if (list.some((c) => String(c.revision) === keep)) sel.value = keep;
    else if (list.length) sel.value = String(list[Math.min(def, list.length - 1)].revision);
  }
  $('diff-form').hidden = list.length < 2;
}

function valueText(c) {
  return c.op === 'delete' ? '(deleted)' : pretty(c.value);
}

function showDiff(fromRev, toRev) {
  const a = state.history.find((c) => String(c.revision) === String(fromRev));
  const b = state.history.find((c) => String(c.revision) === String(toRev));
  if (!a || !b) return;
  $('diff-from').value = String(a.revision);
  $('diff-to').value = String(b.revision);
  const { lines, exact } = diffLines(valueText(a), valueText(b));
  const removed = lines.filter((l) => l.op === '-').length;
  const added = lines.filter((l) => l.op === '+').length;
  const head = `From ${changeLabel(a)} to ${changeLabel(b)}: `;
  $('diff-summary').textContent = removed + added === 0
    ? head + 'the same value.'
    : head + `${removed} ${removed === 1 ? 'line' : 'lines'} removed, ${added} added.` + (exact ? '' : ' (Large values: the changed part is shown as a whole.)');
  $('diff').replaceChildren(...hunks(lines).map((l) => (l.op === '…'
    ? h('span', { class: 'skip' }, `… ${l.skipped} unchanged ${l.skipped === 1 ? 'line' : 'lines'}\n`)
    : h('span', { class: l.op === '+' ? 'add' : l.op === '-' ? 'del' : 'ctx' }, `${l.op} ${l.line}\n`))));
  $('diff-out').hidden = false;
}

// ---------------------------------------------------------------- one field

// textOf is the text of a record's value: answers and the feed carry it
// as a JSONText (its text as stored), which json.js reads into.
const textOf = (r) => (r && r.value ? r.value.text : '');

// renderFieldEditor offers the field form for the current value of an
// object key, with its members as suggestions.
function renderFieldEditor() {
  const names = state.record && !state.pit ? memberNames(textOf(state.record)) : null;
  $('field-form').hidden = !names;
  if (!names) return;
  $('field-paths').replaceChildren(...names.map((k) => h('option', { value: pointerOf(k) })));
}

// pointerOf is the JSON pointer of a top-level member.
const pointerOf = (name) => '/' + name.replaceAll('~', '~0').replaceAll('/', '~1');

// fieldPointer reads the field input: a JSON pointer ("/limits/cpu"), or
// a member name ("debug").
function fieldPointer() {
  const f = $('field-path').value;
  return f.startsWith('/') ? f : pointerOf(f);
}

// fieldChosen fills the value input with the field's current value, its
// text as stored.
function fieldChosen() {
  const r = state.record;
  if (!r || !$('field-path').value) return;
  const v = textAt(textOf(r), fieldPointer());
  $('field-value').value = v === undefined ? '' : v; // a new field starts empty
}

// saveField changes one field of the value with a JSON Patch: the server
// applies it to the value as it is then, so a change someone made to
// another field meanwhile is kept (no version to expect).
async function saveField(ev) {
  ev.preventDefault();
  show($('field-result'), '');
  show($('field-error'), '');
  const sel = state.selected;
  if (!sel || !$('field-path').value) {
    show($('field-error'), 'Field: give a member name or a JSON pointer such as /limits/cpu.');
    return;
  }
  const text = $('field-value').value.trim();
  try {
    parse(text);
  } catch (e) {
    show($('field-error'), `The new value is not valid JSON (${e.message}): text goes in double quotes.`);
    $('field-value').focus();
    return;
  }
  const pointer = fieldPointer();
  // Set the field: replace one that exists (add would insert into an
  // array, before the element shown), add one that does not (a new
  // member, or "-" to append to an array). The value's text goes in as
  // typed: its numbers keep every digit.
  const op = state.record && textAt(textOf(state.record), pointer) !== undefined ? 'replace' : 'add';
  const body = `[{"op":"${op}","path":${JSON.stringify(pointer)},"value":${text}}]`;
  const button = ev.submitter || $('field-form').querySelector('button[type=submit]');
  button.disabled = true;
  try {
    const r = await request('PATCH', keyPath(sel.ns, sel.key), { body, headers: { 'Content-Type': 'application/json-patch+json' }, query: { who: who() } });
    show($('field-result'), `Saved ${pointer} of ${sel.ns}/${sel.key}: version ${r.version} at revision ${r.revision}.`);
    state.lastRev = Math.max(state.lastRev, Number(r.revision));
    if (isSelected(r.ns, r.key)) {
      state.record = r;
      renderDetail();
    }
    replaceRow(r);
    historySoon();
  } catch (e) {
    const where = e.detail && e.detail.pointer !== undefined ? ` (at ${e.detail.pointer || 'the whole value'})` : '';
    show($('field-error'), `Not saved${where}: ${errorText(e)}`);
  } finally {
    button.disabled = false;
  }
}

// ---------------------------------------------------------------- set and delete

function loadEditor() {
  const sel = state.selected;
  if (!sel) return;
  const shown = state.pit || state.record;
  $('set-ns').value = sel.ns;
  $('set-key').value = sel.key;
  $('set-value').value = shown ? pretty(shown.value) : '';
  $('set-as-string').checked = false;
  // CAS against what is current, even when starting from an older value.
  $('set-version').value = state.record ? String(state.record.version) : '0';
  state.editing = { ns: sel.ns, key: sel.key };
  // An expiring key keeps its deadline through a save from here unless
  // unticked: a put without a ttl makes a key permanent, which an edit of
  // its value did silently.
  const at = !state.pit && state.record && state.record.expires_at;
  state.editDeadline = at ? { ns: sel.ns, key: sel.key, at } : null;
  $('set-ttl-row').hidden = !at;
  $('set-keep-ttl').checked = true;
  $('set-ttl-at').replaceChildren(at ? time(at) : '');
  clearEditorMessages();
  $('editor').scrollIntoView({ block: 'nearest' });
  $('set-value').focus();
}

function clearEditorMessages() {
  show($('set-result'), '');
  show($('set-error'), '');
  show($('set-stale'), '');
  $('set-conflict').hidden = true;
}

let conflictAt = null; // {ns, key, current} of the conflict shown

function showConflict(ns, key, expected, current) {
  let text;
  if (expected === 0) text = `Conflict: ${ns}/${key} already exists (version ${current}), and expected version 0 only creates a key. Nothing was saved.`;
  else if (!current) text = `Conflict: ${ns}/${key} does not exist any more (you expected version ${expected}). Nothing was saved.`;
  else text = `Conflict: ${ns}/${key} is at version ${current}, not version ${expected} as expected: it was changed after you loaded it. Nothing was saved.`;
  conflictAt = { ns, key, current };
  $('set-conflict-text').textContent = text;
  $('conflict-expect').textContent = current ? `Expect version ${current}` : 'Expect no key (version 0)';
  $('set-conflict').hidden = false;
}

async function saveKey(ev) {
  ev.preventDefault();
  clearEditorMessages();
  const ns = $('set-ns').value.trim();
  const key = $('set-key').value;
  if (!NS_RE.test(ns)) {
    show($('set-error'), 'Namespace: 1 to 64 characters of A-Z a-z 0-9 . _ -');
    $('set-ns').focus();
    return;
  }
  if (!key) {
    show($('set-error'), 'Key: give a key name.');
    $('set-key').focus();
    return;
  }
  let body = $('set-value').value;
  if ($('set-as-string').checked) {
    body = JSON.stringify(body);
  } else {
    try {
      parse(body);
    } catch (e) {
      show($('set-error'), `The value is not valid JSON (${e.message}). To store text, put it in double quotes or tick "Store the text as a JSON string".`);
      $('set-value').focus();
      return;
    }
  }
  const expected = $('set-version').value.trim();
  // A number field reads '' for what is not a number: badInput tells.
  if ($('set-version').validity.badInput || (expected !== '' && !/^\d+$/.test(expected))) {
    show($('set-error'), 'Expected version: empty, 0 or a version number.');
    $('set-version').focus();
    return;
  }
  const headers = expected === '' ? {} : { 'If-Match': expected };
  const query = { who: who() };
  const dl = state.editDeadline;
  if (dl && !$('set-ttl-row').hidden && $('set-keep-ttl').checked && dl.ns === ns && dl.key === key) {
    // What is left of it (a ttl is at least a second).
    query.ttl = Math.max(Date.parse(dl.at) - Date.now(), 1000) + 'ms';
  }
  const button = ev.submitter || $('set-form').querySelector('button[type=submit]');
  button.disabled = true;
  const saving = { changes: [] };
  state.saving = saving;
  try {
    const r = await request('PUT', keyPath(ns, key), { body, headers, query });
    show($('set-result'), `Saved ${ns}/${key}: version ${r.version} at revision ${r.revision}.`);
    remember(r);
    $('set-version').value = String(r.version); // the next save is a CAS on this one
    state.editing = { ns, key };
    // Changes the feed brought during the save: only those after it are
    // someone else's since.
    for (const m of saving.changes) {
      if (m.ns === ns && m.key === key && Number(m.rev) > Number(r.revision)) warnStale(m);
    }
    state.lastRev = Math.max(state.lastRev, Number(r.revision));
    if (ns !== state.ns) listFrom(ns, '');
    else loadKeys();
    statusSoon();
    selectKey(ns, key, false);
  } catch (e) {
    if (e.code === 'conflict') showConflict(ns, key, Number(expected), Number(e.detail.current_version ?? 0));
    else {
      show($('set-error'), `Not saved: ${errorText(e)}`);
      // Refused: none of them is this tab's. (Unknown outcome, or no
      // answer: one may be; the error says to read the key.)
      if (e.status !== 0 && e.code !== 'outcome_unknown') for (const m of saving.changes) warnStale(m);
    }
  } finally {
    if (state.saving === saving) state.saving = null;
    button.disabled = false;
  }
}

async function deleteKey() {
  const r = state.record;
  if (!r) return;
  const ok = await confirmDialog({
    title: `Delete ${r.key}?`,
    body: [`Delete ${r.ns}/${r.key}, only if it is still at version ${r.version} (the version shown). Its history is kept.`],
    ok: 'Delete',
  });
  if (!ok) return;
  show($('detail-error'), '');
  try {
    const d = await request('DELETE', keyPath(r.ns, r.key), { headers: { 'If-Match': String(r.version) }, query: { who: who() } });
    notify(`Deleted ${r.ns}/${r.key} at revision ${d.revision}.`);
    if (isSelected(r.ns, r.key)) {
      state.record = null;
      state.deleted = { revision: d.revision, who: d.who, time: d.updated_at };
      renderDetail();
      loadHistory(true);
    }
    loadKeys();
    statusSoon();
  } catch (e) {
    if (e.code === 'conflict') {
      await loadRecord(r.ns, r.key);
      const cur = Number(e.detail.current_version ?? 0);
      show($('detail-error'), cur
        ? `Conflict: ${r.ns}/${r.key} is at version ${cur}, not version ${r.version} as shown: it was changed meanwhile. Nothing was deleted; the current value is shown.`
        : `Conflict: ${r.ns}/${r.key} was already deleted. Nothing was deleted.`);
    } else {
      show($('detail-error'), `Not deleted: ${errorText(e)}`);
    }
  }
}

// ---------------------------------------------------------------- live events

function eventMatches(m) {
  const ns = $('live-ns').value.trim();
  const prefix = $('live-prefix').value;
  if (m.type === 'reset') return true;
  return (!ns || ns === '*' || m.ns === ns) && (!prefix || m.key.startsWith(prefix));
}

function eventItem(m) {
  if (m.type === 'reset') {
    return h('li', { class: 'event reset', dataset: { rev: m.rev } },
      h('span', { class: 'rev' }, 'r' + m.rev), ' ',
      h('strong', null, 'reset'), ' ',
      h('span', null, m.message || 'the database was restored from a snapshot: the changes above came before it'));
  }
  return h('li', { class: 'event ' + m.op, dataset: { rev: m.rev, key: m.key, ns: m.ns } },
    h('span', { class: 'rev' }, 'r' + m.rev), ' ',
    h('span', { class: 'op' }, m.op), ' ',
    h('button', { type: 'button', class: 'link where', onclick: () => selectKey(m.ns, m.key, true) }, `${m.ns}/${m.key}`), ' ',
    h('span', { class: 'ver' }, 'v' + m.version), ' ',
    h('span', { class: 'who' }, m.who), ' ',
    time(m.timestamp), ' ',
    m.op === 'delete' ? h('span', { class: 'val muted' }, m.expired ? '(expired)' : '(deleted)') : h('code', { class: 'val' }, m.preview));
}

let pendingEvents = [];
let flushTimer = 0;

function flushEvents() {
  flushTimer = 0;
  if (pendingEvents.length > MAX_EVENTS) pendingEvents.splice(0, pendingEvents.length - MAX_EVENTS);
  const list = $('live-list');
  const frag = document.createDocumentFragment();
  for (const m of pendingEvents.reverse()) frag.append(eventItem(m)); // newest first
  pendingEvents = [];
  list.prepend(frag);
  while (list.children.length > MAX_EVENTS) list.lastChild.remove();
  renderLiveState(); // the last revision
}

// addEvent lists a change (or a reset) on the live feed. It is kept with
// a preview of its value, not the value: 500 changes of a 1 MB value
// would hold 500 MB.
function addEvent(change) {
  const { value, ...m } = change;
  if (m.op === 'put') m.preview = preview(value, 160);
  state.events.unshift(m);
  if (state.events.length > MAX_EVENTS) state.events.length = MAX_EVENTS;
  if (state.paused) {
    state.held++;
    renderLiveState();
    return;
  }
  if (!eventMatches(m)) return;
  pendingEvents.push(m);
  if (!flushTimer) flushTimer = setTimeout(flushEvents, 30);
}

function renderEvents() {
  pendingEvents = [];
  // While paused, the newest state.held events are held: not shown, also
  // when a filter changes meanwhile (they appeared then).
  const shown = state.paused ? state.events.slice(state.held) : state.events;
  $('live-list').replaceChildren(...shown.filter(eventMatches).map(eventItem));
}

let feedState = { state: 'connecting' };
// laggedAt: the revision the feed resumes after when the server closed
// it for falling behind ('' when not given), until it is live again (the
// server took the resume: a resume from compacted history is refused
// first), or restarted (resync); else null.
let laggedAt = null;

function renderLiveState() {
  const s = feedState;
  const conn = $('conn');
  conn.title = ''; // the reason the server is not ready, only while that is shown
  if (state.needToken) {
    conn.dataset.state = 'token';
    conn.textContent = 'Live feed: needs an access token';
    showTokenNeeded($('live-state'), 'The live feed', ': it is not connected, and does not try to connect while there is none');
    return;
  }
  if (!may('read')) {
    conn.dataset.state = 'noread';
    conn.textContent = 'Live feed: off (the token may not read)';
    return;
  }
  conn.dataset.state = s.state;
  const names = { connecting: 'connecting', live: 'connected', reconnecting: 'reconnecting', stopped: 'stopped' };
  conn.textContent = 'Live feed: ' + (names[s.state] || s.state);
  if (state.notReady && s.state === 'live') {
    // Connected to ctxd, whose store is unavailable: reads fail.
    conn.dataset.state = 'notready';
    conn.textContent = 'Live feed: connected, server not ready';
    conn.title = state.notReady;
  }
  const resumeAt = state.feed && state.feed.lastRev !== null ? state.feed.lastRev : null;
  let text;
  if (s.state === 'live') text = 'Connected: changes appear as they are committed' + (resumeAt !== null ? ` (last revision ${resumeAt}).` : '.');
  else if (s.state === 'reconnecting' && s.detail) {
    text = `Disconnected (${s.detail.why}). Reconnecting in ${Math.ceil(s.detail.wait / 1000)} s` +
      (resumeAt !== null ? `, resuming after revision ${resumeAt}.` : '.');
  } else if (s.state === 'reconnecting') text = 'Reconnecting' + (resumeAt !== null ? `, resuming after revision ${resumeAt}.` : '.');
  else text = names[s.state] ? `Live feed ${names[s.state]}.` : '';
  if (state.paused) text = `Paused: ${state.held} new ${state.held === 1 ? 'change' : 'changes'} held (the newest ${MAX_EVENTS} are kept). ` + text;
  $('live-state').textContent = text;
}

function togglePause() {
  state.paused = !state.paused;
  const b = $('live-pause');
  b.setAttribute('aria-pressed', String(state.paused));
  b.textContent = state.paused ? 'Resume' : 'Pause';
  if (!state.paused) {
    state.held = 0;
    renderEvents();
  }
  renderLiveState();
}

// reloadAll re-reads everything shown, the live feed going on as it is
// (after a restore, whose reset it brings first).
function reloadAll() {
  loadStatus();
  reloadPanels();
}

// resync re-reads everything shown and restarts the feed (after a new
// token, a change of its rights, or when the feed's history was
// compacted away), in the order of the first load: what the token may
// do, the status, then the feed, resuming after the last change it
// handled or, when it handled none, after the status's revision, then the
// other panels. A change made meanwhile is then in a
// panel or on the feed (or both: applying it again is harmless), never
// in neither, and is listed once in the live events.
const resync = latest(async (current) => {
  state.needToken = false;
  // The feed restarts: once live it has not resumed from a lagged close,
  // whatever it missed since (compacted away, another token's rights).
  laggedAt = null;
  // What the new token may do, before the panels are read: the list
  // moves to what it may read, and a token that may not read reads none.
  await loadSelf();
  if (!current()) return;
  const s = await loadStatus();
  if (!current()) return;
  fitToToken(false);
  // Without a token (refused, and the prompt cancelled) the feed would
  // only be refused; the panels say so. So would it for a token that
  // may not read.
  if (!may('read')) state.feed.stop();
  else if (!state.needToken) state.feed.restart(s ? s.revision : null);
  reloadPanels();
});

// reloadPanels re-reads every panel but the status.
function reloadPanels() {
  loadNamespaces();
  loadKeys();
  loadSnapshots();
  loadDumps();
  if (state.selected && may('read')) {
    // Whatever was shown is no longer a bound for what is read (a restore
    // can bring a key back at an older revision).
    state.record = null;
    state.deleted = null;
    loadRecord(state.selected.ns, state.selected.key);
    loadHistory(true);
  }
}

// startFeed connects the live feed: from now, or after revision from.
function startFeed(from) {
  state.feed = new LiveFeed({
    change(m) {
      state.lastRev = Math.max(state.lastRev, Number(m.rev));
      if (state.status) renderStatus();
      keysOnChange(m);
      detailOnChange(m);
      // A create or a delete changes a namespace's count (or the list).
      if (m.op === 'delete' || Number(m.version) === 1 || !state.namespaces.some((n) => n.name === m.ns)) namespacesSoon();
      addEvent(m);
      statusSoon();
    },
    state(s) {
      const was = feedState.state;
      feedState = s;
      renderLiveState();
      // A reload of the tokens file while the feed was away (its
      // token_revoked went nowhere) may have changed what the token may
      // do: ask again at every (re)connection.
      if (s.state === 'live' && was !== 'live') {
        recheckSelf();
        // Not resumed when the server's data is behind the resume point:
        // its reset follows, and says what happened.
        if (laggedAt !== null && !(s.detail && s.detail.behind)) {
          notify('The live feed fell behind the changes and was closed by the server; it reconnected and resumed ' +
            (laggedAt !== '' ? `after revision ${laggedAt}` : 'after the last change it had') + ': no change is missed.');
        }
        laggedAt = null;
      }
      // A key that could not be read (the server was away) is read
      // again once the server answers the feed.
      const sel = state.selected;
      if (s.state === 'live' && sel && state.recordError) loadRecord(sel.ns, sel.key);
    },
    reset(m) {
      // The revision may have gone back (a server started on an older
      // backup, or empty): what was seen before is no bound any more,
      // for the revision shown nor for the values kept by revision.
      state.lastRev = Number(m.rev);
      forgetValues();
      if (state.status) {
        state.status.revision = m.rev;
        renderStatus();
      }
      notify('The database was replaced (a restore, or a server started on other data): everything shown has been re-read.');
      addEvent({ ...m, type: 'reset' });
      reloadAll();
    },
    compacted() {
      notify('The live feed missed changes that history no longer holds: everything shown has been re-read.');
      resync();
    },
    notice(m) {
      if (m.type === 'context_dumped') loadDumps();
      else if (m.type === 'error' && m.code === 'lagged') {
        // The server closes a feed that fell behind, telling it where to
        // resume (its message advises a client to reconnect with
        // from_rev): the feed does that by itself; the page says so once
        // it has.
        laggedAt = m.from_rev ?? '';
      } else if (m.type === 'error') {
        notify(`Live feed: ${m.message || m.code}`);
        // A reload changed or removed the token: what it may do now.
        if (m.code === 'token_revoked') recheckSelf();
      }
    },
    failing() {
      // A reload while the feed was away may have taken the read right
      // (or the token): then every try is refused and the feed never
      // connects to make the page ask (state above). Ask now.
      recheckSelf();
      loadStatus(); // a 401 there asks for the token; the feed uses it next
    },
  });
  if (from !== undefined && from !== null) state.feed.at(from, 0);
  // Without a token the first status read asked for, it would only be
  // refused: it starts when one is given (askToken).
  if (state.needToken || !may('read')) renderLiveState();
  else state.feed.start();
}

// ---------------------------------------------------------------- snapshots

let snapshotsEnabled = true;

const loadSnapshots = latest(async (current) => {
  if (!may('admin')) {
    // Refused (403) for such a token: renderAdmin says why.
    $('snap-rows').replaceChildren();
    show($('snap-empty'), '');
    show($('snap-error'), '');
    return;
  }
  try {
    const r = await request('GET', '/v1/snapshots');
    if (!current()) return;
    snapshotsEnabled = true;
    show($('snap-error'), '');
    renderSnapshots(r.snapshots || []);
  } catch (e) {
    if (!current()) return;
    renderSnapshots([]); // not the list read with another token
    if (e.status === 404 || e.status === 405) {
      snapshotsEnabled = false;
      show($('snap-error'), 'Snapshots are not enabled on this server.');
    } else if (e.status === 401) {
      showTokenNeeded($('snap-error'), 'Listing the snapshots');
    } else {
      show($('snap-error'), 'Cannot list the snapshots: ' + errorText(e));
    }
  }
  $('snap-create').disabled = !snapshotsEnabled || !may('admin');
});

function renderSnapshots(list) {
  $('snap-rows').replaceChildren(...list.map((m) => {
    const path = `/v1/snapshots/${enc(m.id)}`;
    const keys = (m.namespaces || []).map((n) => `${n.name}: ${n.keys}`).join(', ');
    return h('tr', { dataset: { id: m.id } },
      h('th', { scope: 'row' }, h('code', null, m.id), m.origin && m.origin !== 'api' ? h('span', { class: 'muted' }, ` (${m.origin})`) : null),
      h('td', { class: 'num' }, String(m.revision)),
      h('td', { class: 'wide' }, time(m.created)),
      h('td', { class: 'num' }, fmtBytes(m.size)),
      h('td', { class: 'wide' }, keys || '—'),
      h('td', { class: 'actions' },
        h('a', { href: path, download: `${m.id}.db`, class: 'button', 'aria-label': `Download snapshot ${m.id}`, onclick: (ev) => downloadLink(ev, path, `${m.id}.db`) }, 'Download'),
        h('button', { type: 'button', 'aria-label': `Dry run: what restoring ${m.id} would change`, onclick: () => dryRun(m) }, 'Dry run'),
        h('button', { type: 'button', class: 'danger', 'aria-label': `Restore snapshot ${m.id}…`, onclick: () => restore(m) }, 'Restore…'),
        h('button', { type: 'button', 'aria-label': `Delete snapshot ${m.id}…`, onclick: () => deleteSnapshot(m) }, 'Delete…')));
  }));
  show($('snap-empty'), list.length ? '' : 'No snapshots yet.');
}

// downloadLink lets the browser follow a download link, unless a token is
// needed: then the file is fetched with it.
function downloadLink(ev, path, name) {
  if (!token()) return;
  ev.preventDefault();
  download(path, name).catch((e) => notify(`Download failed: ${errorText(e)}`));
}

async function createSnapshot() {
  const b = $('snap-create');
  b.disabled = true;
  b.textContent = 'Creating…';
  show($('snap-error'), '');
  show($('snap-result'), '');
  try {
    const m = await request('POST', '/v1/snapshots');
    show($('snap-result'), `Snapshot ${m.id} created at revision ${m.revision} (${fmtBytes(m.size)}).`);
    await loadSnapshots();
  } catch (e) {
    show($('snap-error'), 'Snapshot not created: ' + errorText(e));
  } finally {
    b.disabled = !snapshotsEnabled || !may('admin');
    b.textContent = 'Create snapshot';
  }
}

function diffTable(res) {
  return h('table', { class: 'drytable' },
    h('thead', null, h('tr', null, ...['Namespace', 'Added', 'Removed', 'Changed', 'Unchanged'].map((t, i) => h('th', { scope: 'col', class: i ? 'num' : null }, t)))),
    h('tbody', null, ...(res.namespaces || []).map((n) => h('tr', null,
      h('th', { scope: 'row' }, n.ns),
      h('td', { class: 'num' }, String(n.added)),
      h('td', { class: 'num' }, String(n.removed)),
      h('td', { class: 'num' }, String(n.changed)),
      h('td', { class: 'num' }, String(n.unchanged))))));
}

async function dryRunOf(m) {
  return request('POST', `/v1/snapshots/${enc(m.id)}/restore`, { query: { dry_run: 'true' } });
}

async function dryRun(m) {
  show($('snap-error'), '');
  show($('snap-result'), '');
  const out = $('snap-dry');
  try {
    const res = await dryRunOf(m);
    out.replaceChildren(
      h('p', { role: 'status' }, `Dry run: restoring ${m.id} (revision ${res.snapshot_revision}) now (revision ${res.revision}) would change this. Nothing was changed.`),
      diffTable(res));
    out.hidden = false;
  } catch (e) {
    show($('snap-error'), `Dry run of ${m.id} failed: ${errorText(e)}`);
  }
}

async function restore(m) {
  show($('snap-error'), '');
  show($('snap-result'), '');
  let res;
  try {
    res = await dryRunOf(m);
  } catch (e) {
    show($('snap-error'), `Cannot restore ${m.id}: ${errorText(e)}`);
    return;
  }
  const ok = await confirmDialog({
    title: `Restore ${m.id}?`,
    body: [
      `This replaces the whole live database with the snapshot taken at revision ${res.snapshot_revision}. ` +
        `The keys become what they were then; history after it is no longer readable. Every live viewer is told to re-read.`,
      diffTable(res),
    ],
    ok: 'Restore',
  });
  if (!ok) return;
  try {
    const r = await request('POST', `/v1/snapshots/${enc(m.id)}/restore`, { query: { who: who() } });
    show($('snap-result'), `Restored ${m.id}: the database is now at revision ${r.revision}.`);
    $('snap-dry').hidden = true;
    reloadAll();
  } catch (e) {
    show($('snap-error'), `Restore of ${m.id} failed, nothing was changed: ${errorText(e)}`);
  }
}

async function deleteSnapshot(m) {
  const ok = await confirmDialog({ title: `Delete snapshot ${m.id}?`, body: [`The snapshot file (revision ${m.revision}, ${fmtBytes(m.size)}) is removed from the server.`], ok: 'Delete' });
  if (!ok) return;
  try {
    await request('DELETE', `/v1/snapshots/${enc(m.id)}`);
    show($('snap-result'), `Snapshot ${m.id} deleted.`);
    loadSnapshots();
  } catch (e) {
    show($('snap-error'), `Snapshot ${m.id} not deleted: ${errorText(e)}`);
  }
}

// ---------------------------------------------------------------- dumps

const loadDumps = latest(async (current) => {
  if (!may('admin')) {
    // Refused (403) for such a token: renderAdmin says why.
    $('dump-rows').replaceChildren();
    show($('dump-empty'), '');
    show($('dump-error'), '');
    $('dump-dir').textContent = '';
    return;
  }
  try {
    const r = await request('GET', '/v1/dumps');
    if (!current()) return;
    show($('dump-error'), '');
    const list = r.dumps || [];
    $('dump-rows').replaceChildren(...list.map((f) => {
      const path = `/v1/dumps/${enc(f.filename)}`;
      return h('tr', { dataset: { file: f.filename } },
        h('th', { scope: 'row' }, h('code', null, f.filename)),
        h('td', { class: 'num' }, fmtBytes(f.size)),
        h('td', { class: 'wide' }, time(f.modified)),
        h('td', { class: 'actions' },
          h('a', { href: path, download: f.filename, class: 'button', 'aria-label': `Download ${f.filename}`, onclick: (ev) => downloadLink(ev, path, f.filename) }, 'Download')));
    }));
    show($('dump-empty'), list.length ? '' : 'No dump files yet.');
    $('dump-dir').textContent = r.dump_directory ? `Folder on the server: ${r.dump_directory}` : '';
  } catch (e) {
    if (!current()) return;
    $('dump-rows').replaceChildren(); // not the list read with another token
    if (e.status === 401) showTokenNeeded($('dump-error'), 'Listing the dumps');
    else show($('dump-error'), (e.code === 'unavailable' ? 'Dumps are not available: ' : 'Cannot list the dumps: ') + errorText(e));
  }
});

async function createDump(ev) {
  ev.preventDefault();
  show($('dump-error'), '');
  show($('dump-result'), '');
  const ns = $('dump-ns').value;
  const query = {
    format: $('dump-format').value,
    filename: $('dump-filename').value.trim(),
    history: $('dump-history').checked ? 'true' : '',
    who: who(),
  };
  const button = ev.submitter || $('dump-form').querySelector('button[type=submit]');
  button.disabled = true;
  try {
    const r = await request('POST', `/v1/ns/${enc(ns)}/dumps`, { query });
    show($('dump-result'), `Wrote ${r.filename}: ${r.key_count} ${r.key_count === 1 ? 'key' : 'keys'} of ${r.namespace} at revision ${r.revision}, ${fmtBytes(r.file_size)}.`);
    loadDumps();
  } catch (e) {
    show($('dump-error'), 'Dump not written: ' + errorText(e));
  } finally {
    button.disabled = false;
  }
}

// ---------------------------------------------------------------- wiring

function wire() {
  onTokenNeeded(askToken);
  onNoToken(tokenMissing);
  $('token-button').addEventListener('click', enterToken);

  $('ns-select').addEventListener('change', (ev) => listFrom(ev.target.value, state.prefix));
  $('key-search').addEventListener('submit', (ev) => {
    ev.preventDefault();
    listFrom($('ns-select').value, $('prefix').value);
  });
  let prefixTimer = 0;
  $('prefix').addEventListener('input', () => {
    clearTimeout(prefixTimer);
    prefixTimer = setTimeout(() => listFrom($('ns-select').value, $('prefix').value), 300);
  });
  $('page-size').addEventListener('change', (ev) => {
    state.pageSize = Number(ev.target.value);
    state.pages = [''];
    loadKeys();
  });
  $('next-page').addEventListener('click', () => {
    if (!state.next) return;
    state.pages.push(state.next);
    loadKeys();
  });
  $('prev-page').addEventListener('click', () => {
    if (state.pages.length > 1) state.pages.pop();
    loadKeys();
  });

  $('edit-btn').addEventListener('click', loadEditor);
  $('field-form').addEventListener('submit', saveField);
  $('field-path').addEventListener('change', fieldChosen);
  $('delete-btn').addEventListener('click', deleteKey);
  $('pit-current').addEventListener('click', () => {
    state.pit = null;
    $('pit-rev').value = '';
    show($('detail-error'), '');
    renderDetail();
  });
  $('pit-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const rev = $('pit-rev').value.trim();
    if (!/^[1-9]\d*$/.test(rev)) {
      show($('detail-error'), 'Revision: a number from 1.');
      return;
    }
    showAt(rev);
  });
  $('history-more').addEventListener('click', () => loadHistory(false));
  $('diff-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    showDiff($('diff-from').value, $('diff-to').value);
  });

  const who0 = (() => { try { return localStorage.getItem(WHO_KEY); } catch { return null; } })();
  $('set-who').value = who0 || 'dashboard';
  $('set-who').addEventListener('change', () => { try { localStorage.setItem(WHO_KEY, who()); } catch { /* not kept */ } });
  $('set-form').addEventListener('submit', saveKey);
  for (const id of ['set-ns', 'set-key']) {
    $(id).addEventListener('input', () => {
      const ed = state.editing;
      if (ed && (ed.ns !== $('set-ns').value.trim() || ed.key !== $('set-key').value)) {
        state.editing = null;
        $('set-version').value = '';
        show($('set-stale'), '');
        $('set-ttl-row').hidden = true; // another key: no deadline to keep
      }
    });
  }
  $('set-clear').addEventListener('click', () => {
    $('set-key').value = '';
    $('set-value').value = '';
    $('set-version').value = '';
    $('set-as-string').checked = false;
    $('set-ttl-row').hidden = true;
    state.editing = null;
    clearEditorMessages();
    $('set-key').focus();
  });
  $('conflict-show').addEventListener('click', () => {
    if (conflictAt) selectKey(conflictAt.ns, conflictAt.key, true);
  });
  $('conflict-expect').addEventListener('click', () => {
    if (!conflictAt) return;
    $('set-version').value = String(conflictAt.current || 0);
    $('set-conflict').hidden = true;
    $('set-value').focus();
  });

  $('live-ns').addEventListener('input', renderEvents);
  $('live-prefix').addEventListener('input', renderEvents);
  $('live-filter').addEventListener('submit', (ev) => ev.preventDefault());
  $('live-pause').addEventListener('click', togglePause);
  $('live-clear').addEventListener('click', () => {
    state.events = [];
    state.held = 0;
    renderEvents();
    renderLiveState();
  });

  $('snap-create').addEventListener('click', createSnapshot);
  $('snap-refresh').addEventListener('click', () => loadSnapshots());
  $('dump-form').addEventListener('submit', createDump);
}

async function main() {
  wire();
  const p = new URLSearchParams(location.hash.slice(1));
  if (NS_RE.test(p.get('ns') || '')) state.ns = p.get('ns');
  state.prefix = p.get('prefix') || '';
  state.asked = { ns: NS_RE.test(p.get('ns') || '') ? state.ns : null, prefix: p.has('prefix') ? state.prefix : null };
  $('prefix').value = state.prefix;
  $('dump-ns').value = state.ns;
  renderNamespaces();
  // What the token may do, before anything is read: a token limited to
  // namespaces or key prefixes lists what it may read (unless the address
  // names what to list), one that may not write is offered no write, and
  // one that may not read reads nothing.
  await loadSelf();
  // The feed resumes after the revision the status read, and the lists are
  // read after it: a change made while the page loads is in one or the
  // other (or both: applying it again is harmless), never lost between them.
  await loadStatus();
  fitToToken(true);
  startFeed(state.status ? state.status.revision : null);
  const first = Promise.all([loadNamespaces(), loadKeys(), loadSnapshots(), loadDumps()]);
  const key = p.get('key');
  if (key) {
    const kns = p.get('kns');
    selectKey(NS_RE.test(kns || '') ? kns : state.ns, key, false);
  }
  await first;
  // The page writes its hash with replaceState (no event): a hashchange
  // is a link followed or an address edited in this tab.
  window.addEventListener('hashchange', () => {
    const q = new URLSearchParams(location.hash.slice(1));
    const ns = NS_RE.test(q.get('ns') || '') ? q.get('ns') : 'default';
    const prefix = q.get('prefix') || '';
    if (ns !== state.ns || prefix !== state.prefix) {
      $('prefix').value = prefix;
      listFrom(ns, prefix);
    }
    const key = q.get('key');
    if (key) {
      const kns = q.get('kns');
      const at = NS_RE.test(kns || '') ? kns : ns;
      if (!isSelected(at, key)) selectKey(at, key, true);
    }
  });
  // The next poll is STATUS_EVERY ms after the last one's answer: on a
  // server slower than that, polls do not pile up.
  const poll = async () => {
    try {
      if (document.hidden || state.needToken) return;
      // A token that may not read asks, instead, whether a reload of the
      // tokens file gave it the right (no feed tells it then).
      if (may('read')) await loadStatus();
      else await recheckSelf();
    } finally {
      setTimeout(poll, STATUS_EVERY);
    }
  };
  setTimeout(poll, STATUS_EVERY);
  setInterval(() => { if (!document.hidden) tickExpiries(); }, 1000);
  document.documentElement.dataset.ready = 'true';
}

main();
