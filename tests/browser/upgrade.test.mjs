/**
 * A live upgrade in Chromium: while one page streams chat lines to another, a new
 * `heartwire serve --take-over` takes the server's listening socket and both pages'
 * connections. Neither page sees a close or a state change, and every line arrives once, in
 * order (docs/RELIABILITY.md, "Live upgrade").
 *
 * The server runs with a 300 ms ping interval and a 300 ms ping timeout: a page whose
 * connection stalled for 600 ms would see it closed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  HeartwireServer, launchBrowser, openDemo, recordDeliveries, delivered, stream, streamed, waitUntil,
} from './harness.mjs';

/** Waits until `page` delivered `text`. */
function until(page, text, timeoutMs = 10_000) {
  return waitUntil(async () => (await delivered(page)).some((m) => m.text === text), timeoutMs, `the page to deliver ${text}`);
}

test('a live upgrade mid-stream: no page sees a close, and every message arrives once, in order', async (t) => {
  const COUNT = 80;
  const dir = await mkdtemp(join(tmpdir(), 'heartwire-upgrade-'));
  const socket = join(dir, 'upgrade.sock');
  const old = await HeartwireServer.start(['--upgrade-socket', socket]);
  const next = new HeartwireServer(old.port, ['--upgrade-socket', socket, '--take-over', socket]);
  const browser = await launchBrowser();
  try {
    const alice = await openDemo(browser.context, old.origin, 'alice', { beforeLoad: recordDeliveries });
    const bob = await openDemo(browser.context, old.origin, 'bob');
    const streaming = stream(bob, 'bob', COUNT, 25);
    await until(alice, 'm20');
    const upgradeAt = Date.now();
    await next.start();
    await old.exited;
    const upgradeMs = Date.now() - upgradeAt;
    await streaming;
    await until(alice, `m${COUNT}`);
    // A duplicate would come right behind the last message: give it a round trip more.
    await alice.evaluate(() => new Promise((done) => setTimeout(done, 200)));
    const texts = (await delivered(alice)).map((m) => m.text);
    assert.deepEqual(texts, streamed(COUNT), 'every message once, in order, across the upgrade');
    for (const page of [alice, bob]) {
      assert.deepEqual(await page.evaluate(() => window.recordedCloses), [], 'no close');
      assert.deepEqual(await page.evaluate(() => window.recordedStates), [], 'no state change');
    }
    t.diagnostic(`the old process ended ${upgradeMs} ms after the new one was started`);
  } finally {
    await browser.close();
    await next.kill();
    await old.kill();
    await rm(dir, { recursive: true, force: true });
  }
});
