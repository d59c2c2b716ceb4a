//! What the server counts, and the two ways it reports it: Prometheus text on the admin port, and
//! a CloudWatch Embedded Metric Format log line with the connection count, which auto scaling
//! tracks per task without any agent, and what happened since the previous line (messages,
//! deliveries, evictions, rejections, backplane failures), which the dashboard and alarms read.
//!
//! Hot-path counters are plain atomics; label families are only touched on rare events (a close,
//! a rejection, a dropped message).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::shutdown::Shutdown;

type ReasonLabel = [(&'static str, &'static str); 1];

/// The server's counters. One instance per process, shared by `Arc`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// WebSocket connections open now.
    pub connections: Gauge,
    /// WebSocket connections ever opened.
    pub connections_opened: Counter,
    connections_closed: Family<ReasonLabel, Counter>,
    upgrades_rejected: Family<ReasonLabel, Counter>,
    publish_refused: Family<ReasonLabel, Counter>,
    auth_failures: Family<ReasonLabel, Counter>,
    http_connections_closed: Family<ReasonLabel, Counter>,
    /// Data frames received from clients, valid or not.
    pub messages_received: Counter,
    messages_dropped: Family<ReasonLabel, Counter>,
    /// Valid messages published, on `/wss` or `/v1/ws` (each counted once, however many
    /// recipients).
    pub messages_broadcast: Counter,
    /// Frames written to clients (each recipient counts).
    pub messages_delivered: Counter,
    /// Payload bytes received from clients.
    pub bytes_received: Counter,
    /// Payload bytes written to clients.
    pub bytes_sent: Counter,
    /// 1 while the Redis backplane is publishing and subscribed, else 0 (also 0 without Redis).
    pub backplane_up: Gauge,
    /// Times a backplane connection failed or was lost.
    pub backplane_connection_failures: Counter,
    /// Messages delivered to this task's clients only, because Redis could not carry them.
    pub backplane_local_only: Counter,
    /// Channels with at least one subscriber in this process.
    pub channels: Gauge,
    /// Subscriptions held in this process (a client in three channels counts three).
    pub subscriptions: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates the counters and registers them under their Prometheus names.
    pub fn new() -> Self {
        let mut metrics = Metrics {
            registry: Registry::with_prefix("websocket"),
            connections: Gauge::default(),
            connections_opened: Counter::default(),
            connections_closed: Family::default(),
            upgrades_rejected: Family::default(),
            publish_refused: Family::default(),
            auth_failures: Family::default(),
            http_connections_closed: Family::default(),
            messages_received: Counter::default(),
            messages_dropped: Family::default(),
            messages_broadcast: Counter::default(),
            messages_delivered: Counter::default(),
            bytes_received: Counter::default(),
            bytes_sent: Counter::default(),
            backplane_up: Gauge::default(),
            backplane_connection_failures: Counter::default(),
            backplane_local_only: Counter::default(),
            channels: Gauge::default(),
            subscriptions: Gauge::default(),
        };
        let registry = &mut metrics.registry;
        registry.register(
            "connections",
            "WebSocket connections open now",
            metrics.connections.clone(),
        );
        registry.register(
            "connections_opened",
            "WebSocket connections opened",
            metrics.connections_opened.clone(),
        );
        registry.register(
            "connections_closed",
            "WebSocket connections closed, by reason",
            metrics.connections_closed.clone(),
        );
        registry.register(
            "http_publish_refused",
            "POST /v1/publish requests refused, by error code",
            metrics.publish_refused.clone(),
        );
        registry.register(
            "auth_failures",
            "Tokens refused (upgrades, refreshes, HTTP publishes), by reason",
            metrics.auth_failures.clone(),
        );
        registry.register(
            "upgrades_rejected",
            "WebSocket upgrades refused with HTTP 503, by reason",
            metrics.upgrades_rejected.clone(),
        );
        registry.register(
            "http_connections_closed",
            "Sockets closed by the server before upgrading, by reason",
            metrics.http_connections_closed.clone(),
        );
        registry.register(
            "messages_received",
            "Data frames received from clients",
            metrics.messages_received.clone(),
        );
        registry.register(
            "messages_dropped",
            "Messages not delivered, by reason",
            metrics.messages_dropped.clone(),
        );
        registry.register(
            "messages_broadcast",
            "Valid messages published on any channel",
            metrics.messages_broadcast.clone(),
        );
        registry.register(
            "messages_delivered",
            "Frames written to clients",
            metrics.messages_delivered.clone(),
        );
        registry.register(
            "received_bytes",
            "Payload bytes received",
            metrics.bytes_received.clone(),
        );
        registry.register(
            "sent_bytes",
            "Payload bytes written",
            metrics.bytes_sent.clone(),
        );
        registry.register(
            "backplane_up",
            "1 while the Redis backplane publishes and is subscribed",
            metrics.backplane_up.clone(),
        );
        registry.register(
            "backplane_connection_failures",
            "Redis backplane connections failed or lost",
            metrics.backplane_connection_failures.clone(),
        );
        registry.register(
            "channels",
            "Channels with at least one subscriber in this process",
            metrics.channels.clone(),
        );
        registry.register(
            "subscriptions",
            "Channel subscriptions held in this process",
            metrics.subscriptions.clone(),
        );
        registry.register(
            "backplane_local_only",
            "Messages delivered to this task's clients only, Redis being unavailable",
            metrics.backplane_local_only.clone(),
        );
        metrics
    }

    /// Counts a closed connection under `reason` (one of `CloseReason::label`).
    pub fn connection_closed(&self, reason: &'static str) {
        self.connections_closed
            .get_or_create(&[("reason", reason)])
            .inc();
    }

    /// Counts an upgrade refused with 503 (`connection_limit` or `draining`).
    pub fn upgrade_rejected(&self, reason: &'static str) {
        self.upgrades_rejected
            .get_or_create(&[("reason", reason)])
            .inc();
    }

    /// Counts a token refused, under `reason` (one of `auth::Refusal::label`, or `forbidden`).
    pub fn auth_failed(&self, reason: &'static str) {
        self.auth_failures
            .get_or_create(&[("reason", reason)])
            .inc();
    }

    /// Counts a `POST /v1/publish` refused, under its error `code`.
    pub fn publish_refused(&self, code: &'static str) {
        self.publish_refused
            .get_or_create(&[("reason", code)])
            .inc();
    }

    /// Counts a socket the server closed in the HTTP phase: `header_timeout` (no complete first
    /// head in time), `idle_timeout` (no next head on a keep-alive socket), `response_stalled`
    /// (its responses not read), `head_too_large` (answered 431), `crowded_out` (the oldest, when
    /// the phase was full).
    pub fn http_connection_closed(&self, reason: &'static str) {
        self.http_connections_closed
            .get_or_create(&[("reason", reason)])
            .inc();
    }

    /// Counts messages that were not broadcast or delivered: `invalid_json`, `too_deep`,
    /// `rate_limited`, or `slow_consumer` for the queued messages a disconnected slow client
    /// never got.
    pub fn messages_dropped(&self, reason: &'static str, count: u64) {
        self.messages_dropped
            .get_or_create(&[("reason", reason)])
            .inc_by(count);
    }

    /// The Prometheus (OpenMetrics) text exposition.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }

    /// The totals the EMF line reports, in the order of `EMF_COUNTERS`. A labelled series that
    /// was never incremented is read as 0 without being created, so reading leaves the Prometheus
    /// text as it was.
    fn emf_totals(&self) -> [u64; EMF_COUNTERS.len()] {
        let by_reason = |family: &Family<ReasonLabel, Counter>, reason: &'static str| {
            family
                .get(&[("reason", reason)])
                .map_or(0, |counter| counter.get())
        };
        [
            self.connections_opened.get(),
            self.messages_received.get(),
            self.messages_broadcast.get(),
            self.messages_delivered.get(),
            by_reason(&self.connections_closed, "slow_consumer"),
            by_reason(&self.connections_closed, "rate_limited"),
            by_reason(&self.upgrades_rejected, "connection_limit"),
            by_reason(&self.upgrades_rejected, "draining"),
            by_reason(&self.messages_dropped, "rate_limited"),
            by_reason(&self.messages_dropped, "invalid_json"),
            by_reason(&self.messages_dropped, "too_deep"),
            self.backplane_connection_failures.get(),
            self.backplane_local_only.get(),
        ]
    }
}

