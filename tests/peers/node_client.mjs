#!/usr/bin/env node
// A Node `ws` client that checks heartwire's native `/ws` protocol.
//
//   node tests/peers/node_client.mjs ws://127.0.0.1:PORT/ws [--stay-ms 1000] [--expect-ping-interval-ms 200]
//   node tests/peers/node_client.mjs wss://localhost:PORT/ws --ca ca.pem
//
// It speaks docs/PROTOCOL.md as an unchanged Node client would (package `ws`, which answers
// protocol Pings by itself) and checks:
//
// 1. the first frame is `hello` with `session`, `ping_interval_ms`, `ping_timeout_ms`, `server`;
// 2. `{"op":"ping","t":…,"tag":…}` is answered by `pong` with the same `t` and `tag`;
// 3. `subscribe` to a fresh channel is answered by `subscribed` with that channel and a `seq`;
// 4. `publish` with an `id` is answered by `ack` (same `id`) and by the client's own `message`
//    with the data as sent and `seq` = subscribed `seq` + 1, equal to the ack's;
// 5. a frame that is not JSON gets `error` `bad_json` and the connection stays open;
// 6. while the client stays silent for `--stay-ms`, the server sends protocol Pings (its
//    inbound-silence keepalive), at least one per two `ping_interval_ms`, `ws` answers them,
//    the connection stays open and no data frame arrives that nothing asked for;
// 7. a close with 1000 is answered by a close with 1000.
//
// It prints one JSON line: {"ok": bool, "checks": {...}, "observed": {...}, "failures": [...]}
// and exits 0 only when every check passed (1 when one failed, 2 on a usage or setup error).
// Every wait is bounded; the whole run is bounded by `--deadline-ms`.

import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { isDeepStrictEqual, parseArgs } from 'node:util';

let WebSocket;
try {
  ({ default: WebSocket } = await import('ws'));
} catch (err) {
  console.error(
    `node_client.mjs: the npm package 'ws' is missing (${err.code ?? err.message}); ` +
      'run scripts/test, which runs npm ci in tests/peers',
  );
  process.exit(2);
}

const { values: opts, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    'stay-ms': { type: 'string', default: '1000' },
    'wait-ms': { type: 'string', default: '5000' },
    'deadline-ms': { type: 'string', default: '30000' },
    'expect-ping-interval-ms': { type: 'string' },
    ca: { type: 'string' },
  },
});
const url = positionals[0];
const loopback = ['ws://127.0.0.1:', 'wss://localhost:', 'wss://127.0.0.1:'];
if (!url || !loopback.some((prefix) => url.startsWith(prefix))) {
  console.error('usage: node_client.mjs ws://127.0.0.1:PORT/ws (tests talk only to loopback)');
  process.exit(2);
}
if (url.startsWith('wss://') && opts.ca === undefined) {
  console.error('node_client.mjs: wss:// needs --ca, the test CA\'s certificate');
  process.exit(2);
}
// wss://: the server's certificate must chain to this CA, checked by Node's TLS.
const tls = url.startsWith('wss://') ? { ca: readFileSync(opts.ca) } : {};
const stayMs = Number(opts['stay-ms']);
const waitMs = Number(opts['wait-ms']);
const deadlineMs = Number(opts['deadline-ms']);
const expectInterval =
  opts['expect-ping-interval-ms'] === undefined ? undefined : Number(opts['expect-ping-interval-ms']);

class CheckFailed extends Error {}

const checks = {};
const observed = {};
const failures = [];

function check(name, ok, detail) {
  checks[name] = Boolean(ok);
  if (!ok) throw new CheckFailed(`${name}: ${detail}`);
}

