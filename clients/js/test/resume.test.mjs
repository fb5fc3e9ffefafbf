/**
 * Resuming without loss in heartwire.js: resubscribing with `since`, dropping what was
 * delivered already, reporting gaps, and publish ids that keep the server from publishing
 * a message twice.
 */

import { test, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock, FakeWebSocket, recordedClient, seededRandom } from './fakes.mjs';

let clock;

beforeEach(() => {
  clock = new FakeClock();
  FakeWebSocket.reset();
});

/** A client subscribed to `c` whose server stands at `seq` in epoch `e1`. */
function subscribedAt(seq, options = {}) {
  const recorded = recordedClient(clock, options);
  const received = [];
  recorded.hw.subscribe('c', (data, { seq: at }) => received.push([at, data]));
  const socket = FakeWebSocket.latest();
  socket.hello();
  socket.receive({ op: 'subscribed', channel: 'c', seq, epoch: 'e1' });
  return { ...recorded, socket, received };
}

/** Drops the connection and returns the socket of the next one, after its hello. */
function reconnect(hw, socket) {
  socket.serverClose(1006, '', false);
  clock.advance(hw.nextAttemptAt - clock.now);
  const next = FakeWebSocket.latest();
  next.hello();
  return next;
}

const gapsOf = (events) =>
  events.filter((e) => e.type === 'gap').map(({ channel, after, upTo, reason }) => ({ channel, after, upTo, reason }));

test('a resubscribe carries the last delivered position; the replay is delivered once, in order', () => {
  const { hw, socket, received, events } = subscribedAt(3);
  socket.receive({ op: 'message', channel: 'c', seq: 4, data: 'd' });
  socket.receive({ op: 'message', channel: 'c', seq: 5, data: 'e' });
  const next = reconnect(hw, socket);
  assert.deepEqual(next.sentOps('subscribe'), [{ op: 'subscribe', channel: 'c', since: { epoch: 'e1', seq: 5 } }]);
  next.receive({ op: 'subscribed', channel: 'c', seq: 7, epoch: 'e1', recovered: true });
  // The server replays 6 and 7; a copy of 5 (already delivered) is dropped.
  for (const [seq, data] of [[5, 'e'], [6, 'f'], [7, 'g'], [7, 'g'], [8, 'h']]) {
    next.receive({ op: 'message', channel: 'c', seq, data });
  }
  assert.deepEqual(received, [[4, 'd'], [5, 'e'], [6, 'f'], [7, 'g'], [8, 'h']]);
  assert.deepEqual(gapsOf(events), []);
});

test('history too short: the gap reaches the page and the client continues from the server', () => {
  const { hw, socket, received, events } = subscribedAt(2);
  const next = reconnect(hw, socket);
  next.receive({ op: 'subscribed', channel: 'c', seq: 9, epoch: 'e1', recovered: false });
  assert.deepEqual(gapsOf(events), [{ channel: 'c', after: 2, upTo: 9, reason: 'history_too_short' }]);
  next.receive({ op: 'message', channel: 'c', seq: 10, data: 'x' });
  assert.deepEqual(received, [[10, 'x']]);
  const again = reconnect(hw, next);
  assert.deepEqual(again.sentOps('subscribe')[0].since, { epoch: 'e1', seq: 10 });
});

test('a new epoch is a gap even when its seq is lower', () => {
  const { hw, socket, received, events } = subscribedAt(7);
  const next = reconnect(hw, socket);
  next.receive({ op: 'subscribed', channel: 'c', seq: 0, epoch: 'e2', recovered: false });
  assert.deepEqual(gapsOf(events), [{ channel: 'c', after: 0, upTo: 0, reason: 'epoch_changed' }]);
  next.receive({ op: 'message', channel: 'c', seq: 1, data: 'new' });
  assert.deepEqual(received, [[1, 'new']]);
});

test('back to an epoch already read: its replay is trimmed to what the page has not had', () => {
  // Read 1 … 3 of the primary's epoch, then 1 … 2 of the backup's (another server).
  const { hw, socket, received, events } = subscribedAt(0);
  for (const seq of [1, 2, 3]) socket.receive({ op: 'message', channel: 'c', seq, data: `p${seq}` });
  const backup = reconnect(hw, socket);
  backup.receive({ op: 'subscribed', channel: 'c', seq: 0, epoch: 'backup', recovered: false });
  for (const seq of [1, 2]) backup.receive({ op: 'message', channel: 'c', seq, data: `b${seq}` });
  // Back on the primary, which replays its whole epoch: only 4 and 5 are new.
  const primary = reconnect(hw, backup);
  assert.deepEqual(primary.sentOps('subscribe')[0].since, { epoch: 'backup', seq: 2 }, 'since is the latest position');
  primary.receive({ op: 'subscribed', channel: 'c', seq: 0, epoch: 'e1', recovered: false });
  for (const seq of [1, 2, 3, 4, 5]) primary.receive({ op: 'message', channel: 'c', seq, data: `p${seq}` });
  assert.deepEqual(received.map(([, data]) => data), ['p1', 'p2', 'p3', 'b1', 'b2', 'p4', 'p5']);
  assert.deepEqual(gapsOf(events), [
    { channel: 'c', after: 0, upTo: 0, reason: 'epoch_changed' },
    { channel: 'c', after: 3, upTo: 3, reason: 'epoch_changed' },
  ], 'each change of epoch is still reported');
  // And back on the backup, answered without a replay: what it published meanwhile is the gap.
  const again = reconnect(hw, primary);
  assert.deepEqual(again.sentOps('subscribe')[0].since, { epoch: 'e1', seq: 5 });
  again.receive({ op: 'subscribed', channel: 'c', seq: 6, epoch: 'backup', recovered: false });
  assert.deepEqual(gapsOf(events).at(-1), { channel: 'c', after: 2, upTo: 6, reason: 'epoch_changed' });
});