/// The counters the EMF line carries, by CloudWatch metric name (unit Count), in the order
/// `Metrics::emf_totals` reads them. The dimension set stays `ServiceName` alone, so a reason
/// is part of the name rather than a dimension: every extra dimension set would be another
/// metric per value to pay for, and the alarms want one series per reason anyway.
const EMF_COUNTERS: [&str; 13] = [
    // websocket_connections_opened_total
    "ConnectionsOpened",
    // websocket_messages_received_total
    "MessagesReceived",
    // websocket_messages_broadcast_total
    "MessagesBroadcast",
    // websocket_messages_delivered_total
    "MessagesDelivered",
    // websocket_connections_closed_total{reason="slow_consumer"}: clients evicted (1013)
    "SlowConsumerEvictions",
    // websocket_connections_closed_total{reason="rate_limited"}: clients closed with 1008
    "RateLimitedCloses",
    // websocket_upgrades_rejected_total{reason="connection_limit"}: 503, task full
    "UpgradesRejectedConnectionLimit",
    // websocket_upgrades_rejected_total{reason="draining"}: 503, task stopping
    "UpgradesRejectedDraining",
    // websocket_messages_dropped_total{reason=...}
    "MessagesDroppedRateLimited",
    "MessagesDroppedInvalidJson",
    "MessagesDroppedTooDeep",
    // websocket_backplane_connection_failures_total: Redis connections that could not be made
    // or were lost (a publish that failed on a fresh connection too, a subscription that ended or
    // missed its keepalive ping), publisher and subscriber alike
    "BackplaneConnectionFailures",
    // websocket_backplane_local_only_total: messages that reached this task's clients only
    "BackplaneLocalOnly",
];

