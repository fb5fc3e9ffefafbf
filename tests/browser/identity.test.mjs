/**
 * heartwire.js's side of identity in Chromium, against the real server verifying tokens that
 * PyJWT minted (tests/peers/jwt_tool.py): a short-lived token is refreshed through the token
 * provider and the connection outlives it; a close 4498 fetches a fresh token and reconnects
 * at once; a forbidden channel is an `error` event and no reconnect; presence frames are
 * events that name users.
 */
import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { HeartwireServer, launchBrowser, waitUntil, REPO, POLL_MS } from './harness.mjs';

const SECRET = 'a shared secret of at least thirty-two bytes';
/** The server's grace after `exp`: short, so that an expiry shows quickly. */
const GRACE_MS = 500;

let browser;
let server;

before(async () => {
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
});

afterEach(async () => {
  await server?.kill();
});

/** Tokens for `specs` ({sub, expIn}), minted by PyJWT; each with its claims. */
async function mint(specs) {
  const input = JSON.stringify(specs.map(({ sub, expIn }) => ({ alg: 'HS256', secret: SECRET, claims: { sub }, exp_in: expIn })));
  const child = spawn('python3', [join(REPO, 'tests/peers/jwt_tool.py'), 'mint'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (chunk) => { out += chunk; });
  child.stderr.on('data', (chunk) => { err += chunk; });
  child.stdin.end(input);
  const code = await new Promise((done) => child.once('exit', done));
  assert.equal(code, 0, `jwt_tool.py mint failed: ${err}`);
  return JSON.parse(out);
}

async function start() {
  server = await HeartwireServer.start(['--jwt-secret', SECRET, '--token-grace', `${GRACE_MS}ms`, '--presence', 'room:*']);
}

/**
 * A page of the server's origin with a client `name` whose provider asks Node for a token
 * (`provide(name)`); the page records the client's events in `window.seen[name]`.
 */
async function pageWith(names, provide) {
  const page = await browser.context.newPage();
  await page.exposeFunction('nextToken', (name) => provide(name));
  await page.goto(`${server.origin}/healthz`);
  await page.evaluate(async (names) => {
    const { Heartwire } = await import('/heartwire.js');
    window.clients = {};
    window.seen = {};
    for (const name of names) {
      const hw = new Heartwire(`${location.origin.replace('http', 'ws')}/ws`, { token: () => window.nextToken(name) });
      window.seen[name] = [];
      for (const type of ['open', 'close', 'refreshed', 'error', 'presence', 'join', 'leave']) {
        hw.addEventListener(type, (e) => window.seen[name].push({
          type, at: Date.now(), code: e.code ?? null, channel: e.channel ?? null, user: e.user ?? null,
          users: e.users ?? null, expiresInMs: e.expiresInMs ?? null, nextAttemptAt: e.nextAttemptAt ?? null,
          session: e.session ?? null,
        }));
      }
      window.clients[name] = hw;
    }
  }, names);
  return page;
}

const seen = (page, name) => page.evaluate((name) => window.seen[name], name);
const until = (page, name, what, matches, timeoutMs = 10_000) =>
  waitUntil(async () => (await seen(page, name)).find(matches), timeoutMs, `${name}: ${what}`);

test('a short-lived token is refreshed and the connection outlives it', async () => {
  await start();
  const [first, lasting] = await mint([{ sub: 'ada', expIn: 4 }, { sub: 'ada', expIn: 600 }]);
  let calls = 0;
  const page = await pageWith(['ada'], () => (++calls === 1 ? first.token : lasting.token));
  try {
    await until(page, 'ada', 'open', (e) => e.type === 'open');
    const pastExp = first.claims.exp * 1000 + GRACE_MS + 1_000;
    // The first token's end plus the grace, with slack: the connection must still be there.
    await waitUntil(async () => Date.now() > pastExp, 10_000, 'the first token to have expired');
    const events = await seen(page, 'ada');
    const refreshed = events.filter((e) => e.type === 'refreshed');
    assert.equal(refreshed.length, 1, JSON.stringify(events));
    assert.ok(refreshed[0].expiresInMs > 500_000, JSON.stringify(refreshed));
    assert.deepEqual(events.filter((e) => e.type === 'open' || e.type === 'close').map((e) => e.type), ['open']);
    assert.equal(await page.evaluate(() => window.clients.ada.state), 'open');
    assert.equal(calls, 2, 'one token to connect, one to refresh');
  } finally {
    await page.close();
  }
});

test('close 4498 fetches a fresh token and reconnects at once', async () => {
  await start();
  const [stale, fresh] = await mint([{ sub: 'ada', expIn: 3 }, { sub: 'ada', expIn: 600 }]);
  const handed = [];
  // The same token until it expired: refreshing it moves nothing, so the server says 4498.
  const page = await pageWith(['ada'], () => {
    const expired = Date.now() >= stale.claims.exp * 1000;
    handed.push(expired ? 'fresh' : 'stale');
    return expired ? fresh.token : stale.token;
  });
  try {
    await until(page, 'ada', 'open', (e) => e.type === 'open');
    const close = await until(page, 'ada', 'close 4498', (e) => e.type === 'close');
    assert.equal(close.code, 4498);
    assert.ok(close.nextAttemptAt - close.at <= 0, `at once: ${JSON.stringify(close)}`);
    await waitUntil(async () => (await seen(page, 'ada')).filter((e) => e.type === 'open').length === 2, 10_000, 'open again');
    assert.equal(handed.at(-1), 'fresh', 'the attempt asked for a token');
    assert.equal(handed.filter((t) => t === 'fresh').length, 1, handed.join(' '));
  } finally {
    await page.close();
  }
});

test('a forbidden channel is an error event, and presence frames name users', async () => {
  await start();
  const [ada, bob] = await mint([{ sub: 'ada', expIn: 600 }, { sub: 'bob', expIn: 600 }]);
  const page = await pageWith(['ada'], () => ada.token);
  try {
    await until(page, 'ada', 'open', (e) => e.type === 'open');
    await page.evaluate(() => {
      window.clients.ada.subscribe('user:bob:inbox', () => {});
      window.clients.ada.subscribe('room:1', () => {});
    });
    const error = await until(page, 'ada', 'a refusal', (e) => e.type === 'error');
    assert.deepEqual([error.code, error.channel], ['forbidden', 'user:bob:inbox']);
    await page.evaluate(async (token) => {
      const { Heartwire } = await import('/heartwire.js');
      window.bob = new Heartwire(`${location.origin.replace('http', 'ws')}/ws`, { token: () => token });
      window.bob.subscribe('room:1', () => {});
    }, bob.token);
    const join = await until(page, 'ada', 'bob joins', (e) => e.type === 'join');
    assert.deepEqual([join.channel, join.user], ['room:1', 'bob']);
    assert.equal(await page.evaluate(() => window.clients.ada.presence('room:1')), true);
    const presence = await until(page, 'ada', 'the presence answer', (e) => e.type === 'presence');
    assert.deepEqual(presence.users, [{ user: 'ada', connections: 1 }, { user: 'bob', connections: 1 }]);
    await page.evaluate(() => window.bob.close());
    const leave = await until(page, 'ada', 'bob leaves', (e) => e.type === 'leave');
    assert.equal(leave.user, 'bob');
    const events = await seen(page, 'ada');
    assert.deepEqual(events.filter((e) => e.type === 'open' || e.type === 'close').map((e) => e.type), ['open'],
      'the refusal made no reconnect');
  } finally {
    await page.close();
  }
});
