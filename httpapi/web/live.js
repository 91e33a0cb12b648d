// The live change feed: one WebSocket on GET /v1/watch for every
// namespace, reconnected with backoff and resumed after the last revision
// handled (from_rev, and from_index inside a revision of several changes:
// an etcd transaction's), so no change is missed or shown twice across a
// reconnect or a server restart.

import { parse } from './json.js';
import { watchURL } from './api.js';

const MIN_BACKOFF = 250;
const MAX_BACKOFF = 8000;

// LiveFeed calls handlers.change(msg) for each context_updated message, in
// revision order, and handlers.state({state, detail}) when the connection
// changes: "connecting", "live" (the server took the subscription;
// detail.behind when its data is behind the resume point: a reset follows),
// "reconnecting" (detail: the wait in ms and why), "stopped". handlers.reset(msg) after a restore, handlers.compacted(msg)
// when the changes to resume from are gone (the page must re-read, and
// restart the feed: it waits for that),
// handlers.notice(msg) for the other messages (context_dumped, error),
// handlers.failing(n) after n connection attempts in a row that never
// opened (a refused token shows up that way: browsers hide the HTTP status).
export class LiveFeed {
  constructor(handlers) {
    this.h = handlers;
    this.lastRev = null; // revision of the last change handled; null: from now
    // lastIndex, when not 0: only the changes of lastRev with an index
    // below it were handled (lastRev has several changes).
    this.lastIndex = 0;
    this.ws = null;
    this.attempts = 0;
    this.failedOpens = 0;
    this.timer = 0;
    this.stopped = true;
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.ws) this.ws.close(1000, 'dashboard closed');
    this.ws = null;
    this.setState('stopped');
  }

  // restart connects again at once, stopped or not (after a new token,
  // or compacted history), resuming after the last change handled; when
  // none was, after revision from: a status the page read before it
  // re-reads its panels, so that a change made meanwhile is in one or the
  // other. Without either, from now.
  restart(from) {
    if (this.lastRev === null && from !== undefined && from !== null) this.at(from, 0);
    this.stopped = false;
    this.attempts = 0;
    this.failedOpens = 0;
    this.reconnect();
  }

  // reconnect drops the connection and connects again at once, resuming
  // from the last revision, unless stopped.
  reconnect() {
    clearTimeout(this.timer);
    if (this.ws) {
      const old = this.ws;
      this.ws = null;
      old.onclose = null;
      old.close(1000, 'reconnecting');
    }
    if (!this.stopped) this.connect();
  }

  setState(state, detail) {
    this.state = state;
    if (this.h.state) this.h.state({ state, detail, lastRev: this.lastRev });
  }

  connect() {
    this.setState(this.attempts ? 'reconnecting' : 'connecting');
    const params = { ns: '*', batch: 'true' };
    if (this.lastRev !== null) params.from_rev = this.lastRev;
    if (this.lastRev !== null && this.lastIndex > 0) params.from_index = this.lastIndex;
    let ws;
    try {
      ws = new WebSocket(watchURL(params));
    } catch (e) {
      this.retry(`cannot open the WebSocket: ${e.message}`);
      return;
    }
    this.ws = ws;
    let opened = false;
    // Live once the server has taken the subscription (subscribed), not
    // at the open: a resume from compacted history is opened, then
    // refused (compacted).
    ws.onopen = () => {
      opened = true;
      this.failedOpens = 0;
    };
    ws.onmessage = (ev) => {
      if (this.ws !== ws) return;
      let msg;
      try { msg = parse(ev.data, { keepText: ['value'] }); } catch { return; } // values as stored
      this.attempts = 0; // a working connection resets the backoff
      this.handle(msg);
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (this.stopped) return;
      if (!opened && ++this.failedOpens >= 2 && this.h.failing) this.h.failing(this.failedOpens);
      const why = ev.reason ? `${ev.reason} (${ev.code})` : opened ? `connection closed (${ev.code})` : 'cannot connect';
      this.retry(why);
    };
  }

  retry(why) {
    const wait = Math.min(MAX_BACKOFF, MIN_BACKOFF * 2 ** this.attempts) * (0.75 + Math.random() / 2);
    this.attempts++;
    this.setState('reconnecting', { wait, why });
    this.timer = setTimeout(() => { if (!this.stopped) this.connect(); }, wait);
  }

  handle(msg) {
    switch (msg.type) {
      case 'subscribed': {
        // A resume point past the server's data (a server started on
        // other data) is answered from the server's own revision, below
        // it, and a reset follows: the feed did not resume.
        const behind = this.lastRev !== null && Number(msg.rev) < this.lastRev;
        if (this.lastRev === null) this.at(msg.rev, msg.index);
        this.setState('live', behind ? { behind } : undefined);
        break;
      }
      case 'context_updated':
        this.change(msg);
        break;
      case 'batch':
        for (const m of msg.messages || []) this.change(m);
        break;
      case 'reset':
        this.at(msg.rev, 0);
        if (this.h.reset) this.h.reset(msg);
        break;
      case 'compacted':
        // The server closes next. The page re-reads and restarts the
        // feed after the revision of its status read: reconnected by
        // itself from now, the feed could start after a change that the
        // page's reads came too early for.
        this.lastRev = null;
        this.lastIndex = 0;
        this.stopped = true;
        clearTimeout(this.timer);
        if (this.h.compacted) this.h.compacted(msg);
        break;
      case 'error':
        if (msg.code === 'lagged' && msg.from_rev !== undefined) {
          // Closed for falling behind: the reconnect resumes from there.
          this.at(msg.from_rev, msg.from_index);
        }
        if (this.h.notice) this.h.notice(msg);
        break;
      default:
        if (this.h.notice) this.h.notice(msg);
    }
  }

  at(rev, index) {
    this.lastRev = Number(rev);
    this.lastIndex = Number(index || 0);
  }

  // change hands on a change not handled yet. A change of a revision of
  // several carries its place (index, of count): the ones of lastRev
  // from lastIndex on are new. One alone in its revision is new when its
  // revision is above lastRev.
  change(msg) {
    const rev = Number(msg.rev);
    if (this.lastRev !== null) {
      if (rev < this.lastRev) return; // already handled
      if (rev === this.lastRev) {
        if (msg.count === undefined || this.lastIndex === 0 || Number(msg.index) < this.lastIndex) return;
      }
    }
    const next = Number(msg.index) + 1;
    this.at(rev, msg.count !== undefined && next < Number(msg.count) ? next : 0);
    this.h.change(msg);
  }
}
