/**
 * A page frozen through the DevTools protocol (`Page.setWebLifecycleState`) for three times
 * the server's ping timeout, while another page sends it a message.
 *
 * Chromium 156 fails the WebSockets of a page as it freezes it (Blink's runtime feature
 * `DisconnectWebSocketOnBFCache`, on by default; see harness.mjs and docs/BROWSER.md), so the
 * same freeze is run twice: in a Chromium started with that feature off, where the browser
 * keeps the socket and the page must come back in the same session with nothing lost, and
 * in a Chromium as shipped, where the socket is gone when the page resumes and the client
 * must reconnect at once and resume where it stopped.
 */
import { test, before, after, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import {
  HeartwireServer, launchBrowser, openDemo, say, waitUntil,
  KEEP_FROZEN_PAGES_WEBSOCKETS, PING_INTERVAL_MS, PING_TIMEOUT_MS, POLL_MS,
} from './harness.mjs';

const FROZEN_FOR_MS = 3 * PING_TIMEOUT_MS;
/** How long a resumed page may take to show what was sent while it was frozen. */
const AFTER_RESUME_MS = 2 * (PING_INTERVAL_MS + PING_TIMEOUT_MS) + 5_000;

/** Chromium as shipped. */
let shipped;
/** Chromium that keeps the WebSockets of frozen pages. */
let keeping;
let server;

before(async () => {
  shipped = await launchBrowser();
  keeping = await launchBrowser({ extraArgs: [KEEP_FROZEN_PAGES_WEBSOCKETS] });
});

after(async () => {
  await shipped?.close();
  await keeping?.close();
});

beforeEach(async () => {
  server = await HeartwireServer.start();
});

afterEach(async () => {
  await server?.kill();
});

/** The sum of the server's counters whose name starts with `prefix`. */
function total(metrics, prefix) {
  return Object.entries(metrics).filter(([name]) => name.startsWith(prefix)).reduce((sum, [, value]) => sum + value, 0);
}

/** The server's counters this file compares before, during and after a freeze. */
function counters(metrics) {
  return {
    accepted: metrics['heartwire_connections_accepted_total{endpoint="native"}'],
    open: metrics['heartwire_connections_open{endpoint="native"}'],
    disconnects: total(metrics, 'heartwire_disconnects_total'),
    reaped: metrics['heartwire_disconnects_total{reason="ping_timeout"}'],
    peerClosed: metrics['heartwire_disconnects_total{reason="peer_closed"}'],
    pongs: metrics.heartwire_pongs_received_total,
  };
}

/**
 * Opens alice and bob in `browser`, freezes alice for FROZEN_FOR_MS while bob says "during
 * the freeze", resumes her and waits until she shows that line. Returns what the tests check.
 */
async function freezeAliceWhileBobSpeaks(browser) {
  const alice = await openDemo(browser.context, server.origin, 'alice');
  const bob = await openDemo(browser.context, server.origin, 'bob');
  const consoleLines = [];
  alice.on('console', (message) => consoleLines.push(message.text()));
  // Every message alice's client delivers, with the session it arrived in; every gap.
  await alice.evaluate(() => {
    window.delivered = [];
    window.recordedGaps = [];
    window.heartwire.addEventListener('message', (e) => window.delivered.push({
      text: e.data?.text, seq: e.seq, session: window.heartwire.session,
    }));
    window.heartwire.addEventListener('gap', (e) => window.recordedGaps.push({ after: e.after, upTo: e.upTo, reason: e.reason }));
  });
  await say(bob, 'before the freeze');
  await alice.waitForFunction(() => window.delivered.length === 1, null, { polling: POLL_MS, timeout: 5_000 });
  // A ticking interval shows afterwards that the page's JavaScript really stood still.
  await alice.evaluate(() => {
    window.ticks = [];
    setInterval(() => window.ticks.push(Date.now()), 50);
  });
  await waitUntil(() => alice.evaluate(() => window.ticks.length > 2), 2_000, 'the ticker to run');
  const sessionBefore = await alice.evaluate(() => window.heartwire.session);
  const before = counters(await server.metrics());

  const cdp = await browser.context.newCDPSession(alice);
  await cdp.send('Page.setWebLifecycleState', { state: 'frozen' });
  const frozenAt = Date.now();
  await say(bob, 'during the freeze');
  // The server has published it (bob sees his own line acknowledged) while alice is frozen.
  await bob.waitForFunction(() => document.querySelectorAll('#messages .msg:not(.queued)').length === 2, null,
    { polling: POLL_MS, timeout: FROZEN_FOR_MS });
  await new Promise((done) => setTimeout(done, FROZEN_FOR_MS - (Date.now() - frozenAt)));
  const whileFrozen = counters(await server.metrics());
  await cdp.send('Page.setWebLifecycleState', { state: 'active' });
  const resumedAt = Date.now();

  await alice.waitForFunction(
    () => window.heartwire.state === 'open' && window.delivered.some((m) => m.text === 'during the freeze'),
    null, { polling: POLL_MS, timeout: AFTER_RESUME_MS },
  );
  const backAfterMs = Date.now() - resumedAt;
  // Alice still hears bob after the resume.
  await say(bob, 'after the freeze');
  await alice.waitForFunction(() => window.delivered.some((m) => m.text === 'after the freeze'), null,
    { polling: POLL_MS, timeout: 5_000 });
  const afterwards = counters(await server.metrics());

  const page = await alice.evaluate(() => ({
    longestPause: Math.max(...window.ticks.slice(1).map((tick, i) => tick - window.ticks[i])),
    session: window.heartwire.session,
    delivered: window.delivered,
    gaps: window.recordedGaps,
    states: window.recordedStates,
    closes: window.recordedCloses,
  }));
  const close = async () => {
    await alice.close();
    await bob.close();
  };
  return { sessionBefore, before, whileFrozen, afterwards, backAfterMs, consoleLines, close, ...page };
}

/** What both browsers must show: the page froze, its browser answered Pings, nobody was reaped. */
function assertFrozenAndAnswered(run) {
  assert.ok(run.longestPause >= FROZEN_FOR_MS - 100, `the page was frozen (longest pause between ticks ${run.longestPause} ms)`);
  const pongs = run.whileFrozen.pongs - run.before.pongs;
  assert.ok(pongs >= 2, `the frozen page's browser answered the server's Pings (${pongs} Pongs)`);
  assert.equal(run.whileFrozen.open, run.before.open, 'both connections were still open while the page was frozen');
  assert.equal(run.whileFrozen.disconnects, run.before.disconnects, 'the server dropped nobody while the page was frozen');
  assert.equal(run.afterwards.reaped, run.before.reaped, 'the server never reaped the page for missing Pongs');
  assert.ok(run.closes.every((close) => close.reason !== 'probe timeout'),
    `the client never declared the server dead: ${JSON.stringify(run.closes)}`);
  const texts = run.delivered.map((m) => m.text);
  assert.deepEqual(texts, ['before the freeze', 'during the freeze', 'after the freeze'], 'every message once, in order');
  assert.deepEqual(run.gaps, [], 'nothing was lost');
}

test('a frozen page whose browser keeps its WebSocket: after the resume it is the same session, with no disconnect shown and nothing lost', async (t) => {
  const run = await freezeAliceWhileBobSpeaks(keeping);
  try {
    assertFrozenAndAnswered(run);
    assert.deepEqual(run.closes, [], 'the client saw no close');
    assert.ok(run.states.every((state) => state === 'open' || state === 'degraded'),
      `the client never left the connection (states: [${run.states}])`);
    assert.equal(run.session, run.sessionBefore, 'the same session as before the freeze');
    assert.ok(run.delivered.every((m) => m.session === run.sessionBefore),
      `every message arrived in that session: ${JSON.stringify(run.delivered)}`);
    assert.deepEqual(
      [run.afterwards.accepted, run.afterwards.open, run.afterwards.disconnects],
      [run.before.accepted, run.before.open, run.before.disconnects],
      'the server saw no disconnect and no new connection',
    );
    t.diagnostic(`frozen ${run.longestPause} ms; ${run.whileFrozen.pongs - run.before.pongs} Pongs while frozen; `
      + `"during the freeze" shown ${run.backAfterMs} ms after the resume; states: [${run.states}]`);
  } finally {
    await run.close();
  }
});

test('a frozen page in Chromium as shipped: the browser drops the socket as the page resumes, and the client reconnects at once and resumes where it stopped', async (t) => {
  const run = await freezeAliceWhileBobSpeaks(shipped);
  try {
    assertFrozenAndAnswered(run);
    // What Chromium does: it failed the socket as it froze the page and says why.
    assert.ok(run.consoleLines.some((text) => /failed: Page entered Back-Forward Cache/.test(text)),
      `Chromium reported failing the socket of the frozen page; if it no longer does, docs/BROWSER.md is out of date. Console: ${JSON.stringify(run.consoleLines)}`);
    assert.equal(run.closes.length, 1, `one close, at the resume: ${JSON.stringify(run.closes)}`);
    const [close] = run.closes;
    assert.equal(close.code, 1006);
    assert.equal(close.willReconnect, true);
    assert.ok(close.nextAttemptAt <= close.at,
      `the client reconnected at once (next attempt at ${close.nextAttemptAt}, close reported at ${close.at})`);
    assert.deepEqual(
      [run.afterwards.accepted - run.before.accepted, run.afterwards.peerClosed - run.before.peerClosed],
      [1, 1],
      'the server saw the browser close the old connection and the client open one new one',
    );
    assert.notEqual(run.session, run.sessionBefore, 'a new session');
    const during = run.delivered.find((m) => m.text === 'during the freeze');
    assert.equal(during.session, run.session, 'what was sent during the freeze was replayed in the new session');
    t.diagnostic(`frozen ${run.longestPause} ms; ${run.whileFrozen.pongs - run.before.pongs} Pongs while frozen; `
      + `back and caught up ${run.backAfterMs} ms after the resume; close ${JSON.stringify(close)}; states: [${run.states}]`);
  } finally {
    await run.close();
  }
});
