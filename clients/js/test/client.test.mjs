import { test, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock, FakeWebSocket, recordedClient, settle } from './fakes.mjs';

let clock;

beforeEach(() => {
  clock = new FakeClock();
  FakeWebSocket.reset();
});

/** A client on fake time and fake sockets, recording its events. */
function client(options = {}, urls = 'ws://primary/ws') {
  return recordedClient(clock, options, urls);
}

/** A fake page: `window` and `document` event targets the client listens to. */
function fakePage() {
  const window = new EventTarget();
  const document = new EventTarget();
  document.visibilityState = 'visible';
  return { window, document };
}

test('connecting, then open once the server says hello; a first probe measures the RTT', () => {
  const { hw, states } = client();
  assert.equal(hw.state, 'connecting');
  const socket = FakeWebSocket.latest();
  assert.equal(socket.url, 'ws://primary/ws');
  socket.hello({ session: 'abc' });
  assert.equal(hw.state, 'open');
  assert.equal(hw.session, 'abc');
  const [probe] = socket.sentOps('ping');
  assert.equal(probe.t, clock.now);
  clock.advance(12);
  socket.receive({ op: 'pong', t: probe.t });
  assert.equal(hw.rtt, 12);
  assert.deepEqual(states(), ['open']);
});

test('a silent server is probed after ping_interval and dropped after ping_timeout', () => {
  const { hw, events, states } = client();
  const socket = FakeWebSocket.latest();
  socket.hello({ ping_interval_ms: 1000, ping_timeout_ms: 800 });
  socket.receive({ op: 'pong', t: socket.sentOps('ping')[0].t });
  clock.advance(999);
  assert.equal(socket.sentOps('ping').length, 1, 'no probe before ping_interval of silence');
  clock.advance(1);
  assert.equal(socket.sentOps('ping').length, 2, 'a probe after ping_interval of silence');
  clock.advance(400);
  assert.equal(hw.state, 'degraded', 'half the timeout without an answer: degraded');
  clock.advance(399);
  assert.equal(socket.closedWith, null);
  clock.advance(1);
  assert.deepEqual(socket.closedWith, { code: 4000, reason: 'probe timeout' });
  assert.equal(hw.state, 'reconnecting');
  const close = events.find((e) => e.type === 'close');
  assert.equal(close.willReconnect, true);
  // random() = 0.5 and the first window is 500 ms.
  assert.equal(hw.nextAttemptAt, clock.now + 250);
  assert.deepEqual(states(), ['open', 'degraded', 'reconnecting']);
});

test('any frame from the server counts as an answer, and traffic postpones probes', () => {
  const { hw } = client();
  const socket = FakeWebSocket.latest();
  socket.hello({ ping_interval_ms: 1000, ping_timeout_ms: 1000 });
  socket.receive({ op: 'pong', t: socket.sentOps('ping')[0].t });
  for (let i = 0; i < 10; i++) {
    clock.advance(600);
    socket.receive({ op: 'message', channel: 'c', seq: i + 1, data: i });
  }
  assert.equal(socket.sentOps('ping').length, 1, 'a busy connection is not probed');
  clock.advance(1000);
  assert.equal(socket.sentOps('ping').length, 2);
  clock.advance(700);
  assert.equal(hw.state, 'degraded');
  socket.receive({ op: 'message', channel: 'c', seq: 11, data: 'late but alive' });
  assert.equal(hw.state, 'open');
  clock.advance(1000);
  assert.equal(socket.closedWith, null);
});

test('a timer that fires late (frozen tab, sleeping machine) probes again instead of declaring death', () => {
  const { hw, states } = client();
  const socket = FakeWebSocket.latest();
  socket.hello({ ping_interval_ms: 300, ping_timeout_ms: 300 });
  const firstProbe = socket.sentOps('ping')[0];
  // Frozen for three times the timeout with the first probe outstanding.
  clock.sleep(900);
  assert.equal(socket.closedWith, null, 'a late timer must not close the connection');
  const probes = socket.sentOps('ping');
  assert.equal(probes.length, 2, 'a late timer sends a fresh probe');
  assert.equal(probes[1].t, clock.now);
  // The answer to the old probe, queued while frozen, arrives now: alive.
  socket.receive({ op: 'pong', t: firstProbe.t });
  assert.equal(hw.state, 'open');
  assert.ok(!states().includes('reconnecting'));
  // But a server that really is gone is still found out, in time.
  clock.advance(300 + 300);
  assert.equal(hw.state, 'reconnecting');
});

