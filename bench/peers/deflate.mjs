// bench/peers/deflate.mjs — permessage-deflate figures of heartwire beside Node `ws` with
// perMessageDeflate, from Node `ws` clients (the Rust generator of `heartwire bench` speaks
// no permessage-deflate): run by bench/deflate.
//
//   node bench/peers/deflate.mjs HEARTWIRE_BIN [--connections N] [--subscribers N]
//
// For each server, one after the other on the same machine:
// - wire: the bytes the server sends back for 100 different chat messages of about 200 bytes
//   of JSON, on a connection with the extension and on one without;
// - idle: the server's RSS growth per connection, for N connections without the extension,
//   N with it (idle), and the same N after each sent one 2 KiB message and got it back;
// - echo: 20 connections with the extension echoing 2 KiB JSON messages one at a time;
//   messages per second and the server's CPU per echo;
// - broadcast: S subscribers with the extension, 100 messages of 2 KiB JSON published to
//   all of them; the server's CPU per delivery.
// Prints a JSON line per server, then the table of bench/RESULTS.md. Every wait is bounded.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import WebSocket from 'ws';

const args = process.argv.slice(2);
const HEARTWIRE = args[0];
const option = (name, fallback) => {
  const at = args.indexOf(name);
  return at >= 0 ? Number(args[at + 1]) : fallback;
};
const CONNECTIONS = option('--connections', 2000);
const SUBSCRIBERS = option('--subscribers', 500);
const ECHO_CLIENTS = 20;
const ECHO_MESSAGES = 500;
const PUBLISHED = 100;
const WAIT_MS = 60_000;
const SETTLE_MS = 2000;
const PEERS = new URL('.', import.meta.url).pathname;

const SERVERS = [
  {
    name: 'heartwire',
    command: [HEARTWIRE, 'serve', '--listen', '127.0.0.1:9120', '--ping-interval', '60s',
      '--ping-timeout', '60s', '--max-connections', '30000', '--max-connections-per-ip', '0',
      '--accept-rate', '0/s', '--message-rate', '0/s'],
    env: { HEARTWIRE_LOG: 'warn' },
    port: 9120,
    echo: '/echo',
  },
  {
    name: 'node-ws',
    command: ['node', `${PEERS}ws_server.js`, '9121'],
    env: { PER_MESSAGE_DEFLATE: '1', PING_INTERVAL_MS: '60000', PING_TIMEOUT_MS: '60000' },
    port: 9121,
    echo: '/echo',
  },
];

function chat(n, size = 200) {
  const base = { op: 'message', channel: 'room:lobby', seq: 1000 + n, data: { user: `user${n % 17}`, text: '', sent: new Date(1_764_000_000_000 + n * 1000).toISOString() } };
  const words = ['are', 'we', 'still', 'meeting', 'at', 'ten', 'I', 'have', 'the', 'notes', 'from', 'yesterday', 'and', 'a', 'draft'];
  let text = '';
  for (let i = 0; JSON.stringify({ ...base, data: { ...base.data, text } }).length < size; i++) {
    text += `${words[(n * 7 + i * 3) % words.length]} `;
  }
  return JSON.stringify({ ...base, data: { ...base.data, text: text.trim() } });
}

const rss = (pid) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) * 1024;
const cpu = (pid) => {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
};

function withTimeout(promise, what) {
  let timer;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`${what} timed out`)), WAIT_MS); }),
  ]);
}

function open(url, perMessageDeflate) {
  return withTimeout(new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate });
    // Messages are queued from the start: a greeting may come before anyone waits for it.
    ws.inbox = [];
    ws.waiters = [];
    ws.on('message', (data) => {
      const waiter = ws.waiters.shift();
      if (waiter) waiter(data); else ws.inbox.push(data);
    });
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  }), `opening ${url}`);
}

function next(ws) {
  if (ws.inbox.length > 0) return Promise.resolve(ws.inbox.shift());
  return withTimeout(new Promise((resolve) => ws.waiters.push(resolve)), 'a message');
}

async function openMany(url, count, perMessageDeflate) {
  const sockets = [];
  for (let i = 0; i < count; i += 200) {
    const batch = Array.from({ length: Math.min(200, count - i) }, () => open(url, perMessageDeflate));
    sockets.push(...await Promise.all(batch));
  }
  return sockets;
}

async function closeAll(sockets) {
  for (const ws of sockets) ws.terminate();
  await sleep(500);
}

async function start(server) {
  const child = spawn(server.command[0], server.command.slice(1), {
    env: { ...process.env, ...server.env }, stdio: ['ignore', 'ignore', 'inherit'],
  });
  for (let i = 0; i < 100; i++) {
    try {
      const ws = await open(`ws://127.0.0.1:${server.port}${server.echo}`, false);
      ws.terminate();
      return child;
    } catch {
      await sleep(100);
    }
  }
  throw new Error(`${server.name} did not start`);
}

async function wire(server) {
  const url = `ws://127.0.0.1:${server.port}${server.echo}`;
  const result = {};
  for (const [name, deflate] of [['compressed', true], ['plain', false]]) {
    const ws = await open(url, deflate);
    let bytes = 0;
    for (let n = 0; n < 100; n++) {
      const before = ws._socket.bytesRead;
      const reply = next(ws);
      ws.send(chat(n));
      await reply;
      bytes += ws._socket.bytesRead - before;
    }
    result[name] = bytes / 100;
    ws.terminate();
  }
  return { chat_bytes: chat(0).length, server_bytes_compressed: result.compressed, server_bytes_plain: result.plain };
}

