'use strict';

// Benchmark REFERENCE server: the design this project replaced (express + ws on
// Node), kept only so `make bench` can compare the Rust server against it.
// Never deployed. Behaviour follows the replaced server on purpose, warts
// included; do not "fix" it, or the comparison stops meaning anything.
//
//   GET /health  -> 200 "Ok"
//   GET /wss     -> WebSocket: greets with {"connection":"ok"}; every message
//                   that JSON.parse accepts is broadcast to every open client
//                   (sender included) as {"message": <value>}; anything else
//                   is dropped silently and the connection stays open.
//
// Env: HOST (default 127.0.0.1), PORT (default 8080, integer 1-65535).

const http = require('http');
const express = require('express');
const { WebSocketServer, WebSocket } = require('ws');

const DEFAULT_HOST = '127.0.0.1';
const DEFAULT_PORT = 8080;
// Large listen backlog so the kernel accept queue does not skew connection
// benchmarks (Node's default is 511).
const LISTEN_BACKLOG = 4096;
// How long shutdown waits for close handshakes before exiting anyway.
const SHUTDOWN_GRACE_MS = 2000;

function parsePort(raw) {
  if (raw === undefined) return DEFAULT_PORT;
  if (!/^[0-9]+$/.test(raw)) return null;
  const port = Number(raw);
  return port >= 1 && port <= 65535 ? port : null;
}

const host = process.env.HOST === undefined || process.env.HOST === '' ? DEFAULT_HOST : process.env.HOST;
const port = parsePort(process.env.PORT);
if (port === null) {
  process.stderr.write(`error: PORT must be an integer 1-65535, got ${JSON.stringify(process.env.PORT)}\n`);
  process.exit(2);
}

const app = express();
app.get('/health', (_req, res) => {
  res.status(200).type('text/plain').send('Ok');
});

const server = http.createServer(app);
const wss = new WebSocketServer({ server, path: '/wss', perMessageDeflate: false });

wss.on('connection', (ws) => {
  // Without a listener a protocol error on one socket would crash the process;
  // ws closes the socket itself after emitting it.
  ws.on('error', () => {});

  ws.send('{"connection":"ok"}');

  ws.on('message', (data) => {
    let parsed;
    try {
      // Text or binary alike: parse whatever bytes arrived, as a string.
      parsed = JSON.parse(data.toString());
    } catch {
      return; // not JSON: drop it, keep the connection
    }
    wss.clients.forEach((client) => {
      if (client.readyState === WebSocket.OPEN) {
        // Deliberately ONE JSON.stringify PER RECIPIENT, exactly as the replaced
        // design did (O(clients) re-encodes of the same value per message).
        // That inefficiency is the point of this reference; keep it.
        client.send(JSON.stringify({ message: parsed }));
      }
    });
  });
});

// The http.Server re-emits listen errors; wss re-emits them too, so both need a
// listener or the process dies with a stack trace instead of one line.
function fatal(err) {
  process.stderr.write(`error: ${host}:${port}: ${err.message}\n`);
  process.exit(1);
}
server.on('error', fatal);
wss.on('error', fatal);

server.listen(port, host, LISTEN_BACKLOG, () => {
  process.stdout.write(`listening on ${host}:${port}\n`);
});

let shuttingDown = false;
function shutdown() {
  if (shuttingDown) process.exit(0); // second signal: stop now
  shuttingDown = true;
  setTimeout(() => process.exit(0), SHUTDOWN_GRACE_MS).unref();
  for (const client of wss.clients) client.close(1001, 'server shutting down');
  wss.close();
  server.close(() => process.exit(0));
  server.closeAllConnections();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
