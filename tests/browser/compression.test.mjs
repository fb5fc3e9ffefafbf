/**
 * permessage-deflate with Chromium: the browser offers it, the server agrees without context
 * takeover, and messages compressed both ways arrive intact, on `/echo` and through the demo's
 * chat on `/ws` (a broadcast compressed once for its recipients).
 */
import { test, before, after, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { HeartwireServer, launchBrowser, openDemo, say, chatLines, POLL_MS } from './harness.mjs';

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

test('Chromium gets permessage-deflate agreed and compressed messages come back intact', async (t) => {
  const page = await browser.context.newPage();
  try {
    await page.goto(`${server.origin}/healthz`);
    const result = await page.evaluate(async (url) => {
      const ws = new WebSocket(url);
      ws.binaryType = 'arraybuffer';
      const next = () => new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no echo within 10 s')), 10_000);
        ws.onmessage = (event) => { clearTimeout(timer); resolve(event.data); };
      });
      await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = reject; });
      const text = JSON.stringify({ lines: Array.from({ length: 200 }, (_, n) => `line ${n} of the chat`) });
      ws.send(text);
      const textBack = await next();
      const bytes = new Uint8Array(70_000).map((_, n) => n % 7);
      ws.send(bytes);
      const bytesBack = new Uint8Array(await next());
      const short = 'hi';
      ws.send(short);
      const shortBack = await next();
      ws.close(1000);
      return {
        extensions: ws.extensions,
        text: textBack === text,
        binary: bytesBack.length === bytes.length && bytesBack.every((b, n) => b === bytes[n]),
        short: shortBack === short,
      };
    }, `ws://127.0.0.1:${server.port}/echo`);
    t.diagnostic(`Sec-WebSocket-Extensions seen by the page: ${result.extensions}`);
    assert.equal(
      result.extensions,
      'permessage-deflate; server_no_context_takeover; client_no_context_takeover',
    );
    assert.deepEqual(
      { text: result.text, binary: result.binary, short: result.short },
      { text: true, binary: true, short: true },
    );
  } finally {
    await page.close();
  }
});

test('a long chat line reaches another page through the compressed broadcast', async () => {
  const alice = await openDemo(browser.context, server.origin, 'alice');
  const bob = await openDemo(browser.context, server.origin, 'bob');
  try {
    const line = 'a long line that is worth compressing, '.repeat(20).trim();
    await say(alice, line);
    await bob.waitForFunction(
      (expected) => [...document.querySelectorAll('#messages .text')].some((e) => e.textContent === expected),
      line, { polling: POLL_MS, timeout: 5_000 },
    );
    assert.deepEqual(await chatLines(bob), [`alice: ${line}`]);
  } finally {
    await alice.close();
    await bob.close();
  }
});