test('a page remembers its position in the latest four epochs of a channel, the oldest forgotten first', () => {
  const { hw, socket, received } = subscribedAt(0);
  socket.receive({ op: 'message', channel: 'c', seq: 1, data: 'e1' });
  let current = socket;
  const visit = (epoch, upTo) => {
    current = reconnect(hw, current);
    current.receive({ op: 'subscribed', channel: 'c', seq: 0, epoch, recovered: false });
    for (let seq = 1; seq <= upTo; seq++) current.receive({ op: 'message', channel: 'c', seq, data: `${epoch}:${seq}` });
  };
  for (const epoch of ['x', 'y', 'z']) visit(epoch, 1);
  visit('e1', 2);
  visit('w', 1); // pushes out x, the one used least recently
  visit('x', 1); // new again: pushes out y
  visit('z', 2);
  visit('y', 1);
  assert.deepEqual(received.map(([, data]) => data), ['e1', 'x:1', 'y:1', 'z:1', 'e1:2', 'w:1', 'x:1', 'z:2', 'y:1']);
});

test('a live message past the next expected one reports the skipped ones', () => {
  const { socket, received, events } = subscribedAt(1);
  socket.receive({ op: 'message', channel: 'c', seq: 5, data: 'e' });
  assert.deepEqual(gapsOf(events), [{ channel: 'c', after: 1, upTo: 4, reason: 'skipped' }]);
  assert.deepEqual(received, [[5, 'e']]);
});

test('an unsequenced message (seq 0, published into Redis by other software) is delivered and moves nothing', () => {
  const { socket, received, events } = subscribedAt(3);
  socket.receive({ op: 'message', channel: 'c', seq: 0, data: 'from django' });
  socket.receive({ op: 'message', channel: 'c', seq: 0, data: 'again' });
  socket.receive({ op: 'message', channel: 'c', seq: 4, data: 'next' });
  assert.deepEqual(received, [[0, 'from django'], [0, 'again'], [4, 'next']]);
  assert.deepEqual(gapsOf(events), []);
});

test('publish ids: a random 64-bit prefix per client and a counter, kept when sent again', () => {
  const one = recordedClient(clock, { random: seededRandom(1) });
  const other = recordedClient(clock, { random: seededRandom(2) });
  const [socketOne, socketOther] = FakeWebSocket.all;
  socketOne.hello();
  socketOther.hello();
  one.hw.send('c', 1);
  one.hw.send('c', 2);
  other.hw.send('c', 1);
  const ids = [...socketOne.sentOps('publish'), ...socketOther.sentOps('publish')].map((f) => f.id);
  assert.match(ids[0], /^[0-9a-f]{16}-1$/);
  assert.equal(ids[1], ids[0].replace(/-1$/, '-2'));
  assert.notEqual(ids[2].split('-')[0], ids[0].split('-')[0], 'clients differ in prefix');
  const next = reconnect(one.hw, socketOne);
  assert.deepEqual(next.sentOps('publish').map((f) => f.id), ids.slice(0, 2));
});

test('an ack marked duplicate settles the publish like any ack', async () => {
  const { hw } = recordedClient(clock);
  const socket = FakeWebSocket.latest();
  socket.hello();
  const accepted = hw.send('c', 'x');
  const [publish] = socket.sentOps('publish');
  socket.receive({ op: 'ack', id: publish.id, seq: 3, duplicate: true });
  assert.equal(await accepted, 3);
  assert.equal(hw.outboxSize, 0);
});

test('unavailable: the publish and every later one are sent again after backoffBaseMs, in order', () => {
  const { hw, events } = recordedClient(clock, { backoffBaseMs: 400 });
  const socket = FakeWebSocket.latest();
  socket.hello();
  hw.send('c', 1);
  hw.send('c', 2);
  const [first, second] = socket.sentOps('publish');
  socket.receive({ op: 'error', code: 'unavailable', reason: 'broker down', id: first.id });
  socket.receive({ op: 'error', code: 'unavailable', reason: 'broker down', id: second.id });
  hw.send('c', 3);
  assert.equal(socket.sentOps('publish').length, 2, 'a later publish waits behind the refused ones');
  clock.advance(399);
  assert.equal(socket.sentOps('publish').length, 2);
  clock.advance(1);
  assert.deepEqual(socket.sentOps('publish').slice(2).map((f) => f.data), [1, 2, 3]);
  assert.deepEqual(socket.sentOps('publish')[2].id, first.id);
  assert.equal(hw.outboxSize, 3);
  assert.deepEqual(events.filter((e) => e.type === 'error'), []);
});

test('a publish refused for good leaves the outbox and its promise rejects', async () => {
  const { hw, events } = recordedClient(clock);
  const socket = FakeWebSocket.latest();
  socket.hello();
  const refused = hw.send('c', 1);
  const [publish] = socket.sentOps('publish');
  socket.receive({ op: 'error', code: 'bad_request', reason: 'no', id: publish.id });
  await assert.rejects(refused, /refused \(bad_request: no\)/);
  assert.equal(hw.outboxSize, 0);
  assert.equal(events.filter((e) => e.type === 'error')[0].id, publish.id);
});
