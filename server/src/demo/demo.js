// The demo page's client: connects to /wss on the page's own host (wss:// when the page came over
// https), shows the connection state, reconnects with capped, jittered backoff, sends JSON and
// lists the broadcasts as they arrive.
"use strict";

const KEEP = 200;               // broadcasts kept on screen
const RETRY_FIRST_MS = 500;
const RETRY_CAP_MS = 15000;

const state = document.getElementById("state");
const form = document.getElementById("send");
const input = document.getElementById("message");
const submit = document.getElementById("submit");
const error = document.getElementById("error");
const list = document.getElementById("messages");
const count = document.getElementById("count");

const url = `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}/wss`;
let socket = null;
let retryMs = RETRY_FIRST_MS;
let received = 0;

function show(kind, text) {
  state.className = `state ${kind}`;
  state.textContent = text;
  submit.disabled = kind !== "connected";
}

function connect() {
  show("connecting", "connecting…");
  socket = new WebSocket(url);
  socket.addEventListener("open", () => {
    retryMs = RETRY_FIRST_MS;
    show("connected", "connected");
  });
  socket.addEventListener("message", (event) => {
    let data;
    try { data = JSON.parse(event.data); } catch { return; }
    if (!("message" in data)) return; // the greeting, {"connection":"ok"}
    const item = document.createElement("li");
    item.textContent = JSON.stringify(data.message);
    list.prepend(item);
    while (list.children.length > KEEP) list.lastElementChild.remove();
    count.textContent = String(++received);
  });
  socket.addEventListener("close", (event) => {
    const delay = Math.round(retryMs * (0.5 + Math.random() / 2));
    retryMs = Math.min(retryMs * 2, RETRY_CAP_MS);
    const why = event.code === 1001 ? "server restarting" : `closed (${event.code})`;
    show("disconnected", `${why}; retrying in ${(delay / 1000).toFixed(1)} s`);
    setTimeout(connect, delay);
  });
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  let value;
  try {
    value = JSON.parse(input.value);
  } catch (err) {
    error.textContent = `Not JSON: ${err.message}`;
    return;
  }
  error.textContent = "";
  if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(value));
});

connect();
