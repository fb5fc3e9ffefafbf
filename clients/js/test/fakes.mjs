/**
 * Test doubles for the unit tests of heartwire.js: a clock whose timers fire only when the
 * test advances it, a WebSocket class whose "server side" the test plays, and a client on
 * both that records its events.
 */

import { Heartwire } from '../heartwire.js';

/** A manual clock: `setTimeout` callbacks run only inside `advance`. */
export class FakeClock {
  now = 1_000_000;
  #timers = new Map();
  #nextId = 1;

  setTimeout = (fn, ms) => {
    const id = this.#nextId++;
    this.#timers.set(id, { due: this.now + Math.max(0, ms), fn });
    return id;
  };

  clearTimeout = (id) => {
    this.#timers.delete(id);
  };

  /** Moves time forward by `ms`, running each timer at its due time, in order. */
  advance(ms) {
    const end = this.now + ms;
    for (let fired = 0; fired < 10_000; fired++) {
      const next = this.#earliest();
      if (!next || next.due > end) break;
      this.#timers.delete(next.id);
      this.now = Math.max(this.now, next.due);
      next.fn();
    }
    this.now = end;
  }

  /**
   * Moves time forward by `ms` without running any timer, as a frozen tab or a sleeping
   * machine does; the overdue timers then fire late, all at the new time.
   */
  sleep(ms) {
    this.now += ms;
    this.advance(0);
  }

  /** Milliseconds until the earliest pending timer, or null. */
  nextTimerIn() {
    const next = this.#earliest();
    return next ? next.due - this.now : null;
  }

  #earliest() {
    let best = null;
    for (const [id, timer] of this.#timers) {
      if (!best || timer.due < best.due) best = { id, ...timer };
    }
    return best;
  }
}

/** A WebSocket whose peer is the test. Every instance is kept in `FakeWebSocket.all`. */
export class FakeWebSocket {
  /** @type {FakeWebSocket[]} */
  static all = [];

  /** @type {object[]} frames the client sent, parsed */
  sent = [];
  closedWith = null;
  onmessage = null;
  onclose = null;

  constructor(url) {
    this.url = url;
    FakeWebSocket.all.push(this);
  }

  static reset() {
    FakeWebSocket.all = [];
  }

  static latest() {
    return FakeWebSocket.all.at(-1);
  }

  send(text) {
    if (this.closedWith) throw new Error('closed');
    this.sent.push(JSON.parse(text));
  }

  /** Closes, refusing the codes a browser refuses to a page (all but 1000 and 3000–4999). */
  close(code, reason) {
    if (code !== undefined && code !== 1000 && !(code >= 3000 && code <= 4999)) {
      throw new Error(`InvalidAccessError: close code ${code} is not 1000 or 3000-4999`);
    }
    this.closedWith ??= { code, reason };
  }

  /** The server sends `frame` (an object) to the client. */
  receive(frame) {
    this.onmessage?.({ data: JSON.stringify(frame) });
  }

  /** The server greets the client. */
  hello({ session = 's1', ping_interval_ms = 60_000, ping_timeout_ms = 60_000, reports } = {}) {
    const hello = { op: 'hello', session, ping_interval_ms, ping_timeout_ms, server: 'heartwire/test' };
    if (reports !== undefined) hello.reports = reports;
    this.receive(hello);
  }

  /** The connection ends with `code`. */
  serverClose(code, reason = '', wasClean = true) {
    this.closedWith ??= { code, reason };
    this.onclose?.({ code, reason, wasClean });
  }

  /** Frames of one op sent by the client. */
  sentOps(op) {
    return this.sent.filter((frame) => frame.op === op);
  }
}