test('waking up (visible, pageshow, online) probes at once; a failed wake-up probe reconnects without backoff', () => {
  const page = fakePage();
  const { hw, events } = client({ ...page, random: () => 0.999 });
  const socket = FakeWebSocket.latest();
  socket.hello({ ping_interval_ms: 20_000, ping_timeout_ms: 2000 });
  socket.receive({ op: 'pong', t: socket.sentOps('ping')[0].t });
  clock.advance(1000);
  page.document.dispatchEvent(new Event('visibilitychange'));
  assert.equal(socket.sentOps('ping').length, 2, 'probe on visibilitychange to visible');
  socket.receive({ op: 'pong', t: clock.now });
  page.window.dispatchEvent(new Event('pageshow'));
  assert.equal(socket.sentOps('ping').length, 3, 'probe on pageshow');
  clock.advance(1999);
  assert.equal(FakeWebSocket.all.length, 1);
  clock.advance(1);
  const close = events.find((e) => e.type === 'close');
  assert.equal(close.reason, 'probe timeout');
  assert.equal(close.nextAttemptAt, clock.now, 'reconnect at once after a failed wake-up probe');
  assert.equal(FakeWebSocket.all.length, 2, 'the new attempt has started');
  assert.equal(hw.state, 'reconnecting');
});

test('a frozen page that resumes probes at once, and a socket the browser dropped meanwhile is replaced at once', () => {
  const page = fakePage();
  const { hw, events, states } = client({ ...page, random: () => 0.999 });
  const socket = FakeWebSocket.latest();
  socket.hello({ session: 'before', ping_interval_ms: 300, ping_timeout_ms: 300 });
  socket.receive({ op: 'pong', t: socket.sentOps('ping')[0].t });
  page.document.dispatchEvent(new Event('freeze'));
  // Frozen: no timer runs. The browser failed the socket as it froze the page; the page
  // hears of it only after it resumed, right behind the resume event.
  clock.now += 900;
  page.document.dispatchEvent(new Event('resume'));
  assert.equal(socket.sentOps('ping').length, 2, 'probe on resume');
  socket.serverClose(1006, '', false);
  const close = events.find((e) => e.type === 'close');
  assert.equal(close.willReconnect, true);
  assert.equal(close.nextAttemptAt, clock.now, 'reconnect at once, not after a backoff delay');
  clock.advance(0);
  assert.equal(FakeWebSocket.all.length, 2, 'the new attempt has started');
  FakeWebSocket.latest().hello({ session: 'after' });
  assert.equal(hw.session, 'after');
  assert.deepEqual(states(), ['open', 'reconnecting', 'reconnecting', 'open']);
});

test('a frozen page that resumes with its socket intact keeps its session', () => {
  const page = fakePage();
  const { hw, events, states } = client(page);
  const socket = FakeWebSocket.latest();
  socket.hello({ session: 'kept', ping_interval_ms: 300, ping_timeout_ms: 300 });
  socket.receive({ op: 'pong', t: socket.sentOps('ping')[0].t });
  page.document.dispatchEvent(new Event('freeze'));
  clock.sleep(900);
  page.document.dispatchEvent(new Event('resume'));
  const probe = socket.sentOps('ping').at(-1);
  assert.equal(probe.t, clock.now, 'a fresh probe after the resume');
  clock.advance(5);
  socket.receive({ op: 'pong', t: probe.t });
  clock.advance(250);
  assert.equal(socket.closedWith, null);
  assert.equal(hw.session, 'kept');
  assert.deepEqual(events.filter((e) => e.type === 'close'), []);
  assert.deepEqual(states(), ['open']);
});

test('a close that asks for a wait or is final keeps its meaning while a wake-up probe is out', () => {
  const page = fakePage();
  const { hw } = client(page);
  let socket = FakeWebSocket.latest();
  socket.hello();
  socket.receive({ op: 'pong', t: socket.sentOps('ping')[0].t });
  page.document.dispatchEvent(new Event('resume'));
  socket.serverClose(1013, 'try again later; retry after 789 ms');
  assert.equal(hw.nextAttemptAt, clock.now + 789);
  clock.advance(789);
  socket = FakeWebSocket.latest();
  socket.hello();
  page.document.dispatchEvent(new Event('resume'));
  socket.serverClose(4401, 'bad token');
  assert.equal(hw.state, 'closed');
});

