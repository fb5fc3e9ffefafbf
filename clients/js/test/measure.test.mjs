/**
 * What the page is told about the connection's health: the round trip of its probes (a pong
 * answers its own probe, whatever arrives first, and busy connections are measured too), when
 * the next check is due, and how a restart the server asked for counts against the backoff.
 */

import { test, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock, FakeWebSocket, recordedClient } from './fakes.mjs';

let clock;

beforeEach(() => {
  clock = new FakeClock();
  FakeWebSocket.reset();
});

test('a pong measures its own probe even when another frame arrives before it', () => {
  const { hw } = recordedClient(clock);
  hw.subscribe('room:lobby', () => {});
  const socket = FakeWebSocket.latest();
  socket.hello();
  const [probe] = socket.sentOps('ping');
  clock.advance(3);
  socket.receive({ op: 'subscribed', channel: 'room:lobby', seq: 0, epoch: 'e' });
  clock.advance(4);
  socket.receive({ op: 'pong', t: probe.t });
  assert.equal(hw.rtt, 7);
});

test('a pong of a probe this client did not send measures nothing', () => {
  const { hw } = recordedClient(clock);
  const socket = FakeWebSocket.latest();
  socket.hello();
  clock.advance(5);
  socket.receive({ op: 'pong', t: 12345 });
  assert.equal(hw.rtt, null);
});

test('a busy connection is measured every rttIntervalMs without being probed for liveness', () => {
  const { hw, states } = recordedClient(clock, { rttIntervalMs: 10_000 });
  const socket = FakeWebSocket.latest();
  socket.hello({ ping_interval_ms: 1000, ping_timeout_ms: 1000 });
  clock.advance(2);
  socket.receive({ op: 'pong', t: socket.sentOps('ping')[0].t });
  assert.equal(hw.rtt, 2);
  // Traffic every 500 ms: the connection never falls silent for ping_interval.
  let seq = 0;
  const busyFor = (ms) => {
    for (let i = 0; i < ms / 500; i++) {
      clock.advance(500);
      socket.receive({ op: 'message', channel: 'c', seq: ++seq, data: seq });
    }
  };
  busyFor(9_500);
  assert.equal(socket.sentOps('ping').length, 1, 'no probe before rttIntervalMs');
  busyFor(500);
  const probes = socket.sentOps('ping');
  assert.equal(probes.length, 2, 'a measuring probe once rttIntervalMs has passed since the last sample');
  clock.advance(30);
  socket.receive({ op: 'message', channel: 'c', seq: ++seq, data: seq });
  clock.advance(5);
  socket.receive({ op: 'pong', t: probes[1].t });
  assert.equal(hw.rtt, 35);
  busyFor(10_000);
  assert.equal(socket.sentOps('ping').length, 3, 'and again rttIntervalMs later');
  assert.deepEqual(states(), ['open'], 'measuring never degrades the state');
});

test('an idle connection is measured by its liveness probes and gets no extra ones', () => {
  const { hw } = recordedClient(clock, { rttIntervalMs: 30_000 });
  const socket = FakeWebSocket.latest();
  socket.hello({ ping_interval_ms: 20_000, ping_timeout_ms: 20_000 });
  for (let i = 0; i < 6; i++) {
    const probe = socket.sentOps('ping').at(-1);
    clock.advance(1);
    socket.receive({ op: 'pong', t: probe.t });
    clock.advance(20_000);
  }
  // One probe at hello, then one per 20 s of silence.
  assert.equal(socket.sentOps('ping').length, 7);
  assert.equal(hw.rtt, 1);
});

test('a pong that waited through a frozen page is not reported as the round trip', () => {
  const { hw } = recordedClient(clock);
  const socket = FakeWebSocket.latest();
  socket.hello({ ping_interval_ms: 300, ping_timeout_ms: 300 });
  clock.advance(4);
  socket.receive({ op: 'pong', t: socket.sentOps('ping')[0].t });
  clock.advance(300);
  const beforeSleep = socket.sentOps('ping').at(-1);
  clock.sleep(5_000);
  socket.receive({ op: 'pong', t: beforeSleep.t });
  assert.equal(hw.rtt, 4, 'the old sample stands');
  const fresh = socket.sentOps('ping').at(-1);
  assert.notEqual(fresh, beforeSleep, 'the late timer sent a fresh probe');
  clock.advance(6);
  socket.receive({ op: 'pong', t: fresh.t });
  assert.equal(hw.rtt, 6);
});

