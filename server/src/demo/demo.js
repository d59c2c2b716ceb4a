// The demo page's client: connects to /v1/ws on the page's own host (wss:// when the page came over
// https), shows the connection state, reconnects with capped, jittered backoff, holds one channel,
// publishes JSON on it and lists the messages as they arrive. A new connection holds no channel,
// so the page subscribes again after every reconnect, from the last offset it saw on the channel
// when it has one: the server then replays what was published meanwhile, or says it no longer
// holds all of it, and the list marks the gap either way. The default channel, broadcast, is the
// one /wss clients share, so the page and /wss clients see each other's messages.
"use strict";

const KEEP = 200;               // lines kept on screen (messages and reconnect notices)
const RETRY_FIRST_MS = 500;
const RETRY_CAP_MS = 15000;
const NAME_CHARACTERS = /^[A-Za-z0-9_\-.:@]*$/; // the server's rule, with 1 to 128 of them
const NAME_MAX = 128;

const state = document.getElementById("state");
const joinForm = document.getElementById("join");
const channelInput = document.getElementById("channel");
const channelError = document.getElementById("channel-error");
const subscription = document.getElementById("subscription");
const sendForm = document.getElementById("send");
const input = document.getElementById("message");
const submit = document.getElementById("submit");
const error = document.getElementById("error");
const serverError = document.getElementById("server-error");
const list = document.getElementById("messages");
const count = document.getElementById("count");

const url = `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}/v1/ws`;
let socket = null;
let retryMs = RETRY_FIRST_MS;
let received = 0;
let channel = channelInput.value; // the channel the page holds, or takes once connected
let nextId = 1;
// What each frame sent with an id asked for, until its ack or error, so that an error can say
// what it refuses. Ids are per connection: the map is emptied when the socket closes.
const pending = new Map();
// The offset of the last message seen on each channel the page holds, to resume from after a
// reconnect. Messages carry none where the server keeps no history.
const lastOffset = new Map();
// While a resumed channel's replay arrives: the channel, its notice in the list and how many
// messages came. The replay lies between `subscribed` and the subscribe's ack (the server answers
// a frame after everything it causes); a message published at that very moment may land there too
// and be counted with it.
let replaying = null;
let historyOffSaid = false;

function show(kind, text) {
  state.className = `state ${kind}`;
  state.textContent = text;
  submit.disabled = kind !== "connected";
}

function showSubscription(subscribed, text) {
  subscription.className = `subscription ${subscribed ? "on" : "off"}`;
  subscription.textContent = text;
}

function showServerError(text) {
  serverError.textContent = text;
  serverError.hidden = !text;
}

function isOpen() {
  return socket !== null && socket.readyState === WebSocket.OPEN;
}

// Sends one frame with a fresh id, so that the server answers it with exactly one ack or error.
function request(frame) {
  const id = nextId++;
  pending.set(id, frame);
  socket.send(JSON.stringify({ ...frame, id }));
}

// Subscribes from the last offset seen on `name` if there is one (only after a reconnect: the
// page forgets a channel's offset when it leaves the channel).
function subscribe(name) {
  showSubscription(false, `subscribing to ${name}…`);
  const since = lastOffset.get(name);
  const frame = { type: "subscribe", channel: name };
  request(since === undefined ? frame : { ...frame, since });
}

// Why `name` is not a channel name the server accepts, or "" when it is one.
function channelProblem(name) {
  if (name === "") return "Type a channel name.";
  if (!NAME_CHARACTERS.test(name)) {
    const bad = [...name].find((c) => !NAME_CHARACTERS.test(c));
    return `A channel name holds only A-Z a-z 0-9 _ - . : @, not ${JSON.stringify(bad)}.`;
  }
  if (name.length > NAME_MAX) {
    return `A channel name is at most ${NAME_MAX} characters, not ${name.length}.`;
  }
  return "";
}

function switchTo(name) {
  const problem = channelProblem(name);
  channelError.textContent = problem && `${problem} Staying on ${channel}.`;
  if (problem || name === channel) return;
  const old = channel;
  channel = name;
  // Coming back to it later is not a resume: what it got meanwhile was never the page's to miss.
  lastOffset.delete(old);
  showServerError("");
  if (!isOpen()) return; // the open handler subscribes to it
  request({ type: "unsubscribe", channel: old });
  subscribe(name);
}

function listItem(item) {
  list.prepend(item);
  while (list.children.length > KEEP) list.lastElementChild.remove();
}

function listMessage(name, data) {
  const item = document.createElement("li");
  item.className = "message";
  const tag = document.createElement("span");
  tag.className = "channel";
  tag.textContent = name;
  const body = document.createElement("span");
  body.className = "data";
  body.textContent = JSON.stringify(data);
  item.append(tag, " ", body);
  listItem(item);
  count.textContent = String(++received);
}

