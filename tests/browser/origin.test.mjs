/**
 * Cross-site WebSocket hijacking, seen from a real browser: a page served from another
 * origin opens a WebSocket to heartwire with the visitor's browser, as a hostile page would.
 * With no `--allowed-origin` heartwire lets in only its own origin (the demo page keeps
 * working, demo.test.mjs), so the foreign page is refused before the upgrade; once the
 * operator names that origin with `--allowed-origin`, the same page connects.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { HeartwireServer, launchBrowser, openDemo } from './harness.mjs';

let browser;
/** A plain HTTP server on another port of 127.0.0.1: another origin. */
let elsewhere;
let elsewhereOrigin;

before(async () => {
  browser = await launchBrowser();
  elsewhere = createServer((request, response) => {
    response.setHeader('content-type', 'text/html; charset=utf-8');
    response.end('<!doctype html><title>elsewhere</title><p>a page of another site</p>');
  });
  await new Promise((done) => elsewhere.listen(0, '127.0.0.1', done));
  elsewhereOrigin = `http://127.0.0.1:${elsewhere.address().port}`;
});

after(async () => {
  await browser?.close();
  elsewhere?.closeAllConnections();
  await new Promise((done) => elsewhere?.close(done) ?? done());
});

/**
 * Opens the foreign page (at `origin`, another name of the same server) and tries a
 * WebSocket to `url` from it: 'open', or how it ended.
 */
async function tryFromElsewhere(url, origin = elsewhereOrigin) {
  const tab = await browser.context.newPage();
  try {
    await tab.goto(`${origin}/`);
    return await tab.evaluate((target) => new Promise((resolve) => {
      const socket = new WebSocket(target);
      socket.onopen = () => { socket.close(); resolve('open'); };
      socket.onclose = (event) => resolve(`closed ${event.code}`);
    }), url);
  } finally {
    await tab.close();
  }
}

test('with no --allowed-origin, a page of another origin is refused and the server\'s own page is not', async () => {
  const server = await HeartwireServer.start();
  try {
    const outcome = await tryFromElsewhere(`${server.origin.replace('http', 'ws')}/ws`);
    // A refused upgrade reaches page JavaScript as close 1006, whatever the status was.
    assert.equal(outcome, 'closed 1006');
    const refused = (await server.metrics())['heartwire_refused_total{reason="origin"}'];
    assert.ok(refused >= 1, `the refusal is counted as origin (${refused})`);
    // The same browser on the server's own page connects.
    const own = await openDemo(browser.context, server.origin, 'ada');
    try {
      assert.equal(await own.evaluate(() => window.heartwire.state), 'open');
    } finally {
      await own.close();
    }
  } finally {
    await server.kill();
  }
});

test('--allowed-origin lets that page in', async () => {
  const server = await HeartwireServer.start(['--allowed-origin', elsewhereOrigin]);
  try {
    const outcome = await tryFromElsewhere(`${server.origin.replace('http', 'ws')}/ws`);
    assert.equal(outcome, 'open');
  } finally {
    await server.kill();
  }
});

test('a glob names the origins of a family of hosts', async () => {
  // Chromium resolves every name under localhost to the loopback address.
  const port = elsewhere.address().port;
  const server = await HeartwireServer.start(['--allowed-origin', `http://*.localhost:${port}`]);
  try {
    const url = `${server.origin.replace('http', 'ws')}/ws`;
    assert.equal(await tryFromElsewhere(url, `http://app.localhost:${port}`), 'open');
    assert.equal(await tryFromElsewhere(url), 'closed 1006', '127.0.0.1 is not under localhost');
  } finally {
    await server.kill();
  }
});
