/**
 * heartwire.js — the browser client of heartwire's native `/ws` endpoint.
 *
 * An ES module with no dependencies. It keeps one WebSocket to a heartwire server open for
 * as long as the page wants it: it notices a dead server with application-level probes,
 * reconnects with full-jitter backoff, fails over between URLs and back to the primary,
 * resubscribes to its channels and sends what was published while it was away, in order.
 *
 * It resumes without loss: per channel it keeps the epoch and the last `seq` it delivered,
 * resubscribes with them as `since` so the server replays what was missed, drops messages it
 * delivered already, and reports a `gap` when messages cannot be recovered. Each publish
 * carries an id unique to this client (a random 64-bit prefix and a counter) and keeps it
 * when sent again, so the server publishes it once. Positions and unacknowledged publishes
 * are kept in `sessionStorage` while the page is hidden, so a reload resumes where the page
 * was; on `pagehide` the client closes its socket (the server frees it at once) and a page
 * restored from the back/forward cache reconnects at once.
 *
 * With `{shared: true}`, the pages of one origin share one WebSocket: a SharedWorker holds it
 * where the browser has one (this very file is the worker's script), otherwise the page that
 * holds a Web Lock does and talks to the others over a BroadcastChannel.
 *
 * ```js
 * import { Heartwire } from '/heartwire.js';
 * const hw = new Heartwire('wss://chat.example/ws', { token: () => fetchToken() });
 * hw.subscribe('room:lobby', (data, { seq }) => console.log(seq, data));
 * hw.addEventListener('state', (e) => console.log(e.state, e.nextAttemptAt));
 * hw.send('room:lobby', { name: 'ada', text: 'hi' });
 * ```
 *
 * The file's parts, in order: the public helpers and {@link Heartwire} (what a page uses);
 * `Positions` (where each channel stands); `Connection` (one socket: liveness, reconnects,
 * fail-back, the outbox); `DirectLink` (a page with its own connection) and what it keeps in
 * storage; the shared mode (`SharedMember` in each page, `Hub` next to the one connection,
 * the transports between them, leader election) and the SharedWorker's entry point. They are
 * one file because the server serves one file, `/heartwire.js`, and nothing is built.
 * See docs/BROWSER.md for the behaviour table and the reasons behind it.
 *
 * @module heartwire
 */

/**
 * The states a {@link Heartwire} goes through.
 * - `connecting`: the first connection is being made.
 * - `open`: the server said hello and answers.
 * - `degraded`: still connected, but a probe has gone unanswered for longer than expected,
 *   or the browser reported that it went offline.
 * - `reconnecting`: the connection was lost; {@link Heartwire#nextAttemptAt} tells when the
 *   next attempt starts (`null` while an attempt is under way).
 * - `closed`: for good: {@link Heartwire#close} was called, the server refused the client in a
 *   way that retrying cannot fix, or the reconnect policy gave up.
 * @typedef {'connecting'|'open'|'degraded'|'reconnecting'|'closed'} HeartwireState
 */

/**
 * @typedef {object} HeartwireOptions
 * @property {() => (string|null|undefined|Promise<string|null|undefined>)} [token]
 *   Called before every connection attempt; its answer is sent as the `token` query
 *   parameter (browsers cannot set headers on a WebSocket). A rejected promise counts as a
 *   failed attempt. In shared mode the owner asks one of the pages that have one.
 * @property {number} [backoffBaseMs=500] Window of the first retry's delay.
 * @property {number} [backoffCapMs=20000] Largest window of a retry's delay.
 * @property {number} [healthyAfterMs=30000] A connection open this long was healthy: when it
 *   ends, the backoff starts again from its first window.
 * @property {number} [maxAttempts=Infinity] Give up after this many attempts in a row.
 * @property {number} [maxElapsedMs=Infinity] Give up once a streak of failures lasted this long.
 * @property {number} [connectTimeoutMs=10000] An attempt that got no `hello` by then failed.
 * @property {number} [failbackMs=30000] While on a fallback URL, how often the primary is probed.
 * @property {number} [outboxLimit=1024] How many published messages may wait for their ack.
 * @property {number} [lateTimerMs=250] A timer that fires this much later than asked was
 *   delayed by a throttled tab or a sleeping machine: its deadline proves nothing.
 * @property {number} [rttIntervalMs=30000] A connection too busy to fall silent is sent a
 *   probe this long after the last round-trip sample, so {@link Heartwire#rtt} stays current.
 * @property {boolean} [shared=false] Share one WebSocket with the other pages of this origin
 *   that use the same URLs with `shared: true`. Without a SharedWorker and without Web Locks
 *   and BroadcastChannel, the page keeps its own socket.
 * @property {Pick<Storage, 'getItem'|'setItem'|'removeItem'>|null} [storage] Where positions
 *   and unacknowledged publishes wait while the page is hidden (default: `sessionStorage`;
 *   `null` keeps nothing).
 * @property {string} [storageKey] The key in `storage` (default: `heartwire:` and the URLs).
 * @property {typeof WebSocket} [WebSocket] The WebSocket class (default: the browser's).
 * @property {() => number} [now] Milliseconds since the epoch (default: `Date.now`).
 * @property {() => number} [random] Uniform in [0, 1) (default: `Math.random`).
 * @property {(fn: () => void, ms: number) => any} [setTimeout]
 * @property {(handle: any) => void} [clearTimeout]
 * @property {EventTarget|null} [window] Source of `online`, `offline`, `pageshow`, `pagehide`
 *   (default: `globalThis.window`; `null` to ignore them).
 * @property {(EventTarget & {visibilityState?: string})|null} [document] Source of
 *   `visibilitychange`, `freeze` and `resume` (default: `globalThis.document`; `null` to
 *   ignore them).
 * @property {LockManager|null} [locks] Web Locks, for shared mode (default: `navigator.locks`).
 * @property {typeof BroadcastChannel|null} [BroadcastChannel] For shared mode (default: the
 *   browser's).
 * @property {typeof SharedWorker|null} [SharedWorker] For shared mode (default: the
 *   browser's; `null` to share through Web Locks and BroadcastChannel instead).
 */

/** Close codes after which retrying cannot help: the client or its credentials must change. */
const FATAL_CLOSE_CODES = new Set([1002, 1003, 1007, 1009, 1010, 4401, 4403]);

/** Close 4498: the server ended a connection whose token expired; a fresh token helps. */
const CLOSE_TOKEN_EXPIRED = 4498;

/** The close reason of 1008 that means "you did not read fast enough": retrying is right. */
const SLOW_CONSUMER_REASON = 'slow consumer';

/** Channel names the server accepts (docs/PROTOCOL.md, "Channel names"). */
const CHANNEL_NAME = /^[A-Za-z0-9_.:@/-]{1,128}$/;

/**
 * The close code of a page that leaves: the server reads it as "left", not "died". (Browsers
 * let a page send only 1000 and 3000–4999; 1001 is the browser's own when it unloads a page.)
 */
const CLOSE_LEFT = 1000;

/** The close code this client uses when it drops a connection it found dead. */
const CLOSE_DEAD = 4000;

/** The close code this client uses when it leaves a fallback URL for the primary. */
const CLOSE_FAILBACK = 4001;

/** Close 1012: the server restarts, and asked its clients to come back. */
const CLOSE_SERVICE_RESTART = 1012;

/** What precedes the delay in a close reason that carries a retry hint. */
const RETRY_AFTER = 'retry after ';

/** Pings whose pong may still measure a round trip, at most (older ones are forgotten). */
const MEASURING_AT_MOST = 8;

/**
 * The version of what the client keeps in storage. Version 2 keeps a channel's position in each
 * of its latest epochs (several rows per channel, the current one first); version 1, read too,
 * kept one row per channel.
 */
const SAVED_STATE_VERSION = 2;
const SAVED_STATE_VERSIONS_READ = [1, SAVED_STATE_VERSION];

/** How many epochs of one channel a page remembers its position in (the oldest is forgotten). */
const EPOCHS_KEPT = 4;

/** The options that reach a SharedWorker: plain values (functions cannot be sent to it). */
const PORTABLE_OPTIONS = [
  'backoffBaseMs', 'backoffCapMs', 'healthyAfterMs', 'maxAttempts', 'maxElapsedMs',
  'connectTimeoutMs', 'failbackMs', 'lateTimerMs', 'rttIntervalMs',
];

/** Per channel, the messages a hub keeps for its pages beyond what they still need. */
const HUB_HISTORY_KEEP = 256;

/** Per channel, the most messages a hub keeps for a page that lags behind. */
const HUB_HISTORY_MAX = 2048;

/** A hub tells the pages how the connection is at most this often (besides its events). */
const HUB_STATUS_EVERY_MS = 1000;

/**
 * The delay before the `attempt`-th attempt of a streak (counted from 1): uniform in
 * `[0, min(cap, base · 2^(attempt-1))]` ("full jitter"), so clients that lost the same server
 * at the same moment come back spread over the whole window instead of all at once.
 *
 * @param {number} attempt 1 for the first retry.
 * @param {{baseMs: number, capMs: number}} policy
 * @param {() => number} random Uniform in [0, 1).
 * @returns {number} milliseconds
 */
export function fullJitterDelay(attempt, { baseMs, capMs }, random) {
  const exponent = Math.min(Math.max(attempt - 1, 0), 30);
  const window = Math.min(capMs, baseMs * 2 ** exponent);
  return Math.floor(random() * (window + 1));
}

/**
 * The retry delay a server put at the end of a close reason, as in
 * `server restarting; retry after 2300 ms`, or `null`.
 *
 * @param {string} reason
 * @returns {number|null}
 */
export function retryHintFromReason(reason) {
  const text = String(reason ?? '');
  const at = text.indexOf(RETRY_AFTER);
  if (at === -1 || !text.endsWith('ms')) return null;
  const number = text.slice(at + RETRY_AFTER.length, -2).trim();
  return /^\d+$/.test(number) && Number.isSafeInteger(Number(number)) ? Number(number) : null;
}

/** The latest a token refresh comes: this long before the identity expires. */
const REFRESH_LEAD_MS = 30_000;

/** An identity that lasts less than this is not refreshed; a refused refresh is tried again
 *  only while this much is left (then the server's 4498 and a fresh token take over). */
const REFRESH_FLOOR_MS = 2_000;

/**
 * When the token of an identity that lasts `lifetimeMs` more is refreshed, in ms from now:
 * at 80 % of the lifetime or 30 s before its end, whichever comes first, but never before
 * half of it (the rule of the Rust client, `heartwire_core::client::refresh_after`).
 *
 * @param {number} lifetimeMs
 * @returns {number}
 */
export function refreshAfterMs(lifetimeMs) {
  return Math.max(Math.min(lifetimeMs * 0.8, lifetimeMs - REFRESH_LEAD_MS), lifetimeMs / 2);
}

/**
 * @typedef {{retry: 'backoff'}|{retry: 'after', afterMs: number}|{retry: 'fresh_token'}|{retry: 'never'}} ReconnectRule
 */

/**
 * The `report` frame of a session lost at `previous.lostAt`, sent at `now`.
 * @param {{session: string, lostAt: number, reason: string, code: number|null, lastHeardMs: number}} previous
 * @param {number} now
 */
function sessionReport(previous, now) {
  const report = {
    op: 'report',
    previous_session: previous.session,
    offline_ms: Math.max(0, Math.round(now - previous.lostAt)),
    reason: previous.reason,
    last_heard_ms: Math.round(previous.lastHeardMs),
  };
  if (previous.code !== null) report.code = previous.code;
  return report;
}

/**
 * What a client does after the server closed with `code` and `reason` (docs/PROTOCOL.md,
 * "Client reconnect rules"): reconnect with backoff, reconnect after the delay the reason
 * names, reconnect at once with a fresh token (once per streak; the token expired), or never.
 *
 * @param {number} code
 * @param {string} reason
 * @returns {ReconnectRule}
 */
export function reconnectRule(code, reason) {
  if (FATAL_CLOSE_CODES.has(code)) return { retry: 'never' };
  if (code === 1008 && reason !== SLOW_CONSUMER_REASON) return { retry: 'never' };
  if (code === CLOSE_TOKEN_EXPIRED) return { retry: 'fresh_token' };
  if (code === 1012 || code === 1013) {
    const afterMs = retryHintFromReason(reason);
    if (afterMs !== null) return { retry: 'after', afterMs };
  }
  return { retry: 'backoff' };
}

/** An event of a {@link Heartwire}; its fields depend on its type (see the class docs). */
export class HeartwireEvent extends Event {
  /**
   * @param {string} type
   * @param {object} fields copied onto the event
   */
  constructor(type, fields) {
    super(type);
    Object.assign(this, fields);
  }
}