/// Writes the EMF documents of one process. It keeps the counter totals of its previous line:
/// CloudWatch adds up the values a metric gets within a period (statistic Sum), so each line must
/// carry what happened since the line before, not the totals since start.
#[derive(Debug)]
pub struct Emf {
    namespace: String,
    service_name: String,
    reported: [u64; EMF_COUNTERS.len()],
}

impl Emf {
    /// Nothing reported yet: the first line carries everything counted since the process started.
    pub fn new(namespace: String, service_name: String) -> Emf {
        Emf {
            namespace,
            service_name,
            reported: [0; EMF_COUNTERS.len()],
        }
    }

    /// One CloudWatch Embedded Metric Format document (a single line) under the dimension
    /// `ServiceName`: the connections open now, `ActiveConnections`, and every counter of
    /// `EMF_COUNTERS` as its increase since the previous line.
    pub fn line(&mut self, metrics: &Metrics, at: SystemTime) -> String {
        self.document(metrics, at, true)
    }

    /// The document written once the server has stopped serving: the counts since the previous
    /// line, the drain included. `ActiveConnections` stays in it as a plain field but not as a
    /// metric, so a stopping task adds no sample to the connections-per-task average auto scaling
    /// tracks (nor to a count of tasks reporting).
    pub fn last_line(&mut self, metrics: &Metrics, at: SystemTime) -> String {
        self.document(metrics, at, false)
    }

