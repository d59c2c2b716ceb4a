// The Bun reference keeps the /wss wire contract the other references keep:
// checked against server.js in a process of its own, over loopback, with Bun's
// WebSocket client. Run: node_modules/@oven/bun-linux-x64/bin/bun test
// (from this directory).

import { afterAll, beforeAll, expect, test } from 'bun:test';
import { createServer } from 'node:net';

const SERVER = new URL('./server.js', import.meta.url).pathname;
const WAIT_MS = 5000;

function freePort() {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

let child;
let base;

beforeAll(async () => {
  const port = await freePort();
  child = Bun.spawn([process.execPath, SERVER], {
    env: { ...process.env, HOST: '127.0.0.1', PORT: String(port) },
    stdout: 'pipe',
  });
  const reader = child.stdout.getReader();
  const { value } = await reader.read();
  expect(new TextDecoder().decode(value).trim()).toBe(`listening on 127.0.0.1:${port}`);
  base = `127.0.0.1:${port}`;
});

afterAll(() => child?.kill());

// A client whose frames are read in order with next().
function connect(path = '/wss') {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://${base}${path}`);
    const frames = [];
    const waiting = [];
    ws.onmessage = ({ data }) => (waiting.length ? waiting.shift()(data) : frames.push(data));
    ws.onerror = () => reject(new Error(`cannot connect to ${path}`));
    ws.onopen = () => {
      ws.next = () =>
        frames.length
          ? Promise.resolve(frames.shift())
          : new Promise((res, rej) => {
              waiting.push(res);
              setTimeout(() => rej(new Error('no frame in time')), WAIT_MS);
            });
      resolve(ws);
    };
  });
}

test('greets, broadcasts as written to every client and drops what is not JSON', async () => {
  const alice = await connect();
  const bob = await connect();
  expect(await alice.next()).toBe('{"connection":"ok"}');
  expect(await bob.next()).toBe('{"connection":"ok"}');

  alice.send('{"b":1,"a":2}');
  expect(await alice.next()).toBe('{"message":{"b":1,"a":2}}');
  expect(await bob.next()).toBe('{"message":{"b":1,"a":2}}');

  // Not JSON, or not UTF-8: dropped, and the connection keeps working.
  bob.send('hello');
  bob.send(new Uint8Array([0xff, 0x31]));
  bob.send(new TextEncoder().encode(' [1, 2.50]\n'));
  expect(await bob.next()).toBe('{"message":[1, 2.50]}');
  expect(await alice.next()).toBe('{"message":[1, 2.50]}');

  // A client that leaves does not stop the others.
  bob.close();
  alice.send('42');
  expect(await alice.next()).toBe('{"message":42}');
  alice.close();
});

test('health answers Ok, other paths 404', async () => {
  const health = await fetch(`http://${base}/health`);
  expect(health.status).toBe(200);
  expect(await health.text()).toBe('Ok');
  expect((await fetch(`http://${base}/nope`)).status).toBe(404);
  expect((await fetch(`http://${base}/wss`)).status).toBe(426);
});

test('a bad port is named and exits 2', async () => {
  const bad = Bun.spawnSync([process.execPath, SERVER], { env: { ...process.env, PORT: 'eighty' } });
  expect(bad.exitCode).toBe(2);
  expect(bad.stderr.toString()).toContain('PORT');
  expect(bad.stdout.length).toBe(0);
});
