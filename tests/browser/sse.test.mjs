/**
 * `/sse` in Chromium: a page reads two channels with a plain `EventSource` from one node while
 * that node is restarted twice on the same port: once as a deploy does (SIGTERM: the stream
 * ends with a `reconnect` event) and once by a crash (SIGKILL: the socket is cut). A second
 * node shares the channels through a real `redis-server` started here, and messages are
 * published there while the first node is down, so the page certainly misses them live. The
 * browser reconnects by itself and sends `Last-Event-ID`; every message must arrive exactly
 * once, in order. And a stream read across origins: Chromium shows it to a page of an allowed
 * origin (CORS with credentials) and to no other.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { connect } from 'node:net';
import { HeartwireServer, freePort, launchBrowser, waitUntil } from './harness.mjs';

/** Messages per channel in each of the three rounds. */
const PER_ROUND = 10;
const CHANNELS = ['feed:a', 'feed:b'];

let browser;
let redis;

/** A `redis-server` on a free port, without persistence, killed at the end. */
async function startRedis() {
  const port = await freePort();
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  child.stdout.on('data', (chunk) => { log += chunk; });
  child.stderr.on('data', (chunk) => { log += chunk; });
  const exited = new Promise((done) => child.once('exit', done));
  const pong = () => new Promise((done) => {
    const socket = connect(port, '127.0.0.1', () => socket.write('PING\r\n'));
    socket.once('data', (data) => { socket.destroy(); done(String(data).startsWith('+PONG')); });
    socket.once('error', () => done(false));
  });
  await waitUntil(async () => {
    if (child.exitCode !== null) throw new Error(`redis-server exited with ${child.exitCode}:\n${log}`);
    return pong();
  }, 10_000, `redis-server to answer on port ${port}\n${log}`);
  return {
    url: `redis://127.0.0.1:${port}/`,
    async stop() {
      child.kill('SIGKILL');
      await exited;
    },
  };
}

before(async () => {
  redis = await startRedis();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await redis?.stop();
});

/** Publishes `{channel}-{n}` for n in `[from, to]` on each channel from `page`, through /ws. */
function publish(page, from, to) {
  return page.evaluate(async ({ channels, from, to }) => {
    const socket = new WebSocket(`ws://${location.host}/ws`);
    await new Promise((done, fail) => { socket.onopen = done; socket.onerror = fail; });
    const expected = channels.length * (to - from + 1);
    const acked = new Promise((done, fail) => {
      let acks = 0;
      socket.onmessage = (event) => {
        const frame = JSON.parse(event.data);
        if (frame.op === 'ack' && ++acks === expected) done();
        if (frame.op === 'error') fail(new Error(frame.reason));
      };
    });
    for (let n = from; n <= to; n++) {
      for (const channel of channels) {
        socket.send(JSON.stringify({ op: 'publish', channel, data: `${channel}-${n}`, id: `${channel}-${n}` }));
      }
    }
    await acked;
    socket.close();
  }, { channels: CHANNELS, from, to });
}

/** What the page's EventSource saw. */
const seen = (page) => page.evaluate(() => window.seen);

