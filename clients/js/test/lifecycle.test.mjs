/**
 * A page's own connection across its lifecycle: positions and unacknowledged publishes kept
 * in storage while the page is hidden, so a reload resumes where it was; a goodbye (close
 * 1000) on `pagehide`; an attempt at once when the page comes back from the back/forward cache.
 */

import { test, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock, FakeStorage, FakeWebSocket, fakePage, pageEvent, recordedClient } from './fakes.mjs';

const KEY = 'heartwire:ws://primary/ws';

let clock;
let storage;

beforeEach(() => {
  clock = new FakeClock();
  storage = new FakeStorage();
  FakeWebSocket.reset();
});

/** A client on a fake page, with `storage`, subscribed to `c`, recording what it delivers. */
function pageClient(page = fakePage(), options = {}) {
  const recorded = recordedClient(clock, { ...page, storage, ...options });
  const received = [];
  recorded.hw.subscribe('c', (data, { seq }) => received.push([seq, data]));
  return { ...recorded, page, received };
}

test('pagehide closes the socket with 1000 and keeps positions and unacknowledged publishes; the reloaded page resumes from them', async () => {
  const before = pageClient();
  let socket = FakeWebSocket.latest();
  socket.hello();
  socket.receive({ op: 'subscribed', channel: 'c', seq: 3, epoch: 'e1' });
  socket.receive({ op: 'message', channel: 'c', seq: 4, data: 'd' });
  before.hw.send('c', 'acked');
  before.hw.send('c', 'in flight');
  const [acked, inFlight] = socket.sentOps('publish');
  socket.receive({ op: 'ack', id: acked.id, seq: 5 });
  socket.receive({ op: 'message', channel: 'c', seq: 5, data: 'acked' });

  pageEvent(before.page.window, 'pagehide', { persisted: false });
  assert.deepEqual(socket.closedWith, { code: 1000, reason: 'page left' });
  assert.ok(storage.getItem(KEY), 'the page kept where it stands');

  // The reloaded page: a new client on the same storage.
  const after = pageClient();
  assert.equal(storage.getItem(KEY), null, 'what was kept is taken, once');
  assert.deepEqual(after.hw.outbox, [{ id: inFlight.id, channel: 'c', data: 'in flight' }]);
  socket = FakeWebSocket.latest();
  socket.hello();
  assert.deepEqual(socket.sentOps('subscribe'), [{ op: 'subscribe', channel: 'c', since: { epoch: 'e1', seq: 5 } }]);
  assert.deepEqual(socket.sentOps('publish'), [{ op: 'publish', channel: 'c', data: 'in flight', id: inFlight.id }],
    'sent again with its id: the server publishes it once');
  socket.receive({ op: 'subscribed', channel: 'c', seq: 6, epoch: 'e1', recovered: true });
  socket.receive({ op: 'message', channel: 'c', seq: 6, data: 'in flight' });
  socket.receive({ op: 'ack', id: inFlight.id, seq: 6, duplicate: true });
  assert.deepEqual([...before.received, ...after.received], [[4, 'd'], [5, 'acked'], [6, 'in flight']],
    'across the reload, every message once, in order');
  assert.equal(after.hw.outboxSize, 0);
});

test('back/forward cache: pagehide says goodbye and nothing is attempted while away; pageshow reconnects at once and resumes', async () => {
  const { hw, page, events, received } = pageClient(fakePage(), { random: () => 0.999 });
  let socket = FakeWebSocket.latest();
  socket.hello({ session: 'before' });
  socket.receive({ op: 'subscribed', channel: 'c', seq: 1, epoch: 'e1' });
  socket.receive({ op: 'message', channel: 'c', seq: 2, data: 'b' });
  pageEvent(page.window, 'pagehide', { persisted: true });
  assert.deepEqual(socket.closedWith, { code: 1000, reason: 'page left' });
  const close = events.filter((e) => e.type === 'close').at(-1);
  assert.deepEqual([close.code, close.willReconnect, close.nextAttemptAt], [1000, true, null]);
  assert.equal(hw.state, 'reconnecting');
  clock.advance(60_000);
  assert.equal(FakeWebSocket.all.length, 1, 'no attempt while the page is in the cache');
  assert.equal(clock.nextTimerIn(), null, 'and no timer');

  pageEvent(page.window, 'pageshow', { persisted: true });
  assert.equal(FakeWebSocket.all.length, 2, 'an attempt at once');
  assert.equal(storage.getItem(KEY), null, 'the page itself holds its state again');
  socket = FakeWebSocket.latest();
  socket.hello({ session: 'after' });
  assert.deepEqual(socket.sentOps('subscribe'), [{ op: 'subscribe', channel: 'c', since: { epoch: 'e1', seq: 2 } }]);
  socket.receive({ op: 'subscribed', channel: 'c', seq: 3, epoch: 'e1', recovered: true });
  socket.receive({ op: 'message', channel: 'c', seq: 3, data: 'c' });
  assert.deepEqual(received, [[2, 'b'], [3, 'c']]);
  assert.equal(hw.session, 'after');
});

