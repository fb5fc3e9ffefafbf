/**
 * The reconnect policy of heartwire.js: full-jitter delays and their spread.
 */

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fullJitterDelay } from '../heartwire.js';
import { seededRandom } from './fakes.mjs';

const policy = { baseMs: 500, capMs: 30_000 };

test('full jitter stays within [0, min(cap, base * 2^(attempt-1))]', () => {
  const random = seededRandom(42);
  for (let attempt = 1; attempt <= 20; attempt++) {
    const window = Math.min(30_000, 500 * 2 ** (attempt - 1));
    for (let i = 0; i < 500; i++) {
      const delay = fullJitterDelay(attempt, policy, random);
      assert.ok(delay >= 0 && delay <= window, `attempt ${attempt}: ${delay} outside [0, ${window}]`);
    }
  }
});

test('full jitter spreads over the whole window, so a restart is not a storm', () => {
  const random = seededRandom(7);
  const delays = Array.from({ length: 1000 }, () => fullJitterDelay(12, policy, random));
  const tenths = new Array(10).fill(0);
  for (const delay of delays) tenths[Math.min(9, Math.floor(delay / 3000))]++;
  // 1,000 clients over [0, 30 s]: every 3-second slice holds roughly a tenth of them.
  for (const count of tenths) assert.ok(count > 60 && count < 140, `uneven spread: ${tenths}`);
});

test('the extremes of random() give the bounds of the window', () => {
  assert.equal(fullJitterDelay(1, policy, () => 0), 0);
  assert.equal(fullJitterDelay(1, policy, () => 0.999_999_9), 500);
  assert.equal(fullJitterDelay(3, policy, () => 0.999_999_9), 2000);
  assert.equal(fullJitterDelay(100, policy, () => 0.999_999_9), 30_000);
});
