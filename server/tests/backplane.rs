//! The Redis backplane with a real `redis-server`: two server processes share one channel, every
//! client gets every message exactly once whichever process its sender is on, and a Redis outage
//! costs only cross-task delivery while it lasts.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use futures_util::stream::SplitStream;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

/// Reconnection backs off up to 10 s, so recovery gets more patience than other waits.
const RECOVERY: Duration = Duration::from_secs(30);

async fn wait_for_backplane(admin: SocketAddr, up: bool) {
    let deadline = Instant::now() + RECOVERY;
    let want = if up { 1.0 } else { 0.0 };
    while metric(admin, "websocket_backplane_up").await != want {
        assert!(
            Instant::now() < deadline,
            "backplane of {admin} never became {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Starts `N` server processes with `env` and waits until the backplane of each is up.
async fn tasks_up<const N: usize>(env: &[(&str, &str)]) -> [Process; N] {
    let mut tasks = Vec::with_capacity(N);
    for _ in 0..N {
        tasks.push(Process::start(env).await);
    }
    for task in &tasks {
        wait_for_backplane(task.admin(), true).await;
    }
    match tasks.try_into() {
        Ok(tasks) => tasks,
        Err(_) => unreachable!("{N} tasks were started"),
    }
}

/// Every client sends `each` messages tagged with its index; returns, per receiving client, the
/// sequence numbers it got from each sender, after reading exactly `clients × each` messages.
async fn exchange(
    clients: &mut [Client],
    round: &str,
    each: usize,
) -> Vec<HashMap<usize, Vec<usize>>> {
    for (sender, client) in clients.iter_mut().enumerate() {
        for seq in 0..each {
            send_text(
                client,
                format!(r#"{{"round":"{round}","sender":{sender},"seq":{seq}}}"#),
            )
            .await;
        }
    }
    let expected = clients.len() * each;
    let mut received = Vec::new();
    for client in clients.iter_mut() {
        let mut by_sender: HashMap<usize, Vec<usize>> = HashMap::new();
        for _ in 0..expected {
            let envelope: serde_json::Value =
                serde_json::from_str(&next_text(client).await).unwrap();
            let message = &envelope["message"];
            assert_eq!(
                message["round"], round,
                "a message from another round: {message}"
            );
            let sender = message["sender"].as_u64().unwrap() as usize;
            by_sender
                .entry(sender)
                .or_default()
                .push(message["seq"].as_u64().unwrap() as usize);
        }
        received.push(by_sender);
    }
    received
}

fn assert_exactly_once_in_order(
    received: &[HashMap<usize, Vec<usize>>],
    senders: usize,
    each: usize,
) {
    for (client, by_sender) in received.iter().enumerate() {
        for sender in 0..senders {
            let expected: Vec<usize> = (0..each).collect();
            assert_eq!(
                by_sender.get(&sender),
                Some(&expected),
                "client {client}, sender {sender}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server"]
async fn messages_cross_tasks_exactly_once_and_survive_a_redis_outage() {
    const EACH: usize = 25;
    let mut redis = Redis::start();
    let url = redis.url();
    let env = [("REDIS_URL", url.as_str()), ("EMF_INTERVAL", "0")];
    let [mut task_a, mut task_b] = tasks_up(&env).await;

    // Clients 0 and 1 on task A, 2 and 3 on task B.
    let mut clients = Vec::new();
    for task in [&task_a, &task_a, &task_b, &task_b] {
        clients.push(connect(&task.url("/wss")).await);
        assert_eq!(
            next_text(clients.last_mut().unwrap()).await,
            r#"{"connection":"ok"}"#
        );
    }
    let received = exchange(&mut clients, "before", EACH).await;
    assert_exactly_once_in_order(&received, clients.len(), EACH);

    // Redis goes away: each task keeps serving its own clients.
    redis.stop();
    wait_for_backplane(task_a.admin(), false).await;
    wait_for_backplane(task_b.admin(), false).await;
    let (on_a, on_b) = clients.split_at_mut(2);
    let local_a = exchange(on_a, "outage-a", EACH).await;
    assert_exactly_once_in_order(&local_a, 2, EACH);
    let local_b = exchange(on_b, "outage-b", EACH).await;
    assert_exactly_once_in_order(&local_b, 2, EACH);
    assert!(
        task_a.is_running() && task_b.is_running(),
        "no process exits"
    );
    let (status, _) = server::healthcheck::http_request(task_a.addr, "GET", "/health")
        .await
        .unwrap();
    assert_eq!(status, 200, "health stays 200 without Redis");
    assert!(
        metric(task_a.admin(), "websocket_backplane_local_only_total").await >= (2 * EACH) as f64
    );

    // Redis is back: cross-task delivery resumes, exactly once. (`exchange` would fail on any
    // leftover outage message arriving late on the other task.)
    assert!(redis.restart(), "redis-server is back on its socket");
    wait_for_backplane(task_a.admin(), true).await;
    wait_for_backplane(task_b.admin(), true).await;
    let received = exchange(&mut clients, "after", EACH).await;
    assert_exactly_once_in_order(&received, clients.len(), EACH);
    assert!(task_a.is_running() && task_b.is_running());
}

/// A throwaway CA and a server certificate for 127.0.0.1, made with the openssl command.
fn certificates(dir: &std::path::Path) {
    let openssl = |args: &[&str]| {
        let status = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stderr(Stdio::null())
            .status()
            .expect("the openssl command must be installed");
        assert!(status.success(), "openssl {args:?}");
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "san.ext",
        "-out",
        "server.pem",
    ]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server and openssl"]
async fn rediss_with_an_auth_token() {
    let dir = std::env::temp_dir().join(format!("backplane-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    certificates(&dir);
    let file = |name: &str| dir.join(name).to_string_lossy().into_owned();
    // TLS needs a TCP port (redis-server has no TLS on its Unix socket), so this one is picked
    // free and tried again should another process take it first.
    let (_redis, port) = (1..=5)
        .find_map(|_| {
            let port = free_port().to_string();
            let tls = [
                "--tls-port",
                &port,
                "--bind",
                "127.0.0.1",
                "--tls-cert-file",
                &file("server.pem"),
                "--tls-key-file",
                &file("server.key"),
                "--tls-auth-clients",
                "no",
                "--requirepass",
                "t0ken",
            ];
            Some((Redis::start_with(&tls)?, port))
        })
        .expect("redis-server on a free TLS port");
    let ca = file("ca.pem");
    let url = format!("rediss://:t0ken@127.0.0.1:{port}");
    let env = [
        ("REDIS_URL", url.as_str()),
        ("SSL_CERT_FILE", ca.as_str()),
        ("EMF_INTERVAL", "0"),
    ];
    let [task_a, task_b] = tasks_up(&env).await;
    let mut clients = vec![
        connect(&task_a.url("/wss")).await,
        connect(&task_b.url("/wss")).await,
    ];
    for client in &mut clients {
        next_text(client).await;
    }
    let received = exchange(&mut clients, "tls", 5).await;
    assert_exactly_once_in_order(&received, 2, 5);

    // The wrong token never connects; the task still serves its own clients.
    let wrong = format!("rediss://:wrong@127.0.0.1:{port}");
    let task_c = Process::start(&[
        ("REDIS_URL", wrong.as_str()),
        ("SSL_CERT_FILE", ca.as_str()),
    ])
    .await;
    wait_for_metric(task_c.admin(), "websocket_backplane_up", 0.0).await;
    let mut alone = vec![connect(&task_c.url("/wss")).await];
    next_text(&mut alone[0]).await;
    assert_exactly_once_in_order(&exchange(&mut alone, "alone", 3).await, 1, 3);
    let failures = metric(
        task_c.admin(),
        "websocket_backplane_connection_failures_total",
    )
    .await;
    assert!(failures >= 1.0, "failed attempts are counted: {failures}");
    let _ = std::fs::remove_dir_all(dir);
}

/// What each sender sends in `idle_keepalive_periods_cost_nothing`, one every `PACE`: over 16 s,
/// so three of the subscription's 5 s keepalive periods pass while they flow.
const SENT: usize = 110;
const PACE: Duration = Duration::from_millis(150);

/// Reads `stream` until it has gone quiet: 500 ms after the last message of every one of
/// `senders`, or 3 s without any message (the last ones were lost). Returns the sequence numbers
/// received from each sender, in arrival order.
async fn collect_until_quiet(
    mut stream: SplitStream<Client>,
    senders: &[usize],
    last: usize,
) -> HashMap<usize, Vec<usize>> {
    let mut by_sender: HashMap<usize, Vec<usize>> = HashMap::new();
    loop {
        let complete = senders.iter().all(|sender| {
            by_sender
                .get(sender)
                .is_some_and(|seqs| seqs.contains(&last))
        });
        let quiet = if complete {
            Duration::from_millis(500)
        } else {
            Duration::from_secs(3)
        };
        let frame = match tokio::time::timeout(quiet, stream.next()).await {
            Err(_) => return by_sender,
            Ok(frame) => frame.expect("the stream is open").expect("a valid frame"),
        };
        let Message::Text(text) = frame else {
            continue; // pings and pongs
        };
        let envelope: serde_json::Value = serde_json::from_str(&text).unwrap();
        let message = &envelope["message"];
        let sender = message["sender"].as_u64().unwrap() as usize;
        by_sender
            .entry(sender)
            .or_default()
            .push(message["seq"].as_u64().unwrap() as usize);
    }
}

/// The subscription is pinged every 5 s while it is idle; a steady trickle of messages across
/// several of those periods must reach every client exactly once, with no reconnect on either
/// task: a keepalive that mistook a good answer for a dead connection would drop and renew the
/// subscription each time, losing what other tasks published in between.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server"]
async fn idle_keepalive_periods_cost_nothing() {
    let redis = Redis::start();
    let url = redis.url();
    let env = [
        ("REDIS_URL", url.as_str()),
        ("EMF_INTERVAL", "0"),
        ("DRAIN_TIMEOUT", "1s"),
    ];
    let [task_a, task_b] = tasks_up(&env).await;

    // Clients 0 and 1 on task A, 2 and 3 on task B; clients 0 (on A) and 2 (on B) also send.
    const SENDERS: [usize; 2] = [0, 2];
    // Every client is connected before anyone sends, so that all of them can get every message.
    let mut clients = Vec::new();
    for task in [&task_a, &task_a, &task_b, &task_b] {
        let mut client = connect(&task.url("/wss")).await;
        assert_eq!(next_text(&mut client).await, r#"{"connection":"ok"}"#);
        clients.push(client);
    }
    let started = Instant::now();
    let mut readers = Vec::new();
    let mut senders = Vec::new();
    for (index, client) in clients.into_iter().enumerate() {
        let (sink, stream) = client.split();
        readers.push(tokio::spawn(collect_until_quiet(
            stream,
            &SENDERS,
            SENT - 1,
        )));
        if SENDERS.contains(&index) {
            senders.push(tokio::spawn(async move {
                let mut sink = sink;
                let mut pace = tokio::time::interval(PACE);
                for seq in 0..SENT {
                    pace.tick().await;
                    let text = format!(r#"{{"round":"keepalive","sender":{index},"seq":{seq}}}"#);
                    sink.send(Message::text(text)).await.expect("send");
                }
                sink
            }));
        }
    }
    let mut sinks = Vec::new();
    for sender in senders {
        sinks.push(sender.await.unwrap());
    }
    let mut problems = Vec::new();
    for (client, reader) in readers.into_iter().enumerate() {
        let by_sender = reader.await.unwrap();
        for sender in SENDERS {
            let got = by_sender.get(&sender).cloned().unwrap_or_default();
            let lost = (0..SENT).filter(|seq| !got.contains(seq)).count();
            let mut distinct = got.clone();
            distinct.sort_unstable();
            distinct.dedup();
            let duplicated = got.len() - distinct.len();
            let in_order = got == (0..SENT).collect::<Vec<_>>();
            if lost > 0 || duplicated > 0 || !in_order {
                problems.push(format!(
                    "client {client} from client {sender}: {lost} lost, {duplicated} duplicated, in order: {in_order}"
                ));
            }
        }
    }
    assert!(
        started.elapsed() >= Duration::from_secs(16),
        "messages flowed for only {:?}, fewer than three keepalive periods",
        started.elapsed()
    );

    let mut reconnects = Vec::new();
    for (name, task) in [("A", &task_a), ("B", &task_b)] {
        let failures = metric(
            task.admin(),
            "websocket_backplane_connection_failures_total",
        )
        .await;
        let up = metric(task.admin(), "websocket_backplane_up").await;
        if failures != 0.0 || up != 1.0 {
            reconnects.push(format!(
                "task {name}: {failures} connection failures, backplane up {up}"
            ));
        }
    }
    drop(sinks);

    // Log lines go to standard output, which is complete once the process has ended.
    let mut lost_lines = Vec::new();
    for (name, task) in [("A", task_a), ("B", task_b)] {
        task.signal("TERM");
        let exit = task.wait(PATIENCE).await;
        let count = exit
            .stdout
            .lines()
            .filter(|line| line.contains("backplane connection lost"))
            .count();
        if count > 0 {
            lost_lines.push(format!(
                "task {name}: {count} \"backplane connection lost\" lines"
            ));
        }
    }
    assert!(
        problems.is_empty() && reconnects.is_empty() && lost_lines.is_empty(),
        "after {SENT} messages from each of {} senders over {:?}:\n{}",
        SENDERS.len(),
        started.elapsed(),
        [problems, reconnects, lost_lines].concat().join("\n")
    );
}

/// How many Redis connections are subscribed to `channel`.
async fn subscribers_in_redis(redis: &Redis, channel: &str) -> i64 {
    let client = redis::Client::open(redis.url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let (_, count): (String, i64) = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(channel)
        .query_async(&mut connection)
        .await
        .unwrap();
    count
}

async fn v1_subscribe(client: &mut Client, channel: &str) {
    send_text(
        client,
        format!(r#"{{"type":"subscribe","channel":"{channel}"}}"#),
    )
    .await;
    assert_eq!(
        next_text(client).await,
        format!(r#"{{"type":"subscribed","channel":"{channel}"}}"#)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server"]
async fn channels_cross_tasks_and_each_task_subscribes_only_to_what_its_clients_hold() {
    let redis = Redis::start();
    let url = redis.url();
    let key = "cross-task-publish-key-0123456789abcdef";
    let env = [
        ("REDIS_URL", url.as_str()),
        ("EMF_INTERVAL", "0"),
        ("PUBLISH_API_KEYS", key),
    ];
    let [task_a, task_b, task_c] = tasks_up(&env).await;
    // Every task holds `broadcast`, for /wss; nothing else yet.
    assert_eq!(subscribers_in_redis(&redis, "websocket:broadcast").await, 3);
    assert_eq!(subscribers_in_redis(&redis, "websocket:room").await, 0);

    let mut on_a = connect(&task_a.url("/v1/ws")).await;
    let mut also_on_a = connect(&task_a.url("/v1/ws")).await;
    let mut publisher_on_b = connect(&task_b.url("/v1/ws")).await;
    let mut elsewhere_on_c = connect(&task_c.url("/v1/ws")).await;
    v1_subscribe(&mut on_a, "room").await;
    v1_subscribe(&mut also_on_a, "room").await;
    v1_subscribe(&mut elsewhere_on_c, "other").await;
    // `subscribed` came after Redis confirmed: one subscription per task, not per client.
    assert_eq!(subscribers_in_redis(&redis, "websocket:room").await, 1);
    assert_eq!(subscribers_in_redis(&redis, "websocket:other").await, 1);

    // Published on B (which holds no `room`), delivered on A exactly once each, as written.
    let data = r#"{"b":2,"a":1.0}"#;
    for n in 0..20 {
        send_text(
            &mut publisher_on_b,
            format!(r#"{{"type":"publish","channel":"room","data":[{n},{data}]}}"#),
        )
        .await;
    }
    // And from A itself: its own subscribers get it once, through Redis.
    send_text(
        &mut on_a,
        r#"{"type":"publish","channel":"room","data":"own"}"#,
    )
    .await;
    for client in [&mut on_a, &mut also_on_a] {
        let mut got = Vec::new();
        for _ in 0..21 {
            got.push(next_message(client).await);
        }
        for n in 0..20 {
            let expected = format!(r#"{{"type":"message","channel":"room","data":[{n},{data}]}}"#);
            assert!(got.contains(&expected), "{expected} missing from {got:?}");
        }
        assert_eq!(
            got.iter().filter(|m| m.contains(r#""own""#)).count(),
            1,
            "{got:?}"
        );
    }
    // Over HTTP on C, which holds no `room` either: delivered on A, to each subscriber once, with
    // the offset the request was answered.
    let (status, body) =
        http_publish(task_c.addr, key, r#"{"channel":"room","data":"http"}"#).await;
    assert_eq!(status, 200);
    let answered: serde_json::Value = serde_json::from_str(&body).unwrap();
    let offset = answered["offsets"][0]
        .as_str()
        .expect("an offset")
        .to_owned();
    for client in [&mut on_a, &mut also_on_a] {
        assert_eq!(
            next_text(client).await,
            format!(r#"{{"type":"message","channel":"room","offset":"{offset}","data":"http"}}"#)
        );
    }
    // C's client is not in `room`, and C never subscribed to it in Redis.
    let quiet = tokio::time::timeout(Duration::from_millis(300), elsewhere_on_c.next()).await;
    assert!(quiet.is_err(), "{quiet:?}");

    // The last client of `room` on A leaves: A unsubscribes in Redis.
    drop(on_a);
    send_text(&mut also_on_a, r#"{"type":"unsubscribe","channel":"room"}"#).await;
    assert_eq!(
        next_message(&mut also_on_a).await,
        r#"{"type":"unsubscribed","channel":"room"}"#
    );
    let deadline = Instant::now() + RECOVERY;
    while subscribers_in_redis(&redis, "websocket:room").await != 0 {
        assert!(Instant::now() < deadline, "task A still subscribed to room");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(subscribers_in_redis(&redis, "websocket:other").await, 1);
}

/// What a task of the version before channels put on Redis, and expects there: 16 bytes of origin,
/// an 8-byte sequence number, then the `/wss` envelope, on `REDIS_CHANNEL`.
fn previous_version_message(envelope: &str) -> Vec<u8> {
    let mut message = vec![7u8; 16];
    message.extend_from_slice(&1u64.to_be_bytes());
    message.extend_from_slice(envelope.as_bytes());
    message
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server"]
async fn broadcast_keeps_the_previous_versions_redis_channel_and_format() {
    let redis = Redis::start();
    let url = redis.url();
    let [task] = tasks_up(&[("REDIS_URL", url.as_str()), ("EMF_INTERVAL", "0")]).await;
    let mut wss = connect(&task.url("/wss")).await;
    assert_eq!(next_text(&mut wss).await, r#"{"connection":"ok"}"#);
    let mut v1 = connect(&task.url("/v1/ws")).await;
    v1_subscribe(&mut v1, "broadcast").await;

    // An old task's message reaches both kinds of client.
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("PUBLISH")
        .arg("websocket:broadcast")
        .arg(previous_version_message(r#"{"message":{"old":true}}"#))
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(next_text(&mut wss).await, r#"{"message":{"old":true}}"#);
    assert_eq!(
        next_message(&mut v1).await,
        r#"{"type":"message","channel":"broadcast","data":{"old":true}}"#
    );

    // What this task publishes on `broadcast` is what an old task reads.
    let mut listener = client.get_async_pubsub().await.unwrap();
    listener.subscribe("websocket:broadcast").await.unwrap();
    send_text(
        &mut v1,
        r#"{"type":"publish","channel":"broadcast","data":{"new":1}}"#,
    )
    .await;
    let message = tokio::time::timeout(PATIENCE, listener.on_message().next())
        .await
        .unwrap()
        .unwrap();
    let payload = message.get_payload_bytes();
    assert_eq!(&payload[24..], br#"{"message":{"new":1}}"#);
    assert_eq!(next_text(&mut wss).await, r#"{"message":{"new":1}}"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server"]
/// The whole path under a subscribe racing a publish, round after round, with the release of the
/// channel racing the next round; the decision between local and Redis delivery it relies on is
/// pinned deterministically by the backplane's unit tests.
async fn a_first_subscribe_racing_a_publish_on_the_same_task_never_delivers_twice() {
    const ROUNDS: usize = 200;
    let redis = Redis::start();
    let url = redis.url();
    // Two frames a round from the publisher: no rate limit, so none is dropped.
    let [task] = tasks_up(&[
        ("REDIS_URL", url.as_str()),
        ("EMF_INTERVAL", "0"),
        ("MAX_MESSAGES_PER_SECOND", "0"),
    ])
    .await;
    let mut publisher = connect(&task.url("/v1/ws")).await;
    let mut subscriber = connect(&task.url("/v1/ws")).await;
    let mut twice = 0;
    for round in 0..ROUNDS {
        // The publish reaches Redis while the channel's first subscription is on its way: Redis
        // may or may not hand it back, and the publisher may or may not deliver it locally.
        let channel = format!("race:{round}");
        send_text(
            &mut subscriber,
            format!(r#"{{"type":"subscribe","channel":"{channel}"}}"#),
        )
        .await;
        send_text(
            &mut publisher,
            format!(r#"{{"type":"publish","channel":"{channel}","data":"racing"}}"#),
        )
        .await;
        loop {
            if next_text(&mut subscriber).await.contains("subscribed") {
                break;
            }
        }
        // A fence after `subscribed`: everything of this round has arrived once it has.
        send_text(
            &mut publisher,
            format!(r#"{{"type":"publish","channel":"{channel}","data":"fence"}}"#),
        )
        .await;
        let mut racing = 0;
        loop {
            let frame = next_text(&mut subscriber).await;
            if frame.contains("fence") {
                break;
            }
            racing += usize::from(frame.contains("racing"));
        }
        twice += usize::from(racing > 1);
        // Leaving releases the channel in Redis too, which the next round races against.
        send_text(
            &mut subscriber,
            format!(r#"{{"type":"unsubscribe","channel":"{channel}"}}"#),
        )
        .await;
        assert!(next_text(&mut subscriber).await.contains("unsubscribed"));
    }
    assert_eq!(twice, 0, "rounds with a message delivered twice");
    // Redis carried everything: nothing counts as delivered only locally.
    assert_eq!(
        metric(task.admin(), "websocket_backplane_local_only_total").await,
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server"]
async fn a_batch_sent_again_after_a_redis_timeout_is_delivered_once_on_other_tasks() {
    // DEBUG SLEEP blocks Redis past the publisher's 3 s response timeout; the publisher sends the
    // batch again on a fresh connection, and Redis runs both copies once it wakes.
    let redis =
        Redis::start_with(&["--enable-debug-command", "local"]).expect("redis-server starts");
    let url = redis.url();
    let env = [("REDIS_URL", url.as_str()), ("EMF_INTERVAL", "0")];
    let [task_a, task_b] = tasks_up(&env).await;
    let mut publisher = connect(&task_a.url("/v1/ws")).await;
    let mut subscriber = connect(&task_b.url("/v1/ws")).await;
    v1_subscribe(&mut subscriber, "slow").await;

    let sleeper = tokio::spawn(async move {
        let client = redis::Client::open(url.as_str()).unwrap();
        let mut connection = client.get_multiplexed_async_connection().await.unwrap();
        let _: redis::RedisResult<()> = redis::cmd("DEBUG")
            .arg("SLEEP")
            .arg("3.6")
            .query_async(&mut connection)
            .await;
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    send_text(
        &mut publisher,
        r#"{"type":"publish","channel":"slow","data":"once"}"#,
    )
    .await;
    sleeper.await.unwrap();
    send_text(
        &mut publisher,
        r#"{"type":"publish","channel":"slow","data":"fence"}"#,
    )
    .await;
    let mut received = Vec::new();
    loop {
        let frame = next_message(&mut subscriber).await;
        if frame.contains("fence") {
            break;
        }
        received.push(frame);
    }
    assert_eq!(
        received,
        [r#"{"type":"message","channel":"slow","data":"once"}"#],
        "the message exactly once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server"]
async fn subscribed_waits_until_redis_has_confirmed() {
    const PAUSE: Duration = Duration::from_millis(1500);
    let redis = Redis::start();
    let url = redis.url();
    let [task] = tasks_up(&[("REDIS_URL", url.as_str()), ("EMF_INTERVAL", "0")]).await;
    let mut client = connect(&task.url("/v1/ws")).await;
    // Redis answers no command for a while: the subscription to a new channel waits for it.
    let admin = redis::Client::open(url.as_str()).unwrap();
    let mut connection = admin.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(PAUSE.as_millis() as u64)
        .arg("ALL")
        .query_async(&mut connection)
        .await
        .unwrap();
    let asked = Instant::now();
    v1_subscribe(&mut client, "paused").await;
    let waited = asked.elapsed();
    assert!(
        waited >= PAUSE - Duration::from_millis(200),
        "subscribed after {waited:?}, before Redis could confirm"
    );
    assert_eq!(subscribers_in_redis(&redis, "websocket:paused").await, 1);
}

/// How many of the task's Redis subscriptions start with `prefix`.
async fn redis_channels_like(redis: &Redis, prefix: &str) -> usize {
    let client = redis::Client::open(redis.url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let channels: Vec<String> = redis::cmd("PUBSUB")
        .arg("CHANNELS")
        .arg(format!("{prefix}*"))
        .query_async(&mut connection)
        .await
        .unwrap();
    channels.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server"]
async fn a_client_holding_more_channels_than_one_redis_command_carries_gets_every_one() {
    // 4,500 channels asked for at once: more than one SUBSCRIBE command carries (1,000 channels)
    // and more than the backplane takes in one go (4,096 interest changes).
    const CHANNELS: usize = 4_500;
    let redis = Redis::start();
    let url = redis.url();
    let key = "many-channels-publish-key-0123456789abcdef";
    let env = [
        ("REDIS_URL", url.as_str()),
        ("EMF_INTERVAL", "0"),
        ("PUBLISH_API_KEYS", key),
        ("MAX_CHANNELS_PER_CONNECTION", "5000"),
        ("MAX_MESSAGES_PER_SECOND", "0"),
        ("MAX_BYTES_PER_SECOND", "0"),
        ("CLIENT_QUEUE_SIZE", "20000"),
        ("PUBLISH_MESSAGES_PER_SECOND", "0"),
    ];
    let [holder, publisher] = tasks_up(&env).await;
    let mut client = connect(&holder.url("/v1/ws")).await;
    let mut frames = Vec::with_capacity(CHANNELS);
    for n in 0..CHANNELS {
        frames.push(Ok(Message::text(format!(
            r#"{{"type":"subscribe","channel":"many-{n}","id":{n}}}"#
        ))));
    }
    client
        .send_all(&mut futures_util::stream::iter(frames))
        .await
        .unwrap();
    // Each subscribe: `subscribed`, then its ack, once Redis confirmed its chunk.
    let mut subscribed = std::collections::HashSet::new();
    let mut acked = std::collections::HashSet::new();
    while acked.len() < CHANNELS {
        let reply: serde_json::Value = serde_json::from_str(&next_text(&mut client).await).unwrap();
        match reply["type"].as_str() {
            Some("subscribed") => {
                let channel = reply["channel"].as_str().unwrap().to_owned();
                assert!(subscribed.insert(channel), "{reply}");
            }
            Some("ack") => {
                let id = reply["id"].as_u64().unwrap();
                assert!(
                    subscribed.contains(&format!("many-{id}")),
                    "ack before subscribed: {reply}"
                );
                assert!(acked.insert(id), "{reply}");
            }
            _ => panic!("unexpected {reply}"),
        }
    }
    assert_eq!(
        redis_channels_like(&redis, "websocket:many-").await,
        CHANNELS
    );

    // Published on the other task over HTTP, 100 a request: every channel delivers, once.
    for first in (0..CHANNELS).step_by(100) {
        let items: Vec<String> = (first..first + 100)
            .map(|n| format!(r#"{{"channel":"many-{n}","data":{n}}}"#))
            .collect();
        let (status, body) =
            http_publish(publisher.addr, key, &format!("[{}]", items.join(","))).await;
        assert_eq!(status, 200, "{body}");
    }
    let mut delivered = vec![0u32; CHANNELS];
    for _ in 0..CHANNELS {
        let message: serde_json::Value =
            serde_json::from_str(&next_text(&mut client).await).unwrap();
        let n = message["data"].as_u64().unwrap() as usize;
        assert_eq!(message["channel"], format!("many-{n}"), "{message}");
        delivered[n] += 1;
    }
    assert!(delivered.iter().all(|&count| count == 1), "{delivered:?}");
    let quiet = tokio::time::timeout(Duration::from_millis(300), client.next()).await;
    assert!(quiet.is_err(), "more than one each: {quiet:?}");

    // The client leaves: the task lets go of every channel in Redis, chunk by chunk.
    drop(client);
    let deadline = Instant::now() + RECOVERY;
    while redis_channels_like(&redis, "websocket:many-").await != 0 {
        assert!(
            Instant::now() < deadline,
            "the task still holds channels in Redis"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A message as a task with origin id `origin` puts it on a channel's Redis channel: 16 bytes of
/// origin, an 8-byte sequence number, then the channel's data.
fn message_from(origin: u32, sequence: u64, data: &str) -> Vec<u8> {
    let mut message = [[0u8; 12].as_slice(), &origin.to_be_bytes()].concat();
    message.extend_from_slice(&sequence.to_be_bytes());
    message.extend_from_slice(data.as_bytes());
    message
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server"]
async fn past_4096_publishing_tasks_the_copies_memory_starts_afresh_and_every_message_arrives() {
    // Each foreign origin's last sequence number is remembered, to drop a batch sent again after
    // a Redis timeout; 4,096 origins at most. A made-up task per message, one more than that.
    const ORIGINS: u32 = 4_100;
    let redis = Redis::start();
    let url = redis.url();
    // Room for all of them in the client's queue while the test is still publishing.
    let [task] = tasks_up(&[
        ("REDIS_URL", url.as_str()),
        ("EMF_INTERVAL", "0"),
        ("CLIENT_QUEUE_SIZE", "10000"),
    ])
    .await;
    let mut client = connect(&task.url("/v1/ws")).await;
    v1_subscribe(&mut client, "origins").await;

    let redis_client = redis::Client::open(url.as_str()).unwrap();
    let mut connection = redis_client
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let mut pipe = redis::pipe();
    for origin in 0..ORIGINS {
        pipe.cmd("PUBLISH")
            .arg("websocket:origins")
            .arg(message_from(origin, 1, &origin.to_string()))
            .ignore();
    }
    let () = pipe.query_async(&mut connection).await.unwrap();
    for origin in 0..ORIGINS {
        assert_eq!(
            next_text(&mut client).await,
            format!(r#"{{"type":"message","channel":"origins","data":{origin}}}"#)
        );
    }
    // The memory started afresh at the 4,097th origin: the last origins are still known, so a
    // copy from one of them is dropped; the first ones were forgotten, so a copy from one is
    // delivered again (the price of the bound, for a copy arriving in that instant).
    let mut pipe = redis::pipe();
    for message in [
        message_from(ORIGINS - 1, 1, "\"copy from a known origin\""),
        message_from(0, 1, "\"copy from a forgotten origin\""),
        message_from(ORIGINS, 1, "\"a new origin\""),
    ] {
        pipe.cmd("PUBLISH")
            .arg("websocket:origins")
            .arg(message)
            .ignore();
    }
    let () = pipe.query_async(&mut connection).await.unwrap();
    assert_eq!(
        next_text(&mut client).await,
        r#"{"type":"message","channel":"origins","data":"copy from a forgotten origin"}"#
    );
    assert_eq!(
        next_text(&mut client).await,
        r#"{"type":"message","channel":"origins","data":"a new origin"}"#
    );
}

/// Subscribes with `since` and returns whether the task recovered what followed it.
async fn v1_resume(client: &mut Client, channel: &str, since: &str) -> bool {
    send_text(
        client,
        format!(r#"{{"type":"subscribe","channel":"{channel}","since":"{since}"}}"#),
    )
    .await;
    let reply: serde_json::Value = serde_json::from_str(&next_text(client).await).unwrap();
    assert_eq!(reply["type"], "subscribed", "{reply}");
    reply["recovered"].as_bool().expect("recovered")
}

/// The next message's data and offset.
async fn data_and_offset(client: &mut Client) -> (serde_json::Value, String) {
    let message: serde_json::Value = serde_json::from_str(&next_text(client).await).unwrap();
    assert_eq!(message["type"], "message", "{message}");
    let offset = message["offset"].as_str().expect("an offset").to_owned();
    (message["data"].clone(), offset)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server"]
async fn a_client_resumes_on_another_task_with_every_message_once_in_order() {
    const MESSAGES: u64 = 1500;
    let redis = Redis::start();
    let url = redis.url();
    let env = [
        ("REDIS_URL", url.as_str()),
        ("EMF_INTERVAL", "0"),
        ("MAX_MESSAGES_PER_SECOND", "0"),
        ("HISTORY_SIZE", "1000"),
    ];
    let [task_a, task_b] = tasks_up(&env).await;
    // Every task hands out the same offset for a message.
    let mut on_a = connect(&task_a.url("/v1/ws")).await;
    let mut on_b = connect(&task_b.url("/v1/ws")).await;
    v1_subscribe(&mut on_a, "flow").await;
    v1_subscribe(&mut on_b, "flow").await;

    let url_b = task_b.url("/v1/ws");
    let publisher = tokio::spawn(async move {
        let mut publisher = connect(&url_b).await;
        for n in 1..=MESSAGES {
            send_text(
                &mut publisher,
                format!(r#"{{"type":"publish","channel":"flow","data":{n}}}"#),
            )
            .await;
            if n % 10 == 0 {
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
        }
        publisher
    });
    // The client starts on A, and moves between the tasks every 400 messages, publishes in flight.
    let mut client = on_a;
    let tasks = [&task_b, &task_a];
    let mut expected = 1;
    let mut moves = 0;
    while expected <= MESSAGES {
        let (data, offset) = data_and_offset(&mut client).await;
        assert_eq!(data, serde_json::json!(expected), "after {moves} moves");
        if expected <= 300 {
            assert_eq!(data_and_offset(&mut on_b).await, (data, offset.clone()));
        }
        expected += 1;
        if expected % 400 == 0 {
            drop(client);
            client = connect(&tasks[moves % 2].url("/v1/ws")).await;
            assert!(v1_resume(&mut client, "flow", &offset).await);
            moves += 1;
        }
    }
    assert_eq!(moves, 3);
    let _publisher = publisher.await.unwrap();
    let quiet = tokio::time::timeout(Duration::from_millis(300), client.next()).await;
    assert!(quiet.is_err(), "more than once: {quiet:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server"]
async fn redis_history_is_trimmed_expires_and_holds_wss_messages() {
    let redis = Redis::start();
    let url = redis.url();
    let env = [
        ("REDIS_URL", url.as_str()),
        ("EMF_INTERVAL", "0"),
        ("MAX_MESSAGES_PER_SECOND", "0"),
        ("HISTORY_SIZE", "5"),
        ("HISTORY_TTL", "3s"),
    ];
    let [task_a, task_b] = tasks_up(&env).await;

    // /wss messages are broadcast's history: sent on A, resumed on B.
    let mut reader = connect(&task_b.url("/v1/ws")).await;
    v1_subscribe(&mut reader, "broadcast").await;
    let mut wss = connect(&task_a.url("/wss")).await;
    assert_eq!(next_text(&mut wss).await, r#"{"connection":"ok"}"#);
    send_text(&mut wss, r#"{"n":1}"#).await;
    let (_, first) = data_and_offset(&mut reader).await;
    drop(reader);
    send_text(&mut wss, r#"{"n":2}"#).await;
    assert_eq!(next_text(&mut wss).await, r#"{"message":{"n":1}}"#);
    assert_eq!(next_text(&mut wss).await, r#"{"message":{"n":2}}"#);
    let mut reader = connect(&task_b.url("/v1/ws")).await;
    assert!(v1_resume(&mut reader, "broadcast", &first).await);
    assert_eq!(
        data_and_offset(&mut reader).await.0,
        serde_json::json!({"n":2})
    );

    // Trimmed: far more than HISTORY_SIZE later, the first of a channel is gone.
    let mut room = connect(&task_b.url("/v1/ws")).await;
    v1_subscribe(&mut room, "room").await;
    let mut publisher = connect(&task_a.url("/v1/ws")).await;
    for n in 0..300 {
        send_text(
            &mut publisher,
            format!(r#"{{"type":"publish","channel":"room","data":{n}}}"#),
        )
        .await;
    }
    let (_, oldest) = data_and_offset(&mut room).await;
    let mut before_last = oldest.clone();
    let mut last = oldest.clone();
    for _ in 1..300 {
        before_last = std::mem::replace(&mut last, data_and_offset(&mut room).await.1);
    }
    let mut late = connect(&task_a.url("/v1/ws")).await;
    assert!(!v1_resume(&mut late, "room", &oldest).await, "trimmed");
    let mut recent = connect(&task_a.url("/v1/ws")).await;
    assert!(
        v1_resume(&mut recent, "room", &last).await,
        "nothing missed"
    );

    // Expired: past HISTORY_TTL the messages are gone: from the one before the last, one is
    // lost; from the last, nothing was missed, and the channel goes on in its epoch.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let mut expired = connect(&task_a.url("/v1/ws")).await;
    assert!(
        !v1_resume(&mut expired, "room", &before_last).await,
        "expired"
    );
    let mut caught_up = connect(&task_b.url("/v1/ws")).await;
    assert!(v1_resume(&mut caught_up, "room", &last).await, "caught up");
    send_text(
        &mut publisher,
        r#"{"type":"publish","channel":"room","data":"new"}"#,
    )
    .await;
    let (data, offset) = data_and_offset(&mut caught_up).await;
    assert_eq!(data, serde_json::json!("new"));
    let (epoch, position) = last.split_once('-').unwrap();
    let next: u64 = position.parse::<u64>().unwrap() + 1;
    assert_eq!(offset, format!("{epoch}-{next}"));
}