test('hidden and frozen pages keep their state in storage; back in view, storage is cleared', () => {
  const { hw, page } = pageClient();
  const socket = FakeWebSocket.latest();
  socket.hello();
  socket.receive({ op: 'subscribed', channel: 'c', seq: 7, epoch: 'e1' });
  page.document.visibilityState = 'hidden';
  pageEvent(page.document, 'visibilitychange');
  assert.deepEqual(JSON.parse(storage.getItem(KEY)).positions, [['c', 'e1', 7]]);
  page.document.visibilityState = 'visible';
  pageEvent(page.document, 'visibilitychange');
  assert.equal(storage.getItem(KEY), null);
  hw.send('c', 'x');
  pageEvent(page.document, 'freeze');
  assert.equal(JSON.parse(storage.getItem(KEY)).outbox.length, 1);
  assert.equal(socket.closedWith, null, 'a freeze keeps the socket (the browser decides)');
});

test('storage keeps the position in each known epoch; what a version 1 page kept is read too', () => {
  const { hw, page } = pageClient();
  let socket = FakeWebSocket.latest();
  socket.hello();
  socket.receive({ op: 'subscribed', channel: 'c', seq: 3, epoch: 'e1' });
  socket.serverClose(1006, '', false);
  clock.advance(hw.nextAttemptAt - clock.now);
  socket = FakeWebSocket.latest();
  socket.hello();
  socket.receive({ op: 'subscribed', channel: 'c', seq: 0, epoch: 'backup', recovered: false });
  socket.receive({ op: 'message', channel: 'c', seq: 1, data: 'b1' });
  pageEvent(page.window, 'pagehide', { persisted: false });
  const kept = JSON.parse(storage.getItem(KEY));
  assert.equal(kept.v, 2);
  assert.deepEqual(kept.positions, [['c', 'backup', 1], ['c', 'e1', 3]], 'the current epoch first');

  // The reloaded page resumes from the backup and, back in e1, drops what it had of it.
  const after = pageClient();
  socket = FakeWebSocket.latest();
  socket.hello();
  assert.deepEqual(socket.sentOps('subscribe')[0].since, { epoch: 'backup', seq: 1 });
  socket.receive({ op: 'subscribed', channel: 'c', seq: 0, epoch: 'e1', recovered: false });
  for (const seq of [1, 2, 3, 4]) socket.receive({ op: 'message', channel: 'c', seq, data: `e${seq}` });
  assert.deepEqual(after.received, [[4, 'e4']]);

  // What a page of version 1 kept: one position per channel.
  storage.items.set(KEY, JSON.stringify({ v: 1, positions: [['c', 'e1', 9]], outbox: [] }));
  pageClient();
  socket = FakeWebSocket.latest();
  socket.hello();
  assert.deepEqual(socket.sentOps('subscribe')[0].since, { epoch: 'e1', seq: 9 });
});

test('at most outboxLimit publishes are kept', () => {
  const { hw, page } = pageClient(fakePage(), { outboxLimit: 3 });
  for (let i = 0; i < 3; i++) hw.send('c', i);
  pageEvent(page.window, 'pagehide', { persisted: false });
  assert.equal(JSON.parse(storage.getItem(KEY)).outbox.length, 3);
});

test('a storage that refuses, or holds what cannot be read, keeps nothing and harms nothing', () => {
  storage.refuse = true;
  const first = pageClient();
  FakeWebSocket.latest().hello();
  first.hw.send('c', 'x');
  pageEvent(first.page.window, 'pagehide', { persisted: false });
  assert.equal(storage.getItem(KEY), null);
  storage.refuse = false;
  for (const text of ['{not json', JSON.stringify({ v: 99, positions: [['c', 'e', 1]] }),
    JSON.stringify({ v: 1, positions: [['bad channel!', 'e', 1], ['c', 'e', 'x']], outbox: 'no' })]) {
    storage.items.set(KEY, text);
    const { hw } = pageClient();
    const socket = FakeWebSocket.latest();
    socket.hello();
    assert.deepEqual(socket.sentOps('subscribe'), [{ op: 'subscribe', channel: 'c' }], text);
    assert.equal(hw.outboxSize, 0);
  }
});

test('close() leaves nothing in storage; storage null keeps nothing', () => {
  const { hw, page } = pageClient();
  FakeWebSocket.latest().hello();
  pageEvent(page.document, 'freeze');
  assert.ok(storage.getItem(KEY));
  hw.close();
  assert.equal(storage.getItem(KEY), null);
  const other = pageClient(fakePage(), { storage: null });
  FakeWebSocket.latest().hello();
  pageEvent(other.page.window, 'pagehide', { persisted: false });
  assert.equal(storage.items.size, 0);
});

test('a close code the browser refuses from a page still closes the socket', () => {
  const { hw } = pageClient();
  const socket = FakeWebSocket.latest();
  socket.hello();
  hw.close(1001, 'going away');
  assert.deepEqual(socket.closedWith, { code: undefined, reason: undefined });
  assert.equal(hw.state, 'closed');
});
