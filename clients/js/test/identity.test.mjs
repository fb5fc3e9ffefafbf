/**
 * Identity on a fake clock: the token is refreshed through the provider before it expires,
 * a refused refresh is tried again, 4498 fetches a fresh token at once, and presence frames
 * and refusals naming a channel are events.
 */

import { test, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { refreshAfterMs } from '../heartwire.js';
import { FakeClock, FakeWebSocket, recordedClient } from './fakes.mjs';

let clock;

beforeEach(() => {
  clock = new FakeClock();
  FakeWebSocket.reset();
});

/** Lets the token provider's promise settle. */
const settle = () => new Promise((resolve) => setImmediate(resolve));

/** A client whose provider hands out `token-1`, `token-2`, …, opened with a hello saying
 * the identity lasts `expiresInMs`. */
async function identified(expiresInMs) {
  let issued = 0;
  const { hw, events } = recordedClient(clock, { token: () => `token-${++issued}` });
  for (const type of ['refreshed', 'presence', 'join', 'leave', 'unsubscribed']) hw.addEventListener(type, (e) => events.push(e));
  await settle();
  const socket = FakeWebSocket.latest();
  socket.receive({ op: 'hello', session: 's1', ping_interval_ms: 600_000, ping_timeout_ms: 600_000, server: 't', user: 'ada', expires_in_ms: expiresInMs });
  return { hw, events, socket, issued: () => issued };
}

test('a refresh comes at the earlier of 80 % and 30 s before, never before half', () => {
  assert.equal(refreshAfterMs(3_600_000), 2_880_000);
  assert.equal(refreshAfterMs(120_000), 90_000);
  assert.equal(refreshAfterMs(40_000), 20_000);
});

test('the token is refreshed before it expires, and again after the answer', async () => {
  const { hw, events, socket, issued } = await identified(120_000);
  clock.advance(89_999);
  await settle();
  assert.deepEqual(socket.sentOps('refresh'), []);
  clock.advance(1);
  await settle();
  assert.deepEqual(socket.sentOps('refresh'), [{ op: 'refresh', token: 'token-2' }]);
  socket.receive({ op: 'refreshed', expires_in_ms: 40_000 });
  assert.equal(events.find((e) => e.type === 'refreshed').expiresInMs, 40_000);
  clock.advance(20_000);
  await settle();
  assert.equal(socket.sentOps('refresh').length, 2);
  assert.equal(issued(), 3);
  assert.equal(hw.state, 'open');
  hw.close();
});

test('a refused refresh is an error event and is tried again at half of what is left', async () => {
  const { hw, events, socket } = await identified(40_000);
  clock.advance(20_000);
  await settle();
  socket.receive({ op: 'error', code: 'unauthorized', reason: 'refresh refused: token expired' });
  const error = events.find((e) => e.type === 'error');
  assert.equal(error.code, 'unauthorized');
  assert.equal(error.channel, null);
  clock.advance(9_999);
  await settle();
  assert.equal(socket.sentOps('refresh').length, 1);
  clock.advance(1);
  await settle();
  assert.equal(socket.sentOps('refresh').length, 2);
  hw.close();
});

test('4498 fetches a fresh token and reconnects at once, once per streak', async () => {
  const { hw, socket, issued } = await identified(600_000);
  socket.serverClose(4498, 'token expired');
  assert.equal(hw.nextAttemptAt, clock.now);
  clock.advance(0);
  await settle();
  assert.equal(FakeWebSocket.all.length, 2);
  assert.equal(issued(), 2);
  // The next 4498 in the same streak waits the backoff.
  FakeWebSocket.latest().serverClose(4498, 'token expired');
  assert.equal(hw.nextAttemptAt - clock.now, 250);
  hw.close();
});

test('a forbidden channel is an error event, presence frames are events, and no reconnect follows', async () => {
  const { hw, events, socket } = await identified(undefined);
  socket.receive({ op: 'error', code: 'forbidden', reason: 'cannot subscribe to staff:x', channel: 'staff:x' });
  socket.receive({ op: 'presence', channel: 'room', members: ['a', 'b'], users: [{ user: 'ada', connections: 2 }] });
  socket.receive({ op: 'join', channel: 'room', session: 'c', user: 'bob' });
  socket.receive({ op: 'leave', channel: 'room', session: 'a' });
  const error = events.find((e) => e.type === 'error');
  assert.deepEqual([error.code, error.channel], ['forbidden', 'staff:x']);
  assert.deepEqual(events.find((e) => e.type === 'presence').users, [{ user: 'ada', connections: 2 }]);
  assert.equal(events.find((e) => e.type === 'join').user, 'bob');
  assert.equal(events.find((e) => e.type === 'leave').user, null);
  assert.equal(hw.state, 'open');
  assert.equal(FakeWebSocket.all.length, 1);
  hw.close();
});

test('a subscription the server ends after a refresh is an event and is not asked for again', async () => {
  const { hw, events, socket } = await identified(undefined);
  const got = [];
  hw.subscribe('doc', (data) => got.push(data));
  hw.subscribe('room', () => {});
  socket.receive({ op: 'subscribed', channel: 'doc', seq: 0, epoch: 'e' });
  socket.receive({ op: 'refreshed', expires_in_ms: 600_000 });
  socket.receive({ op: 'error', code: 'forbidden', channel: 'doc', reason: 'cannot subscribe to doc' });
  socket.receive({ op: 'unsubscribed', channel: 'doc' });
  assert.deepEqual(events.filter((e) => e.type === 'unsubscribed').map((e) => e.channel), ['doc']);
  socket.receive({ op: 'message', channel: 'doc', seq: 1, data: 'late' });
  assert.deepEqual(got, []);
  // The next connection asks for `room` only.
  socket.serverClose(1011, 'ping timeout');
  clock.advance(250);
  await settle();
  const next = FakeWebSocket.latest();
  next.hello();
  assert.deepEqual(next.sentOps('subscribe').map((f) => f.channel), ['room']);
  hw.close();
});