test('EventSource across a deploy and a crash with Redis: nothing lost, nothing repeated', async () => {
  const server = new HeartwireServer(await freePort(), [
    '--redis', redis.url, '--sse-retry', '300ms', '--shutdown-spread', '500ms',
  ]);
  await server.start();
  const other = await HeartwireServer.start(['--redis', redis.url]);
  const page = await browser.context.newPage();
  const publisher = await browser.context.newPage();
  try {
    await publisher.goto(`${other.origin}/heartwire.js`);
    await page.goto(`${server.origin}/heartwire.js`);
    await page.evaluate((channels) => {
      window.seen = { messages: [], subscribed: [], gaps: [], reconnects: 0, opens: 0 };
      const query = channels.map((channel) => `channel=${encodeURIComponent(channel)}`).join('&');
      const source = new EventSource(`/sse?${query}`);
      source.onopen = () => { window.seen.opens += 1; };
      source.onmessage = (event) => {
        const message = JSON.parse(event.data);
        window.seen.messages.push(`${message.channel}#${message.seq}=${message.data}`);
      };
      source.addEventListener('subscribed', (event) => window.seen.subscribed.push(JSON.parse(event.data)));
      source.addEventListener('gap', (event) => window.seen.gaps.push(JSON.parse(event.data)));
      source.addEventListener('reconnect', () => { window.seen.reconnects += 1; });
    }, CHANNELS);
    const received = (count) => waitUntil(async () => (await seen(page)).messages.length >= count, 15_000,
      `${count} messages on the page\n${server.log}`);
    await waitUntil(async () => (await seen(page)).subscribed.length === CHANNELS.length, 10_000, 'both subscriptions');

    await publish(publisher, 1, PER_ROUND);
    await received(CHANNELS.length * PER_ROUND);

    // A deploy: the stream ends with `reconnect`; while the node is down, the other node
    // publishes; then the node comes back on the same port.
    await server.stop();
    await waitUntil(async () => (await seen(page)).reconnects === 1, 10_000, 'the reconnect event');
    await publish(publisher, PER_ROUND + 1, 2 * PER_ROUND);
    assert.equal((await seen(page)).messages.length, CHANNELS.length * PER_ROUND, 'nothing while the node is down');
    await server.start();
    await received(CHANNELS.length * 2 * PER_ROUND);

    // A crash: the socket is cut without a word.
    await server.kill();
    await publish(publisher, 2 * PER_ROUND + 1, 3 * PER_ROUND);
    await server.start();
    await received(CHANNELS.length * 3 * PER_ROUND);

    const result = await seen(page);
    const all = JSON.stringify(result);
    for (const channel of CHANNELS) {
      const expected = Array.from({ length: 3 * PER_ROUND }, (_, i) => `${channel}#${i + 1}=${channel}-${i + 1}`);
      assert.deepEqual(result.messages.filter((m) => m.startsWith(`${channel}#`)), expected, `every message of ${channel} once, in order: ${all}`);
    }
    assert.equal(result.messages.length, CHANNELS.length * 3 * PER_ROUND, `nothing more: ${all}`);
    assert.deepEqual(result.gaps, [], `no gap: Redis kept the history across both restarts: ${all}`);
    // Three streams: the first, and one after each restart, which resumed each channel.
    assert.equal(result.opens, 3, all);
    const resumed = result.subscribed.slice(CHANNELS.length);
    assert.equal(resumed.length, 2 * CHANNELS.length);
    assert.ok(resumed.every((s) => s.recovered === true), JSON.stringify(resumed));
  } finally {
    await page.close();
    await publisher.close();
    await server.kill();
    await other.kill();
  }
});

test('a page of an allowed origin reads a stream of another origin; a page of any other origin cannot', async () => {
  const pages = await HeartwireServer.start();
  const stranger = await HeartwireServer.start();
  const server = await HeartwireServer.start(['--allowed-origin', pages.origin]);
  const page = await browser.context.newPage();
  const foreign = await browser.context.newPage();
  try {
    await page.goto(`${pages.origin}/heartwire.js`);
    await foreign.goto(`${stranger.origin}/heartwire.js`);
    const open = (from) => from.evaluate((url) => new Promise((done) => {
      const source = new EventSource(url, { withCredentials: true });
      source.addEventListener('subscribed', (event) => { source.close(); done(JSON.parse(event.data).channel); });
      source.onerror = () => { if (source.readyState === EventSource.CLOSED) done('refused'); };
    }), `${server.origin}/sse?channel=news`);
    assert.equal(await open(page), 'news');
    assert.equal(await open(foreign), 'refused');
  } finally {
    await page.close();
    await foreign.close();
    await Promise.all([pages.kill(), stranger.kill(), server.kill()]);
  }
});