const isInt = (v) => Number.isInteger(v);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function run() {
  const ws = new WebSocket(url, { perMessageDeflate: false, handshakeTimeout: waitMs, ...tls });
  const frames = []; // parsed frames not yet taken
  const waiters = []; // callbacks woken on every new frame or close
  let closed = null; // { code, reason } once closed
  let serverPings = 0;
  const wake = () => waiters.splice(0).forEach((w) => w());

  ws.on('message', (data, isBinary) => {
    let frame;
    if (isBinary) {
      frame = { unexpectedBinary: data.length };
    } else {
      try {
        frame = JSON.parse(data.toString('utf8'));
      } catch {
        frame = { notJson: data.toString('utf8') };
      }
    }
    frames.push(frame);
    wake();
  });
  ws.on('ping', () => {
    serverPings += 1;
  });
  ws.on('close', (code, reason) => {
    closed = { code, reason: reason.toString('utf8') };
    wake();
  });
  const errored = new Promise((_, reject) => ws.on('error', (err) => reject(new CheckFailed(`socket error: ${err.message}`))));
  errored.catch(() => {});

  await Promise.race([
    new Promise((resolve) => ws.once('open', resolve)),
    errored,
    sleep(waitMs).then(() => {
      throw new CheckFailed(`no connection within ${waitMs} ms`);
    }),
  ]);

  // Returns the first frame matching `pred`; bounded by waitMs.
  async function take(what, pred) {
    const deadline = Date.now() + waitMs;
    for (let i = 0; i < 1000; i++) {
      const at = frames.findIndex(pred);
      if (at >= 0) return frames.splice(at, 1)[0];
      if (closed) throw new CheckFailed(`closed (${closed.code} ${closed.reason}) while waiting for ${what}`);
      const left = deadline - Date.now();
      if (left <= 0) break;
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, left);
        waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    throw new CheckFailed(`no ${what} within ${waitMs} ms; frames not asked for: ${JSON.stringify(frames)}`);
  }
  const send = (frame) => ws.send(JSON.stringify(frame));
  const isOp = (op, fields = {}) => (f) => f.op === op && Object.entries(fields).every(([k, v]) => f[k] === v);

  // 1. hello.
  const hello = await take('hello', () => true);
  observed.hello = hello;
  check(
    'hello',
    hello.op === 'hello' &&
      typeof hello.session === 'string' &&
      hello.session !== '' &&
      isInt(hello.ping_interval_ms) &&
      isInt(hello.ping_timeout_ms) &&
      typeof hello.server === 'string',
    `first frame is not a complete hello: ${JSON.stringify(hello)}`,
  );
  if (expectInterval !== undefined) {
    check('hello_ping_interval', hello.ping_interval_ms === expectInterval, `ping_interval_ms ${hello.ping_interval_ms} != ${expectInterval}`);
  }

  // 2. application-level ping.
  const t = Date.now() / 1000;
  const tag = randomBytes(4).toString('hex');
  send({ op: 'ping', t, tag });
  const pong = await take('pong', isOp('pong'));
  observed.pong = pong;
  check('pong', pong.t === t && pong.tag === tag, `pong ${JSON.stringify(pong)} lost t=${t} tag=${tag}`);

  // 3. subscribe.
  const channel = `interop:node-${randomBytes(6).toString('hex')}`;
  send({ op: 'subscribe', channel });
  const sub = await take('subscribed', isOp('subscribed', { channel }));
  observed.subscribed = sub;
  check('subscribed', isInt(sub.seq) && sub.seq >= 0, `bad subscribed: ${JSON.stringify(sub)}`);

  // 4. publish: ack and our own message.
  const data = { from: 'node_client.mjs', text: 'hé', n: [1, 2.5, null, true] };
  send({ op: 'publish', channel, data, id: 'n1' });
  const ack = await take('ack', isOp('ack', { id: 'n1' }));
  const msg = await take('message', isOp('message', { channel }));
  observed.ack = ack;
  observed.message = msg;
  check('ack', isInt(ack.seq), `ack without an integer seq: ${JSON.stringify(ack)}`);
  // JSON objects are unordered: compare values, not text.
  check('message_data', isDeepStrictEqual(msg.data, data), `message data ${JSON.stringify(msg.data)}`);
  check('message_seq', msg.seq === sub.seq + 1 && msg.seq === ack.seq, `message seq ${msg.seq}, ack seq ${ack.seq}, subscribed seq ${sub.seq}`);

  // 5. malformed frame.
  ws.send('{"op":');
  const err = await take('error', isOp('error'));
  observed.error_bad_json = err;
  check('error_bad_json', err.code === 'bad_json' && typeof err.reason === 'string', JSON.stringify(err));

  // 6. stay silent: the server must ping us, and `ws` answers.
  const interval = hello.ping_interval_ms;
  if (!(stayMs >= 3 * interval)) {
    throw new CheckFailed(`--stay-ms ${stayMs} is shorter than 3 × ping_interval_ms ${interval}: server Pings cannot be observed`);
  }
  const pingsBefore = serverPings;
  await sleep(stayMs);
  const pings = serverPings - pingsBefore;
  const minPings = Math.floor(stayMs / (2 * interval));
  observed.server_pings = pings;
  observed.min_server_pings = minPings;
  check('server_pings', pings >= minPings, `${pings} server Pings in ${stayMs} ms, expected at least ${minPings}`);
  check('open_after_stay', closed === null && ws.readyState === WebSocket.OPEN, `closed during stay: ${JSON.stringify(closed)}`);
  check('nothing_unasked', frames.length === 0, `frames that nothing asked for: ${JSON.stringify(frames)}`);

  // 7. close 1000.
  ws.close(1000, 'done');
  const closeDeadline = Date.now() + waitMs;
  for (let i = 0; i < 1000 && !closed && Date.now() < closeDeadline; i++) await sleep(10);
  observed.close = closed;
  check('close_1000', closed !== null && closed.code === 1000, `close answered with ${JSON.stringify(closed)}`);
}

const started = Date.now();
let timer;
try {
  await Promise.race([
    run(),
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new CheckFailed(`the run took longer than ${deadlineMs} ms`)), deadlineMs);
    }),
  ]);
} catch (err) {
  failures.push(err instanceof CheckFailed ? err.message : `${err.name}: ${err.message}`);
} finally {
  clearTimeout(timer);
}
const expected = 11 + (expectInterval !== undefined ? 1 : 0);
if (failures.length === 0 && Object.keys(checks).length !== expected) {
  failures.push(`ran ${Object.keys(checks).length} checks, expected ${expected}`);
}
const ok = failures.length === 0 && Object.values(checks).every(Boolean);
observed.elapsed_ms = Date.now() - started;
console.log(JSON.stringify({ ok, checks, observed, failures }));
process.exit(ok ? 0 : 1);
