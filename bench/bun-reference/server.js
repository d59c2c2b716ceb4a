// Benchmark REFERENCE server: the /wss broadcast contract on Bun.serve, whose
// WebSockets are uWebSockets in native code, the fastest stack JavaScript has.
// It shows what the best a JavaScript deployment could do looks like, next to
// the replaced express + ws design (bench/node-reference) and a hand-written
// Rust server (bench/lean-reference). Never deployed.
//
//   GET /health  -> 200 "Ok"
//   GET /wss     -> WebSocket: greets with {"connection":"ok"}; every message
//                   (text, or binary in UTF-8) that JSON.parse accepts is
//                   broadcast to every open client (sender included) as
//                   {"message":<the JSON as the client wrote it>}; anything
//                   else is dropped silently and the connection stays open.
//   anything else -> 404
//
// Like the lean reference, the envelope is built once per message and shared
// by every recipient: uWebSockets' topic publish hands the same bytes to every
// subscriber from native code, without a JavaScript call per recipient. No
// heartbeat, no connection limit, no slow-consumer eviction, no metrics.
//
// Env: HOST (default 127.0.0.1), PORT (default 8080, integer 1-65535).

const DEFAULT_HOST = '127.0.0.1';
const DEFAULT_PORT = 8080;
const GREETING = '{"connection":"ok"}';
// The one topic every /wss client subscribes to: publishing on it is the broadcast.
const TOPIC = 'broadcast';
// Largest message a client may send, as the lean reference allows.
const MAX_MESSAGE = 64 * 1024;

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

// Binary frames are read as UTF-8 text, as the other references do; invalid
// UTF-8 throws and the frame is dropped like any other non-JSON.
const utf8 = new TextDecoder('utf-8', { fatal: true });

// The frame every client gets for one client message, or null when it is not
// one JSON value. JSON.parse only validates: the client's own text is wrapped,
// so the value is not encoded again. Once JSON.parse has accepted it, the only
// whitespace around it is JSON's, which trim() removes.
function envelope(message) {
  let text;
  try {
    text = typeof message === 'string' ? message : utf8.decode(message);
    JSON.parse(text);
  } catch {
    return null;
  }
  return `{"message":${text.trim()}}`;
}

let server;
try {
  server = Bun.serve({
    hostname: host,
    port,
    routes: {
      '/health': new Response('Ok', { headers: { 'content-type': 'text/plain' } }),
      '/wss': (req, srv) => {
        if (srv.upgrade(req)) return undefined;
        return new Response('Upgrade Required', { status: 426 });
      },
    },
    fetch() {
      return new Response('Not Found', { status: 404 });
    },
    websocket: {
      perMessageDeflate: false,
      maxPayloadLength: MAX_MESSAGE,
      // No heartbeat and no idle timeout, as in the lean reference: a client
      // that only listens stays connected however long it is silent.
      idleTimeout: 0,
      sendPings: false,
      // Past this many buffered bytes uWebSockets DROPS a message for that
      // client. The other references queue without bound and never drop, so
      // neither does this one (0 is no limit).
      backpressureLimit: 0,
      open(ws) {
        // Greeting first, then subscribed: every broadcast comes after it.
        ws.send(GREETING);
        ws.subscribe(TOPIC);
      },
      message(_ws, message) {
        const frame = envelope(message);
        // server.publish, not ws.publish: the sender gets its own message too.
        if (frame !== null) server.publish(TOPIC, frame);
      },
    },
  });
} catch (err) {
  process.stderr.write(`error: ${host}:${port}: ${err.message}\n`);
  process.exit(1);
}

process.stdout.write(`listening on ${host}:${server.port}\n`);

function shutdown() {
  // Closing every connection at once rather than waiting for them.
  server.stop(true);
  process.exit(0);
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