test('a close with no wake-up probe out waits out the backoff', () => {
  const page = fakePage();
  const { hw } = client({ ...page, random: () => 0.999 });
  const socket = FakeWebSocket.latest();
  socket.hello();
  socket.receive({ op: 'pong', t: socket.sentOps('ping')[0].t });
  socket.serverClose(1006, '', false);
  // random() = 0.999 and the first window is 500 ms.
  assert.equal(hw.nextAttemptAt, clock.now + 500);
});

test('coming back online while waiting out a long backoff attempts at once', () => {
  const page = fakePage();
  const { hw } = client({ ...page, random: () => 0.999 });
  for (let i = 0; i < 6; i++) {
    FakeWebSocket.latest().serverClose(1006, '', false);
    clock.advance(hw.nextAttemptAt - clock.now);
  }
  FakeWebSocket.latest().serverClose(1006, '', false);
  const waitMs = hw.nextAttemptAt - clock.now;
  assert.ok(waitMs > 10_000, `a long wait was scheduled (${waitMs} ms)`);
  const sockets = FakeWebSocket.all.length;
  page.window.dispatchEvent(new Event('offline'));
  page.window.dispatchEvent(new Event('online'));
  assert.equal(FakeWebSocket.all.length, sockets + 1, 'online: a new attempt at once');
});

test('offline marks an open connection degraded until online and an answer', () => {
  const page = fakePage();
  const { hw } = client(page);
  const socket = FakeWebSocket.latest();
  socket.hello();
  socket.receive({ op: 'pong', t: clock.now });
  page.window.dispatchEvent(new Event('offline'));
  assert.equal(hw.state, 'degraded');
  socket.receive({ op: 'pong', t: clock.now });
  assert.equal(hw.state, 'degraded', 'still offline');
  page.window.dispatchEvent(new Event('online'));
  socket.receive({ op: 'pong', t: clock.now });
  assert.equal(hw.state, 'open');
});

test('subscriptions come back and the outbox is sent in order after a reconnect', () => {
  const { hw } = client();
  const received = [];
  hw.subscribe('room:lobby', (data, meta) => received.push([meta.seq, data]));
  let socket = FakeWebSocket.latest();
  socket.hello();
  assert.deepEqual(socket.sentOps('subscribe'), [{ op: 'subscribe', channel: 'room:lobby' }]);
  socket.receive({ op: 'message', channel: 'room:lobby', seq: 1, data: 'one' });
  socket.serverClose(1006, '', false);
  hw.send('room:lobby', 'a');
  hw.send('room:lobby', 'b');
  assert.equal(hw.outboxSize, 2);
  clock.advance(hw.nextAttemptAt - clock.now);
  socket = FakeWebSocket.latest();
  assert.equal(socket.sent.length, 0, 'nothing is sent before hello');
  socket.hello({ session: 's2' });
  const ops = socket.sent.map((f) => f.op);
  assert.deepEqual(ops.slice(0, 3), ['subscribe', 'publish', 'publish'], 'resubscribe, then the outbox');
  const publishes = socket.sentOps('publish');
  assert.deepEqual(publishes.map((f) => f.data), ['a', 'b']);
  socket.receive({ op: 'message', channel: 'room:lobby', seq: 2, data: 'a' });
  assert.deepEqual(received, [[1, 'one'], [2, 'a']]);
});

test('a message stays in the outbox until acked and is sent again after a reconnect', async () => {
  const { hw } = client();
  let socket = FakeWebSocket.latest();
  socket.hello();
  const first = hw.send('c', 1);
  hw.send('c', 2);
  const [p1, p2] = socket.sentOps('publish');
  socket.receive({ op: 'ack', id: p1.id, seq: 7 });
  assert.equal(await first, 7);
  assert.equal(hw.outboxSize, 1);
  socket.serverClose(1011, 'ping timeout');
  clock.advance(hw.nextAttemptAt - clock.now);
  socket = FakeWebSocket.latest();
  socket.hello();
  assert.deepEqual(socket.sentOps('publish'), [{ op: 'publish', channel: 'c', data: 2, id: p2.id }]);
});

test('a full outbox makes send throw instead of dropping', () => {
  const { hw } = client({ outboxLimit: 3 });
  hw.send('c', 1);
  hw.send('c', 2);
  hw.send('c', 3);
  assert.throws(() => hw.send('c', 4), /outbox full/);
  assert.throws(() => hw.send('bad channel!', 1), TypeError);
});

