/**
 * One connection for the tabs of a browser: three demo pages opened with `?shared` in one
 * Chromium, while a fourth page (with its own connection) streams messages to the lobby.
 *
 * - Chromium as shipped has SharedWorker: the pages share the worker's one WebSocket. A page
 *   that closes and a page that is frozen miss nothing; the worker outlives any one page, so
 *   no page "owns" the socket there.
 * - Started with `--disable-shared-workers`, Chromium has no SharedWorker and the pages elect
 *   a leader with Web Locks, which holds the socket and talks to the others over a
 *   BroadcastChannel. The leader is closed, then the next leader is frozen: each time another
 *   page takes over from the shared positions, and the gap is the reconnect alone.
 * - Without SharedWorker and without Web Locks each page keeps its own socket.
 *
 * The server runs with a 300 ms ping interval and a 300 ms ping timeout.
 */
import { test, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { HeartwireServer, launchBrowser, openDemo, chatLines, stream, streamed, waitUntil, POLL_MS } from './harness.mjs';

const NATIVE_OPEN = 'heartwire_connections_open{endpoint="native"}';
/** Messages the streaming page sends, and how often. */
const COUNT = 80;
const EVERY_MS = 25;
/**
 * The longest a page may go without a message while another takes the connection over. No
 * backoff delay is involved (a takeover is no failure): only the lock's hand-over, one
 * WebSocket handshake and the replay of what was missed, on loopback. The stream itself
 * brings a message every EVERY_MS.
 */
const TAKEOVER_GAP_MS = 1_000;

let server;

beforeEach(async () => {
  server = await HeartwireServer.start();
});

afterEach(async () => {
  await server?.kill();
});

/** Opens `count` shared demo pages, each recording what it delivers with the page's clock. */
async function sharedPages(context, count) {
  const pages = [];
  for (let i = 1; i <= count; i++) {
    const page = await openDemo(context, server.origin, `tab${i}`, { path: '/?shared' });
    await page.evaluate(() => {
      window.delivered = [];
      window.heartwire.addEventListener('message', (event) => window.delivered.push({ text: event.data?.text, at: Date.now() }));
    });
    pages.push(page);
  }
  return pages;
}

const texts = (page) => page.evaluate(() => window.delivered.map((m) => m.text));
/** What the page shows: bob's lines, in the order shown. */
const shown = async (page) => (await chatLines(page)).filter((line) => line.startsWith('bob: ')).map((line) => line.slice(5));
const openConnections = async () => (await server.metrics())[NATIVE_OPEN];

/** Waits until `page` delivered `text`. */
function until(page, text, timeoutMs = 10_000) {
  return page.waitForFunction((wanted) => window.delivered.some((m) => m.text === wanted), text, { polling: POLL_MS, timeout: timeoutMs });
}

/** The longest wait between two messages `page` delivered, in ms, and after which message. */
async function longestGap(page) {
  return page.evaluate(() => {
    let gap = { ms: 0, after: null };
    for (let i = 1; i < window.delivered.length; i++) {
      const ms = window.delivered[i].at - window.delivered[i - 1].at;
      if (ms > gap.ms) gap = { ms, after: window.delivered[i - 1].text };
    }
    return gap;
  });
}

test('SharedWorker (Chromium as shipped): one socket for three pages; a page closed and a page frozen mid-stream miss nothing', async (t) => {
  const browser = await launchBrowser();
  try {
    const [tab1, tab2, tab3] = await sharedPages(browser.context, 3);
    const sharing = await Promise.all([tab1, tab2, tab3].map((page) => page.evaluate(() => window.heartwire.sharing)));
    assert.deepEqual(sharing, ['worker', 'worker', 'worker'], 'Chromium takes the SharedWorker path');
    assert.equal(await openConnections(), 1, 'one WebSocket at the server for three pages');
    assert.equal(await tab2.textContent('#sharing'), 'shared (worker)');

    const bob = await openDemo(browser.context, server.origin, 'bob');
    const streaming = stream(bob, 'bob', COUNT, EVERY_MS);
    await until(tab3, 'm15');
    await tab1.close();
    await until(tab3, 'm30');
    const cdp = await browser.context.newCDPSession(tab2);
    await cdp.send('Page.setWebLifecycleState', { state: 'frozen' });
    await until(tab3, 'm50');
    await cdp.send('Page.setWebLifecycleState', { state: 'active' });
    await streaming;
    await until(tab2, `m${COUNT}`);
    await until(tab3, `m${COUNT}`);
    await tab3.evaluate(() => new Promise((done) => setTimeout(done, 200)));
    assert.deepEqual(await texts(tab2), streamed(COUNT), 'the page that was frozen: every message once, in order');
    assert.deepEqual(await texts(tab3), streamed(COUNT), 'every message once, in order');
    for (const page of [tab2, tab3]) assert.deepEqual(await shown(page), streamed(COUNT), 'and shows each once, in order');
    assert.equal(await openConnections(), 2, 'still one socket for the pages (and bob\'s own)');
    const gap = await longestGap(tab3);
    t.diagnostic(`tab3's longest wait between messages: ${gap.ms} ms (after ${gap.after})`);
  } finally {
    await browser.close();
  }
});

test('Web Locks (no SharedWorker): the leader closed, then the next leader frozen, mid-stream: another page takes over each time and every page shows every message once, in order', async (t) => {
  const browser = await launchBrowser({ extraArgs: ['--disable-shared-workers'] });
  try {
    const [tab1, tab2, tab3] = await sharedPages(browser.context, 3);
    const role = (page) => page.evaluate(() => window.heartwire.sharing);
    assert.deepEqual(await Promise.all([tab1, tab2, tab3].map(role)), ['leader', 'follower', 'follower']);
    assert.equal(await openConnections(), 1, 'one WebSocket at the server for three pages');

    const bob = await openDemo(browser.context, server.origin, 'bob');
    const streaming = stream(bob, 'bob', COUNT, EVERY_MS);
    await until(tab3, 'm15');
    await tab1.close();
    await tab2.waitForFunction(() => window.heartwire.sharing === 'leader', null, { polling: POLL_MS, timeout: 5_000 });
    await until(tab3, 'm40');
    const cdp = await browser.context.newCDPSession(tab2);
    await cdp.send('Page.setWebLifecycleState', { state: 'frozen' });
    await tab3.waitForFunction(() => window.heartwire.sharing === 'leader', null, { polling: POLL_MS, timeout: 5_000 });
    await until(tab3, 'm60');
    await cdp.send('Page.setWebLifecycleState', { state: 'active' });
    await streaming;
    await until(tab2, `m${COUNT}`);
    await until(tab3, `m${COUNT}`);
    await tab3.evaluate(() => new Promise((done) => setTimeout(done, 200)));
    assert.deepEqual(await texts(tab2), streamed(COUNT), 'the leader that was frozen: every message once, in order');
    assert.deepEqual(await texts(tab3), streamed(COUNT), 'every message once, in order');
    for (const page of [tab2, tab3]) assert.deepEqual(await shown(page), streamed(COUNT), 'and shows each once, in order');
    assert.equal(await role(tab2), 'follower', 'back from the freeze, the page follows the new leader');
    await waitUntil(async () => (await openConnections()) === 2, 2_000, 'one socket for the pages (and bob\'s own)');
    const gap = await longestGap(tab3);
    assert.ok(gap.ms < TAKEOVER_GAP_MS, `tab3 waited ${gap.ms} ms after ${gap.after}`);
    t.diagnostic(`tab3's longest wait between messages across two takeovers: ${gap.ms} ms (after ${gap.after}); `
      + `states: [${await tab3.evaluate(() => window.recordedStates)}]`);
  } finally {
    await browser.close();
  }
});

test('without SharedWorker and Web Locks, each page keeps its own socket', async () => {
  const browser = await launchBrowser({ extraArgs: ['--disable-shared-workers'] });
  try {
    await browser.context.addInitScript(() => {
      Object.defineProperty(Navigator.prototype, 'locks', { configurable: true, get: () => undefined });
    });
    const pages = await sharedPages(browser.context, 3);
    assert.deepEqual(await Promise.all(pages.map((page) => page.evaluate(() => window.heartwire.sharing))), [null, null, null]);
    assert.equal(await openConnections(), 3, 'one WebSocket per page');
    assert.equal(await pages[0].textContent('#sharing'), 'this tab\'s own (cannot share)');
    await stream(pages[0], 'tab1', 3, 10);
    for (const page of pages) await until(page, 'm3');
    for (const page of pages) assert.deepEqual(await texts(page), streamed(3));
  } finally {
    await browser.close();
  }
});