// A line between the messages, where the connection broke: `kind` is recovered, lost or off.
function listNotice(kind, text) {
  const item = document.createElement("li");
  item.className = `notice ${kind}`;
  item.textContent = text;
  listItem(item);
  return item;
}

function replayedText(n) {
  if (n === 0) return "reconnected: nothing missed";
  return `reconnected: ${n} missed message${n === 1 ? "" : "s"} replayed`;
}

// `subscribed` with `recovered`: the answer to a subscribe with since, sent after a reconnect.
function resumed(frame) {
  if (frame.recovered) {
    replaying = { channel: frame.channel, item: listNotice("recovered", replayedText(0)), count: 0 };
  } else {
    replaying = null;
    listNotice("lost", "reconnected: messages were lost while disconnected");
  }
}

// Keeps a message's offset to resume from, and counts it if it is part of a replay.
function track(frame) {
  if (frame.channel !== channel) return; // one left a moment ago: nothing to resume there
  if (frame.offset !== undefined) lastOffset.set(frame.channel, frame.offset);
  if (replaying && replaying.channel === frame.channel) {
    replaying.item.textContent = replayedText(++replaying.count);
  }
}

// An ack or error ends the frame with that id. Errors without an id (a frame the server could not
// read far enough to find one) are shown all the same.
function answered(frame) {
  const asked = pending.get(frame.id);
  pending.delete(frame.id);
  const subscribing = asked && asked.type === "subscribe" && asked.channel === channel;
  if (asked && asked.since !== undefined) replaying = null; // the replay, if any, is over
  if (frame.type === "error" && frame.code === "history_disabled" && subscribing) {
    // This server keeps no history (a deploy may have turned it off): subscribe from now on.
    lastOffset.clear();
    if (!historyOffSaid) {
      historyOffSaid = true;
      listNotice("off", "reconnected: this server keeps no history, "
        + "so messages sent while disconnected are not replayed");
    }
    subscribe(channel);
    return;
  }
  if (frame.type === "ack") {
    // An ack of a subscribe means the channel is held: `subscribed` came first, or it was held
    // already.
    if (subscribing) showSubscription(true, `subscribed to ${channel}`);
    return;
  }
  const about = asked ? ` ${asked.type} on ${asked.channel}` : "";
  showServerError(`Server refused${about}: ${frame.code}: ${frame.message}`);
  if (subscribing) showSubscription(false, `not subscribed to ${channel}`);
}

function connect() {
  show("connecting", "connecting…");
  socket = new WebSocket(url);
  socket.addEventListener("open", () => {
    retryMs = RETRY_FIRST_MS;
    show("connected", "connected");
    subscribe(channel);
  });
  socket.addEventListener("message", (event) => {
    let frame;
    try { frame = JSON.parse(event.data); } catch { return; }
    switch (frame.type) {
      case "message":
        listMessage(frame.channel, frame.data);
        track(frame);
        break;
      case "subscribed":
        if (frame.channel !== channel) break;
        showSubscription(true, `subscribed to ${channel}`);
        if (frame.recovered !== undefined) resumed(frame);
        break;
      case "unsubscribed":
        if (frame.channel === channel) showSubscription(false, `not subscribed to ${channel}`);
        break;
      case "ack":
      case "error":
        answered(frame);
        break;
    }
  });
  socket.addEventListener("close", (event) => {
    pending.clear();
    replaying = null;
    showSubscription(false, "not subscribed");
    const delay = Math.round(retryMs * (0.5 + Math.random() / 2));
    retryMs = Math.min(retryMs * 2, RETRY_CAP_MS);
    // 1012: the server is restarting and closes its clients one by one; 1001: it is going away.
    const why = event.code === 1012 || event.code === 1001 ? "server restarting" : `closed (${event.code})`;
    show("disconnected", `${why}; retrying in ${(delay / 1000).toFixed(1)} s`);
    setTimeout(connect, delay);
  });
}

// Enter or the button switches; so does leaving the field, so that a name typed and then left
// for the Send button is where that message goes.
joinForm.addEventListener("submit", (event) => {
  event.preventDefault();
  switchTo(channelInput.value);
});
channelInput.addEventListener("change", () => switchTo(channelInput.value));

sendForm.addEventListener("submit", (event) => {
  event.preventDefault();
  let data;
  try {
    data = JSON.parse(input.value);
  } catch (err) {
    error.textContent = `Not JSON: ${err.message}`;
    return;
  }
  error.textContent = "";
  showServerError("");
  if (isOpen()) request({ type: "publish", channel, data });
});

connect();