/**
 * What a link (a page's own connection, or its membership of a shared one) tells the page.
 * @typedef {object} Page
 * @property {(type: string, fields: object) => void} emit dispatches an event
 * @property {(channel: string, seq: number, data: any) => void} deliver a message, once
 */

/**
 * A WebSocket to a heartwire server that stays connected.
 *
 * Events (listen with `addEventListener`):
 * - `open` — `{url, session}`: the server said hello; subscriptions and the outbox follow.
 * - `message` — `{channel, seq, data}`: a message on a subscribed channel.
 * - `close` — `{code, reason, wasClean, willReconnect, nextAttemptAt}`: a connection or an
 *   attempt ended.
 * - `state` — `{state, previous, nextAttemptAt}`: see {@link HeartwireState}.
 * - `gap` — `{channel, after, upTo, reason}`: messages `after+1 … upTo` of a channel were
 *   published while this client was away and will not arrive; the page may reload its state.
 *   `reason` is `history_too_short` (the server's history no longer reaches back),
 *   `epoch_changed` (the server forgot the channel and numbers it anew, or the client moved to
 *   a server that numbers it otherwise: `after` is 0, or where the page stood in that numbering
 *   when it read from it before, and what was missed of the old numbering is gone too) or `skipped` (a live message came past the
 *   next expected one).
 * - `error` — `{code, reason, id}`: the server refused a request; the connection stays open.
 *   A publish refused with `unavailable` (no broker) is not reported: it is sent again after
 *   `backoffBaseMs`, with every later one still unacknowledged, in order. A publish refused
 *   for any other reason leaves the outbox and its promise rejects.
 */
export class Heartwire extends EventTarget {
  /** @type {Map<string, Set<Function>>} */ #handlers = new Map();
  /** @type {DirectLink|SharedMember} */ #link;

  /**
   * @param {string|string[]} urlOrUrls The `/ws` URL, or several: the first is the primary,
   *   the others are tried in turn when it fails.
   * @param {HeartwireOptions} [options]
   */
  constructor(urlOrUrls, options = {}) {
    super();
    const urls = Array.isArray(urlOrUrls) ? [...urlOrUrls] : [urlOrUrls];
    if (urls.length === 0) throw new TypeError('Heartwire needs at least one URL');
    const settings = withDefaults(urls, options);
    /** @type {Page} */
    const page = {
      emit: (type, fields) => {
        // The server ended a subscription (a token refresh took the channel away): its
        // handlers hear nothing more, and the channel is not asked for again.
        if (type === 'unsubscribed') this.#handlers.delete(fields.channel);
        this.dispatchEvent(new HeartwireEvent(type, fields));
      },
      deliver: (channel, seq, data) => this.#deliver(channel, seq, data),
    };
    this.#link = (settings.shared ? SharedMember.open(urls, settings, page) : null)
      ?? new DirectLink(urls, settings, page);
  }