    fn document(&mut self, metrics: &Metrics, at: SystemTime, with_connections: bool) -> String {
        let timestamp = at
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64;
        let totals = metrics.emf_totals();
        let mut definitions = Vec::with_capacity(EMF_COUNTERS.len() + 1);
        if with_connections {
            definitions.push(serde_json::json!({ "Name": "ActiveConnections", "Unit": "Count" }));
        }
        let mut document = serde_json::Map::new();
        document.insert("ServiceName".into(), self.service_name.as_str().into());
        document.insert("ActiveConnections".into(), metrics.connections.get().into());
        for ((name, total), reported) in EMF_COUNTERS.iter().zip(totals).zip(&mut self.reported) {
            definitions.push(serde_json::json!({ "Name": name, "Unit": "Count" }));
            // Counters only grow; saturating all the same, so a reading can never wrap around.
            document.insert((*name).into(), total.saturating_sub(*reported).into());
            *reported = total;
        }
        document.insert(
            "_aws".into(),
            serde_json::json!({
                "Timestamp": timestamp,
                "CloudWatchMetrics": [{
                    "Namespace": self.namespace,
                    "Dimensions": [["ServiceName"]],
                    "Metrics": definitions,
                }],
            }),
        );
        serde_json::Value::Object(document).to_string()
    }
}

