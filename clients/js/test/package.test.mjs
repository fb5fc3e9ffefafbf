/**
 * heartwire.js as an npm package: the declarations name what the module exports, and the
 * tarball `npm pack` makes installs into an empty project, type-checks there, and talks to a
 * real `heartwire serve` (the binary of `cargo build -p heartwire-cli`, or `HEARTWIRE_BIN`).
 */

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile, mkdir } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import ts from 'typescript';
import * as heartwire from '../heartwire.js';

const run = promisify(execFile);
const PACKAGE_DIR = fileURLToPath(new URL('..', import.meta.url));
const REPO = fileURLToPath(new URL('../../..', import.meta.url));
const BINARY = process.env.HEARTWIRE_BIN ?? join(REPO, 'target/debug/heartwire');
const TSC = join(PACKAGE_DIR, 'node_modules/.bin/tsc');

/** Members a declaration adds for typing only: EventTarget has them at runtime already. */
const TYPING_ONLY = new Set(['addEventListener', 'removeEventListener']);

/** The names declared in `source` (a .d.ts): exported values, and members of `className`. */
function declared(source, className) {
  const file = ts.createSourceFile('heartwire.d.ts', source, ts.ScriptTarget.Latest, true);
  const values = new Set();
  const members = new Set();
  const interfaces = new Map();
  for (const statement of file.statements) {
    const exported = statement.modifiers?.some((m) => m.kind === ts.SyntaxKind.ExportKeyword);
    if (!exported) continue;
    if (ts.isClassDeclaration(statement) || ts.isFunctionDeclaration(statement)) values.add(statement.name.text);
    if (ts.isClassDeclaration(statement) && statement.name.text === className) {
      for (const member of statement.members) {
        if (member.name && !TYPING_ONLY.has(member.name.text)) members.add(member.name.text);
      }
    }
    if (ts.isInterfaceDeclaration(statement)) {
      interfaces.set(statement.name.text, new Set(statement.members.map((member) => member.name.text)));
    }
  }
  return { values, members, interfaces };
}

