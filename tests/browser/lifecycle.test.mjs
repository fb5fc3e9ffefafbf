/**
 * The page lifecycle in Chromium while another page streams messages: a reload, a trip away
 * and back through the back/forward cache, and a freeze. Each time the page must show every
 * message once, in order, across the interruption; leaving, it says goodbye, and the server
 * frees its connection at once (read from /metrics) instead of after the detection bound.
 *
 * The server runs with a 300 ms ping interval and a 300 ms ping timeout.
 */
import { test, before, after, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import {
  HeartwireServer, launchBrowser, openDemo, say, chatLines, delivered, recordDeliveries, stream, streamed, waitUntil,
  PING_INTERVAL_MS, PING_TIMEOUT_MS, POLL_MS,
} from './harness.mjs';

/** "Within a second", as docs/BROWSER.md promises for a page that leaves. */
const FREED_WITHIN_MS = 1_000;
const NATIVE_OPEN = 'heartwire_connections_open{endpoint="native"}';
const PEER_CLOSED = 'heartwire_disconnects_total{reason="peer_closed"}';
const PING_TIMEOUT = 'heartwire_disconnects_total{reason="ping_timeout"}';

let server;
let browser;

before(async () => {
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
});

beforeEach(async () => {
  server = await HeartwireServer.start();
});

afterEach(async () => {
  await server?.kill();
});

/** Alice, whose deliveries are recorded across reloads, and Bob, who streams. */
async function aliceAndBob() {
  const alice = await openDemo(browser.context, server.origin, 'alice', { beforeLoad: recordDeliveries });
  const bob = await openDemo(browser.context, server.origin, 'bob');
  await say(bob, 'before');
  await until(alice, 'before');
  return { alice, bob };
}

/** Waits until `page` delivered `text`. */
function until(page, text, timeoutMs = 10_000) {
  return waitUntil(async () => (await delivered(page)).some((m) => m.text === text), timeoutMs, `the page to deliver ${text}`);
}

/** The texts `page` delivered, in order. */
const texts = async (page) => (await delivered(page)).map((m) => m.text);

test('reload mid-stream: the reloaded page resumes where it was; nothing lost, nothing repeated', async (t) => {
  const COUNT = 80;
  const { alice, bob } = await aliceAndBob();
  try {
    const before = await server.metrics();
    const streaming = stream(bob, 'bob', COUNT, 25);
    await until(alice, 'm20');
    const reloadAt = Date.now();
    const deliveredBefore = (await delivered(alice)).length;
    await alice.reload();
    await alice.waitForFunction(() => window.heartwire?.state === 'open', null, { polling: POLL_MS, timeout: 10_000 });
    const openAfterMs = Date.now() - reloadAt;
    await streaming;
    await until(alice, `m${COUNT}`);
    // A duplicate would come right behind the last message: give it a round trip more.
    await alice.evaluate(() => new Promise((done) => setTimeout(done, 200)));
    assert.deepEqual(await texts(alice), ['before', ...streamed(COUNT)], 'every message once, in order, across the reload');
    assert.deepEqual(await chatLines(alice), ['before', ...streamed(COUNT)].map((text) => `bob: ${text}`),
      'the reloaded page shows the chat as it was, and what came since');
    const afterwards = await server.metrics();
    assert.equal(afterwards[PEER_CLOSED] - before[PEER_CLOSED], 1, 'the old page said goodbye');
    assert.equal(afterwards[PING_TIMEOUT], before[PING_TIMEOUT], 'nobody was reaped');
    assert.equal(afterwards[NATIVE_OPEN], 2, 'alice and bob, once each');
    t.diagnostic(`${deliveredBefore - 1} messages before the reload; open again ${openAfterMs} ms after it`);
  } finally {
    await alice.close();
    await bob.close();
  }
});

test('away and back through the back/forward cache: the server frees the page at once, and back, it resumes at once with nothing lost or repeated', async (t) => {
  const COUNT = 20;
  const { alice, bob } = await aliceAndBob();
  try {
    await alice.evaluate(() => {
      window.shown = [];
      window.addEventListener('pageshow', (event) => window.shown.push({ persisted: event.persisted, at: Date.now() }));
    });
    const before = await server.metrics();
    const leftAt = Date.now();
    await alice.goto(`${server.origin}/healthz`);
    const freedAfterMs = await waitUntil(async () => {
      const metrics = await server.metrics();
      return metrics[NATIVE_OPEN] === 1 && Date.now() - leftAt;
    }, 5_000, 'the server to free the page that left');
    const away = await server.metrics();
    assert.ok(freedAfterMs <= FREED_WITHIN_MS, `freed ${freedAfterMs} ms after the page left`);
    assert.equal(away[PEER_CLOSED] - before[PEER_CLOSED], 1, 'the page said goodbye: the server read it as left');
    assert.equal(away[PING_TIMEOUT], before[PING_TIMEOUT], 'not as died');

    await stream(bob, 'bob', COUNT, 10);
    await alice.goBack({ waitUntil: 'commit' });
    const [shown] = await alice.waitForFunction(() => window.shown?.length > 0 && window.shown, null, { polling: POLL_MS, timeout: 5_000 })
      .then((handle) => handle.jsonValue());
    assert.equal(shown.persisted, true, 'the page came back from the back/forward cache');
    await alice.waitForFunction(() => window.heartwire.state === 'open', null, { polling: POLL_MS, timeout: 5_000 });
    const openAt = await alice.evaluate(() => Date.now());
    await until(alice, `m${COUNT}`);
    await alice.evaluate(() => new Promise((done) => setTimeout(done, 200)));
    assert.deepEqual(await texts(alice), ['before', ...streamed(COUNT)], 'every message once, in order');
    assert.deepEqual(await chatLines(alice), ['before', ...streamed(COUNT)].map((text) => `bob: ${text}`));
    const closes = await alice.evaluate(() => window.recordedCloses);
    assert.deepEqual(closes.map((c) => [c.code, c.reason, c.willReconnect]), [[1000, 'page left', true]],
      'the only close is the goodbye');
    t.diagnostic(`freed ${freedAfterMs} ms after leaving; back, open ${openAt - shown.at} ms after pageshow`);
  } finally {
    await alice.close();
    await bob.close();
  }
});

test('frozen mid-stream and resumed: nothing lost, nothing repeated', async (t) => {
  const COUNT = 40;
  const FROZEN_FOR_MS = 3 * PING_TIMEOUT_MS;
  const { alice, bob } = await aliceAndBob();
  try {
    const cdp = await browser.context.newCDPSession(alice);
    const streaming = stream(bob, 'bob', COUNT, 20);
    await until(alice, 'm10');
    const frozenWith = (await delivered(alice)).length;
    await cdp.send('Page.setWebLifecycleState', { state: 'frozen' });
    const frozenAt = Date.now();
    await new Promise((done) => setTimeout(done, FROZEN_FOR_MS));
    await cdp.send('Page.setWebLifecycleState', { state: 'active' });
    await streaming;
    await until(alice, `m${COUNT}`, 2 * (PING_INTERVAL_MS + PING_TIMEOUT_MS) + 5_000);
    await alice.evaluate(() => new Promise((done) => setTimeout(done, 200)));
    assert.deepEqual(await texts(alice), ['before', ...streamed(COUNT)], 'every message once, in order');
    assert.deepEqual(await chatLines(alice), ['before', ...streamed(COUNT)].map((text) => `bob: ${text}`));
    t.diagnostic(`frozen ${Date.now() - frozenAt} ms in all after ${frozenWith - 1} messages; states: [${await alice.evaluate(() => window.recordedStates)}]`);
  } finally {
    await alice.close();
    await bob.close();
  }
});
