/**
 * The reconnect rules of docs/PROTOCOL.md, read from the test vectors every client shares
 * (tests/vectors/reconnect.json): the rule of each close, the hint read from its reason, and
 * what the client does when a connection ends that way.
 */

import { test, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { reconnectRule, retryHintFromReason } from '../heartwire.js';
import { FakeClock, FakeWebSocket, recordedClient } from './fakes.mjs';

const VECTORS = JSON.parse(readFileSync(new URL('../../../tests/vectors/reconnect.json', import.meta.url), 'utf8'));

/** The rule a vector expects, in the shape reconnectRule returns. */
function expected({ retry, after_ms: afterMs }) {
  return retry === 'after' ? { retry, afterMs } : { retry };
}

let clock;

beforeEach(() => {
  clock = new FakeClock();
  FakeWebSocket.reset();
});

test('the vectors cover the table', () => {
  assert.ok(VECTORS.close.length > 10 && VECTORS.retry_hint.length > 5);
});

test('reconnectRule follows every close vector', () => {
  for (const vector of VECTORS.close) {
    assert.deepEqual(reconnectRule(vector.code, vector.reason), expected(vector), `close ${vector.code} ${JSON.stringify(vector.reason)}`);
  }
});

test('retryHintFromReason follows every hint vector', () => {
  for (const { reason, after_ms: afterMs } of VECTORS.retry_hint) {
    assert.equal(retryHintFromReason(reason), afterMs, JSON.stringify(reason));
  }
});

test('a client closed as each vector says comes back as it says', async () => {
  for (const vector of VECTORS.close) {
    FakeWebSocket.reset();
    const what = `close ${vector.code} ${JSON.stringify(vector.reason)}`;
    // random() = 0.5: a backoff waits half of the first window, 250 ms.
    const { hw, events } = recordedClient(clock);
    const socket = FakeWebSocket.latest();
    socket.hello();
    const pending = hw.send('c', 'x');
    socket.serverClose(vector.code, vector.reason);
    const close = events.find((e) => e.type === 'close');
    if (vector.retry === 'never') {
      assert.equal(hw.state, 'closed', what);
      assert.equal(close.willReconnect, false, what);
      await assert.rejects(pending, what);
      clock.advance(120_000);
      assert.equal(FakeWebSocket.all.length, 1, `${what}: no attempt follows`);
      continue;
    }
    assert.equal(hw.state, 'reconnecting', what);
    assert.equal(close.willReconnect, true, what);
    // A fresh token is fetched at once, the first time in a streak.
    const waitMs = { after: vector.after_ms, fresh_token: 0 }[vector.retry] ?? 250;
    assert.equal(hw.nextAttemptAt - clock.now, waitMs, what);
    hw.close();
  }
});