test('the declarations name exactly what the module exports, and every option heartwire.js documents', async () => {
  const source = await readFile(join(PACKAGE_DIR, 'heartwire.d.ts'), 'utf8');
  const { values, members, interfaces } = declared(source, 'Heartwire');
  assert.deepEqual([...values].sort(), Object.keys(heartwire).sort(), 'exported values');
  const runtimeMembers = Object.getOwnPropertyNames(heartwire.Heartwire.prototype).filter((name) => name !== 'constructor');
  assert.deepEqual([...members].sort(), runtimeMembers.sort(), 'members of Heartwire');
  const js = await readFile(join(PACKAGE_DIR, 'heartwire.js'), 'utf8');
  const typedef = js.slice(js.indexOf('@typedef {object} HeartwireOptions'), js.indexOf('*/', js.indexOf('@typedef {object} HeartwireOptions')));
  const documented = [...typedef.matchAll(/@property \{.*?\} \[(\w+)/g)].map((match) => match[1]);
  assert.ok(documented.length > 10);
  assert.deepEqual([...interfaces.get('HeartwireOptions')].sort(), documented.sort(), 'options');
});

/** A port that was free a moment ago on 127.0.0.1. */
async function freePort() {
  const server = createServer();
  await new Promise((done, fail) => server.listen(0, '127.0.0.1', done).on('error', fail));
  const { port } = server.address();
  await new Promise((done) => server.close(done));
  return port;
}

/** `heartwire serve` on a free port, once `/healthz` answers; returns its origin and a stop. */
async function startServer() {
  const port = await freePort();
  const child = spawn(BINARY, ['serve', '--listen', `127.0.0.1:${port}`], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  child.stderr.on('data', (chunk) => { log += chunk; });
  const exited = new Promise((done) => child.once('exit', done));
  const origin = `127.0.0.1:${port}`;
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${BINARY} exited: ${log}`);
    const ok = await fetch(`http://${origin}/healthz`).then((response) => response.ok, () => false);
    if (ok) break;
    if (Date.now() > deadline) throw new Error(`${BINARY} did not serve on ${origin} within 10 s: ${log}`);
    await new Promise((done) => setTimeout(done, 50));
  }
  return {
    origin,
    stop: async () => {
      child.kill('SIGKILL');
      await exited;
    },
  };
}

/** What the empty project runs: it publishes on a channel it listens to and prints the outcome. */
const MAIN_MJS = `import { Heartwire } from 'heartwire';
const hw = new Heartwire(process.argv[2]);
const received = new Promise((done) => hw.subscribe('room:pack', (data, { seq }) => done({ data, seq })));
await new Promise((done) => hw.addEventListener('open', done, { once: true }));
const acked = await hw.send('room:pack', { text: 'from the tarball' });
const message = await received;
console.log(JSON.stringify({ acked, message, state: hw.state }));
hw.close();
`;

/** A typed use in the empty project: tsc must find the declarations through `exports`. */
const MAIN_TS = `import { Heartwire, type HeartwireState } from 'heartwire';
const hw = new Heartwire('ws://127.0.0.1/ws', { maxAttempts: 3 });
const state: HeartwireState = hw.state;
const seq: Promise<number> = hw.send('room:pack', { text: 'typed' });
hw.subscribe<{ text: string }>('room:pack', (line) => console.log(line.text.toUpperCase()));
// @ts-expect-error: the declarations are in force
hw.send(1, 'x');
console.log(state, seq);
`;

test('npm pack makes a tarball that an empty project installs, type-checks and uses against a real server', async (t) => {
  const work = await mkdtemp(join(tmpdir(), 'heartwire-pack-'));
  const server = await startServer();
  try {
    const { stdout: packed } = await run('npm', ['pack', '--json', '--pack-destination', work], { cwd: PACKAGE_DIR });
    const [{ filename, files }] = JSON.parse(packed);
    assert.deepEqual(files.map((file) => file.path).sort(), ['README.md', 'heartwire.d.ts', 'heartwire.js', 'package.json'],
      'the tarball holds the module, its declarations, README.md and package.json, nothing else');

    const app = join(work, 'app');
    await mkdir(app);
    await writeFile(join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }));
    await run('npm', ['install', '--offline', '--no-audit', '--no-fund', '--loglevel=error', join(work, filename)], { cwd: app });
    const installed = JSON.parse(await readFile(join(app, 'node_modules/heartwire/package.json'), 'utf8'));
    assert.equal(installed.name, 'heartwire');
    assert.deepEqual(installed.dependencies ?? {}, {}, 'no runtime dependencies');

    await writeFile(join(app, 'main.ts'), MAIN_TS);
    await writeFile(join(app, 'tsconfig.json'), JSON.stringify({
      compilerOptions: { strict: true, noEmit: true, target: 'es2022', module: 'nodenext', moduleResolution: 'nodenext', lib: ['es2022', 'dom'], types: [] },
      files: ['main.ts'],
    }));
    await run(TSC, ['-p', '.'], { cwd: app }).catch((error) => assert.fail(`tsc in the empty project: ${error.stdout}${error.stderr}`));

    await writeFile(join(app, 'main.mjs'), MAIN_MJS);
    // Node 20 has a WebSocket class only behind a flag; later versions have it by default.
    const flags = typeof globalThis.WebSocket === 'function' ? [] : ['--experimental-websocket'];
    const { stdout } = await run(process.execPath, [...flags, 'main.mjs', `ws://${server.origin}/ws`], { cwd: app, timeout: 10_000 });
    const outcome = JSON.parse(stdout.trim().split('\n').at(-1));
    assert.deepEqual(outcome, { acked: 1, message: { data: { text: 'from the tarball' }, seq: 1 }, state: 'open' });
    t.diagnostic(`${filename}: ${files.length} files, ${files.reduce((sum, file) => sum + file.size, 0)} bytes`);
  } finally {
    await server.stop();
    await rm(work, { recursive: true, force: true });
  }
});