test('nextCheckAt: when a quiet connection will be probed, now while a probe is out, null when not connected', () => {
  const { hw } = recordedClient(clock);
  assert.equal(hw.nextCheckAt, null);
  const socket = FakeWebSocket.latest();
  socket.hello({ ping_interval_ms: 1000, ping_timeout_ms: 1000 });
  assert.equal(hw.nextCheckAt, clock.now, 'the first probe is out');
  socket.receive({ op: 'pong', t: socket.sentOps('ping')[0].t });
  assert.equal(hw.nextCheckAt, clock.now + 1000);
  clock.advance(400);
  socket.receive({ op: 'message', channel: 'c', seq: 1, data: 1 });
  assert.equal(hw.nextCheckAt, clock.now + 1000, 'any frame postpones the check');
  socket.serverClose(1006, '', false);
  assert.equal(hw.nextCheckAt, null);
});

/** Fails `n` attempts in a row (each closed before hello) and returns the last wait. */
function failAttempts(hw, n) {
  let wait = 0;
  for (let i = 0; i < n; i++) {
    FakeWebSocket.latest().serverClose(1006, '', false);
    wait = hw.nextAttemptAt - clock.now;
    clock.advance(wait);
  }
  return wait;
}

test('a restart the server asked for (1012 with a hint) is not a failure: the streak starts again', () => {
  const { hw } = recordedClient(clock, { random: () => 0.999_999 });
  assert.equal(failAttempts(hw, 6), 16_000, 'six failures: the window has grown to 16 s');
  let socket = FakeWebSocket.latest();
  socket.hello();
  clock.advance(5_000);
  socket.receive({ op: 'reconnect', after_ms: 2000, reason: 'server restarting' });
  socket.serverClose(1012, 'server restarting; retry after 2000 ms');
  assert.equal(hw.nextAttemptAt - clock.now, 2000, 'the hint is waited');
  clock.advance(2000);
  // The server is not back yet: the attempt fails, and the wait is the first window's.
  assert.equal(failAttempts(hw, 1), 500);
  assert.equal(failAttempts(hw, 1), 1000);
  socket = FakeWebSocket.latest();
  socket.hello();
  assert.equal(hw.state, 'open');
});

test('a hinted restart does not count towards maxAttempts; an overload (1013) does', () => {
  const { hw } = recordedClient(clock, { maxAttempts: 2 });
  failAttempts(hw, 2);
  let socket = FakeWebSocket.latest();
  socket.hello();
  socket.serverClose(1012, 'server restarting; retry after 100 ms');
  assert.equal(hw.state, 'reconnecting');
  clock.advance(100);
  socket = FakeWebSocket.latest();
  socket.hello();
  for (let i = 0; i < 2; i++) {
    FakeWebSocket.latest().serverClose(1013, 'try again later; retry after 100 ms');
    assert.equal(hw.state, 'reconnecting');
    clock.advance(100);
  }
  FakeWebSocket.latest().serverClose(1013, 'try again later; retry after 100 ms');
  assert.equal(hw.state, 'closed', 'the third overload in a row is past maxAttempts 2');
});

test('check() while waiting out a backoff attempts at once', () => {
  const { hw } = recordedClient(clock, { random: () => 0.999_999 });
  failAttempts(hw, 5);
  FakeWebSocket.latest().serverClose(1006, '', false);
  assert.ok(hw.nextAttemptAt - clock.now >= 8000);
  const sockets = FakeWebSocket.all.length;
  hw.check();
  assert.equal(FakeWebSocket.all.length, sockets + 1);
  assert.equal(hw.nextAttemptAt, null);
});