/// Prints an EMF line to standard output every `interval` until the drain starts, and returns the
/// writer, so that `run` can print the last line once the listeners have stopped. Standard output
/// is what the ECS awslogs driver ships to CloudWatch Logs, which extracts the metrics.
///
/// The periodic lines stop at the drain because `ActiveConnections` then only falls, as the task
/// lets its clients go; counted as a sample it would pull the connections-per-task average down
/// while the other tasks are as busy as before.
pub async fn emf_loop(
    metrics: std::sync::Arc<Metrics>,
    interval: Duration,
    mut emf: Emf,
    mut shutdown: Shutdown,
) -> Emf {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.draining() => return emf,
            _ = ticks.tick() => {
                println!("{}", emf.line(&metrics, SystemTime::now()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_names_every_counter() {
        let metrics = Metrics::new();
        metrics.connections.inc();
        metrics.connection_closed("slow_consumer");
        metrics.messages_dropped("invalid_json", 3);
        let text = metrics.encode();
        for line in [
            "websocket_connections 1",
            "websocket_connections_closed_total{reason=\"slow_consumer\"} 1",
            "websocket_messages_dropped_total{reason=\"invalid_json\"} 3",
            "websocket_messages_delivered_total 0",
            "websocket_sent_bytes_total 0",
        ] {
            assert!(text.contains(line), "missing {line:?} in:\n{text}");
        }
    }

    #[test]
    fn emf_line_is_one_valid_document() {
        let metrics = Metrics::new();
        metrics.connections.set(7);
        let mut emf = Emf::new("WebSocketService".into(), "svc".into());
        let line = emf.line(&metrics, UNIX_EPOCH + Duration::from_secs(2));
        assert!(!line.contains('\n'));
        let doc: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(doc["ActiveConnections"], 7);
        assert_eq!(doc["ServiceName"], "svc");
        assert_eq!(doc["_aws"]["Timestamp"], 2000);
        let directive = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "WebSocketService");
        assert_eq!(
            directive["Dimensions"],
            serde_json::json!([["ServiceName"]])
        );
        assert_eq!(directive["Metrics"][0]["Name"], "ActiveConnections");
        // Every metric the directive names is a number in the document, with unit Count.
        let names = metric_names(&doc);
        assert_eq!(names.len(), 1 + EMF_COUNTERS.len());
        for (name, definition) in names.iter().zip(directive["Metrics"].as_array().unwrap()) {
            assert_eq!(definition["Unit"], "Count", "{name}");
            assert!(doc[name].is_u64() || doc[name].is_i64(), "{name} in {line}");
        }
    }

    /// The metric names of a document's directive.
    fn metric_names(doc: &serde_json::Value) -> Vec<String> {
        doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|metric| metric["Name"].as_str().unwrap().to_owned())
            .collect()
    }

    fn count_some_of_each(metrics: &Metrics) {
        metrics.connections_opened.inc_by(3);
        metrics.messages_received.inc_by(10);
        metrics.messages_broadcast.inc_by(8);
        metrics.messages_delivered.inc_by(24);
        metrics.connection_closed("slow_consumer");
        metrics.connection_closed("rate_limited");
        metrics.connection_closed("client_closed");
        metrics.upgrade_rejected("connection_limit");
        metrics.upgrade_rejected("draining");
        metrics.messages_dropped("rate_limited", 4);
        metrics.messages_dropped("invalid_json", 5);
        metrics.messages_dropped("too_deep", 6);
        metrics.messages_dropped("slow_consumer", 100);
        metrics.backplane_connection_failures.inc_by(2);
        metrics.backplane_local_only.inc_by(7);
    }

    #[test]
    fn emf_counters_are_deltas_since_the_previous_line() {
        let metrics = Metrics::new();
        let mut emf = Emf::new("ns".into(), "svc".into());
        let at = UNIX_EPOCH + Duration::from_secs(60);
        count_some_of_each(&metrics);
        let first: serde_json::Value = serde_json::from_str(&emf.line(&metrics, at)).unwrap();
        // Twice as much happens before the second line, and some more of one kind.
        count_some_of_each(&metrics);
        count_some_of_each(&metrics);
        metrics.upgrade_rejected("connection_limit");
        let second: serde_json::Value = serde_json::from_str(&emf.line(&metrics, at)).unwrap();
        // Nothing before the third.
        let third: serde_json::Value = serde_json::from_str(&emf.line(&metrics, at)).unwrap();

        let expected = [
            ("ConnectionsOpened", 3),
            ("MessagesReceived", 10),
            ("MessagesBroadcast", 8),
            ("MessagesDelivered", 24),
            ("SlowConsumerEvictions", 1),
            ("RateLimitedCloses", 1),
            ("UpgradesRejectedConnectionLimit", 1),
            ("UpgradesRejectedDraining", 1),
            ("MessagesDroppedRateLimited", 4),
            ("MessagesDroppedInvalidJson", 5),
            ("MessagesDroppedTooDeep", 6),
            ("BackplaneConnectionFailures", 2),
            ("BackplaneLocalOnly", 7),
        ];
        assert_eq!(expected.len(), EMF_COUNTERS.len());
        for (name, once) in expected {
            let extra = u64::from(name == "UpgradesRejectedConnectionLimit");
            assert_eq!(first[name], once, "{name}, first line");
            assert_eq!(second[name], 2 * once + extra, "{name}, second line");
            assert_eq!(third[name], 0, "{name}, third line");
        }
    }

    #[test]
    fn emf_last_line_counts_without_a_connections_sample() {
        let metrics = Metrics::new();
        metrics.connections.set(2);
        let mut emf = Emf::new("ns".into(), "svc".into());
        let at = UNIX_EPOCH;
        emf.line(&metrics, at);
        metrics.upgrade_rejected("draining");
        let last: serde_json::Value = serde_json::from_str(&emf.last_line(&metrics, at)).unwrap();
        assert_eq!(last["UpgradesRejectedDraining"], 1);
        assert_eq!(last["MessagesReceived"], 0);
        assert_eq!(
            last["ActiveConnections"], 2,
            "still there for whoever reads the log"
        );
        let names = metric_names(&last);
        assert!(!names.iter().any(|name| name == "ActiveConnections"));
        assert_eq!(names.len(), EMF_COUNTERS.len());
    }

    #[test]
    fn emf_reading_adds_no_prometheus_series() {
        let metrics = Metrics::new();
        let before = metrics.encode();
        Emf::new("ns".into(), "svc".into()).line(&metrics, UNIX_EPOCH);
        assert_eq!(metrics.encode(), before);
    }
}
