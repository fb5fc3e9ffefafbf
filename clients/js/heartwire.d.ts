/**
 * Type declarations of heartwire.js, the browser client of heartwire's native `/ws` endpoint.
 * docs/BROWSER.md describes the behaviour; the JSDoc in heartwire.js is the same contract.
 */

/**
 * - `connecting`: the first connection is being made.
 * - `open`: the server said hello and answers.
 * - `degraded`: still connected, but a probe is late or the browser went offline.
 * - `reconnecting`: the connection was lost; `nextAttemptAt` tells when the next attempt starts.
 * - `closed`: for good.
 */
export type HeartwireState = 'connecting' | 'open' | 'degraded' | 'reconnecting' | 'closed';

export interface HeartwireOptions {
  /** Called before every attempt; its answer is sent as the `token` query parameter. */
  token?: (() => string | null | undefined | Promise<string | null | undefined>) | null;
  /** Window of the first retry's delay (500). */
  backoffBaseMs?: number;
  /** Largest window of a retry's delay (20000). */
  backoffCapMs?: number;
  /** A connection open this long was healthy: the backoff starts again (30000). */
  healthyAfterMs?: number;
  /** Give up after this many attempts in a row (Infinity). */
  maxAttempts?: number;
  /** Give up once a streak of failures lasted this long (Infinity). */
  maxElapsedMs?: number;
  /** An attempt that got no `hello` by then failed (10000). */
  connectTimeoutMs?: number;
  /** While on a fallback URL, how often the primary is probed (30000). */
  failbackMs?: number;
  /** How many published messages may wait for their ack (1024). */
  outboxLimit?: number;
  /** A timer this much late was delayed by a throttled tab or a sleeping machine (250). */
  lateTimerMs?: number;
  /** A busy connection is probed this long after the last round-trip sample (30000). */
  rttIntervalMs?: number;
  /**
   * Share one WebSocket with the other pages of this origin that use the same URLs with
   * `shared: true`: through a SharedWorker, else through the page that holds a Web Lock
   * (false).
   */
  shared?: boolean;
  /** Where positions and unacknowledged publishes wait while the page is hidden (`sessionStorage`; `null` keeps nothing). */
  storage?: Pick<Storage, 'getItem' | 'setItem' | 'removeItem'> | null;
  /** The key in `storage` (`heartwire:` and the URLs). */
  storageKey?: string;
  /** The WebSocket class (the browser's). */
  WebSocket?: typeof WebSocket;
  /** Milliseconds since the epoch (`Date.now`). */
  now?: () => number;
  /** Uniform in [0, 1) (`Math.random`). */
  random?: () => number;
  setTimeout?: (callback: () => void, ms: number) => unknown;
  clearTimeout?: (handle: any) => void;
  /** Source of `online`, `offline`, `pageshow`, `pagehide`; `null` to ignore them. */
  window?: EventTarget | null;
  /** Source of `visibilitychange`, `freeze` and `resume`; `null` to ignore them. */
  document?: (EventTarget & { visibilityState?: string }) | null;
  /** Web Locks, for shared mode (`navigator.locks`). */
  locks?: LockManager | null;
  /** For shared mode (the browser's). */
  BroadcastChannel?: typeof BroadcastChannel | null;
  /** For shared mode (the browser's); `null` shares through Web Locks and BroadcastChannel. */
  SharedWorker?: typeof SharedWorker | null;
}

/** Where a message sits in its channel. */
export interface MessageMeta {
  channel: string;
  seq: number;
}

/** An event of a {@link Heartwire}: `type` names it, the other fields depend on it. */
export class HeartwireEvent extends Event {
  constructor(type: string, fields: object);
}

export interface HeartwireOpenEvent extends HeartwireEvent {
  readonly type: 'open';
  readonly url: string;
  readonly session: string | null;
}

export interface HeartwireMessageEvent<T = unknown> extends HeartwireEvent {
  readonly type: 'message';
  readonly channel: string;
  readonly seq: number;
  readonly data: T;
}

export interface HeartwireCloseEvent extends HeartwireEvent {
  readonly type: 'close';
  readonly code: number;
  readonly reason: string;
  readonly wasClean: boolean;
  readonly willReconnect: boolean;
  readonly nextAttemptAt: number | null;
}

export interface HeartwireStateEvent extends HeartwireEvent {
  readonly type: 'state';
  readonly state: HeartwireState;
  readonly previous: HeartwireState;
  readonly nextAttemptAt: number | null;
}

export interface HeartwireGapEvent extends HeartwireEvent {
  readonly type: 'gap';
  readonly channel: string;
  /** The last message delivered before the gap (0 after `epoch_changed`). */
  readonly after: number;
  /** The last message that will not arrive. */
  readonly upTo: number;
  readonly reason: 'history_too_short' | 'epoch_changed' | 'skipped';
}

export interface HeartwireErrorEvent extends HeartwireEvent {
  readonly type: 'error';
  readonly code: string;
  readonly reason: string;
  readonly id: string | undefined;
  /** The channel it is about: a `forbidden` subscribe, publish or presence request. */
  readonly channel: string | null;
}

/** The server took a fresh token from the provider (sent before the old one expired). */
export interface HeartwireRefreshedEvent extends HeartwireEvent {
  readonly type: 'refreshed';
  /** How long the new token lasts, or `null` when it does not expire. */
  readonly expiresInMs: number | null;
}

