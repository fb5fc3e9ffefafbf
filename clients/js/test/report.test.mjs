/**
 * The report of the previous session in heartwire.js: sent first after the next `hello`
 * of a server that takes reports, with the offline time, the reason and when the server
 * was last heard; never to a server that does not say `reports`.
 */

import { test, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock, FakeWebSocket, recordedClient } from './fakes.mjs';

let clock;

beforeEach(() => {
  clock = new FakeClock();
  FakeWebSocket.reset();
});

/** Waits for the next attempt and returns its socket. */
function nextAttempt(hw) {
  clock.advance(hw.nextAttemptAt - clock.now);
  return FakeWebSocket.latest();
}

test('a first connection reports nothing', () => {
  const { hw } = recordedClient(clock);
  hw.subscribe('c', () => {});
  const socket = FakeWebSocket.latest();
  socket.hello({ reports: true });
  assert.deepEqual(socket.sentOps('report'), []);
});

test('a server close is reported first, with its code and the time offline', () => {
  const { hw } = recordedClient(clock);
  hw.subscribe('c', () => {});
  const socket = FakeWebSocket.latest();
  socket.hello({ session: 'old', reports: true });
  clock.advance(5000);
  socket.serverClose(1012, 'server restarting; retry after 0 ms');
  const lostAt = clock.now;
  const next = nextAttempt(hw);
  clock.advance(40);
  next.hello({ session: 'new', reports: true });
  assert.deepEqual(next.sent[0], {
    op: 'report', previous_session: 'old', offline_ms: clock.now - lostAt, reason: 'closed', code: 1012, last_heard_ms: 0,
  });
  assert.equal(next.sent[1].op, 'subscribe');
});

test('a probe timeout is reported as the client\'s own, with when the server was last heard', () => {
  const { hw } = recordedClient(clock);
  const socket = FakeWebSocket.latest();
  socket.hello({ session: 'old', ping_interval_ms: 1000, ping_timeout_ms: 800, reports: true });
  const heardAt = clock.now;
  socket.receive({ op: 'pong', t: socket.sentOps('ping')[0].t });
  clock.advance(1800);
  assert.deepEqual(socket.closedWith, { code: 4000, reason: 'probe timeout' });
  const lostAt = clock.now;
  // A failed attempt in between changes neither the session reported nor the outage's start.
  nextAttempt(hw).serverClose(1006, '', false);
  const next = nextAttempt(hw);
  next.hello({ session: 'new', reports: true });
  assert.deepEqual(next.sentOps('report'), [{
    op: 'report', previous_session: 'old', offline_ms: clock.now - lostAt, reason: 'ping_timeout', last_heard_ms: lostAt - heardAt,
  }]);
  // Said once: the next outage is the new session's.
  next.serverClose(1006, '', false);
  const third = nextAttempt(hw);
  third.hello({ session: 'third', reports: true });
  assert.deepEqual(third.sentOps('report').map((r) => [r.previous_session, r.reason]), [['new', 'network']]);
});

test('a server that does not take reports gets none, and the report is not kept for later', () => {
  const { hw } = recordedClient(clock);
  const socket = FakeWebSocket.latest();
  socket.hello({ session: 'old', reports: true });
  socket.serverClose(1006, '', false);
  const plain = nextAttempt(hw);
  plain.hello({ session: 'other' });
  assert.deepEqual(plain.sentOps('report'), []);
  plain.serverClose(1011, 'ping timeout');
  const next = nextAttempt(hw);
  next.hello({ session: 'new', reports: true });
  assert.deepEqual(next.sentOps('report').map((r) => [r.previous_session, r.code]), [['other', 1011]]);
  hw.close();
});