  /** @returns {HeartwireState} */
  get state() { return this.#link.state; }

  /** @returns {number|null} the last probe's round-trip time in ms, `null` before the first */
  get rtt() { return this.#link.rtt; }

  /** @returns {number|null} when the next attempt starts (ms since the epoch), while waiting */
  get nextAttemptAt() { return this.#link.nextAttemptAt; }

  /** @returns {number|null} when a frame last arrived from the server (ms since the epoch) */
  get lastHeardAt() { return this.#link.lastHeardAt; }

  /**
   * @returns {number|null} when the client will probe the server if nothing arrives before
   *   (ms since the epoch); when a probe is out, the time it was sent; `null` while not connected.
   *   Browsers answer the server's protocol Pings without telling the page, so a healthy quiet
   *   connection is heard from only when the client probes it.
   */
  get nextCheckAt() { return this.#link.nextCheckAt; }

  /** @returns {string|null} the server's session id of the current connection */
  get session() { return this.#link.session; }

  /** @returns {string} the URL in use or being tried */
  get url() { return this.#link.url; }

  /** @returns {number} messages this page published that wait to be sent or acknowledged */
  get outboxSize() { return this.#link.outboxSize; }

  /**
   * @returns {{id: string, channel: string, data: any}[]} the messages this page published
   *   that wait for their ack, oldest first; after a reload, those the page before it left
   */
  get outbox() {
    return this.#link.outboxEntries().map(({ id, channel, data }) => ({ id, channel, data }));
  }

  /**
   * @returns {'worker'|'leader'|'follower'|null} how this page shares its connection: through
   *   a SharedWorker, as the page that holds it (`leader`) or as one that uses the leader's;
   *   `null` when the page has its own.
   */
  get sharing() { return this.#link.sharing; }

  /**
   * Publishes `data` on `channel`. The message waits in the outbox until the server
   * acknowledges it; if the connection drops first, it is sent again, in order, after the
   * reconnect, with the same id: the server publishes it once even if the first copy
   * reached it (within its deduplication window, 120 s by default).
   *
   * @param {string} channel
   * @param {any} data any JSON value
   * @returns {Promise<number>} the message's `seq` once the server accepted it; rejects if
   *   the client closes for good first, or the server refuses the message for good.
   * @throws {Error} when the outbox is full or the client is closed.
   * @throws {TypeError} when the channel name is invalid.
   */
  send(channel, data) {
    checkChannel(channel);
    return this.#link.send(channel, data);
  }

  /**
   * Calls `handler(data, {channel, seq})` for every message on `channel`, across reconnects.
   *
   * @param {string} channel
   * @param {(data: any, meta: {channel: string, seq: number}) => void} handler
   * @returns {() => void} stops this handler; the channel is left when its last handler stops.
   */
  subscribe(channel, handler) {
    checkChannel(channel);
    let handlers = this.#handlers.get(channel);
    if (!handlers) {
      handlers = new Set();
      this.#handlers.set(channel, handlers);
      this.#link.join(channel);
    }
    handlers.add(handler);
    return () => {
      if (!handlers.delete(handler) || handlers.size > 0) return;
      this.#handlers.delete(channel);
      this.#link.leave(channel);
    };
  }

  /**
   * Closes the connection for good: no reconnect follows, and messages still in the outbox
   * are rejected. In shared mode this page leaves; the others keep the connection.
   *
   * @param {number} [code=1000]
   * @param {string} [reason='']
   */
  close(code = 1000, reason = '') {
    this.#link.close(code, reason);
  }

  /**
   * Checks the connection now: sends a probe and, if it goes unanswered, reconnects at once
   * instead of waiting out the backoff. While waiting to reconnect, attempts at once.
   * Called by the page lifecycle events; pages may call it when they have their own reason
   * to doubt the connection.
   */
  check() {
    this.#link.check();
  }

  /**
   * Asks who is subscribed to `channel`, if the connection is open; the answer is a
   * `presence` event with `members` (sessions) and `users` (`{user, connections}`). In
   * shared mode every page of the connection hears it.
   *
   * @param {string} channel
   * @returns {boolean} whether the request went out (false while not connected)
   */
  presence(channel) {
    checkChannel(channel);
    return this.#link.presence(channel);
  }

  #deliver(channel, seq, data) {
    this.dispatchEvent(new HeartwireEvent('message', { channel, seq, data }));
    for (const handler of this.#handlers.get(channel) ?? []) {
      try {
        handler(data, { channel, seq });
      } catch (error) {
        reportError(error);
      }
    }
  }
}

/** The options with their defaults filled in. */
function withDefaults(urls, options) {
  return {
    token: null,
    backoffBaseMs: 500,
    backoffCapMs: 20000,
    healthyAfterMs: 30000,
    maxAttempts: Infinity,
    maxElapsedMs: Infinity,
    connectTimeoutMs: 10000,
    failbackMs: 30000,
    outboxLimit: 1024,
    lateTimerMs: 250,
    rttIntervalMs: 30000,
    shared: false,
    storage: defaultStorage(),
    storageKey: `heartwire:${urls.join(' ')}`,
    WebSocket: globalThis.WebSocket,
    now: () => Date.now(),
    random: Math.random,
    setTimeout: (fn, ms) => globalThis.setTimeout(fn, ms),
    clearTimeout: (handle) => globalThis.clearTimeout(handle),
    window: globalThis.window ?? null,
    document: globalThis.document ?? null,
    locks: globalThis.navigator?.locks ?? null,
    BroadcastChannel: globalThis.BroadcastChannel ?? null,
    SharedWorker: globalThis.SharedWorker ?? null,
    ...options,
  };
}

/** `sessionStorage`, where the page has one and may use it (a sandboxed frame may not). */
function defaultStorage() {
  try {
    return globalThis.sessionStorage ?? null;
  } catch {
    return null;
  }
}

// ---- positions ------------------------------------------------------------------------------

/**
 * Where each channel stands for a page: the epoch and the last `seq` delivered. Decides which
 * messages are delivered (each once, in order) and which gaps the page hears of.
 *
 * Independent servers (no shared broker) number a channel in different epochs, and a page that
 * fails over from one to another and back is answered with the first server's whole epoch again
 * (`seq: 0`, `recovered: false`). So a page also keeps the last `seq` delivered in each of the
 * latest {@link EPOCHS_KEPT} epochs of a channel: coming back to one of them, it continues from
 * where it stood in it, and what it had already is dropped.
 */
class Positions {
  /**
   * Per channel, one position per epoch: the current one first, then the others from the one
   * used most recently; never empty, at most {@link EPOCHS_KEPT} long.
   * @type {Map<string, {epoch: string, seq: number}[]>}
   */
  #known = new Map();

  /** @returns {{epoch: string, seq: number}|undefined} where `channel` stands now */
  get(channel) { return this.#known.get(channel)?.[0]; }

  /** @returns {number|undefined} the last `seq` delivered in `epoch` of `channel`, if any */
  seen(channel, epoch) { return this.#known.get(channel)?.find((known) => known.epoch === String(epoch))?.seq; }

  /** Makes `epoch` the current one of `channel`, at `seq`; the other epochs' positions stay. */
  set(channel, epoch, seq) {
    const fresh = { epoch: String(epoch), seq };
    const others = (this.#known.get(channel) ?? []).filter((known) => known.epoch !== fresh.epoch);
    this.#known.set(channel, [fresh, ...others].slice(0, EPOCHS_KEPT));
  }

  delete(channel) { this.#known.delete(channel); }

  /**
   * @returns {[string, string, number][]} every position, as kept in storage: per channel the
   *   current one first, then the others from the one used most recently
   */
  list() {
    return [...this.#known].flatMap(([channel, epochs]) => epochs.map(({ epoch, seq }) => [channel, epoch, seq]));
  }

  /** Takes positions back from {@link Positions#list}'s form (a channel's first row is its current one). */
  restore(list) {
    for (const [channel, epoch, seq] of list) {
      const epochs = this.#known.get(channel);
      if (!epochs) {
        this.#known.set(channel, [{ epoch, seq }]);
      } else if (epochs.length < EPOCHS_KEPT && !epochs.some((known) => known.epoch === epoch)) {
        epochs.push({ epoch, seq });
      }
    }
  }

  /** The `subscribe` frame of `channel`, with the position to resume from when known. */
  subscribeFrame(channel) {
    const known = this.get(channel);
    if (!known) return { op: 'subscribe', channel };
    return { op: 'subscribe', channel, since: { epoch: known.epoch, seq: known.seq } };
  }

  /**
   * Takes in where the server stands in a channel. After `recovered: true` the missed
   * messages follow and the position stays; otherwise they cannot, and the returned gap
   * tells the page; the position becomes the server's. An epoch the page read from before
   * continues from where it stood in it, so a replay of it delivers only what is new.
   * @returns {object|null} the gap, if any
   */
  subscribed({ channel, seq, epoch, recovered }) {
    if (!Number.isFinite(seq)) return null;
    const known = this.get(channel);
    const serverEpoch = String(epoch ?? '');
    if (!known) {
      this.set(channel, serverEpoch, seq);
      return null;
    }
    if (known.epoch === serverEpoch) {
      if (recovered !== false) return null;
      this.set(channel, serverEpoch, seq);
      return { channel, after: known.seq, upTo: seq, reason: 'history_too_short' };
    }
    // `seq` 0: the whole epoch follows, and what the page has of it is dropped; a later `seq`:
    // the messages after where the page stood up to it will not come.
    const after = this.seen(channel, serverEpoch) ?? 0;
    const upTo = Math.max(after, seq);
    this.set(channel, serverEpoch, upTo);
    return { channel, after, upTo, reason: 'epoch_changed' };
  }

  /**
   * Whether message `seq` of `channel` is delivered: not when it was delivered already (a
   * replay overlapping what arrived before the cut). A message past the next expected one is
   * delivered with the gap before it. `seq` 0 (published into Redis by other software,
   * outside the channel's order) is always delivered.
   * @returns {{deliver: boolean, gap: object|null}}
   */
  accept(channel, seq) {
    const known = this.get(channel);
    if (!known || !Number.isFinite(seq) || seq <= 0) return { deliver: true, gap: null };
    if (seq <= known.seq) return { deliver: false, gap: null };
    const gap = seq > known.seq + 1 ? { channel, after: known.seq, upTo: seq - 1, reason: 'skipped' } : null;
    known.seq = seq;
    return { deliver: true, gap };
  }
}

// ---- one connection -------------------------------------------------------------------------

/**
 * What a {@link Connection} asks of whoever owns its channels: a page's {@link DirectLink},
 * or a {@link Hub} serving several pages.
 * @typedef {object} ConnectionOwner
 * @property {(type: string, fields: object) => void} event `open`, `close`, `state`, `error`
 * @property {() => object[]} subscribeFrames the `subscribe` frames to send after `hello`
 * @property {(channel: string) => void} [onUnsubscribed] the server's `unsubscribed` for
 *   `channel` (unasked when a token refresh took the channel away)
 * @property {(frame: object) => void} onSubscribed a `subscribed` frame
 * @property {(frame: object) => void} onMessage a `message` frame
 * @property {() => void} heard after every frame from the server
 */

/**
 * One WebSocket to a heartwire server that stays connected: liveness probes, reconnects with
 * full-jitter backoff, fail-over and fail-back, and the outbox of publishes awaiting their ack.
 * It knows channels only as frames: its owner decides what to subscribe and what to deliver.
 */
class Connection {
  /** @type {string[]} */ #urls;
  /** @type {number} */ #urlIndex = 0;
  #options;
  /** @type {ConnectionOwner} */ #owner;
  /** @type {WebSocket|null} */ #socket = null;
  /** @type {HeartwireState} */ #state = 'connecting';
  /** @type {boolean} whether this connection ever reached `open` */ #everOpened = false;
  /** @type {boolean} the page left: no attempt until {@link Connection#wake} */ #suspended = false;
  /** Counts attempts, so an attempt overtaken while it awaited its token gives up. */
  #attemptSerial = 0;

  // Reconnect policy.
  #attempt = 0;
  /** @type {number|null} */ #streakStartedAt = null;
  /** The streak has used its immediate retry with a fresh token (close 4498). */
  #freshTokenUsed = false;
  /** @type {number|null} */ #openedAt = null;
  /** @type {number|null} a delay the server asked for, used by the next reconnect */ #serverHintMs = null;
  /** @type {number|null} */ #nextAttemptAt = null;
  /** Pending timer handles by purpose; at most one of each. */
  #timers = { reconnect: null, connect: null, failback: null, liveness: null, measure: null, retry: null, refresh: null };
  /** When the connection's identity expires (ms since the epoch), or `null`. */
  #expiresAt = null;
  /** A token refresh was sent (or its token is being fetched) and is not answered yet. */
  #refreshing = false;
  /** @type {WebSocket|null} */ #failbackProbe = null;

  // Liveness.
  #idleMs = 20000;
  #probeTimeoutMs = 20000;
  /** @type {number|null} */ #lastHeardAt = null;
  /** @type {{sentAt: number, urgent: boolean}|null} the probe no frame has answered yet */
  #probe = null;
  #offline = false;
  /** @type {number|null} */ #rtt = null;
  /** @type {number|null} when the last round-trip sample was taken */ #lastSampleAt = null;
  /** @type {number|null} when the last probe sent only to measure went out */ #lastMeasureAt = null;
  /** @type {Set<number>} the `t` of each ping on this socket whose pong has not come */
  #measuring = new Set();
  /** @type {string|null} */ #session = null;
  /**
   * The session lost last, reported first after the next `hello` of a server that takes
   * reports (docs/PROTOCOL.md, "Reports of the previous session").
   * @type {{session: string, lostAt: number, reason: string, code: number|null, lastHeardMs: number}|null}
   */
  #previous = null;

  /**
   * @type {{id: string, channel: string, data: any, acked: Promise<number>,
   *   resolve: Function, reject: Function}[]} publishes awaiting their ack, in order
   */
  #outbox = [];

  /** @type {[EventTarget, string, EventListener][]} */ #lifecycleListeners = [];

  /**
   * @param {string[]} urls the first is the primary
   * @param {ReturnType<typeof withDefaults>} options
   * @param {ConnectionOwner} owner
   */
  constructor(urls, options, owner) {
    this.#urls = urls;
    this.#options = options;
    this.#owner = owner;
  }

  /** Starts the first attempt and listens to the page's lifecycle. */
  start() {
    this.#listenToLifecycle();
    this.#connect();
  }

  /** @returns {HeartwireState} */
  get state() { return this.#state; }

  get rtt() { return this.#rtt; }

  get nextAttemptAt() { return this.#nextAttemptAt; }

  get lastHeardAt() { return this.#lastHeardAt; }

  get nextCheckAt() {
    if (!this.#isConnected()) return null;
    if (this.#probe) return this.#probe.sentAt;
    return (this.#lastHeardAt ?? this.#openedAt) + this.#idleMs;
  }

  get session() { return this.#session; }

  get url() { return this.#urls[this.#urlIndex]; }

  get outboxSize() { return this.#outbox.length; }

  /** @returns {{id: string, channel: string, data: any}[]} the outbox, oldest first */
  outboxEntries() { return this.#outbox; }

  /**
   * Publishes `data` on `channel` with the publish id `id`; the same id again (a page that
   * sends its outbox once more) returns the first one's promise.
   * @returns {Promise<number>} its `seq` once acknowledged
   * @throws {Error} when the outbox is full or the connection is closed
   */
  publish(id, channel, data) {
    if (this.#state === 'closed') throw new Error('heartwire: the client is closed');
    const known = this.#outbox.find((entry) => entry.id === id);
    if (known) return known.acked;
    if (this.#outbox.length >= this.#options.outboxLimit) {
      throw new Error(`heartwire: outbox full (${this.#options.outboxLimit} messages await their ack)`);
    }
    const entry = { id, channel, data };
    entry.acked = new Promise((resolve, reject) => Object.assign(entry, { resolve, reject }));
    // The caller may ignore the promise; a rejection on close must not be reported as unhandled.
    entry.acked.catch(() => {});
    this.#outbox.push(entry);
    // While refused publishes wait for their retry, later ones wait behind them.
    if (this.#isConnected() && this.#timers.retry === null) this.#write({ op: 'publish', channel, data, id });
    return entry.acked;
  }

  /** Writes `frame` if the connection is open; otherwise `hello` brings it (or not) later. */
  sendIfOpen(frame) {
    if (this.#isConnected()) this.#write(frame);
  }

  /**
   * Closes the connection for good: no reconnect follows, and messages still in the outbox
   * are rejected.
   */
  close(code = 1000, reason = '') {
    if (this.#state === 'closed') return;
    const socket = this.#socket;
    this.#dropSocket(code, reason);
    this.#stopTimers();
    for (const [target, type, listener] of this.#lifecycleListeners) {
      target.removeEventListener(type, listener);
    }
    this.#lifecycleListeners = [];
    this.#rejectOutbox('heartwire: closed by the page');
    if (socket) this.#emit('close', { code, reason, wasClean: true, willReconnect: false, nextAttemptAt: null });
    this.#setState('closed');
  }

  /**
   * Says goodbye: closes the socket with 1000 (the server frees it at once, as for a page
   * that left, not one that died) and makes no attempt until {@link Connection#wake}. The
   * outbox stays.
   */
  suspend(reason) {
    if (this.#state === 'closed' || this.#suspended) return;
    this.#suspended = true;
    this.#attemptSerial += 1;
    const socket = this.#socket;
    this.#dropSocket(CLOSE_LEFT, reason);
    this.#openedAt = null;
    this.#session = null;
    this.#stopTimers();
    if (socket) {
      this.#emit('close', { code: CLOSE_LEFT, reason, wasClean: true, willReconnect: true, nextAttemptAt: null });
    }
    this.#setState(this.#everOpened ? 'reconnecting' : 'connecting');
  }

  /** After {@link Connection#suspend}: attempts at once. */
  wake() {
    if (!this.#suspended || this.#state === 'closed') return;
    this.#suspended = false;
    this.#connect();
  }

  /**
   * Probes now; if the probe goes unanswered, reconnects at once instead of after a backoff.
   * While waiting to reconnect, or suspended, attempts at once.
   */
  /** Sends a `presence` request for `channel` when connected; whether it went out. */
  presence(channel) {
    if (!this.#isConnected()) return false;
    this.#write({ op: 'presence', channel });
    return true;
  }

  check() {
    if (this.#state === 'closed') return;
    if (this.#suspended) {
      this.wake();
    } else if (this.#isConnected()) {
      this.#sendProbe(true);
    } else if (this.#timers.reconnect !== null) {
      this.#attemptNow();
    }
  }

  // ---- connecting -------------------------------------------------------------------------

  async #connect() {
    const serial = ++this.#attemptSerial;
    this.#nextAttemptAt = null;
    this.#setState(this.#everOpened ? 'reconnecting' : 'connecting');
    const url = this.#urls[this.#urlIndex];
    let token = null;
    try {
      if (this.#options.token) token = await this.#options.token();
    } catch (error) {
      if (serial === this.#attemptSerial) this.#attemptFailed(1006, `token provider failed: ${error?.message ?? error}`);
      return;
    }
    if (this.#state === 'closed' || serial !== this.#attemptSerial) return;
    let socket;
    try {
      socket = new this.#options.WebSocket(withToken(url, token));
    } catch (error) {
      this.#attemptFailed(1006, `cannot open ${url}: ${error?.message ?? error}`);
      return;
    }
    this.#socket = socket;
    this.#session = null;
    socket.onmessage = (event) => this.#onFrame(socket, event.data);
    socket.onclose = (event) => this.#onSocketClose(socket, event.code, event.reason, event.wasClean);
    this.#armConnectTimer(this.#options.connectTimeoutMs);
  }

  #armConnectTimer(ms) {
    const due = this.#options.now() + ms;
    this.#startTimer('connect', ms, () => {
      if (this.#timerWasLate(due)) {
        // The page slept through the attempt: give it a fresh window before judging it.
        this.#armConnectTimer(ms);
        return;
      }
      this.#dropSocket(CLOSE_DEAD, 'no hello');
      this.#attemptFailed(1006, 'no hello within the connect timeout');
    });
  }

  /** The server said hello: the connection is usable. */
  #onHello(frame) {
    this.#clearTimer('connect');
    this.#session = frame.session ?? null;
    if (Number.isFinite(frame.ping_interval_ms) && frame.ping_interval_ms > 0) this.#idleMs = frame.ping_interval_ms;
    if (Number.isFinite(frame.ping_timeout_ms) && frame.ping_timeout_ms > 0) this.#probeTimeoutMs = frame.ping_timeout_ms;
    this.#openedAt = this.#options.now();
    this.#everOpened = true;
    this.#serverHintMs = null;
    this.#probe = null;
    this.#measuring.clear();
    const previous = this.#previous;
    this.#previous = null;
    if (previous && frame.reports === true) this.#write(sessionReport(previous, this.#openedAt));
    for (const subscribe of this.#owner.subscribeFrames()) this.#write(subscribe);
    this.#writeOutboxFrom(0);
    this.#setState(this.#offline ? 'degraded' : 'open');
    this.#emit('open', { url: this.url, session: this.#session });
    // A first probe measures the round trip at once.
    this.#sendProbe(false);
    this.#armMeasure();
    this.#scheduleFailback();
    this.#scheduleRefresh(frame.expires_in_ms);
  }

  // ---- token refresh ----------------------------------------------------------------------

  /** The server said the identity lasts `expiresInMs` more (absent: it does not expire). */
  #scheduleRefresh(expiresInMs) {
    this.#clearTimer('refresh');
    this.#refreshing = false;
    if (!Number.isFinite(expiresInMs)) {
      this.#expiresAt = null;
      return;
    }
    this.#expiresAt = this.#options.now() + expiresInMs;
    if (expiresInMs >= REFRESH_FLOOR_MS) this.#startTimer('refresh', refreshAfterMs(expiresInMs), () => this.#refresh());
  }

  /** Fetches a fresh token from the provider and sends it as `refresh`. */
  async #refresh() {
    const socket = this.#socket;
    this.#refreshing = true;
    let token = null;
    try {
      if (this.#options.token) token = await this.#options.token();
    } catch {
      token = null;
    }
    if (socket !== this.#socket || !this.#refreshing) return;
    if (typeof token === 'string' && token !== '') {
      this.#write({ op: 'refresh', token });
    } else {
      this.#refreshRefused();
    }
  }

  /** The refresh under way failed: try again at half of what is left, while enough is. */
  #refreshRefused() {
    if (!this.#refreshing) return;
    this.#refreshing = false;
    const left = this.#expiresAt === null ? 0 : this.#expiresAt - this.#options.now();
    if (left >= REFRESH_FLOOR_MS) this.#startTimer('refresh', left / 2, () => this.#refresh());
  }

  // ---- frames -----------------------------------------------------------------------------

  #onFrame(socket, text) {
    if (socket !== this.#socket) return;
    const now = this.#options.now();
    this.#lastHeardAt = now;
    let frame;
    try {
      frame = JSON.parse(text);
    } catch {
      return;
    }
    if (frame === null || typeof frame !== 'object') return;
    if (frame.op === 'hello') {
      this.#onHello(frame);
      this.#owner.heard();
      return;
    }
    // A pong measures the round trip of its own ping, whatever arrived before it.
    if (frame.op === 'pong' && this.#measuring.delete(frame.t)) {
      this.#rtt = Math.max(0, now - frame.t);
      this.#lastSampleAt = now;
    }
    // Any frame proves the server alive: an outstanding probe is answered.
    if (this.#probe) {
      this.#probe = null;
      if (this.#state === 'degraded' && !this.#offline) this.#setState('open');
    }
    this.#armLiveness();
    switch (frame.op) {
      case 'message': this.#owner.onMessage(frame); break;
      case 'subscribed': this.#owner.onSubscribed(frame); break;
      case 'unsubscribed': this.#owner.onUnsubscribed?.(frame.channel); break;
      case 'ack': this.#onAck(frame); break;
      case 'reconnect':
        if (Number.isFinite(frame.after_ms)) this.#serverHintMs = Math.max(0, frame.after_ms);
        break;
      case 'error': this.#onError(frame); break;
      case 'refreshed':
        this.#scheduleRefresh(frame.expires_in_ms);
        this.#emit('refreshed', { expiresInMs: Number.isFinite(frame.expires_in_ms) ? frame.expires_in_ms : null });
        break;
      case 'presence':
        this.#emit('presence', { channel: frame.channel, members: frame.members ?? [], users: frame.users ?? [] });
        break;
      case 'join':
      case 'leave':
        this.#emit(frame.op, { channel: frame.channel, session: frame.session, user: frame.user ?? null });
        break;
      default: break;
    }
    this.#owner.heard();
  }

  /** A publish was accepted; a `duplicate` one was accepted before, which is as good. */
  #onAck({ id, seq }) {
    const index = this.#outbox.findIndex((entry) => entry.id === id);
    if (index === -1) return;
    const [entry] = this.#outbox.splice(index, 1);
    entry.resolve(seq);
  }

  #onError({ code, reason, id, channel }) {
    if (id === undefined && channel === undefined && (code === 'unauthorized' || code === 'forbidden')) {
      this.#refreshRefused();
    }
    const index = id === undefined ? -1 : this.#outbox.findIndex((entry) => entry.id === id);
    if (index !== -1 && code === 'unavailable') {
      // The server had no broker for it: send it and every later one again, in order. A
      // retry already pending started from an earlier publish and covers this one.
      if (this.#timers.retry !== null) return;
      this.#startTimer('retry', this.#options.backoffBaseMs, () => {
        const from = this.#outbox.findIndex((entry) => entry.id === id);
        if (from !== -1 && this.#isConnected()) this.#writeOutboxFrom(from);
      });
      return;
    }
    if (index !== -1) {
      // Refused for good: sending it again would be refused again.
      const [entry] = this.#outbox.splice(index, 1);
      entry.reject(Object.assign(new Error(`heartwire: publish refused (${code}: ${reason})`), { code, reason }));
    }
    this.#emit('error', { code, reason, id, channel: channel ?? null });
  }

  /** Sends the outbox's publishes from position `from` on, in order, with their ids. */
  #writeOutboxFrom(from) {
    for (const entry of this.#outbox.slice(from)) {
      this.#write({ op: 'publish', channel: entry.channel, data: entry.data, id: entry.id });
    }
  }

  // ---- liveness ---------------------------------------------------------------------------

  /**
   * Sends `{"op":"ping","t":now}`. An urgent probe (after the page woke up or came back
   * online) that goes unanswered reconnects at once instead of after a backoff delay.
   */
  #sendProbe(urgent) {
    const sentAt = this.#writePing();
    this.#probe = { sentAt, urgent: urgent || (this.#probe?.urgent ?? false) };
    this.#armLiveness();
  }

  /** Writes `{"op":"ping","t":now}` and remembers `t` until its pong; returns `t`. */
  #writePing() {
    const t = this.#options.now();
    this.#measuring.add(t);
    if (this.#measuring.size > MEASURING_AT_MOST) this.#measuring.delete(this.#measuring.values().next().value);
    this.#write({ op: 'ping', t });
    return t;
  }

  /**
   * Arms the timer that keeps {@link Heartwire#rtt} current on a connection too busy to be
   * probed for liveness: `rttIntervalMs` after the last sample (or measuring probe).
   */
  #armMeasure() {
    this.#clearTimer('measure');
    if (!this.#isConnected()) return;
    const now = this.#options.now();
    const since = Math.max(this.#lastSampleAt ?? now, this.#lastMeasureAt ?? -Infinity);
    const due = since + this.#options.rttIntervalMs;
    this.#startTimer('measure', Math.max(0, due - now), () => this.#onMeasureTimer(due));
  }

  #onMeasureTimer(due) {
    if (!this.#isConnected()) return;
    // A pong still out after the page slept would measure the sleep.
    if (this.#timerWasLate(due)) this.#measuring.clear();
    const now = this.#options.now();
    const stale = this.#lastSampleAt === null || now - this.#lastSampleAt >= this.#options.rttIntervalMs;
    // A liveness probe out now measures as well.
    if (stale && this.#probe === null) {
      this.#writePing();
      this.#lastMeasureAt = now;
    }
    this.#armMeasure();
  }

  /** Arms the one liveness timer for the next thing to check. */
  #armLiveness() {
    this.#clearTimer('liveness');
    if (!this.#isConnected()) return;
    const now = this.#options.now();
    let due;
    if (this.#probe) {
      const degradedAt = this.#probe.sentAt + this.#probeTimeoutMs / 2;
      const deadAt = this.#probe.sentAt + this.#probeTimeoutMs;
      due = this.#state === 'degraded' || now >= degradedAt ? deadAt : degradedAt;
    } else {
      due = (this.#lastHeardAt ?? now) + this.#idleMs;
    }
    const delay = Math.max(0, due - now);
    this.#startTimer('liveness', delay, () => this.#onLivenessTimer(due));
  }

  #onLivenessTimer(due) {
    if (!this.#isConnected()) return;
    const now = this.#options.now();
    if (this.#timerWasLate(due)) {
      // The page was frozen, throttled or asleep: what the deadline measured is not the
      // server's silence, and a pong still out would measure the sleep. Ask again, now.
      this.#measuring.clear();
      this.#sendProbe(false);
      return;
    }
    if (!this.#probe) {
      if (now - (this.#lastHeardAt ?? now) >= this.#idleMs) {
        this.#sendProbe(false);
      } else {
        this.#armLiveness();
      }
      return;
    }
    if (now - this.#probe.sentAt >= this.#probeTimeoutMs) {
      const urgent = this.#probe.urgent;
      this.#dropSocket(CLOSE_DEAD, 'probe timeout');
      this.#connectionLost(CLOSE_DEAD, 'probe timeout', false, urgent ? 0 : null);
      return;
    }
    this.#setState('degraded');
    this.#armLiveness();
  }

  #timerWasLate(due) {
    return this.#options.now() - due > this.#options.lateTimerMs;
  }

  // ---- closing and reconnecting -----------------------------------------------------------

  #onSocketClose(socket, code, reason, wasClean) {
    if (socket !== this.#socket) return;
    this.#socket = null;
    if (this.#openedAt === null) {
      this.#clearTimer('connect');
      this.#attemptFailed(code, reason, wasClean);
      return;
    }
    // The page has just woken up and was checking the connection: a close now answers that
    // check (a browser may drop the sockets of a page it froze, and the page learns of it
    // as it resumes), so the client reconnects at once, as after a failed wake-up probe.
    // A close that asks for a wait or that is final keeps its own meaning.
    const wakingUp = this.#probe?.urgent === true && this.#serverHintMs === null
      && reconnectRule(code, reason).retry === 'backoff';
    this.#connectionLost(code, reason, wasClean, wakingUp ? 0 : null);
  }

  /**
   * An open connection ended.
   * @param {number|null} delayMs a delay decided by the caller (0 after a failed urgent
   *   probe), else the close code and the policy decide.
   */
  #connectionLost(code, reason, wasClean, delayMs) {
    this.#keepForReport(code);
    const openFor = this.#options.now() - this.#openedAt;
    this.#openedAt = null;
    this.#stopConnectionTimers();
    if (openFor >= this.#options.healthyAfterMs) {
      this.#attempt = 0;
      this.#streakStartedAt = null;
      this.#freshTokenUsed = false;
    }
    this.#afterClose(code, reason, wasClean, delayMs);
  }

  /**
   * Keeps what the next connection reports of this one, which ended with `code`: this
   * client's own close after a probe timeout, a close frame of the server, or neither (1006).
   */
  #keepForReport(code) {
    if (this.#session === null) return;
    const now = this.#options.now();
    const reason = code === CLOSE_DEAD ? 'ping_timeout' : code === 1006 || code === 1005 ? 'network' : 'closed';
    this.#previous = {
      session: this.#session,
      lostAt: now,
      reason,
      code: reason === 'closed' ? code : null,
      // A close frame is the server heard.
      lastHeardMs: reason === 'closed' ? 0 : Math.max(0, now - (this.#lastHeardAt ?? now)),
    };
  }

  /** An attempt ended before the server said hello. */
  #attemptFailed(code, reason, wasClean = false) {
    this.#socket = null;
    this.#urlIndex = (this.#urlIndex + 1) % this.#urls.length;
    this.#afterClose(code, reason, wasClean, null);
  }

  #afterClose(code, reason, wasClean, delayMs) {
    const rule = reconnectRule(code, reason);
    let delay = delayMs;
    if (rule.retry === 'never') {
      delay = null;
    } else if (delay === null && rule.retry === 'fresh_token') {
      // The next attempt asks the token provider again, as every attempt does: at once the
      // first time in a streak, with backoff after that (a provider handing out stale tokens
      // must not make a loop).
      delay = this.#freshTokenUsed ? this.#nextDelay(null) : 0;
      this.#freshTokenUsed = true;
    } else if (delay === null) {
      // A `reconnect` frame's delay wins over the close reason's, as in the Rust client.
      const hint = this.#serverHintMs ?? (rule.retry === 'after' ? rule.afterMs : null);
      if (hint !== null && (this.#serverHintMs !== null || code === CLOSE_SERVICE_RESTART)) {
        // The server restarts and asked its clients back: not a failure of this client,
        // so the streak starts again and the next real failure waits the first window.
        this.#attempt = 0;
        this.#streakStartedAt = null;
        delay = hint;
      } else {
        delay = this.#nextDelay(hint);
      }
    }
    this.#serverHintMs = null;
    this.#session = null;
    if (delay === null) {
      this.#emit('close', { code, reason, wasClean, willReconnect: false, nextAttemptAt: null });
      this.#rejectOutbox(`heartwire: connection closed for good (${code} ${reason})`);
      this.#stopTimers();
      this.#setState('closed');
      return;
    }
    this.#nextAttemptAt = this.#options.now() + delay;
    this.#emit('close', { code, reason, wasClean, willReconnect: true, nextAttemptAt: this.#nextAttemptAt });
    this.#setState('reconnecting');
    this.#startTimer('reconnect', delay, () => this.#connect());
  }

  /**
   * Counts one attempt of the streak and returns its delay: the server's hint when it gave
   * one, else full jitter. `null` when the policy gives up.
   */
  #nextDelay(hintMs) {
    const now = this.#options.now();
    this.#streakStartedAt ??= now;
    if (this.#attempt >= this.#options.maxAttempts) return null;
    if (now - this.#streakStartedAt >= this.#options.maxElapsedMs) return null;
    this.#attempt += 1;
    if (hintMs !== null) return hintMs;
    const policy = { baseMs: this.#options.backoffBaseMs, capMs: this.#options.backoffCapMs };
    return fullJitterDelay(this.#attempt, policy, this.#options.random);
  }

  #attemptNow() {
    this.#clearTimer('reconnect');
    this.#connect();
  }

  // ---- fail-back --------------------------------------------------------------------------

  /** While connected to a fallback URL, checks the primary every `failbackMs`. */
  #scheduleFailback() {
    this.#clearTimer('failback');
    if (this.#urlIndex === 0) return;
    this.#startTimer('failback', this.#options.failbackMs, () => this.#probePrimary());
  }

  /**
   * Opens a second socket to the primary; once the primary says hello, leaves the fallback
   * and reconnects to the primary at once. Otherwise tries again later.
   */
  async #probePrimary() {
    let token = null;
    try {
      if (this.#options.token) token = await this.#options.token();
    } catch {
      this.#scheduleFailback();
      return;
    }
    if (!this.#isConnected()) return;
    let probe;
    try {
      probe = new this.#options.WebSocket(withToken(this.#urls[0], token));
    } catch {
      this.#scheduleFailback();
      return;
    }
    this.#failbackProbe = probe;
    let giveUp = null;
    const finish = (primaryAnswered) => {
      if (this.#failbackProbe !== probe) return;
      this.#failbackProbe = null;
      this.#options.clearTimeout(giveUp);
      probe.onmessage = probe.onclose = null;
      closeQuietly(probe, 1000, 'fail-back probe');
      if (!this.#isConnected()) return;
      if (!primaryAnswered) {
        this.#scheduleFailback();
        return;
      }
      this.#dropSocket(CLOSE_FAILBACK, 'back to the primary');
      this.#openedAt = null;
      this.#stopConnectionTimers();
      this.#urlIndex = 0;
      this.#attempt = 0;
      this.#streakStartedAt = null;
      this.#connect();
    };
    giveUp = this.#options.setTimeout(() => finish(false), this.#options.connectTimeoutMs);
    probe.onmessage = (event) => {
      try {
        finish(JSON.parse(event.data)?.op === 'hello');
      } catch {
        finish(false);
      }
    };
    probe.onclose = () => finish(false);
  }

  // ---- page lifecycle ---------------------------------------------------------------------

  /** Events after which the page probes at once (the page's own links handle leaving). */
  #listenToLifecycle() {
    const { window, document } = this.#options;
    const on = (target, type, listener) => {
      if (!target?.addEventListener) return;
      target.addEventListener(type, listener);
      this.#lifecycleListeners.push([target, type, listener]);
    };
    on(window, 'online', () => {
      this.#offline = false;
      this.check();
    });
    on(window, 'offline', () => {
      this.#offline = true;
      if (this.#isConnected()) {
        this.#setState('degraded');
        this.#sendProbe(true);
      }
    });
    // Page Lifecycle: a frozen page ran no JavaScript; what happened meanwhile is unknown.
    on(document, 'resume', () => this.check());
    on(document, 'visibilitychange', () => {
      if (document.visibilityState === 'visible') this.check();
    });
  }

  // ---- helpers ----------------------------------------------------------------------------

  /** Whether the server said hello on the current socket. */
  #isConnected() {
    return this.#socket !== null && this.#openedAt !== null;
  }

  #write(frame) {
    try {
      this.#socket.send(JSON.stringify(frame));
    } catch {
      // The socket is closing; its close event reconnects and the outbox is sent again.
    }
  }

  /** Forgets the current socket at once and closes it; its events no longer reach us. */
  #dropSocket(code, reason) {
    const socket = this.#socket;
    this.#socket = null;
    if (!socket) return;
    socket.onmessage = socket.onclose = null;
    closeQuietly(socket, code, reason);
  }

  #stopConnectionTimers() {
    this.#clearTimer('liveness');
    this.#clearTimer('measure');
    this.#measuring.clear();
    this.#clearTimer('connect');
    this.#clearTimer('failback');
    this.#clearTimer('retry');
    this.#clearTimer('refresh');
    this.#refreshing = false;
    this.#expiresAt = null;
    this.#probe = null;
    if (this.#failbackProbe) {
      const probe = this.#failbackProbe;
      this.#failbackProbe = null;
      probe.onmessage = probe.onclose = null;
      closeQuietly(probe, 1000, 'fail-back probe');
    }
  }

  #stopTimers() {
    this.#stopConnectionTimers();
    this.#clearTimer('reconnect');
    this.#nextAttemptAt = null;
  }

  /**
   * Runs `fn` after `ms` as the timer of `purpose`, replacing the one it had.
   * @param {'reconnect'|'connect'|'failback'|'liveness'|'measure'|'retry'} purpose
   */
  #startTimer(purpose, ms, fn) {
    this.#clearTimer(purpose);
    this.#timers[purpose] = this.#options.setTimeout(() => {
      this.#timers[purpose] = null;
      fn();
    }, ms);
  }

  /** @param {'reconnect'|'connect'|'failback'|'liveness'|'measure'|'retry'|'refresh'} purpose */
  #clearTimer(purpose) {
    if (this.#timers[purpose] === null) return;
    this.#options.clearTimeout(this.#timers[purpose]);
    this.#timers[purpose] = null;
  }

  #rejectOutbox(message) {
    const pending = this.#outbox;
    this.#outbox = [];
    for (const entry of pending) entry.reject(new Error(message));
  }

  #setState(state) {
    if (state === this.#state && state !== 'reconnecting') return;
    const previous = this.#state;
    this.#state = state;
    this.#emit('state', { state, previous, nextAttemptAt: this.#nextAttemptAt });
  }

  #emit(type, fields) {
    this.#owner.event(type, fields);
  }
}

// ---- a page with its own connection ---------------------------------------------------------

/**
 * A page's own {@link Connection}, with its channels' positions; keeps both and the outbox in
 * storage while the page is hidden, says goodbye on `pagehide` and comes back on `pageshow`.
 */
class DirectLink {
  #page;
  #settings;
  #positions = new Positions();
  /** @type {Set<string>} the channels the page listens to */ #channels = new Set();
  #connection;
  #clientId;
  #nextMessageId = 1;
  /** @type {[EventTarget, string, EventListener][]} */ #listeners = [];

  /**
   * @param {string[]} urls
   * @param {ReturnType<typeof withDefaults>} settings
   * @param {Page} page
   */
  constructor(urls, settings, page) {
    this.#page = page;
    this.#settings = settings;
    this.#clientId = newClientId(settings.random);
    const saved = takeSavedState(settings);
    this.#positions.restore(saved.positions);
    this.#connection = new Connection(urls, settings, {
      event: page.emit,
      subscribeFrames: () => [...this.#channels].map((channel) => this.#positions.subscribeFrame(channel)),
      onSubscribed: (frame) => {
        const gap = this.#positions.subscribed(frame);
        if (gap) page.emit('gap', gap);
      },
      onUnsubscribed: (channel) => {
        // Still wanted: the server ended it, not the page.
        if (!this.#channels.delete(channel)) return;
        this.#positions.delete(channel);
        page.emit('unsubscribed', { channel });
      },
      onMessage: ({ channel, seq, data }) => {
        const { deliver, gap } = this.#positions.accept(channel, seq);
        if (gap) page.emit('gap', gap);
        if (deliver) page.deliver(channel, seq, data);
      },
      heard: () => {},
    });
    // What the page before a reload published and did not see acknowledged, with its ids:
    // the server publishes each once.
    for (const [id, channel, data] of saved.outbox) this.#connection.publish(id, channel, data);
    this.#listen();
    this.#connection.start();
  }

  get state() { return this.#connection.state; }

  get rtt() { return this.#connection.rtt; }

  get nextAttemptAt() { return this.#connection.nextAttemptAt; }

  get lastHeardAt() { return this.#connection.lastHeardAt; }

  get nextCheckAt() { return this.#connection.nextCheckAt; }

  get session() { return this.#connection.session; }

  get url() { return this.#connection.url; }

  get outboxSize() { return this.#connection.outboxSize; }

  get sharing() { return null; }

  outboxEntries() { return this.#connection.outboxEntries(); }

  send(channel, data) {
    return this.#connection.publish(`${this.#clientId}-${this.#nextMessageId++}`, channel, data);
  }

  join(channel) {
    this.#channels.add(channel);
    this.#connection.sendIfOpen(this.#positions.subscribeFrame(channel));
  }

  leave(channel) {
    this.#channels.delete(channel);
    this.#positions.delete(channel);
    this.#connection.sendIfOpen({ op: 'unsubscribe', channel });
  }

  check() { this.#connection.check(); }

  presence(channel) { return this.#connection.presence(channel); }

  close(code, reason) {
    for (const [target, type, listener] of this.#listeners) target.removeEventListener(type, listener);
    this.#listeners = [];
    clearSavedState(this.#settings);
    this.#connection.close(code, reason);
  }

  #save() {
    saveState(this.#settings, this.#positions.list(), this.#connection.outboxEntries());
  }

  /**
   * While the page is hidden, frozen or leaving, storage holds where it stands (a reload or a
   * discarded tab resumes from it); once it is back in view, the page itself does.
   */
  #listen() {
    const { window, document } = this.#settings;
    this.#listeners = listenToPage(window, document, {
      pagehide: () => {
        this.#save();
        this.#connection.suspend('page left');
      },
      // Back from the back/forward cache (or a first show): attempt or probe at once.
      pageshow: () => {
        clearSavedState(this.#settings);
        this.#connection.check();
      },
      freeze: () => this.#save(),
      hidden: () => this.#save(),
      visible: () => clearSavedState(this.#settings),
    });
  }
}

/**
 * Listens to the page events a link acts on; returns the listeners, to remove them.
 * @returns {[EventTarget, string, EventListener][]}
 */
function listenToPage(window, document, { pagehide, pageshow, freeze, resume, hidden, visible }) {
  const listeners = [];
  const on = (target, type, listener) => {
    if (!listener || !target?.addEventListener) return;
    target.addEventListener(type, listener);
    listeners.push([target, type, listener]);
  };
  on(window, 'pagehide', pagehide);
  on(window, 'pageshow', pageshow);
  on(document, 'freeze', freeze);
  on(document, 'resume', resume);
  on(document, 'visibilitychange', () => {
    if (document.visibilityState === 'hidden') hidden?.();
    else visible?.();
  });
  return listeners;
}

// ---- what a page keeps in storage -----------------------------------------------------------

/**
 * Reads and removes what a page kept in storage before it was reloaded (or discarded):
 * positions as `[channel, epoch, seq]`, publishes as `[id, channel, data]`. Anything it cannot
 * read counts as nothing kept.
 * @returns {{positions: [string, string, number][], outbox: [string, string, any][]}}
 */
function takeSavedState({ storage, storageKey }) {
  const nothing = { positions: [], outbox: [] };
  if (!storage) return nothing;
  try {
    const text = storage.getItem(storageKey);
    storage.removeItem(storageKey);
    if (text === null) return nothing;
    const saved = JSON.parse(text);
    if (!SAVED_STATE_VERSIONS_READ.includes(saved?.v)) return nothing;
    const positions = (Array.isArray(saved.positions) ? saved.positions : []).filter(
      (p) => Array.isArray(p) && CHANNEL_NAME.test(p[0]) && typeof p[1] === 'string' && Number.isSafeInteger(p[2]),
    );
    const outbox = (Array.isArray(saved.outbox) ? saved.outbox : []).filter(
      (e) => Array.isArray(e) && typeof e[0] === 'string' && CHANNEL_NAME.test(e[1]),
    );
    return { positions, outbox };
  } catch {
    return nothing;
  }
}

/**
 * Keeps positions and the unacknowledged publishes (at most `outboxLimit`) in storage. A
 * storage that refuses (full, or forbidden) keeps nothing: the page is as without storage.
 */
function saveState({ storage, storageKey, outboxLimit }, positions, outbox) {
  if (!storage) return;
  const state = {
    v: SAVED_STATE_VERSION,
    positions,
    outbox: outbox.slice(0, outboxLimit).map(({ id, channel, data }) => [id, channel, data]),
  };
  try {
    storage.setItem(storageKey, JSON.stringify(state));
  } catch {
    // Nothing kept.
  }
}

function clearSavedState({ storage, storageKey }) {
  try {
    storage?.removeItem(storageKey);
  } catch {
    // Nothing was kept.
  }
}

// ---- helpers ----------------------------------------------------------------------------------

/**
 * @param {string} channel
 * @throws {TypeError}
 */
function checkChannel(channel) {
  if (typeof channel !== 'string' || !CHANNEL_NAME.test(channel)) {
    throw new TypeError(`heartwire: invalid channel name ${JSON.stringify(channel)}`);
  }
}

/**
 * @param {() => number} random uniform in [0, 1)
 * @returns {string} 32 random bits as 8 hex digits
 */
function randomHex32(random) {
  return Math.floor(random() * 2 ** 32).toString(16).padStart(8, '0');
}

/** A random 64-bit id in hex: a client's prefix of publish ids, a page's or a hub's name. */
function newClientId(random) {
  return randomHex32(random) + randomHex32(random);
}

/**
 * @param {string} url
 * @param {string|null|undefined} token
 * @returns {string} `url` with `token` as its `token` query parameter, when there is one.
 */
function withToken(url, token) {
  if (token === null || token === undefined || token === '') return url;
  const separator = url.includes('?') ? '&' : '?';
  return `${url}${separator}token=${encodeURIComponent(token)}`;
}

/**
 * Closes a socket. A code or reason the browser refuses (a page may send only 1000 and
 * 3000–4999, and at most 123 bytes of reason) still closes it, plainly; a socket already
 * closing is left to finish.
 */
function closeQuietly(socket, code, reason) {
  try {
    socket.close(code, reason);
  } catch {
    try {
      socket.close();
    } catch {
      // Already closing or closed.
    }
  }
}

/** Reports an error thrown by a page's handler without stopping the other handlers. */
function reportError(error) {
  if (typeof globalThis.reportError === 'function') {
    globalThis.reportError(error);
  } else {
    queueMicrotask(() => { throw error; });
  }
}

// ---- shared mode: a page's part -------------------------------------------------------------

/**
 * A page's part of a shared connection: its channels' positions, its outbox and the state it
 * shows. The connection is a {@link Hub}'s, in a SharedWorker or in the page that leads; the
 * page reaches it through an uplink ({@link WorkerUplink}, {@link LeaderUplink} or, when a
 * SharedWorker could not start and nothing else can be shared, {@link SoloUplink}).
 *
 * Whatever the hub sends, the page delivers each message once and in order: a copy of one it
 * delivered is dropped, and a message past the next one it expects makes it ask the hub to
 * serve it again from where it stands.
 */
class SharedMember {
  /**
   * A member for `urls`, or `null` when the browser can share nothing (no SharedWorker, no
   * Web Locks with BroadcastChannel): the page then keeps its own connection.
   */
  static open(urls, settings, page) {
    const canLead = Boolean(settings.locks) && typeof settings.BroadcastChannel === 'function';
    if (typeof settings.SharedWorker !== 'function' && !canLead) return null;
    return new SharedMember(urls, settings, page);
  }

  #urls;
  #settings;
  /** @type {Page} */ #page;
  /** The name pages share: the SharedWorker's name, the lock's, the BroadcastChannel's. */
  #key;
  #id;
  #nextMessageId = 1;
  #positions = new Positions();
  /** @type {Set<string>} the channels the page listens to */ #channels = new Set();
  /** @type {Map<string, {id: string, channel: string, data: any, acked: Promise<number>, resolve: Function, reject: Function}>} */
  #outbox = new Map();
  /** @type {Set<string>} channels the hub was asked to serve again from this page's position */
  #resyncing = new Set();
  /** How the connection is, as the hub last said. */
  #status = { rtt: null, nextAttemptAt: null, lastHeardAt: null, nextCheckAt: null, session: null, url: null };
  /** @type {HeartwireState} */ #state = 'connecting';
  #everOpened = false;
  #uplink;
  /** @type {[EventTarget, string, EventListener][]} */ #listeners = [];

  constructor(urls, settings, page) {
    this.#urls = urls;
    this.#settings = settings;
    this.#page = page;
    this.#key = `heartwire:${urls.join(' ')}`;
    this.#id = newClientId(settings.random);
    const saved = takeSavedState(settings);
    this.#positions.restore(saved.positions);
    for (const [id, channel, data] of saved.outbox) this.#addToOutbox(id, channel, data);
    this.#uplink = this.#openUplink();
    this.#listen();
    this.#join();
  }

  get memberId() { return this.#id; }

  get state() { return this.#state; }

  get rtt() { return this.#status.rtt; }

  get nextAttemptAt() { return this.#status.nextAttemptAt; }

  get lastHeardAt() { return this.#status.lastHeardAt; }

  get nextCheckAt() { return this.#status.nextCheckAt; }

  get session() { return this.#status.session; }

  get url() { return this.#status.url ?? this.#urls[0]; }

  get outboxSize() { return this.#outbox.size; }

  get sharing() { return this.#uplink.role; }

  outboxEntries() { return [...this.#outbox.values()]; }

  send(channel, data) {
    if (this.#state === 'closed') throw new Error('heartwire: the client is closed');
    if (this.#outbox.size >= this.#settings.outboxLimit) {
      throw new Error(`heartwire: outbox full (${this.#settings.outboxLimit} messages await their ack)`);
    }
    const entry = this.#addToOutbox(`${this.#id}-${this.#nextMessageId++}`, channel, data);
    this.#post({ type: 'publish', id: entry.id, channel, data });
    return entry.acked;
  }

  join(channel) {
    this.#channels.add(channel);
    this.#post({ type: 'subscribe', channel, position: this.#positions.get(channel) ?? null });
  }

  leave(channel) {
    this.#channels.delete(channel);
    this.#positions.delete(channel);
    this.#resyncing.delete(channel);
    this.#post({ type: 'unsubscribe', channel });
  }

  check() { this.#post({ type: 'check' }); }

  presence(channel) {
    if (this.state !== 'open' && this.state !== 'degraded') return false;
    this.#post({ type: 'presence', channel });
    return true;
  }

  close(code, reason) {
    if (this.#state === 'closed') return;
    for (const [target, type, listener] of this.#listeners) target.removeEventListener(type, listener);
    this.#listeners = [];
    clearSavedState(this.#settings);
    this.#post({ type: 'leave' });
    const connected = this.#state === 'open' || this.#state === 'degraded';
    this.#rejectOutbox('heartwire: closed by the page');
    if (connected) this.#page.emit('close', { code, reason, wasClean: true, willReconnect: false, nextAttemptAt: null });
    this.#setState('closed');
    // Closed first: a leading page hands the connection on without telling itself.
    this.#uplink.close();
  }

  /** A message from the hub. */
  receive(message) {
    if (this.#state === 'closed') return;
    switch (message.type) {
      case 'status':
        this.#status = message.status;
        this.#follow(message.status.state, false);
        break;
      case 'event':
        this.#status = message.status;
        this.#onEvent(message.event, message.fields);
        break;
      case 'deliver': this.#onDeliver(message); break;
      case 'position':
        this.#positions.set(message.channel, message.epoch, message.seq);
        this.#resyncing.delete(message.channel);
        break;
      case 'gap': this.#onGap(message); break;
      case 'ack': this.#settle(message.id)?.resolve(message.seq); break;
      case 'refused': {
        const { id, code, reason } = message;
        const error = Object.assign(new Error(`heartwire: publish refused (${code}: ${reason})`), { code, reason });
        this.#settle(id)?.reject(error);
        this.#page.emit('error', { code, reason, id });
        break;
      }
      case 'token-request': this.#answerToken(message.request); break;
      case 'hub-gone': this.#hubGone(); break;
      default: break;
    }
  }

  /** A new hub took over: it learns this page's channels, positions and outbox. */
  hubChanged() {
    this.#join();
  }

  #join() {
    this.#resyncing.clear();
    this.#post({
      type: 'join',
      urls: this.#urls,
      options: Object.fromEntries(PORTABLE_OPTIONS.map((name) => [name, this.#settings[name]])),
      token: typeof this.#settings.token === 'function',
      channels: [...this.#channels].map((channel) => {
        const known = this.#positions.get(channel);
        return [channel, known?.epoch ?? null, known?.seq ?? null];
      }),
      outbox: [...this.#outbox.values()].map(({ id, channel, data }) => [id, channel, data]),
    });
  }

  #post(message) {
    this.#uplink.post({ ...message, member: this.#id });
  }

  #openUplink() {
    if (typeof this.#settings.SharedWorker === 'function') {
      try {
        return new WorkerUplink(this.#key, this.#settings, this, () => this.#workerFailed());
      } catch {
        // A module of another origin, or a policy that forbids workers: share otherwise.
      }
    }
    return this.#fallbackUplink();
  }

  #fallbackUplink() {
    const { locks, BroadcastChannel } = this.#settings;
    if (locks && typeof BroadcastChannel === 'function') return new LeaderUplink(this.#key, this.#urls, this.#settings, this);
    return new SoloUplink(this.#urls, this.#settings, this);
  }

  /** The SharedWorker could not start: the page shares by Web Locks, or keeps its own hub. */
  #workerFailed() {
    this.#uplink.close();
    this.#uplink = this.#fallbackUplink();
    this.#join();
  }

  #onEvent(type, fields) {
    if (type === 'state') {
      this.#follow(fields.state, true);
    } else {
      this.#page.emit(type, fields);
    }
  }

  /**
   * Takes the hub connection's state as this page's. A page that was connected before shows
   * a new hub's first attempt as `reconnecting`.
   */
  #follow(hubState, isEvent) {
    let state = hubState;
    if (state === 'connecting' && this.#everOpened) state = 'reconnecting';
    if (state === 'open' || state === 'degraded') this.#everOpened = true;
    this.#setState(state, isEvent);
    if (state === 'closed') {
      this.#rejectOutbox('heartwire: connection closed for good');
      this.#uplink.close();
    }
  }

  /** The page that held the connection left: a new one takes over. */
  #hubGone() {
    const connected = this.#state === 'open' || this.#state === 'degraded';
    this.#status = { ...this.#status, session: null, nextCheckAt: null, nextAttemptAt: null };
    if (connected) {
      this.#page.emit('close', { code: CLOSE_LEFT, reason: 'owner left', wasClean: true, willReconnect: true, nextAttemptAt: null });
    }
    this.#setState(this.#everOpened ? 'reconnecting' : 'connecting', false);
  }

  #onDeliver({ channel, seq, epoch, data }) {
    if (!this.#channels.has(channel)) return;
    if (!(Number.isFinite(seq) && seq > 0)) {
      this.#page.deliver(channel, seq, data);
      return;
    }
    const known = this.#positions.get(channel);
    if (known) {
      if (known.epoch === epoch && seq <= known.seq) return;
      if (known.epoch !== epoch || seq > known.seq + 1) {
        this.#resync(channel);
        return;
      }
    }
    this.#resyncing.delete(channel);
    this.#positions.set(channel, epoch, seq);
    this.#page.deliver(channel, seq, data);
  }

  /** Asks the hub to serve `channel` again from this page's position (once until it does). */
  #resync(channel) {
    if (this.#resyncing.has(channel)) return;
    this.#resyncing.add(channel);
    this.#post({ type: 'subscribe', channel, position: this.#positions.get(channel) ?? null });
  }

  #onGap({ channel, epoch, after, upTo, reason }) {
    if (!this.#channels.has(channel)) return;
    this.#resyncing.delete(channel);
    const known = this.#positions.get(channel);
    if (reason === 'epoch_changed') {
      // Back in an epoch this page read from: what the hub serves of it again is dropped.
      const seen = this.#positions.seen(channel, epoch) ?? 0;
      this.#positions.set(channel, epoch, Math.max(seen, upTo));
      if (known) this.#page.emit('gap', { channel, after: seen, upTo: Math.max(seen, upTo), reason });
      return;
    }
    const from = known?.epoch === epoch ? Math.max(after, known.seq) : after;
    this.#positions.set(channel, epoch, Math.max(from, upTo));
    if (upTo > from) this.#page.emit('gap', { channel, after: from, upTo, reason });
  }

  #answerToken(request) {
    Promise.resolve()
      .then(() => this.#settings.token())
      .then(
        (token) => this.#post({ type: 'token', request, token: token ?? null }),
        (error) => this.#post({ type: 'token', request, error: String(error?.message ?? error) }),
      );
  }

  #addToOutbox(id, channel, data) {
    const entry = { id, channel, data };
    entry.acked = new Promise((resolve, reject) => Object.assign(entry, { resolve, reject }));
    entry.acked.catch(() => {});
    this.#outbox.set(id, entry);
    return entry;
  }

  /** Takes the entry of publish `id` out of the outbox. */
  #settle(id) {
    const entry = this.#outbox.get(id);
    this.#outbox.delete(id);
    return entry;
  }

  #rejectOutbox(message) {
    const pending = [...this.#outbox.values()];
    this.#outbox.clear();
    for (const entry of pending) entry.reject(new Error(message));
  }

  #setState(state, repeat) {
    if (state === this.#state && !(repeat && state === 'reconnecting')) return;
    const previous = this.#state;
    this.#state = state;
    this.#page.emit('state', { state, previous, nextAttemptAt: this.#status.nextAttemptAt });
  }

  #save() {
    saveState(this.#settings, this.#positions.list(), [...this.#outbox.values()]);
  }

  /**
   * Leaving, the page says goodbye to the hub (and a leading page hands the connection on);
   * back from the back/forward cache or a freeze, it joins again. While hidden, storage
   * holds where it stands, for a reload.
   */
  #listen() {
    const { window, document } = this.#settings;
    this.#listeners = listenToPage(window, document, {
      pagehide: () => {
        this.#save();
        this.#post({ type: 'leave' });
        this.#uplink.pageHidden();
      },
      pageshow: (event) => {
        clearSavedState(this.#settings);
        if (!event.persisted) return;
        this.#uplink.pageShown();
        this.#join();
      },
      freeze: () => {
        this.#save();
        this.#uplink.frozen();
      },
      resume: () => {
        this.#uplink.resumed();
        this.#join();
        this.check();
      },
      hidden: () => this.#save(),
      visible: () => {
        clearSavedState(this.#settings);
        this.check();
      },
    });
    if (window?.addEventListener) {
      const online = () => this.check();
      window.addEventListener('online', online);
      this.#listeners.push([window, 'online', online]);
    }
  }
}

// ---- shared mode: the hub next to the one connection ----------------------------------------

/**
 * Where a hub stands in one channel, and where each page in it stands.
 * @typedef {object} HubChannel
 * @property {string|null} epoch the server's, once it answered a `subscribe`
 * @property {number} seq the latest `seq` known
 * @property {Map<number, any>} history recent messages by `seq`, for pages behind
 * @property {Map<string, {epoch: string, seq: number}|null>} members each page's last
 *   delivered message (`null`: the page has none yet)
 * @property {boolean} awaiting a `subscribe` is out (or due after the next `hello`)
 * @property {{epoch: string, seq: number}|null} sent the `since` of that `subscribe`
 * @property {{since: number, until: number}|null} replay messages the server replays now
 * @property {number} lowestAsked the lowest position the server was asked to replay from
 * @property {number} lostThrough messages up to this one the server could not replay
 * @property {number} trimmedThrough messages up to this one left the history
 * @property {number} askedSinceTrim the lowest position asked since the history last shrank
 */

/**
 * The one connection of the pages that share it, and what each page is owed: every page gets
 * each message of its channels once, in order, from wherever it stands. Messages come from
 * the live stream, from the hub's recent history, or from the server (a `subscribe` with the
 * lowest position a page needs); what none of them has reaches the page as a gap.
 */
class Hub {
  #settings;
  #connection;
  /** @type {Map<string, {id: string, transport: object, channels: Set<string>, token: boolean}>} */
  #members = new Map();
  /** @type {Map<string, HubChannel>} */ #channels = new Map();
  /** @type {Map<string, string>} publish id → the page that published it */ #publishers = new Map();
  /** @type {Map<number, {resolve: Function, reject: Function, timer: any}>} */ #tokenRequests = new Map();
  #nextTokenRequest = 1;
  #statusTimer = null;
  #lastStatusAt = -Infinity;
  #started = false;
  #stopped = false;
  #onJoin;

  /**
   * @param {string[]} urls
   * @param {ReturnType<typeof withDefaults>} settings
   * @param {{onJoin?: (member: string) => void}} [hooks] `onJoin`: a page joined for the first time
   */
  constructor(urls, settings, { onJoin = () => {} } = {}) {
    this.#settings = settings;
    this.#onJoin = onJoin;
    // Each page bounds its own outbox; the token comes from a page that has a provider.
    const options = { ...settings, outboxLimit: Infinity, token: () => this.#askToken() };
    this.#connection = new Connection(urls, options, {
      event: (type, fields) => this.#onEvent(type, fields),
      subscribeFrames: () => [...this.#channels].map(([channel, state]) => this.#subscribeFrame(channel, state)),
      onSubscribed: (frame) => this.#onSubscribed(frame),
      onMessage: (frame) => this.#onMessage(frame),
      heard: () => this.#statusSoon(),
    });
  }

  /** Closes the connection with 1000 (the server frees it at once); the pages hear nothing. */
  stop() {
    this.#stopped = true;
    if (this.#statusTimer !== null) this.#settings.clearTimeout(this.#statusTimer);
    for (const { reject, timer } of this.#tokenRequests.values()) {
      this.#settings.clearTimeout(timer);
      reject(new Error('heartwire: the connection moved to another page'));
    }
    this.#tokenRequests.clear();
    this.#connection.close(CLOSE_LEFT, 'owner left');
  }

  /** A message from page `message.member`, which `transport` reaches. */
  receive(message, transport) {
    if (this.#stopped || message === null || typeof message !== 'object') return;
    if (message.type === 'join') {
      this.#join(message.member, message, transport);
      return;
    }
    const member = this.#members.get(message.member);
    if (!member) return;
    switch (message.type) {
      case 'subscribe': this.#subscribe(member, message.channel, message.position ?? null); break;
      case 'unsubscribe': this.#unsubscribe(member, message.channel); break;
      case 'publish': this.#publish(member, message.id, message.channel, message.data); break;
      case 'check': this.#connection.check(); break;
      case 'presence': this.#connection.presence(message.channel); break;
      case 'leave': this.remove(member.id); break;
      case 'token': this.#tokenAnswered(message); break;
      default: break;
    }
  }

  /** Page `id` is gone: its channels are left; with no page left, the connection says goodbye. */
  remove(id) {
    const member = this.#members.get(id);
    if (!member) return;
    this.#members.delete(id);
    for (const channel of [...member.channels]) this.#unsubscribe(member, channel);
    if (this.#members.size === 0) this.#connection.suspend('no page left');
  }

  /** A page joins, or joins again: what it announces replaces what the hub knew of it. */
  #join(id, { channels = [], outbox = [], token }, transport) {
    const known = this.#members.get(id);
    const member = known ?? { id, transport, channels: new Set(), token: false };
    member.transport = transport;
    member.token = token === true;
    const announced = new Map(channels.map(([channel, epoch, seq]) => [channel, epoch === null ? null : { epoch, seq }]));
    for (const channel of [...member.channels]) {
      if (!announced.has(channel)) this.#unsubscribe(member, channel);
    }
    const first = this.#members.size === 0;
    this.#members.set(id, member);
    if (!known) this.#onJoin(id);
    this.#sendTo([id], { type: 'status', status: this.#status() });
    for (const [channel, position] of announced) this.#subscribe(member, channel, position);
    for (const [publishId, channel, data] of outbox) this.#publish(member, publishId, channel, data);
    if (!first) return;
    // The first page's channels and token provider are known before the first attempt.
    if (this.#started) {
      this.#connection.wake();
    } else {
      this.#started = true;
      this.#connection.start();
    }
  }

  #subscribe(member, channel, position) {
    member.channels.add(channel);
    let state = this.#channels.get(channel);
    if (!state) {
      state = {
        epoch: null, seq: 0, history: new Map(), members: new Map(), awaiting: false, sent: null,
        replay: null, lowestAsked: Infinity, lostThrough: 0, trimmedThrough: 0, askedSinceTrim: Infinity,
      };
      this.#channels.set(channel, state);
      state.members.set(member.id, position);
      this.#ask(channel, state);
      return;
    }
    state.members.set(member.id, position);
    this.#serve(channel, state, member.id);
  }

  #unsubscribe(member, channel) {
    member.channels.delete(channel);
    const state = this.#channels.get(channel);
    if (!state) return;
    state.members.delete(member.id);
    if (state.members.size > 0) return;
    this.#channels.delete(channel);
    this.#connection.sendIfOpen({ op: 'unsubscribe', channel });
  }

  /** Subscribes (again) from the lowest position a page of `channel` stands at. */
  #ask(channel, state) {
    this.#connection.sendIfOpen(this.#subscribeFrame(channel, state));
  }

  #subscribeFrame(channel, state) {
    const cursors = [...state.members.values()].filter(Boolean);
    const epoch = state.epoch ?? cursors[0]?.epoch;
    let since = null;
    for (const cursor of cursors) {
      if (cursor.epoch === epoch && (since === null || cursor.seq < since.seq)) since = { epoch, seq: cursor.seq };
    }
    state.awaiting = true;
    state.sent = since;
    return since ? { op: 'subscribe', channel, since } : { op: 'subscribe', channel };
  }

  #onSubscribed({ channel, seq, epoch, recovered }) {
    const state = this.#channels.get(channel);
    if (!state || !Number.isFinite(seq)) return;
    const serverEpoch = String(epoch ?? '');
    const sent = state.sent;
    state.awaiting = false;
    state.sent = null;
    if (state.epoch !== serverEpoch) {
      if (state.epoch !== null) {
        // The server forgot the channel and numbers it anew.
        Object.assign(state, {
          seq: 0, replay: null, lowestAsked: Infinity, lostThrough: 0, trimmedThrough: 0, askedSinceTrim: Infinity,
        });
        state.history.clear();
      }
      state.epoch = serverEpoch;
    }
    state.seq = Math.max(state.seq, seq);
    if (sent?.epoch === serverEpoch) {
      state.lowestAsked = Math.min(state.lowestAsked, sent.seq);
      state.askedSinceTrim = Math.min(state.askedSinceTrim, sent.seq);
      if (recovered !== true) state.lostThrough = Math.max(state.lostThrough, seq);
      else if (sent.seq < seq) state.replay = { since: sent.seq, until: seq };
    } else {
      // The subscription starts at `seq`: what came before was never asked for.
      state.lowestAsked = Math.min(state.lowestAsked, seq);
    }
    for (const id of state.members.keys()) this.#serve(channel, state, id);
  }

  #onMessage({ channel, seq, data }) {
    const state = this.#channels.get(channel);
    if (!state) return;
    if (!(Number.isFinite(seq) && seq > 0)) {
      // Outside the channel's order: live, to every page, never kept.
      this.#sendTo([...state.members.keys()], { type: 'deliver', channel, seq: seq ?? 0, epoch: state.epoch, data });
      return;
    }
    if (state.epoch === null) return;
    if (!state.history.has(seq)) state.history.set(seq, data);
    state.seq = Math.max(state.seq, seq);
    if (state.replay && seq >= state.replay.until) state.replay = null;
    // The pages that stand right before it get it together (one message on a BroadcastChannel).
    const ready = [];
    for (const [id, cursor] of state.members) {
      if (cursor?.epoch === state.epoch && cursor.seq === seq - 1) {
        cursor.seq = seq;
        ready.push(id);
      }
    }
    if (ready.length > 0) this.#sendTo(ready, { type: 'deliver', channel, seq, epoch: state.epoch, data });
    for (const id of state.members.keys()) this.#serve(channel, state, id);
    this.#trim(state);
  }

  /**
   * Brings page `id` up to date in `channel`: from the history, in order. A message missing
   * there is awaited while the server may still send it; asked of the server when it was only
   * asked from a later position, or when the hub dropped it from its history and has not asked
   * since; otherwise reported as a gap.
   */
  #serve(channel, state, id) {
    if (state.epoch === null || !state.members.has(id)) return;
    const cursor = state.members.get(id);
    const { epoch } = state;
    if (cursor === null) {
      state.members.set(id, { epoch, seq: state.seq });
      this.#sendTo([id], { type: 'position', channel, epoch, seq: state.seq });
      return;
    }
    if (cursor.epoch !== epoch) {
      state.members.set(id, { epoch, seq: state.seq });
      this.#sendTo([id], { type: 'gap', channel, epoch, after: 0, upTo: state.seq, reason: 'epoch_changed' });
      return;
    }
    for (;;) {
      while (state.history.has(cursor.seq + 1)) {
        cursor.seq += 1;
        this.#sendTo([id], { type: 'deliver', channel, seq: cursor.seq, epoch, data: state.history.get(cursor.seq) });
      }
      if (cursor.seq >= state.seq) return;
      const missing = cursor.seq + 1;
      if (state.awaiting) return;
      if (state.replay && missing > state.replay.since && missing <= state.replay.until) return;
      const dropped = missing <= state.trimmedThrough && cursor.seq < state.askedSinceTrim;
      if (cursor.seq < state.lowestAsked || dropped) {
        this.#ask(channel, state);
        return;
      }
      const after = cursor.seq;
      const next = lowestAbove(state.history, after);
      cursor.seq = next === null ? state.seq : next - 1;
      const reason = missing <= Math.max(state.lostThrough, state.trimmedThrough) ? 'history_too_short' : 'skipped';
      this.#sendTo([id], { type: 'gap', channel, epoch, after, upTo: cursor.seq, reason });
    }
  }

  /** Keeps what a page still needs and the last few; never more than HUB_HISTORY_MAX. */
  #trim(state) {
    if (state.history.size <= HUB_HISTORY_KEEP + 32) return;
    let needed = Infinity;
    for (const cursor of state.members.values()) {
      if (cursor?.epoch === state.epoch) needed = Math.min(needed, cursor.seq + 1);
    }
    let size = state.history.size;
    for (const seq of [...state.history.keys()].sort((a, b) => a - b)) {
      const keep = size <= HUB_HISTORY_MAX && (size <= HUB_HISTORY_KEEP || seq >= needed);
      if (keep) break;
      state.history.delete(seq);
      state.trimmedThrough = Math.max(state.trimmedThrough, seq);
      state.askedSinceTrim = Infinity;
      size -= 1;
    }
  }

  #publish(member, id, channel, data) {
    this.#publishers.set(id, member.id);
    let acked;
    try {
      acked = this.#connection.publish(id, channel, data);
    } catch (error) {
      this.#settle(id, { type: 'refused', id, code: 'closed', reason: error.message });
      return;
    }
    acked.then(
      (seq) => this.#settle(id, { type: 'ack', id, seq }),
      (error) => this.#settle(id, { type: 'refused', id, code: error.code ?? 'closed', reason: error.reason ?? error.message }),
    );
  }

  /** Tells the page that published `id` how it went. */
  #settle(id, message) {
    const member = this.#publishers.get(id);
    this.#publishers.delete(id);
    if (member !== undefined && this.#members.has(member) && !this.#stopped) this.#sendTo([member], message);
  }

  #onEvent(type, fields) {
    if (this.#stopped) return;
    if (type === 'close') {
      // Every channel is subscribed again after the next hello; until then, no gap is final.
      for (const state of this.#channels.values()) Object.assign(state, { awaiting: true, replay: null });
    }
    // A refused publish is told to the page that published it.
    if (type === 'error' && this.#publishers.has(fields.id)) return;
    this.#broadcast({ type: 'event', event: type, fields, status: this.#status() });
  }

  #status() {
    const connection = this.#connection;
    this.#lastStatusAt = this.#settings.now();
    return {
      state: connection.state, rtt: connection.rtt, nextAttemptAt: connection.nextAttemptAt,
      lastHeardAt: connection.lastHeardAt, nextCheckAt: connection.nextCheckAt,
      session: connection.session, url: connection.url,
    };
  }

  /** Tells the pages how the connection is, at most every HUB_STATUS_EVERY_MS. */
  #statusSoon() {
    if (this.#statusTimer !== null || this.#stopped) return;
    const wait = Math.max(0, this.#lastStatusAt + HUB_STATUS_EVERY_MS - this.#settings.now());
    this.#statusTimer = this.#settings.setTimeout(() => {
      this.#statusTimer = null;
      if (!this.#stopped) this.#broadcast({ type: 'status', status: this.#status() });
    }, wait);
  }

  #broadcast(message) {
    this.#sendTo([...this.#members.keys()], message);
  }

  /** Sends `message` to the pages `ids`, once per transport. */
  #sendTo(ids, message) {
    const byTransport = new Map();
    for (const id of ids) {
      const member = this.#members.get(id);
      if (!member) continue;
      const group = byTransport.get(member.transport) ?? [];
      group.push(id);
      byTransport.set(member.transport, group);
    }
    for (const [transport, group] of byTransport) transport.send(group, message);
  }

  /** Asks a page with a token provider (this page's own first) for a token. */
  #askToken() {
    const providers = [...this.#members.values()].filter((member) => member.token);
    if (providers.length === 0) return null;
    const asked = providers.find((member) => member.transport.local) ?? providers[0];
    const request = this.#nextTokenRequest++;
    return new Promise((resolve, reject) => {
      const timer = this.#settings.setTimeout(() => {
        this.#tokenRequests.delete(request);
        reject(new Error('no page answered the request for a token'));
      }, this.#settings.connectTimeoutMs);
      this.#tokenRequests.set(request, { resolve, reject, timer });
      this.#sendTo([asked.id], { type: 'token-request', request });
    });
  }

  #tokenAnswered({ request, token, error }) {
    const waiter = this.#tokenRequests.get(request);
    if (!waiter) return;
    this.#tokenRequests.delete(request);
    this.#settings.clearTimeout(waiter.timer);
    if (error !== undefined) waiter.reject(new Error(error));
    else waiter.resolve(token);
  }
}

/** The lowest key of `history` above `after`, or `null`. */
function lowestAbove(history, after) {
  let lowest = null;
  for (const seq of history.keys()) {
    if (seq > after && (lowest === null || seq < lowest)) lowest = seq;
  }
  return lowest;
}

// ---- shared mode: between the hub and the pages ---------------------------------------------

/** From a hub to the page it runs in (the leading page's own member). */
class LocalTransport {
  local = true;
  #member;

  constructor(member) { this.#member = member; }

  send(ids, message) {
    // A copy, as a message between pages would be: a page that changes what it got
    // changes nothing the hub keeps.
    const copy = structuredClone(message);
    queueMicrotask(() => this.#member.receive(copy));
  }
}

/** From a hub in a SharedWorker to one page, over its MessagePort. */
class PortTransport {
  local = false;
  #port;

  constructor(port) { this.#port = port; }

  send(ids, message) { this.#port.postMessage(message); }
}

/** From a hub in the leading page to the others, over their BroadcastChannel. */
class BroadcastTransport {
  local = false;
  #channel;
  #hub;

  constructor(channel, hub) {
    this.#channel = channel;
    this.#hub = hub;
  }

  send(ids, message) { this.#channel.postMessage({ ...message, to: ids, hub: this.#hub }); }
}

/**
 * A page's way to the hub in a SharedWorker (this file is the worker's script). The page holds
 * a Web Lock of its own for as long as it lives, and speaks to the worker only once it holds
 * it: the worker asks for the same lock, and gets it when the page is gone.
 */
class WorkerUplink {
  #port;
  /** @type {object[]|null} messages held back until the page holds its lock */ #waiting = [];
  #releaseLock = () => {};
  #closed = false;

  /** @param {() => void} failed called when the worker cannot start */
  constructor(key, settings, member, failed) {
    const worker = new settings.SharedWorker(import.meta.url, { type: 'module', name: key });
    worker.onerror = failed;
    this.#port = worker.port;
    this.#port.onmessage = (event) => member.receive(event.data);
    if (!settings.locks) {
      this.#flush();
      return;
    }
    settings.locks.request(memberLockName(key, member.memberId), () => {
      if (this.#closed) return undefined;
      return new Promise((release) => {
        this.#releaseLock = release;
        this.#flush();
      });
    }).catch(() => this.#flush());
  }

  get role() { return 'worker'; }

  post(message) {
    if (this.#waiting) this.#waiting.push(message);
    else this.#port.postMessage(message);
  }

  pageHidden() {}

  pageShown() {}

  frozen() {}

  resumed() {}

  close() {
    this.#closed = true;
    this.#flush();
    this.#port.close();
    this.#releaseLock();
  }

  #flush() {
    const waiting = this.#waiting ?? [];
    this.#waiting = null;
    for (const message of waiting) this.#port.postMessage(message);
  }
}

/**
 * A page's way to a hub in whichever page holds the Web Lock of `key`: every page queues for
 * the lock; the holder runs the hub and answers the others on their BroadcastChannel. A page
 * that leaves or freezes hands the lock on, and the next in the queue takes over.
 */
class LeaderUplink {
  #key;
  #urls;
  #settings;
  #member;
  #channel;
  /** @type {Hub|null} the hub this page runs, while it leads */ #hub = null;
  /** The hub the page listens to: its own, or another page's. */ #hubId = null;
  #local = null;
  #remote = null;
  /** Ends this page's hold on the lock. */ #release = null;
  /** @type {AbortController|null} withdraws this page's place in the queue */ #queued = null;
  /** The page left (it may come back from the back/forward cache): it hears nothing. */
  #hidden = false;
  #closed = false;

  constructor(key, urls, settings, member) {
    this.#key = key;
    this.#urls = urls;
    this.#settings = settings;
    this.#member = member;
    this.#channel = new settings.BroadcastChannel(key);
    this.#channel.onmessage = (event) => this.#onMessage(event.data);
    this.#queue();
  }

  get role() { return this.#hub ? 'leader' : 'follower'; }

  post(message) {
    if (this.#hub) {
      const hub = this.#hub;
      const local = this.#local;
      queueMicrotask(() => hub.receive(message, local));
    } else {
      this.#channel.postMessage(message);
    }
  }

  pageHidden() {
    this.#hidden = true;
    this.#handOn();
  }

  pageShown() {
    this.#hidden = false;
    this.#queue();
  }

  frozen() { this.#handOn(); }

  resumed() { this.#queue(); }

  close() {
    this.#closed = true;
    this.#handOn();
    this.#channel.close();
  }

  #onMessage(message) {
    if (this.#hidden || message === null || typeof message !== 'object') return;
    if (message.hub === undefined) {
      // From a page to the hub.
      this.#hub?.receive(message, this.#remote);
      return;
    }
    if (this.#hub) return;
    if (message.type === 'hub') {
      this.#hubId = message.hub;
      this.#member.hubChanged();
      return;
    }
    this.#hubId ??= message.hub;
    if (message.hub !== this.#hubId) return;
    if (message.type === 'hub-gone') this.#hubId = null;
    if (message.to && !message.to.includes(this.#member.memberId)) return;
    this.#member.receive(message);
  }

  /** Queues for the lock, unless queued or leading already. */
  #queue() {
    if (this.#closed || this.#queued || this.#hub) return;
    const queued = new AbortController();
    this.#queued = queued;
    this.#settings.locks.request(this.#key, { signal: queued.signal }, () => {
      if (this.#queued !== queued) return undefined;
      this.#queued = null;
      return new Promise((release) => this.#lead(release));
    }).catch(() => {});
  }

  #lead(release) {
    this.#release = release;
    this.#hubId = newClientId(this.#settings.random);
    this.#local = new LocalTransport(this.#member);
    this.#remote = new BroadcastTransport(this.#channel, this.#hubId);
    this.#hub = new Hub(this.#urls, this.#settings);
    this.#channel.postMessage({ type: 'hub', hub: this.#hubId });
    this.#member.hubChanged();
  }

  /** Leaves the queue and, when leading, closes the connection and releases the lock. */
  #handOn() {
    this.#queued?.abort();
    this.#queued = null;
    if (!this.#hub) return;
    const hub = this.#hub;
    this.#hub = null;
    hub.stop();
    this.#channel.postMessage({ type: 'hub-gone', hub: this.#hubId });
    this.#hubId = null;
    this.#local = this.#remote = null;
    this.#release();
    this.#release = null;
    this.#member.receive({ type: 'hub-gone' });
  }
}

/** A hub of the page's own, when a SharedWorker could not start and nothing else can share. */
class SoloUplink {
  #hub;
  #local;

  constructor(urls, settings, member) {
    this.#local = new LocalTransport(member);
    this.#hub = new Hub(urls, settings);
  }

  get role() { return null; }

  post(message) {
    const hub = this.#hub;
    const local = this.#local;
    queueMicrotask(() => hub.receive(message, local));
  }

  pageHidden() {}

  pageShown() {}

  frozen() {}

  resumed() {}

  close() { this.#hub.stop(); }
}

/** The lock a page holds for as long as it lives, so a SharedWorker learns of its end. */
function memberLockName(key, member) {
  return `${key}#page:${member}`;
}

/**
 * The SharedWorker's side: one hub for the pages that connect, started by the first join
 * with that page's URLs and plain options.
 */
function serveSharedWorker(scope) {
  let hub = null;
  const watched = new Set();
  const watch = (member) => {
    if (watched.has(member)) return;
    watched.add(member);
    scope.navigator.locks?.request(memberLockName(scope.name, member), () => {
      watched.delete(member);
      hub?.remove(member);
    }).catch(() => {});
  };
  scope.addEventListener('connect', (event) => {
    const [port] = event.ports;
    const transport = new PortTransport(port);
    port.onmessage = ({ data: message }) => {
      if (hub === null && message?.type === 'join') {
        hub = new Hub(message.urls, withDefaults(message.urls, message.options), { onJoin: watch });
      }
      hub?.receive(message, transport);
    };
  });
}

if (typeof SharedWorkerGlobalScope === 'function' && globalThis instanceof SharedWorkerGlobalScope) {
  serveSharedWorker(globalThis);
}
