/**
 * The demo page's connection panel and what people reported about it: the round trip shown at
 * once and on busy channels, "<1 ms" on loopback, the next check instead of a growing "last
 * heard" while connected, a session id on one line, notices brought into view on a phone, a
 * favicon, the state announced to screen readers, a "Reconnect now" button, and
 * `/heartwire.js` imported by a page of another origin.
 *
 * The server runs with a 300 ms ping interval and a 300 ms ping timeout.
 */
import { test, before, after, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import {
  HeartwireServer, launchBrowser, openDemo, say, PING_INTERVAL_MS, POLL_MS,
} from './harness.mjs';

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

/** Makes `page` send a chat line every `everyMs` until the returned function is called. */
async function chatter(page, everyMs) {
  await page.evaluate((ms) => {
    let n = 0;
    window.chatter = setInterval(() => window.heartwire.send('room:lobby', { name: 'bob', text: `busy ${++n}` }), ms);
  }, everyMs);
  return () => page.evaluate(() => clearInterval(window.chatter));
}

test('the round trip shows at once on a channel too busy to fall quiet', async (t) => {
  const bob = await openDemo(browser.context, server.origin, 'bob');
  // A message every 100 ms: the connection never stays quiet for the 300 ms ping interval.
  const stop = await chatter(bob, PING_INTERVAL_MS / 3);
  const alice = await openDemo(browser.context, server.origin, 'alice');
  try {
    const openedAt = Date.now();
    // The channel is busy as Alice sees it: Bob's lines reach her…
    await alice.waitForFunction(() => document.querySelectorAll('#messages .msg').length >= 3, null,
      { polling: POLL_MS, timeout: 5_000 });
    // …and the round trip shows all the same, without waiting for a quiet moment.
    await alice.waitForFunction(() => /^(<1|\d+) ms$/.test(document.querySelector('#rtt').textContent), null,
      { polling: POLL_MS, timeout: 2_000 });
    const busy = await alice.evaluate(() => document.querySelectorAll('#messages .msg').length);
    t.diagnostic(`round trip "${await alice.textContent('#rtt')}" shown ${Date.now() - openedAt} ms after open, with ${busy} messages meanwhile`);
  } finally {
    await stop();
    await alice.close();
    await bob.close();
  }
});

test('a round trip under a millisecond reads "<1 ms"', async () => {
  const alice = await openDemo(browser.context, server.origin, 'alice');
  try {
    // The clock of the page counts whole milliseconds: loopback measures 0.
    await alice.evaluate(() => Object.defineProperty(window.heartwire, 'rtt', { value: 0 }));
    await alice.waitForFunction(() => document.querySelector('#rtt').textContent === '<1 ms', null,
      { polling: POLL_MS, timeout: 1_000 });
  } finally {
    await alice.close();
  }
});

test('while connected the panel shows the next check; once the connection is lost, when the server was last heard', async () => {
  const alice = await openDemo(browser.context, server.origin, 'alice');
  try {
    const panel = () => alice.evaluate(() => [
      document.querySelector('#heard-label').textContent, document.querySelector('#last-heard').textContent,
    ]);
    const [label, value] = await panel();
    assert.equal(label, 'Next check');
    assert.match(value, /^(in \d+ s|checking now)$/);
    await server.kill();
    await alice.waitForFunction(() => window.heartwire.state === 'reconnecting', null, { polling: POLL_MS, timeout: 5_000 });
    await alice.waitForFunction(() => document.querySelector('#heard-label').textContent === 'Last heard', null,
      { polling: POLL_MS, timeout: 1_000 });
    assert.match((await panel())[1], /^(just now|\d+ s ago)$/);
  } finally {
    await alice.close();
  }
});

test('the session id stays on one line', async () => {
  const alice = await openDemo(browser.context, server.origin, 'alice');
  try {
    for (const width of [1280, 721]) {
      await alice.setViewportSize({ width, height: 800 });
      const [lines, text] = await alice.evaluate(() => {
        const element = document.querySelector('#session');
        const range = document.createRange();
        range.selectNodeContents(element);
        const tops = new Set([...range.getClientRects()].map((rect) => Math.round(rect.top)));
        return [tops.size, element.textContent];
      });
      assert.match(text, /^[0-9a-f]{16}$/);
      assert.equal(lines, 1, `the session id ${text} takes ${lines} lines at ${width} px`);
    }
  } finally {
    await alice.close();
  }
});

test('on a phone, a notice comes into view like a message', async () => {
  const alice = await openDemo(browser.context, server.origin, 'alice');
  try {
    await alice.setViewportSize({ width: 390, height: 844 });
    for (let i = 1; i <= 30; i++) await say(alice, `line ${i}`);
    await alice.waitForFunction(() => document.querySelectorAll('#messages .msg:not(.queued)').length === 30, null,
      { polling: POLL_MS, timeout: 5_000 });
    assert.ok(await alice.evaluate(() => {
      const list = document.querySelector('#messages');
      return list.scrollHeight > list.clientHeight;
    }), 'the list scrolls');
    // A restarted server numbers the lobby anew: the page adds a notice.
    await server.kill();
    await server.start();
    await alice.evaluate(() => window.heartwire.check());
    await alice.waitForFunction(() => document.querySelector('#messages .notice'), null, { polling: POLL_MS, timeout: 10_000 });
    const visible = await alice.evaluate(() => {
      const list = document.querySelector('#messages').getBoundingClientRect();
      const notice = document.querySelector('#messages .notice').getBoundingClientRect();
      return notice.top >= list.top && notice.bottom <= list.bottom + 1;
    });
    assert.ok(visible, 'the notice is inside the visible part of the list');
  } finally {
    await alice.close();
  }
});

test('the page has an icon, so the browser asks for no /favicon.ico', async () => {
  const alice = await openDemo(browser.context, server.origin, 'alice');
  try {
    const loaded = await alice.evaluate(() => new Promise((done) => {
      const link = document.querySelector('link[rel~="icon"]');
      if (!link) return done(false);
      const image = new Image();
      image.onload = () => done(true);
      image.onerror = () => done(false);
      image.src = link.href;
    }));
    assert.ok(loaded, 'a <link rel="icon"> whose image loads');
  } finally {
    await alice.close();
  }
});

test('the connection state is a live region that screen readers announce', async () => {
  const alice = await openDemo(browser.context, server.origin, 'alice');
  try {
    const status = alice.getByRole('status');
    assert.equal(await status.getAttribute('aria-live', { timeout: 1_000 }), 'polite');
    assert.equal((await status.textContent()).trim(), 'Connected');
    await server.kill();
    await alice.waitForFunction(() => window.heartwire.state === 'reconnecting', null, { polling: POLL_MS, timeout: 5_000 });
    assert.equal((await status.textContent()).trim(), 'Reconnecting');
  } finally {
    await alice.close();
  }
});

test('"Reconnect now" skips the rest of a long backoff wait', async (t) => {
  const alice = await openDemo(browser.context, server.origin, 'alice');
  try {
    assert.equal(await alice.isVisible('#reconnect-now'), false, 'no button while connected');
    await server.kill();
    // Attempts fail at once while the server is down: wait until the backoff has grown to a
    // wait of at least three seconds.
    const longWaitMs = 3_000;
    const nextAttemptAt = await alice.waitForFunction(
      (minimum) => window.heartwire.nextAttemptAt !== null && window.heartwire.nextAttemptAt - Date.now() >= minimum
        && window.heartwire.nextAttemptAt,
      longWaitMs, { polling: POLL_MS, timeout: 60_000 },
    ).then((handle) => handle.jsonValue());
    await server.start();
    await alice.waitForSelector('#reconnect-now', { state: 'visible', timeout: 1_000 });
    const clickedAt = await alice.evaluate(() => Date.now());
    await alice.click('#reconnect-now');
    await alice.waitForFunction(() => window.heartwire.state === 'open', null, { polling: POLL_MS, timeout: longWaitMs });
    const openAt = await alice.evaluate(() => Date.now());
    assert.ok(openAt < nextAttemptAt, `open ${openAt - clickedAt} ms after the click, before the scheduled attempt`);
    assert.equal(await alice.isVisible('#reconnect-now'), false, 'the button goes once connected');
    t.diagnostic(`open ${openAt - clickedAt} ms after the click; the backoff would have waited ${nextAttemptAt - clickedAt} ms more`);
  } finally {
    await alice.close();
  }
});

test('a page of another origin imports /heartwire.js', async () => {
  const page = `<!doctype html><title>elsewhere</title><script type="module">
    import('${server.origin}/heartwire.js').then(
      (module) => { window.imported = typeof module.Heartwire; },
      (error) => { window.imported = String(error); });
  </script>`;
  const other = createServer((request, response) => {
    response.setHeader('content-type', 'text/html; charset=utf-8');
    response.end(page);
  });
  await new Promise((done) => other.listen(0, '127.0.0.1', done));
  const tab = await browser.context.newPage();
  try {
    await tab.goto(`http://127.0.0.1:${other.address().port}/`);
    const imported = await tab.waitForFunction(() => window.imported, null, { polling: POLL_MS, timeout: 5_000 })
      .then((handle) => handle.jsonValue());
    assert.equal(imported, 'function');
  } finally {
    await tab.close();
    other.closeAllConnections();
    await new Promise((done) => other.close(done));
  }
});
