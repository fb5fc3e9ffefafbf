/**
 * What the browser tests share: the real heartwire server on a free loopback port, and
 * Debian's Chromium driven by playwright-core with a fresh profile.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm, mkdir, readFile, readdir } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const ARTIFACTS = join(REPO, 'test-artifacts');
const BINARY = process.env.HEARTWIRE_BIN ?? join(REPO, 'target/debug/heartwire');
const CHROMIUM = process.env.CHROMIUM_BIN ?? '/usr/bin/chromium';

/** Playwright polls page conditions this often (animation frames stop in background tabs). */
export const POLL_MS = 25;

/** The server's heartbeat settings in these tests. */
export const PING_INTERVAL_MS = 300;
export const PING_TIMEOUT_MS = 300;

/** A port that was free a moment ago on 127.0.0.1. */
export async function freePort() {
  const server = createServer();
  await new Promise((done, fail) => server.listen(0, '127.0.0.1', done).on('error', fail));
  const { port } = server.address();
  await new Promise((done) => server.close(done));
  return port;
}

/** Polls `condition` every 20 ms until it returns a truthy value or `timeoutMs` passes. */
export async function waitUntil(condition, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await condition();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((done) => setTimeout(done, 20));
  }
}

/** A `heartwire serve` process on `port`, started now and ready to accept connections. */
export class HeartwireServer {
  /** @type {import('node:child_process').ChildProcess|null} */
  #child = null;
  #log = '';

  /** @param {number} port @param {string[]} [extraArgs] more options of `heartwire serve` */
  constructor(port, extraArgs = []) {
    this.port = port;
    this.origin = `http://127.0.0.1:${port}`;
    this.extraArgs = extraArgs;
  }

  static async start(extraArgs = []) {
    const server = new HeartwireServer(await freePort(), extraArgs);
    await server.start();
    return server;
  }

