/**
 * Shared mode through Web Locks and BroadcastChannel: several fake pages of one process, on
 * one fake clock, one fake lock manager and fake BroadcastChannels. One page leads and holds
 * the only socket; every page gets each message of its channels once and in order, across a
 * leader that leaves or freezes, a page that missed messages, and a reload.
 */

import { test, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { Heartwire } from '../heartwire.js';
import {
  FakeBroadcastChannel, FakeClock, FakeLocks, FakeStorage, FakeWebSocket, fakePage, pageEvent, settle,
} from './fakes.mjs';

let clock;
let locks;

beforeEach(() => {
  clock = new FakeClock();
  locks = new FakeLocks();
  FakeWebSocket.reset();
  FakeBroadcastChannel.reset();
});

/** A page of the shared connection, recording its events and what it delivers on `room`. */
function sharedPage(name, options = {}) {
  const page = fakePage();
  const storage = options.storage ?? new FakeStorage();
  const hw = new Heartwire('ws://primary/ws', {
    shared: true,
    WebSocket: FakeWebSocket,
    SharedWorker: null,
    BroadcastChannel: FakeBroadcastChannel,
    locks,
    now: () => clock.now,
    setTimeout: clock.setTimeout,
    clearTimeout: clock.clearTimeout,
    random: Math.random,
    storage,
    ...page,
    ...options,
  });
  const received = [];
  const events = [];
  for (const type of ['open', 'close', 'state', 'gap', 'error']) hw.addEventListener(type, (event) => events.push(event));
  hw.subscribe('room', (data, { seq }) => received.push(seq));
  return { name, hw, page, storage, received, events, states: () => events.filter((e) => e.type === 'state').map((e) => e.state) };
}

/** The server side of the newest socket: says hello and confirms `room` at `seq`. */
async function serverAnswers(seq, { recovered } = {}) {
  await settle();
  const socket = FakeWebSocket.latest();
  socket.hello();
  await settle();
  const subscribed = { op: 'subscribed', channel: 'room', seq, epoch: 'e1' };
  if (recovered !== undefined) subscribed.recovered = recovered;
  socket.receive(subscribed);
  await settle();
  return socket;
}

/** The server publishes `from … to` on `room` to `socket`. */
async function publish(socket, from, to) {
  for (let seq = from; seq <= to; seq++) socket.receive({ op: 'message', channel: 'room', seq, data: `m${seq}` });
  await settle();
}

const range = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

test('three pages share one socket: every page gets every message once, in order, and publishes of every page go out on it', async () => {
  const pages = ['a', 'b', 'c'].map((name) => sharedPage(name));
  await settle();
  assert.equal(FakeWebSocket.all.length, 1, 'one socket for three pages');
  assert.deepEqual(pages.map((p) => p.hw.sharing), ['leader', 'follower', 'follower']);
  const socket = await serverAnswers(0);
  assert.deepEqual(socket.sentOps('subscribe'), [{ op: 'subscribe', channel: 'room' }], 'one subscription for all');
  await publish(socket, 1, 5);
  for (const page of pages) assert.deepEqual(page.received, range(1, 5), page.name);

  const acked = pages[1].hw.send('room', 'from b');
  await settle();
  const [publishFrame] = socket.sentOps('publish');
  assert.equal(publishFrame.data, 'from b');
  socket.receive({ op: 'ack', id: publishFrame.id, seq: 6 });
  assert.equal(await acked, 6);
  assert.equal(pages[1].hw.outboxSize, 0);
  await settle();
  for (const page of pages) {
    assert.equal(page.hw.state, 'open', page.name);
    assert.equal(page.hw.session, 's1', page.name);
  }
});

test('the leader leaves mid-stream: the next page takes over with a new socket from the shared positions; nothing lost, nothing repeated', async () => {
  const [a, b, c] = ['a', 'b', 'c'].map((name) => sharedPage(name));
  await settle();
  const first = await serverAnswers(0);
  await publish(first, 1, 3);

  pageEvent(a.page.window, 'pagehide', { persisted: false });
  assert.deepEqual(first.closedWith, { code: 1000, reason: 'owner left' }, 'the leader said goodbye');
  await settle();
  assert.equal(FakeWebSocket.all.length, 2, 'the next page opened one socket');
  assert.equal(b.hw.sharing, 'leader');
  await settle();
  const second = FakeWebSocket.latest();
  second.hello({ session: 's2' });
  await settle();
  assert.deepEqual(second.sentOps('subscribe'), [{ op: 'subscribe', channel: 'room', since: { epoch: 'e1', seq: 3 } }]);
  second.receive({ op: 'subscribed', channel: 'room', seq: 6, epoch: 'e1', recovered: true });
  await publish(second, 4, 8);
  assert.deepEqual(a.received, range(1, 3));
  for (const page of [b, c]) {
    assert.deepEqual(page.received, range(1, 8), page.name);
    assert.deepEqual(page.events.filter((e) => e.type === 'gap'), [], page.name);
    assert.ok(page.states().includes('reconnecting') && page.states().at(-1) === 'open', `${page.name}: ${page.states()}`);
  }
});

test('a frozen leader hands on; back, it joins as a follower and catches up on what it missed', async () => {
  const [a, b] = ['a', 'b'].map((name) => sharedPage(name));
  await settle();
  const first = await serverAnswers(0);
  await publish(first, 1, 2);
  pageEvent(a.page.document, 'freeze');
  assert.equal(first.closedWith?.code, 1000);
  // What is sent to a frozen page may be lost.
  const aChannel = FakeBroadcastChannel.open.find((channel) => channel.name === 'heartwire:ws://primary/ws');
  aChannel.deaf = true;
  await settle();
  assert.equal(b.hw.sharing, 'leader');
  const second = await serverAnswers(2, { recovered: true });
  await publish(second, 3, 6);
  aChannel.deaf = false;
  pageEvent(a.page.document, 'resume');
  await settle();
  assert.equal(a.hw.sharing, 'follower');
  await publish(second, 7, 7);
  assert.deepEqual(a.received, range(1, 7), 'the page that was frozen');
  assert.deepEqual(b.received, range(1, 7));
  assert.equal(FakeWebSocket.all.length, 2);
});

test('a follower that lost messages meanwhile is served again from the hub', async () => {
  const [, b] = ['a', 'b'].map((name) => sharedPage(name));
  await settle();
  const socket = await serverAnswers(0);
  await publish(socket, 1, 2);
  const bChannel = FakeBroadcastChannel.open[1];
  bChannel.deaf = true;
  await publish(socket, 3, 5);
  bChannel.deaf = false;
  // The next message is past the one b expects: b asks to be served from where it stands.
  await publish(socket, 6, 6);
  await settle();
  assert.deepEqual(b.received, range(1, 6));
  assert.deepEqual(b.events.filter((e) => e.type === 'gap'), []);
});

test('a page that joins again from a position older than what it has drops what the hub serves twice', async () => {
  const [, b] = ['a', 'b'].map((name) => sharedPage(name));
  await settle();
  const socket = await serverAnswers(0);
  await publish(socket, 1, 2);
  // 3 … 5 are on their way to b when it resumes and joins again from 2.
  for (let seq = 3; seq <= 5; seq++) socket.receive({ op: 'message', channel: 'room', seq, data: `m${seq}` });
  pageEvent(b.page.document, 'resume');
  await settle();
  await publish(socket, 6, 6);
  assert.deepEqual(b.received, range(1, 6));
});

test('a reloaded page resumes from its kept position; what the hub no longer holds, the server replays', async () => {
  const a = sharedPage('a');
  const b = sharedPage('b');
  await settle();
  const socket = await serverAnswers(0);
  await publish(socket, 1, 3);
  pageEvent(b.page.window, 'pagehide', { persisted: false });
  await settle();
  // While b reloads, 400 messages: more than the hub keeps for pages that are gone.
  await publish(socket, 4, 403);
  const reloaded = sharedPage('b again', { storage: b.storage });
  await settle();
  const asked = socket.sentOps('subscribe').at(-1);
  assert.deepEqual(asked, { op: 'subscribe', channel: 'room', since: { epoch: 'e1', seq: 3 } }, 'the hub asks the server from b\'s position');
  socket.receive({ op: 'subscribed', channel: 'room', seq: 403, epoch: 'e1', recovered: true });
  await publish(socket, 4, 404);
  assert.deepEqual([...b.received, ...reloaded.received], range(1, 404), 'across the reload, every message once, in order');
  assert.deepEqual(a.received, range(1, 404), 'the replay repeats nothing for the page that had it');
  assert.deepEqual(reloaded.events.filter((e) => e.type === 'gap'), []);
});

test('pages that go to another server and back get each message of an epoch once', async () => {
  const [a, b] = ['a', 'b'].map((name) => sharedPage(name));
  await settle();
  let socket = await serverAnswers(0);
  await publish(socket, 1, 3);
  /** The next socket, on a server that numbers `room` in `epoch` and replays it from its first. */
  const nextServer = async (epoch) => {
    FakeWebSocket.latest().serverClose(1006, '', false);
    await settle();
    clock.advance(a.hw.nextAttemptAt - clock.now);
    await settle();
    const next = FakeWebSocket.latest();
    next.hello();
    await settle();
    next.receive({ op: 'subscribed', channel: 'room', seq: 0, epoch, recovered: false });
    await settle();
    return next;
  };
  socket = await nextServer('backup');
  await publish(socket, 1, 2);
  socket = await nextServer('e1');
  assert.deepEqual(socket.sentOps('subscribe').at(-1).since, { epoch: 'backup', seq: 2 });
  await publish(socket, 1, 5);
  for (const page of [a, b]) {
    assert.deepEqual(page.received, [1, 2, 3, 1, 2, 4, 5], page.name);
    assert.deepEqual(page.events.filter((e) => e.type === 'gap').map(({ after, upTo, reason }) => [after, upTo, reason]),
      [[0, 0, 'epoch_changed'], [3, 3, 'epoch_changed']], page.name);
  }
});

test('an unacknowledged publish of a follower is sent again, with its id, by the next leader', async () => {
  const [a, b] = ['a', 'b'].map((name) => sharedPage(name));
  await settle();
  const first = await serverAnswers(0);
  const acked = b.hw.send('room', 'hi');
  await settle();
  const [sent] = first.sentOps('publish');
  pageEvent(a.page.window, 'pagehide', { persisted: false });
  await settle();
  const second = await serverAnswers(0, { recovered: true });
  const [again] = second.sentOps('publish');
  assert.deepEqual(again, sent, 'the same publish, with the same id');
  second.receive({ op: 'ack', id: sent.id, seq: 1, duplicate: true });
  assert.equal(await acked, 1);
});

test('the leader uses its own token provider, or asks a page that has one', async () => {
  sharedPage('a', { token: async () => 'from-a' });
  await settle();
  assert.equal(FakeWebSocket.latest().url, 'ws://primary/ws?token=from-a');
  FakeWebSocket.reset();
  FakeBroadcastChannel.reset();
  locks = new FakeLocks();
  // A leader without a provider: once a page with one has joined, its next attempt asks that page.
  const a = sharedPage('a');
  await settle();
  assert.equal(FakeWebSocket.latest().url, 'ws://primary/ws');
  sharedPage('b', { token: async () => 'from-b' });
  await settle();
  FakeWebSocket.latest().serverClose(1006, '', false);
  await settle();
  clock.advance(a.hw.nextAttemptAt - clock.now);
  await settle();
  assert.equal(FakeWebSocket.latest().url, 'ws://primary/ws?token=from-b');
});

test('a page that leaves its last channel is unsubscribed from it; one that closes leaves the others connected', async () => {
  const [a, b] = ['a', 'b'].map((name) => sharedPage(name));
  await settle();
  const socket = await serverAnswers(0);
  const stop = b.hw.subscribe('other', () => {});
  await settle();
  stop();
  await settle();
  assert.deepEqual(socket.sentOps('unsubscribe'), [{ op: 'unsubscribe', channel: 'other' }]);
  b.hw.close();
  await settle();
  assert.equal(b.hw.state, 'closed');
  assert.equal(a.hw.state, 'open');
  assert.equal(socket.closedWith, null);
  // The leader closes: it tells its page only that it closed, and says goodbye to the server.
  const seen = a.events.length;
  a.hw.close();
  await settle();
  assert.deepEqual(a.events.slice(seen).map((e) => [e.type, e.state ?? e.willReconnect]), [['close', false], ['state', 'closed']]);
  assert.equal(socket.closedWith?.code, 1000);
});

test('without SharedWorker, Web Locks or BroadcastChannel, each page keeps its own socket', () => {
  const pages = ['a', 'b'].map((name) => sharedPage(name, { locks: null, BroadcastChannel: null }));
  assert.equal(FakeWebSocket.all.length, 2);
  assert.deepEqual(pages.map((p) => p.hw.sharing), [null, null]);
});