async function idle(server, pid) {
  const url = `ws://127.0.0.1:${server.port}${server.echo}`;
  const figures = {};
  for (const [name, deflate] of [['plain', false], ['compressed', true]]) {
    await sleep(SETTLE_MS);
    const before = rss(pid);
    const sockets = await openMany(url, CONNECTIONS, deflate);
    await sleep(SETTLE_MS);
    figures[`idle_${name}`] = Math.round((rss(pid) - before) / CONNECTIONS);
    if (deflate) {
      const message = chat(1, 2048);
      for (let i = 0; i < sockets.length; i += 200) {
        await Promise.all(sockets.slice(i, i + 200).map((ws) => { const reply = next(ws); ws.send(message); return reply; }));
      }
      await sleep(SETTLE_MS);
      figures.after_one_message = Math.round((rss(pid) - before) / CONNECTIONS);
    }
    await closeAll(sockets);
  }
  return figures;
}

async function echo(server, pid) {
  const url = `ws://127.0.0.1:${server.port}${server.echo}`;
  const sockets = await openMany(url, ECHO_CLIENTS, true);
  const message = chat(2, 2048);
  const cpuBefore = cpu(pid);
  const started = process.hrtime.bigint();
  await Promise.all(sockets.map(async (ws) => {
    for (let n = 0; n < ECHO_MESSAGES; n++) {
      const reply = next(ws);
      ws.send(message);
      await reply;
    }
  }));
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const echoes = ECHO_CLIENTS * ECHO_MESSAGES;
  const figures = { echo_per_s: Math.round(echoes / seconds), echo_cpu_us: Math.round((cpu(pid) - cpuBefore) / echoes * 1e6) };
  await closeAll(sockets);
  return figures;
}

async function broadcast(server, pid) {
  const native = server.name === 'heartwire';
  const url = `ws://127.0.0.1:${server.port}${native ? '/ws' : '/broadcast'}`;
  const subscribe = async (ws) => {
    if (!native) return ws;
    await next(ws); // hello
    const subscribed = next(ws);
    ws.send(JSON.stringify({ op: 'subscribe', channel: 'bench' }));
    await subscribed;
    return ws;
  };
  const subscribers = [];
  for (const ws of await openMany(url, SUBSCRIBERS, true)) subscribers.push(await subscribe(ws));
  const publisher = await open(url, true);
  if (native) await next(publisher);
  const received = subscribers.map(() => 0);
  const done = new Promise((resolve) => {
    let complete = 0;
    subscribers.forEach((ws, index) => ws.removeAllListeners('message').on('message', () => {
      received[index] += 1;
      if (received[index] === PUBLISHED && ++complete === subscribers.length) resolve();
    }));
  });
  const data = chat(3, 2048);
  const cpuBefore = cpu(pid);
  const started = process.hrtime.bigint();
  for (let n = 0; n < PUBLISHED; n++) {
    publisher.send(native ? JSON.stringify({ op: 'publish', channel: 'bench', data: JSON.parse(data) }) : data);
    await sleep(10);
  }
  await withTimeout(done, 'every delivery');
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const deliveries = PUBLISHED * SUBSCRIBERS;
  const figures = { broadcast_deliveries_per_s: Math.round(deliveries / seconds), broadcast_cpu_us: Number(((cpu(pid) - cpuBefore) / deliveries * 1e6).toFixed(1)) };
  publisher.terminate();
  await closeAll(subscribers);
  return figures;
}

const results = [];
for (const server of SERVERS) {
  const child = await start(server);
  try {
    const figures = { server: server.name };
    Object.assign(figures, await wire(server));
    Object.assign(figures, await idle(server, child.pid));
    Object.assign(figures, await echo(server, child.pid));
    Object.assign(figures, await broadcast(server, child.pid));
    // The machine is shared: the one-minute load average goes beside the figures.
    figures.load = Number(loadavg()[0].toFixed(2));
    console.log(JSON.stringify(figures));
    results.push(figures);
  } finally {
    child.kill('SIGKILL');
  }
}
const row = (label, key, unit = '') => `| ${label} | ${results.map((r) => `${r[key]}${unit}`).join(' | ')} |`;
console.log(`\n| with permessage-deflate | ${results.map((r) => r.server).join(' | ')} |`);
console.log(`|---|${results.map(() => '---').join('|')}|`);
console.log(row(`server's bytes on the wire for a ${results[0].chat_bytes}-byte JSON chat message, compressed`, 'server_bytes_compressed'));
console.log(row('the same without the extension', 'server_bytes_plain'));
console.log(row(`bytes per idle connection without the extension (${CONNECTIONS})`, 'idle_plain'));
console.log(row('bytes per idle connection with it', 'idle_compressed'));
console.log(row('the same after one 2 KiB message each way', 'after_one_message'));
console.log(row(`echo of 2 KiB JSON, ${ECHO_CLIENTS} connections: messages/s`, 'echo_per_s'));
console.log(row('server CPU per echo (µs)', 'echo_cpu_us'));
console.log(row(`broadcast of 2 KiB JSON to ${SUBSCRIBERS}: deliveries/s`, 'broadcast_deliveries_per_s'));
console.log(row('server CPU per delivery (µs)', 'broadcast_cpu_us'));
console.log(row('load average (1 min) at the end', 'load'));
