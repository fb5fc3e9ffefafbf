/**
 * The demo page and heartwire.js in headless Chromium against the real heartwire server.
 *
 * The server runs with a 300 ms ping interval and a 300 ms ping timeout, so every wait below
 * is bounded by a small multiple of those figures (or of the client's backoff cap where a
 * reconnect is awaited).
 */
import { test, before, after, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import {
  HeartwireServer, launchBrowser, openDemo, say, chatLines, artifact,
  PING_INTERVAL_MS, PING_TIMEOUT_MS, POLL_MS,
} from './harness.mjs';

/** The longest the client waits between attempts (its default backoff cap), plus slack. */
const RECONNECT_BOUND_MS = 30_000 + 5_000;

let server;
let browser;

before(async () => {
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
});

// A fresh server for every test: one test's kill or leftover sockets cannot affect another.
beforeEach(async () => {
  server = await HeartwireServer.start();
});

afterEach(async () => {
  await server?.kill();
});

test('two pages chat with each other', async (t) => {
  const alice = await openDemo(browser.context, server.origin, 'alice');
  const bob = await openDemo(browser.context, server.origin, 'bob');
  try {
    await say(alice, 'hi bob');
    await bob.waitForFunction(
      () => [...document.querySelectorAll('#messages .text')].some((e) => e.textContent === 'hi bob'),
      null, { polling: POLL_MS, timeout: 5_000 },
    );
    await say(bob, 'hello alice');
    await alice.waitForFunction(
      () => [...document.querySelectorAll('#messages .text')].some((e) => e.textContent === 'hello alice'),
      null, { polling: POLL_MS, timeout: 5_000 },
    );
    const expected = ['alice: hi bob', 'bob: hello alice'];
    assert.deepEqual(await chatLines(alice), expected);
    assert.deepEqual(await chatLines(bob), expected);
    assert.equal(await alice.getAttribute('#messages .msg:first-child', 'class'), 'msg mine');
    const rtt = await alice.textContent('#rtt');
    assert.match(rtt, /^(<1|\d+) ms$/, 'the health panel shows the round trip');
    t.diagnostic(`alice's panel: state "${await alice.textContent('#state')}", rtt ${rtt}`);
  } finally {
    await alice.close();
    await bob.close();
  }
});

test('a plain string published on the room shows as a line from someone', async () => {
  const alice = await openDemo(browser.context, server.origin, 'alice');
  try {
    // Her own line coming back shows the page is subscribed.
    await say(alice, 'first');
    await alice.waitForFunction(
      () => [...document.querySelectorAll('#messages .msg:not(.queued) .text')].some((e) => e.textContent === 'first'),
      null, { polling: POLL_MS, timeout: 5_000 },
    );
    // What `heartwire connect --sub room:lobby` publishes for a line that is not JSON.
    await alice.evaluate((url) => new Promise((resolve, reject) => {
      const socket = new WebSocket(url);
      socket.onerror = () => reject(new Error('the publisher could not connect'));
      socket.onmessage = (event) => {
        const frame = JSON.parse(event.data);
        if (frame.op === 'hello') {
          socket.send(JSON.stringify({ op: 'publish', channel: 'room:lobby', data: 'plain words', id: 'p-1' }));
        } else if (frame.op === 'ack') {
          socket.close();
          resolve();
        }
      };
    }), `${server.origin.replace('http', 'ws')}/ws`);
    await alice.waitForFunction(
      () => [...document.querySelectorAll('#messages .text')].some((e) => e.textContent === 'plain words'),
      null, { polling: POLL_MS, timeout: 5_000 },
    );
    assert.deepEqual(await chatLines(alice), ['alice: first', 'someone: plain words']);
  } finally {
    await alice.close();
  }
});

test('the server is killed and restarted: the page reconnects, resubscribes and sends what was typed meanwhile, in order', async (t) => {
  const alice = await openDemo(browser.context, server.origin, 'alice');
  try {
    await server.kill();
    const killedAt = Date.now();

    await alice.waitForFunction(
      () => document.querySelector('#state').textContent === 'Reconnecting'
        && /^(in \d+\.\d s|now)$/.test(document.querySelector('#next-attempt').textContent),
      null, { polling: POLL_MS, timeout: 5_000 },
    );
    t.diagnostic(`panel showed "Reconnecting" ${Date.now() - killedAt} ms after the kill`);

    const away = ['while away 1', 'while away 2', 'while away 3'];
    for (const text of away) await say(alice, text);
    assert.deepEqual(await chatLines(alice), away.map((text) => `(queued) alice: ${text}`));
    assert.equal(await alice.textContent('#outbox'), '3');

    await server.start();
    const restartedAt = Date.now();
    await alice.waitForFunction(() => window.heartwire.state === 'open', null, { polling: POLL_MS, timeout: RECONNECT_BOUND_MS });
    t.diagnostic(`reconnected ${Date.now() - restartedAt} ms after the restart`);

    // What was typed while away arrives back through the renewed subscription, in order.
    await alice.waitForFunction(
      () => document.querySelectorAll('#messages .msg:not(.queued)').length === 3,
      null, { polling: POLL_MS, timeout: 5_000 },
    );
    assert.deepEqual(await chatLines(alice), away.map((text) => `alice: ${text}`));
    // The acks may come just behind the messages; the panel redraws every 250 ms.
    await alice.waitForFunction(() => document.querySelector('#outbox').textContent === '0', null, { polling: POLL_MS, timeout: 1_000 });
    // The fresh server numbers the lobby anew: the page says messages may be missing.
    const notices = await alice.$$eval('#messages .notice', (items) => items.map((item) => item.textContent));
    assert.equal(notices.length, 1, `one notice: ${notices}`);
    assert.match(notices[0], /started the lobby over/);

    // A page that joins after the restart reaches alice: her subscription is back.
    const bob = await openDemo(browser.context, server.origin, 'bob');
    try {
      await say(bob, 'welcome back');
      await alice.waitForFunction(
        () => [...document.querySelectorAll('#messages .text')].some((e) => e.textContent === 'welcome back'),
        null, { polling: POLL_MS, timeout: 5_000 },
      );
    } finally {
      await bob.close();
    }
    const states = await alice.evaluate(() => window.recordedStates);
    assert.ok(states.includes('reconnecting') && states.at(-1) === 'open', `states: ${states}`);
  } finally {
    await alice.close();
  }
});

test('offline and back online: the page reconnects at once instead of waiting out its backoff', async (t) => {
  const alice = await openDemo(browser.context, server.origin, 'alice');
  try {
    const cdp = await browser.context.newCDPSession(alice);
    await cdp.send('Network.enable');
    const setOffline = (offline) => cdp.send('Network.emulateNetworkConditions', {
      offline, latency: 0, downloadThroughput: -1, uploadThroughput: -1,
    });

    await setOffline(true);
    await alice.waitForFunction(() => window.recordedStates.includes('degraded'), null, { polling: POLL_MS, timeout: 2_000 });
    // Offline, the connection dies and attempts fail: wait until the backoff has grown to a
    // wait of at least three seconds.
    const longWaitMs = 3_000;
    const nextAttemptAt = await alice.waitForFunction(
      (minimum) => window.heartwire.state === 'reconnecting' && window.heartwire.nextAttemptAt !== null
        && window.heartwire.nextAttemptAt - Date.now() >= minimum && window.heartwire.nextAttemptAt,
      longWaitMs, { polling: POLL_MS, timeout: 60_000 },
    ).then((handle) => handle.jsonValue());

    await setOffline(false);
    const onlineAt = await alice.evaluate(() => Date.now());
    await alice.waitForFunction(() => window.heartwire.state === 'open', null, { polling: POLL_MS, timeout: longWaitMs });
    const reconnectedAt = await alice.evaluate(() => Date.now());
    assert.ok(reconnectedAt < nextAttemptAt - 1_000,
      `reconnected ${reconnectedAt - onlineAt} ms after going online, while the backoff would have waited until ${nextAttemptAt - onlineAt} ms`);
    t.diagnostic(`back online: open after ${reconnectedAt - onlineAt} ms; the backoff would have waited ${nextAttemptAt - onlineAt} ms`);
  } finally {
    await alice.close();
  }
});

test('offline while another page sends: back online, the page shows every message once, in order', async (t) => {
  const MESSAGES = 30;
  const alice = await openDemo(browser.context, server.origin, 'alice');
  const bob = await openDemo(browser.context, server.origin, 'bob');
  try {
    const cdp = await browser.context.newCDPSession(alice);
    await cdp.send('Network.enable');
    const setOffline = (offline) => cdp.send('Network.emulateNetworkConditions', {
      offline, latency: 0, downloadThroughput: -1, uploadThroughput: -1,
    });
    await say(bob, 'before');
    await alice.waitForFunction(() => document.querySelectorAll('#messages .msg').length === 1, null, { polling: POLL_MS, timeout: 5_000 });

    await setOffline(true);
    // The connection is gone for the page (its probe went unanswered): nothing reaches it now.
    await alice.waitForFunction(() => window.heartwire.state === 'reconnecting', null,
      { polling: POLL_MS, timeout: 2 * (PING_INTERVAL_MS + PING_TIMEOUT_MS) + 2_000 });
    const sent = Array.from({ length: MESSAGES }, (_, i) => `while away ${i + 1}`);
    for (const text of sent) await say(bob, text);
    // Bob sees his own lines once the server published them.
    await bob.waitForFunction((count) => document.querySelectorAll('#messages .msg:not(.queued)').length === count,
      MESSAGES + 1, { polling: POLL_MS, timeout: 10_000 });

    await setOffline(false);
    await alice.waitForFunction((count) => document.querySelectorAll('#messages .msg').length >= count,
      MESSAGES + 1, { polling: POLL_MS, timeout: 10_000 });
    // A duplicate would arrive right behind the replay: give it the time of one round trip more.
    await alice.evaluate(() => new Promise((done) => setTimeout(done, 200)));
    const expected = ['bob: before', ...sent.map((text) => `bob: ${text}`)];
    assert.deepEqual(await chatLines(alice), expected, 'every message once, in order');
    const notices = await alice.$$eval('#messages .notice', (items) => items.map((item) => item.textContent));
    assert.deepEqual(notices, [], 'nothing was lost, so no gap is reported');
    t.diagnostic(`offline for ${MESSAGES} messages; the page shows ${(await chatLines(alice)).length} lines, states: [${await alice.evaluate(() => window.recordedStates)}]`);
  } finally {
    await alice.close();
    await bob.close();
  }
});

test('screenshots of the demo page at desktop and phone sizes', async (t) => {
  const alice = await openDemo(browser.context, server.origin, 'alice');
  const bob = await openDemo(browser.context, server.origin, 'bob');
  try {
    await say(bob, 'Hi! Anyone here?');
    await say(alice, 'Hello bob — the connection panel shows how we are doing.');
    await say(bob, 'Nice, the round trip is tiny.');
    await alice.waitForFunction(() => document.querySelectorAll('#messages .msg').length === 3, null, { polling: POLL_MS, timeout: 5_000 });
    await alice.setViewportSize({ width: 1280, height: 800 });
    await alice.screenshot({ path: await artifact('demo.png') });
    await alice.setViewportSize({ width: 390, height: 844 });
    await alice.screenshot({ path: await artifact('demo-phone.png') });
    const overflow = await alice.evaluate(() => document.documentElement.scrollWidth > window.innerWidth);
    assert.equal(overflow, false, 'no horizontal scrolling on a phone-sized window');
  } finally {
    await alice.close();
    await bob.close();
  }
});
