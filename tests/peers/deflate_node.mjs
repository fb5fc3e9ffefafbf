// permessage-deflate against a server's `/echo` from Node `ws` with perMessageDeflate, and
// the bytes a typical chat message takes on the wire with and without it.
//
//   node tests/peers/deflate_node.mjs ws://127.0.0.1:PORT/echo
//
// Checks that `ws` gets the extension agreed, that messages of every size come back as
// sent, and measures the bytes the echo of a 200-byte JSON chat message took on the wire,
// compressed and (on a second connection without the extension) not. Prints one JSON
// line {"ok": bool, "checks": {...}, "observed": {...}, "failures": [...]}; exits 0 only
// when every check passed. Every wait is bounded.
import WebSocket from 'ws';

const url = process.argv[2];
const WAIT_MS = 10_000;
const CHAT = JSON.stringify({
  op: 'message',
  channel: 'room:lobby',
  seq: 1042,
  data: { user: 'ada', text: 'Are we still meeting at ten? I have the notes from yesterday.', sent: '2026-12-02T11:28:03Z' },
});

function open(perMessageDeflate) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate });
    const timer = setTimeout(() => reject(new Error('open timed out')), WAIT_MS);
    ws.once('open', () => { clearTimeout(timer); resolve(ws); });
    ws.once('error', (err) => { clearTimeout(timer); reject(err); });
  });
}

function echo(ws, data) {
  return new Promise((resolve, reject) => {
    const before = ws._socket.bytesRead;
    const timer = setTimeout(() => reject(new Error('echo timed out')), WAIT_MS);
    ws.once('message', (message, isBinary) => {
      clearTimeout(timer);
      resolve({ message: isBinary ? message : message.toString(), wire: ws._socket.bytesRead - before });
    });
    ws.send(data);
  });
}

function close(ws) {
  return new Promise((resolve) => {
    const timer = setTimeout(() => { ws.terminate(); resolve(null); }, WAIT_MS);
    ws.once('close', (code) => { clearTimeout(timer); resolve(code); });
    ws.close(1000);
  });
}

const checks = {};
const observed = { chat_bytes: Buffer.byteLength(CHAT) };
const failures = [];
try {
  const ws = await open(true);
  observed.agreed = ws.extensions;
  checks.deflate_agreed = ws.extensions.startsWith('permessage-deflate');
  const chat = await echo(ws, CHAT);
  checks.chat_echoed = chat.message === CHAT;
  observed.chat_wire_compressed = chat.wire;
  const big = 'x'.repeat(50_000) + CHAT.repeat(100);
  checks.big_echoed = (await echo(ws, big)).message === big;
  const binary = Buffer.alloc(70_000, 7);
  const back = await echo(ws, binary);
  checks.binary_echoed = Buffer.isBuffer(back.message) && back.message.equals(binary);
  checks.closed_1000 = (await close(ws)) === 1000;

  const plain = await open(false);
  checks.plain_not_agreed = plain.extensions === '';
  const uncompressed = await echo(plain, CHAT);
  checks.plain_echoed = uncompressed.message === CHAT;
  observed.chat_wire_uncompressed = uncompressed.wire;
  checks.compression_saves_bytes = chat.wire < uncompressed.wire;
  await close(plain);
} catch (err) {
  failures.push(String(err));
}
for (const [name, ok] of Object.entries(checks)) if (!ok) failures.push(`check failed: ${name}`);
const ok = failures.length === 0 && Object.keys(checks).length >= 8;
console.log(JSON.stringify({ ok, checks, observed, failures }));
process.exit(ok ? 0 : 1);