/** The answer to a `presence` request. */
export interface HeartwirePresenceEvent extends HeartwireEvent {
  readonly type: 'presence';
  readonly channel: string;
  readonly members: string[];
  readonly users: { user: string; connections: number }[];
}

/** Someone arrived on (`join`) or left (`leave`) a subscribed channel with presence. */
export interface HeartwireMemberEvent extends HeartwireEvent {
  readonly type: 'join' | 'leave';
  readonly channel: string;
  readonly session: string;
  /** Their user; `null` for an anonymous session. */
  readonly user: string | null;
}

/** The server ended a subscription the page did not leave: a token refresh took away the
 *  permission to read the channel (an `error` `forbidden` naming it came just before). Its
 *  handlers hear nothing more and it is not asked for again. */
export interface HeartwireUnsubscribedEvent extends HeartwireEvent {
  readonly type: 'unsubscribed';
  readonly channel: string;
}

export interface HeartwireEventMap {
  open: HeartwireOpenEvent;
  message: HeartwireMessageEvent;
  close: HeartwireCloseEvent;
  state: HeartwireStateEvent;
  gap: HeartwireGapEvent;
  error: HeartwireErrorEvent;
  refreshed: HeartwireRefreshedEvent;
  presence: HeartwirePresenceEvent;
  join: HeartwireMemberEvent;
  leave: HeartwireMemberEvent;
  unsubscribed: HeartwireUnsubscribedEvent;
}

/** A WebSocket to a heartwire server that stays connected. */
export class Heartwire extends EventTarget {
  /**
   * @param urlOrUrls the `/ws` URL, or several: the first is the primary, the others are
   *   tried in turn when it fails.
   */
  constructor(urlOrUrls: string | string[], options?: HeartwireOptions);

  readonly state: HeartwireState;
  /** Round trip of the last probe, in ms; `null` before the first. */
  readonly rtt: number | null;
  /** While reconnecting, when the next attempt starts (ms since the epoch). */
  readonly nextAttemptAt: number | null;
  /** When a frame last arrived from the server (ms since the epoch). */
  readonly lastHeardAt: number | null;
  /** While connected, when the client probes the server unless a frame arrives first. */
  readonly nextCheckAt: number | null;
  /** The server's session id of the current connection. */
  readonly session: string | null;
  /** The URL in use or being tried. */
  readonly url: string;
  /** Messages this page published that wait to be sent or acknowledged. */
  readonly outboxSize: number;
  /** Those messages, oldest first; after a reload, those the page before it left. */
  readonly outbox: ReadonlyArray<{ readonly id: string; readonly channel: string; readonly data: unknown }>;
  /**
   * How this page shares its connection: through a SharedWorker, as the page that holds it,
   * or as one that uses the leader's; `null` when the page has its own.
   */
  readonly sharing: 'worker' | 'leader' | 'follower' | null;

  /**
   * Publishes `data` (any value `JSON.stringify` takes) on `channel`; resolves with its `seq` once the server accepted it.
   * @throws when the outbox is full or the client is closed; TypeError for a bad channel name.
   */
  send(channel: string, data: unknown): Promise<number>;
  /** Calls `handler` for every message on `channel`; returns a function that stops it. */
  subscribe<T = unknown>(channel: string, handler: (data: T, meta: MessageMeta) => void): () => void;
  /** Closes for good: no reconnect; pending sends are rejected. */
  close(code?: number, reason?: string): void;
  /** Probes now and reconnects at once if the probe fails; while waiting, attempts now. */
  check(): void;
  /** Asks who is subscribed to `channel`; the answer is a `presence` event. `false` when
   *  not connected (nothing was sent). */
  presence(channel: string): boolean;

  addEventListener<K extends keyof HeartwireEventMap>(
    type: K,
    listener: (this: Heartwire, event: HeartwireEventMap[K]) => void,
    options?: boolean | AddEventListenerOptions,
  ): void;
  addEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | AddEventListenerOptions,
  ): void;
  removeEventListener<K extends keyof HeartwireEventMap>(
    type: K,
    listener: (this: Heartwire, event: HeartwireEventMap[K]) => void,
    options?: boolean | EventListenerOptions,
  ): void;
  removeEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | EventListenerOptions,
  ): void;
}

/** The delay before attempt `attempt` of a streak: uniform in `[0, min(cap, base·2^(attempt-1))]`. */
export function fullJitterDelay(
  attempt: number,
  policy: { baseMs: number; capMs: number },
  random: () => number,
): number;

/** The delay a close reason names at its end (`… retry after 2300 ms`), or `null`. */
export function retryHintFromReason(reason: string): number | null;

/** What a client does after the server closed with `code` and `reason`. */
export type ReconnectRule =
  | { retry: 'backoff' }
  | { retry: 'after'; afterMs: number }
  | { retry: 'fresh_token' }
  | { retry: 'never' };

/** The rule of docs/PROTOCOL.md ("Client reconnect rules") for a close. */
export function reconnectRule(code: number, reason: string): ReconnectRule;

/** When a token that lasts `lifetimeMs` more is refreshed, in ms from now: at 80 % of it or
 *  30 s before its end, whichever comes first, but never before half of it. */
export function refreshAfterMs(lifetimeMs: number): number;
