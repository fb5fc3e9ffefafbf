/**
 * heartwire.js reports its previous session to the real server: the demo page's client
 * loses its connection to a restart (close 1012), comes back to the restarted server, and
 * that server's `/metrics` counts the report: one accepted, offline for the restart's
 * duration at most, for the reason `server_restart`.
 *
 * The server runs with a 300 ms ping interval and a 300 ms ping timeout.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { HeartwireServer, launchBrowser, openDemo, waitUntil, POLL_MS } from './harness.mjs';

/** The restart's reconnect hint is at most 5 s; the page's own backoff adds little. */
const RECONNECT_BOUND_MS = 15_000;

let browser;
let server;

before(async () => {
  browser = await launchBrowser();
  server = await HeartwireServer.start();
});

after(async () => {
  await server?.kill();
  await browser?.close();
});

test('after a restart the page reports its previous session, and /metrics counts it', async (t) => {
  const alice = await openDemo(browser.context, server.origin, 'alice');
  try {
    await alice.waitForFunction(() => window.heartwire.state === 'open', null, { polling: POLL_MS, timeout: 5_000 });
    const before = await alice.evaluate(() => window.heartwire.session);
    const stoppedAt = Date.now();
    await server.stop();
    await server.start();
    await alice.waitForFunction((old) => window.heartwire.state === 'open' && window.heartwire.session !== old,
      before, { polling: POLL_MS, timeout: RECONNECT_BOUND_MS });
    const reopenedAt = Date.now();
    const metrics = await waitUntil(async () => {
      const now = await server.metrics();
      return now['heartwire_client_reports_total{result="accepted"}'] === 1 ? now : null;
    }, 5_000, 'the report to be counted');
    assert.equal(metrics['heartwire_client_reports_total{result="invalid"}'], 0);
    assert.equal(metrics['heartwire_client_offline_seconds_count{reason="server_restart"}'], 1);
    assert.equal(metrics['heartwire_false_reaps_total'], 0, 'a restart is no reap');
    const offline = metrics['heartwire_client_offline_seconds_sum{reason="server_restart"}'];
    assert.ok(offline > 0 && offline * 1000 <= reopenedAt - stoppedAt + 50,
      `offline ${offline} s, outage at most ${reopenedAt - stoppedAt} ms`);
    t.diagnostic(`reported ${offline} s offline; the test saw ${reopenedAt - stoppedAt} ms from stop to open`);
  } finally {
    await alice.close();
  }
});