/** A seeded generator uniform in [0, 1) (mulberry32). */
export function seededRandom(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Lets pending promise callbacks and microtasks run (a token provider's answer, messages
 * between fake pages, locks being granted).
 */
export async function settle() {
  for (let i = 0; i < 50; i++) await Promise.resolve();
}

/**
 * A client on `clock` and fake sockets, recording its events.
 *
 * @param {FakeClock} clock
 * @param {object} [options] overrides of the client's options
 * @param {string|string[]} [urls]
 */
export function recordedClient(clock, options = {}, urls = 'ws://primary/ws') {
  const hw = new Heartwire(urls, {
    WebSocket: FakeWebSocket,
    now: () => clock.now,
    setTimeout: clock.setTimeout,
    clearTimeout: clock.clearTimeout,
    random: () => 0.5,
    window: null,
    document: null,
    ...options,
  });
  const events = [];
  for (const type of ['open', 'close', 'state', 'message', 'gap', 'error']) {
    hw.addEventListener(type, (event) => events.push(event));
  }
  return { hw, events, states: () => events.filter((e) => e.type === 'state').map((e) => e.state) };
}

/** A fake page: the `window` and `document` event targets a client listens to. */
export function fakePage() {
  const window = new EventTarget();
  const document = new EventTarget();
  document.visibilityState = 'visible';
  return { window, document };
}

/** Dispatches a page lifecycle event, with `persisted` for `pageshow` and `pagehide`. */
export function pageEvent(target, type, fields = {}) {
  target.dispatchEvent(Object.assign(new Event(type), fields));
}

/** A `sessionStorage` in memory; `refuse` makes every write throw, as a full storage does. */
export class FakeStorage {
  items = new Map();
  refuse = false;

  getItem(key) { return this.items.has(key) ? this.items.get(key) : null; }

  setItem(key, value) {
    if (this.refuse) throw new Error('QuotaExceededError');
    this.items.set(key, String(value));
  }

  removeItem(key) { this.items.delete(key); }
}

/**
 * A BroadcastChannel between the fake pages of one test: a message reaches every other
 * channel of the same name (a structured copy, in a microtask), except those `deaf`, which
 * lose it as a browser may lose what is sent to a page it froze.
 */
export class FakeBroadcastChannel {
  /** @type {FakeBroadcastChannel[]} */
  static open = [];
  onmessage = null;
  deaf = false;

  constructor(name) {
    this.name = name;
    FakeBroadcastChannel.open.push(this);
  }

  static reset() { FakeBroadcastChannel.open = []; }

  postMessage(message) {
    for (const other of FakeBroadcastChannel.open) {
      if (other === this || other.name !== this.name || other.deaf) continue;
      const copy = structuredClone(message);
      queueMicrotask(() => other.onmessage?.({ data: copy }));
    }
  }

  close() {
    FakeBroadcastChannel.open = FakeBroadcastChannel.open.filter((channel) => channel !== this);
  }
}

/**
 * Web Locks for the fake pages of one test: exclusive locks granted in request order, in a
 * microtask; a request withdrawn through its signal rejects with AbortError.
 */
export class FakeLocks {
  /** @type {Map<string, {held: object|null, queue: object[]}>} */
  #locks = new Map();

  request(name, optionsOrCallback, maybeCallback) {
    const callback = maybeCallback ?? optionsOrCallback;
    const signal = maybeCallback ? optionsOrCallback?.signal : undefined;
    const lock = this.#lock(name);
    return new Promise((resolve, reject) => {
      const waiter = { callback, resolve, reject, name };
      lock.queue.push(waiter);
      signal?.addEventListener('abort', () => {
        const index = lock.queue.indexOf(waiter);
        if (index === -1) return;
        lock.queue.splice(index, 1);
        reject(Object.assign(new Error('aborted'), { name: 'AbortError' }));
      });
      queueMicrotask(() => this.#grant(name));
    });
  }

  #lock(name) {
    if (!this.#locks.has(name)) this.#locks.set(name, { held: null, queue: [] });
    return this.#locks.get(name);
  }

  #grant(name) {
    const lock = this.#lock(name);
    if (lock.held || lock.queue.length === 0) return;
    const waiter = lock.queue.shift();
    lock.held = waiter;
    Promise.resolve()
      .then(() => waiter.callback({ name }))
      .then(waiter.resolve, waiter.reject)
      .finally(() => {
        lock.held = null;
        this.#grant(name);
      });
  }
}