test('close 1012 waits the server hint from the reconnect frame, 1013 the one in the reason', () => {
  const { hw } = client();
  let socket = FakeWebSocket.latest();
  socket.hello();
  socket.receive({ op: 'reconnect', after_ms: 3456, reason: 'restart' });
  socket.serverClose(1012, 'server restarting; retry after 3456 ms');
  assert.equal(hw.nextAttemptAt, clock.now + 3456);
  clock.advance(3456);
  socket = FakeWebSocket.latest();
  socket.serverClose(1013, 'try again later; retry after 789 ms');
  assert.equal(hw.nextAttemptAt, clock.now + 789);
});

test('the token provider is asked before every attempt and its answer goes in the URL', async () => {
  let issued = 0;
  const { hw } = client({ token: async () => `t${++issued}` }, 'ws://primary/ws?x=1');
  await settle();
  assert.equal(FakeWebSocket.latest().url, 'ws://primary/ws?x=1&token=t1');
  FakeWebSocket.latest().serverClose(1006, '', false);
  clock.advance(hw.nextAttemptAt - clock.now);
  await settle();
  assert.equal(FakeWebSocket.latest().url, 'ws://primary/ws?x=1&token=t2');
});

test('fail-over to the next URL, then fail-back once the primary answers again', () => {
  const { hw } = client({ failbackMs: 5000 }, ['ws://a/ws', 'ws://b/ws']);
  FakeWebSocket.latest().serverClose(1006, '', false);
  clock.advance(hw.nextAttemptAt - clock.now);
  const fallback = FakeWebSocket.latest();
  assert.equal(fallback.url, 'ws://b/ws');
  fallback.hello({ session: 'on-b' });
  assert.equal(hw.url, 'ws://b/ws');
  clock.advance(5000);
  const probe = FakeWebSocket.latest();
  assert.equal(probe.url, 'ws://a/ws', 'the primary is probed after failbackMs');
  probe.serverClose(1006, '', false);
  assert.equal(hw.state, 'open', 'a failed probe of the primary leaves the fallback alone');
  clock.advance(5000);
  const secondProbe = FakeWebSocket.latest();
  assert.notEqual(secondProbe, probe);
  secondProbe.hello();
  assert.equal(fallback.closedWith.code, 4001);
  const back = FakeWebSocket.latest();
  assert.equal(back.url, 'ws://a/ws');
  back.hello({ session: 'on-a' });
  assert.equal(hw.url, 'ws://a/ws');
  assert.equal(hw.session, 'on-a');
});

test('the backoff streak restarts after a connection stayed healthy for 30 s', () => {
  const { hw } = client({ random: () => 0.999_999 });
  const waitAfterDrop = () => {
    FakeWebSocket.latest().serverClose(1006, '', false);
    const wait = hw.nextAttemptAt - clock.now;
    clock.advance(wait);
    return wait;
  };
  assert.deepEqual([waitAfterDrop(), waitAfterDrop(), waitAfterDrop()], [500, 1000, 2000]);
  FakeWebSocket.latest().hello();
  clock.advance(29_000);
  assert.equal(waitAfterDrop(), 4000, 'open 29 s: not healthy, the streak goes on');
  FakeWebSocket.latest().hello();
  clock.advance(30_000);
  assert.equal(waitAfterDrop(), 500, 'open 30 s: healthy, the streak starts again');
});

test('maxAttempts gives up and closes', () => {
  const { hw } = client({ maxAttempts: 2 });
  for (let i = 0; i < 2; i++) {
    FakeWebSocket.latest().serverClose(1006, '', false);
    clock.advance(hw.nextAttemptAt - clock.now);
  }
  FakeWebSocket.latest().serverClose(1006, '', false);
  assert.equal(hw.state, 'closed');
});

test('an attempt without hello within connectTimeoutMs fails and is retried', () => {
  const { hw } = client({ connectTimeoutMs: 2000 });
  clock.advance(2000);
  assert.deepEqual(FakeWebSocket.all[0].closedWith, { code: 4000, reason: 'no hello' });
  assert.equal(hw.state, 'reconnecting');
});

test('close() is final and stops every timer', () => {
  const { hw } = client();
  FakeWebSocket.latest().hello();
  hw.close();
  assert.equal(hw.state, 'closed');
  assert.equal(clock.nextTimerIn(), null);
  assert.throws(() => hw.send('c', 1), /closed/);
});
