/**
 * The admin page in headless Chromium: off without an API key, a login that refuses a wrong
 * key and sets an HttpOnly, SameSite=Strict cookie, charts that follow the server (a
 * connection opened by another page shows up), the publish box reaching a subscriber, and
 * screenshots at desktop and phone sizes (test-artifacts/admin*.png).
 *
 * The server runs with a 300 ms ping interval, so round trips fill the histogram.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { HeartwireServer, launchBrowser, artifact, POLL_MS } from './harness.mjs';

const KEY = 'admin-test-key-0123456789abcdef';

let browser;
let server;

before(async () => {
  browser = await launchBrowser();
  server = await HeartwireServer.start(['--api-key', KEY]);
});

after(async () => {
  await server?.kill();
  await browser?.close();
});

/** Whether every chart was drawn at its present size (a resize redraws them). */
function redrawn() {
  return [...document.querySelectorAll('canvas')]
    .every((canvas) => canvas.width === Math.round(canvas.clientWidth * window.devicePixelRatio));
}

/** Opens /admin and logs in with `key`; returns the page. */
async function logIn(key) {
  const page = await browser.context.newPage();
  await page.goto(`${server.origin}/admin`);
  await page.fill('#key', key);
  await Promise.all([page.waitForNavigation(), page.$eval('form', (form) => form.submit())]);
  return page;
}

/** A page that holds a native connection subscribed to `channel` and records its messages. */
async function subscriber(channel) {
  const page = await browser.context.newPage();
  await page.goto(`${server.origin}/heartwire.js`);
  await page.evaluate(({ url, channel }) => new Promise((done, fail) => {
    window.received = [];
    const socket = new WebSocket(url);
    socket.onmessage = (event) => {
      const frame = JSON.parse(event.data);
      if (frame.op === 'subscribed') done();
      if (frame.op === 'message') window.received.push(frame.data);
    };
    socket.onopen = () => socket.send(JSON.stringify({ op: 'subscribe', channel }));
    socket.onerror = () => fail(new Error('the WebSocket failed'));
    window.socket = socket;
  }), { url: `ws://127.0.0.1:${server.port}/ws`, channel });
  return page;
}

test('without an API key the admin page is off', async () => {
  const off = await HeartwireServer.start();
  try {
    const response = await fetch(`${off.origin}/admin`);
    assert.equal(response.status, 404);
    assert.match((await response.json()).error.message, /--api-key/);
  } finally {
    await off.kill();
  }
});

test('a wrong key is refused and sets no cookie', async () => {
  const page = await logIn('not-the-key-0123456789');
  try {
    assert.match(await page.textContent('#notice'), /not the API key/);
    assert.equal((await browser.context.cookies(server.origin)).length, 0);
    assert.equal(await page.$('#connections'), null, 'no dashboard');
  } finally {
    await page.close();
  }
});