  /** Starts the binary and waits (up to 10 s) until `/healthz` answers 200. */
  async start() {
    const args = [
      'serve',
      '--listen', `127.0.0.1:${this.port}`,
      '--ping-interval', `${PING_INTERVAL_MS}ms`,
      '--ping-timeout', `${PING_TIMEOUT_MS}ms`,
      ...this.extraArgs,
    ];
    const child = spawn(BINARY, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.#child = child;
    child.stdout.on('data', (chunk) => { this.#log += chunk; });
    child.stderr.on('data', (chunk) => { this.#log += chunk; });
    const exited = new Promise((done) => child.once('exit', (code) => done(code)));
    await waitUntil(async () => {
      if (child.exitCode !== null) throw new Error(`heartwire exited with ${child.exitCode}:\n${this.#log}`);
      try {
        const response = await fetch(`${this.origin}/healthz`);
        return response.ok;
      } catch {
        return false;
      }
    }, 10_000, `${BINARY} to serve on ${this.origin}\n${this.#log}`);
    this.exited = exited;
  }

  /** Kills the server at once (SIGKILL: no close frames, no reconnect hints). */
  async kill() {
    if (!this.#child || this.#child.exitCode !== null) return;
    this.#child.kill('SIGKILL');
    await this.exited;
    this.#child = null;
  }

  /** Stops the server as a deploy does (SIGTERM: it tells its clients, then exits). */
  async stop() {
    if (!this.#child || this.#child.exitCode !== null) return;
    this.#child.kill('SIGTERM');
    await this.exited;
    this.#child = null;
  }

  /** The server's Prometheus counters, by their full name with labels. */
  async metrics() {
    const text = await (await fetch(`${this.origin}/metrics`)).text();
    const counters = {};
    for (const line of text.split('\n')) {
      const match = /^(\S+) (\d+(?:\.\d+)?)$/.exec(line);
      if (match) counters[match[1]] = Number(match[2]);
    }
    return counters;
  }

  /** What the server printed, for failure messages. */
  get log() {
    return this.#log;
  }
}

/** The flags the brief asks for, plus a DevTools port the tests connect to. */
const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic',
  // Pages the tests do not look at must keep their timers running at full speed.
  '--disable-background-timer-throttling', '--disable-renderer-backgrounding',
  '--disable-backgrounding-occluded-windows',
  '--remote-debugging-port=0',
];

/**
 * Keeps the WebSockets of a frozen page open, as Chromium did before Blink's runtime feature
 * `DisconnectWebSocketOnBFCache` (on by default in Chromium 156). With the feature on, freezing
 * a page fails each of its WebSockets at once ("WebSocket connection to … failed: Page entered
 * Back-Forward Cache." on the console), whether the page was frozen for the back/forward cache
 * or in place, as `Page.setWebLifecycleState` does; the browser keeps answering the server's
 * Pings until the page resumes, then closes the socket (1001 to the server, 1006 to the page).
 * Chromium's own tests of the earlier behaviour run with this same switch. docs/BROWSER.md
 * ("Observed in Chromium 156") has the experiments.
 */
export const KEEP_FROZEN_PAGES_WEBSOCKETS = '--disable-blink-features=DisconnectWebSocketOnBFCache';

/** Sends SIGKILL to every process of group `pgid`; a group already gone is fine. */
function killGroup(pgid) {
  try {
    process.kill(-pgid, 'SIGKILL');
  } catch (error) {
    if (error.code !== 'ESRCH') throw error;
  }
}

/** Whether a process of group `pgid` is still running (zombies hold no files and count as gone). */
async function groupHasLiveProcess(pgid) {
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let stat;
    try {
      stat = await readFile(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue; // it ended while we looked
    }
    // Fields after the command name, which ends with the last ')': state, ppid, pgrp, …
    const [state, , pgrp] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(pgrp) === pgid && state !== 'Z') return true;
  }
  return false;
}

/**
 * Starts Chromium with a fresh profile and connects playwright-core to it over CDP.
 *
 * Also returns `pgid`, the process group of Chromium and its helpers (to stop or kill them all).
 *
 * Playwright's own launch turns on focus emulation for every page, and a page with focus
 * emulation cannot be frozen (`Page.setWebLifecycleState` is then ignored); connecting with
 * `noDefaults` leaves the default context as Chromium made it. `extraArgs` are added to the
 * command line. Returns the default context and a function that closes the browser and
 * removes the profile.
 *
 * Chromium runs in a process group of its own: its helpers (zygotes, GPU, network and storage
 * services, renderers) share it, and the storage service may still be writing into the
 * profile after the main process is gone. Closing kills the whole group and waits until none
 * of its processes is left before the profile is removed.
 */
export async function launchBrowser({ extraArgs = [] } = {}) {
  const profile = await mkdtemp(join(tmpdir(), 'heartwire-chromium-'));
  const child = spawn(CHROMIUM, [...CHROMIUM_ARGS, ...extraArgs, `--user-data-dir=${profile}`, 'about:blank'], {
    stdio: ['ignore', 'ignore', 'pipe'],
    detached: true,
  });
  let stderr = '';
  child.stderr.on('data', (chunk) => { stderr += chunk; });
  const exited = new Promise((done) => child.once('exit', done));
  const port = await waitUntil(async () => {
    if (child.exitCode !== null) throw new Error(`chromium exited with ${child.exitCode}:\n${stderr}`);
    try {
      const [firstLine] = (await readFile(join(profile, 'DevToolsActivePort'), 'utf8')).split('\n');
      return Number(firstLine) || null;
    } catch {
      return null;
    }
  }, 20_000, `chromium to open its DevTools port\n${stderr}`);
  const browser = await chromium.connectOverCDP(`http://127.0.0.1:${port}`, { noDefaults: true, timeout: 20_000 });
  const [context] = browser.contexts();
  const close = async () => {
    await browser.close();
    killGroup(child.pid);
    await exited;
    await waitUntil(async () => !(await groupHasLiveProcess(child.pid)), 20_000, 'chromium\'s processes to end');
    await rm(profile, { recursive: true, force: true });
  };
  return { context, close, pgid: child.pid };
}

/**
 * Opens the demo page as `name` and waits until it is connected. Every state the client
 * goes through from then on is recorded in `window.recordedStates`, every close in
 * `window.recordedCloses` (with `at`, the page's clock when it was reported). `path` is the
 * demo's address (`/?shared` shares one connection between tabs); `beforeLoad(page)` runs
 * before the page is loaded (to expose bindings or add init scripts).
 */
export async function openDemo(context, origin, name, { path = '/', beforeLoad = async () => {} } = {}) {
  const page = await context.newPage();
  await beforeLoad(page);
  await page.goto(`${origin}${path}`);
  await page.fill('#name', name);
  await page.dispatchEvent('#name', 'change');
  await page.waitForFunction(() => window.heartwire?.state === 'open', null, { polling: POLL_MS, timeout: 10_000 });
  await page.evaluate(() => {
    window.recordedStates = [];
    window.recordedCloses = [];
    window.heartwire.addEventListener('state', (event) => window.recordedStates.push(event.state));
    window.heartwire.addEventListener('close', (event) => {
      window.recordedCloses.push({
        code: event.code, reason: event.reason, willReconnect: event.willReconnect,
        nextAttemptAt: event.nextAttemptAt, at: Date.now(),
      });
    });
  });
  return page;
}

/**
 * Types `text` into the composer and sends it with Enter (a click would wait for animation
 * frames, which a page in a background tab does not get).
 */
export async function say(page, text) {
  await page.fill('#text', text);
  await page.press('#text', 'Enter');
}

/** The chat lines the page shows, as "name: text", with queued lines marked. */
export async function chatLines(page) {
  return page.$$eval('#messages .msg', (items) => items.map((item) => {
    const line = `${item.querySelector('.who').textContent}: ${item.querySelector('.text').textContent}`;
    return item.classList.contains('queued') ? `(queued) ${line}` : line;
  }));
}

/**
 * Makes `page` record every message its client delivers, across reloads and navigations, in
 * its own sessionStorage (written as each message is delivered: a record sent out of the page
 * could be lost as the page unloads). Call before the page is loaded; read the record with
 * {@link delivered}.
 */
export async function recordDeliveries(page) {
  await page.addInitScript(() => {
    // The demo assigns its client to window.heartwire right after making it, before any
    // message can arrive.
    let client;
    Object.defineProperty(window, 'heartwire', {
      configurable: true,
      get: () => client,
      set: (value) => {
        client = value;
        value.addEventListener('message', (event) => {
          const record = JSON.parse(sessionStorage.getItem('test.delivered') ?? '[]');
          record.push({ text: event.data?.text, seq: event.seq });
          sessionStorage.setItem('test.delivered', JSON.stringify(record));
        });
      },
    });
  });
}

/** What {@link recordDeliveries} recorded in `page` so far (empty while it navigates). */
export async function delivered(page) {
  try {
    return await page.evaluate(() => JSON.parse(sessionStorage.getItem('test.delivered') ?? '[]'));
  } catch {
    return [];
  }
}

/**
 * Sends `count` chat lines `m1 … m{count}` as `name` from `page`, one every `everyMs`, and
 * resolves once every one is acknowledged.
 */
export function stream(page, name, count, everyMs) {
  return page.evaluate(async ({ name, count, everyMs }) => {
    const acks = [];
    for (let i = 1; i <= count; i++) {
      acks.push(window.heartwire.send('room:lobby', { name, text: `m${i}` }));
      await new Promise((done) => setTimeout(done, everyMs));
    }
    await Promise.all(acks);
  }, { name, count, everyMs });
}

/** `['m1', …, 'm{count}']` */
export function streamed(count) {
  return Array.from({ length: count }, (_, i) => `m${i + 1}`);
}

/** Makes sure the artifacts directory exists and returns the path of `file` in it. */
export async function artifact(file) {
  await mkdir(ARTIFACTS, { recursive: true });
  return join(ARTIFACTS, file);
}