test('the login cookie is HttpOnly and SameSite=Strict, and the charts follow the server', async () => {
  const admin = await logIn(KEY);
  const listener = await subscriber('admin:test');
  try {
    const [cookie] = await browser.context.cookies(server.origin);
    assert.equal(cookie.name, 'heartwire_admin');
    assert.equal(cookie.httpOnly, true);
    assert.equal(cookie.sameSite, 'Strict');
    assert.equal(cookie.secure, false, 'plain HTTP here; Secure over TLS');
    assert.equal(await admin.evaluate(() => document.cookie), '', 'scripts cannot read it');

    // The subscriber's connection shows in the chart and the busiest channels.
    await admin.waitForFunction(
      () => document.querySelector('#connections-legend [data-name="native"] b')?.textContent === '1',
      null, { polling: POLL_MS, timeout: 10_000 },
    );
    await admin.waitForFunction(
      () => document.querySelector('#channels td')?.textContent === 'admin:test',
      null, { polling: POLL_MS, timeout: 10_000 },
    );
    const points = Number(await admin.getAttribute('#connections', 'data-points'));
    await admin.waitForFunction(
      (before) => Number(document.querySelector('#connections').dataset.points) > before,
      points, { polling: POLL_MS, timeout: 10_000 },
    );
    // Round trips of the server's Pings reach the histogram.
    await admin.waitForFunction(
      () => Number(document.querySelector('#rtt-legend b')?.textContent) > 0,
      null, { polling: POLL_MS, timeout: 10_000 },
    );
    assert.match(await admin.textContent('#nodes'), /memory\s*up/);

    // A client back from a restart reports it: the liveness figures and offline reasons show it.
    await listener.evaluate(() => window.socket.send(JSON.stringify({
      op: 'report', previous_session: '0123456789abcdef', offline_ms: 2500, reason: 'closed', code: 1012, last_heard_ms: 0,
    })));
    await admin.waitForFunction(
      () => /2\.50 s on average/.test(document.querySelector('#offline-legend [data-name="server_restart"] b')?.textContent),
      null, { polling: POLL_MS, timeout: 10_000 },
    );
    const figures = Object.fromEntries(await admin.$$eval('#liveness tbody tr',
      (rows) => rows.map((row) => [...row.cells].map((cell) => cell.textContent))));
    assert.equal(figures['reports accepted · invalid'], '1 · 0');
    assert.equal(figures['false reaps'], '0');
    assert.equal(figures['reaped for silence'], '0');
    assert.equal(figures['detection time p50 · p90 · p99'], '– · – · –');
    assert.equal(figures['resumes recovered · gap · epoch change'], '0 · 0 · 0');
    assert.equal(Number(await admin.getAttribute('#offline', 'data-points')), 6, 'a bar per reason');

    // A bad channel gets the server's sentence.
    await admin.fill('#channel', 'no spaces allowed');
    await admin.$eval('#publish', (form) => form.requestSubmit());
    await admin.waitForFunction(() => /invalid channel name/.test(document.querySelector('#result').textContent),
      null, { polling: POLL_MS, timeout: 10_000 });

    // The publish box reaches the subscriber.
    await admin.fill('#channel', 'admin:test');
    await admin.fill('#data', '{"hello": "from the admin page"}');
    await admin.$eval('#publish', (form) => form.requestSubmit());
    await admin.waitForFunction(() => /Published as seq 1/.test(document.querySelector('#result').textContent),
      null, { polling: POLL_MS, timeout: 10_000 });
    await listener.waitForFunction(() => window.received.length === 1, null, { polling: POLL_MS, timeout: 10_000 });
    assert.deepEqual(await listener.evaluate(() => window.received), [{ hello: 'from the admin page' }]);
    await admin.waitForFunction(
      () => Number(document.querySelector('#traffic-legend [data-name="deliveries/s"] b')?.textContent) >= 0,
      null, { polling: POLL_MS, timeout: 10_000 },
    );

    // Without the admin header, the cookie opens nothing (another site cannot add it).
    const status = await admin.evaluate(async () => (await fetch('/api/info')).status);
    assert.equal(status, 401);

    await admin.evaluate(() => { document.activeElement?.blur(); window.scrollTo(0, 0); });
    await admin.bringToFront();
    await admin.setViewportSize({ width: 1280, height: 800 });
    await admin.waitForFunction(redrawn, null, { polling: POLL_MS, timeout: 10_000 });
    await admin.screenshot({ path: await artifact('admin.png') });
    await admin.setViewportSize({ width: 390, height: 844 });
    await admin.waitForFunction(redrawn, null, { polling: POLL_MS, timeout: 10_000 });
    await admin.evaluate(() => window.scrollTo(0, 0));
    await admin.screenshot({ path: await artifact('admin-phone.png') });
    const overflow = await admin.evaluate(() => document.documentElement.scrollWidth > window.innerWidth);
    assert.equal(overflow, false, 'no horizontal scrolling on a phone-sized window');

    // Logging out ends the login.
    await Promise.all([admin.waitForNavigation(), admin.$eval('header form', (form) => form.submit())]);
    assert.notEqual(await admin.$('#key'), null, 'the login form again');
    const after = await admin.evaluate(async () => (await fetch('/api/info', { headers: { 'x-heartwire-admin': '1' } })).status);
    assert.equal(after, 401);
  } finally {
    await listener.close();
    await admin.close();
  }
});
