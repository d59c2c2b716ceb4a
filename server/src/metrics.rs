//! What the server counts, and the two ways it reports it: Prometheus text on the admin port, and
//! a CloudWatch Embedded Metric Format log line with the connection count, which auto scaling
//! tracks per task without any agent.
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
    http_connections_closed: Family<ReasonLabel, Counter>,
    /// Data frames received from clients, valid or not.
    pub messages_received: Counter,
    messages_dropped: Family<ReasonLabel, Counter>,
    /// Valid messages broadcast (each counted once, however many recipients).
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
            "Valid messages broadcast",
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

    /// One CloudWatch Embedded Metric Format document (a single line) with the current connection
    /// count, `ActiveConnections`, under the dimension `ServiceName`.
    pub fn emf_line(&self, namespace: &str, service_name: &str, at: SystemTime) -> String {
        let timestamp = at
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64;
        serde_json::json!({
            "_aws": {
                "Timestamp": timestamp,
                "CloudWatchMetrics": [{
                    "Namespace": namespace,
                    "Dimensions": [["ServiceName"]],
                    "Metrics": [{ "Name": "ActiveConnections", "Unit": "Count" }],
                }],
            },
            "ServiceName": service_name,
            "ActiveConnections": self.connections.get(),
        })
        .to_string()
    }
}

/// Prints an EMF line to standard output every `interval` until the drain starts. Standard output
/// is what the ECS awslogs driver ships to CloudWatch Logs, which extracts the metric.
pub async fn emf_loop(
    metrics: std::sync::Arc<Metrics>,
    interval: Duration,
    namespace: String,
    service_name: String,
    mut shutdown: Shutdown,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.draining() => return,
            _ = ticks.tick() => {
                println!("{}", metrics.emf_line(&namespace, &service_name, SystemTime::now()));
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
        let line = metrics.emf_line(
            "WebSocketService",
            "svc",
            UNIX_EPOCH + Duration::from_secs(2),
        );
        assert!(!line.contains('\n'));
        let doc: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(doc["ActiveConnections"], 7);
        assert_eq!(doc["ServiceName"], "svc");
        assert_eq!(doc["_aws"]["Timestamp"], 2000);
        let directive = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "WebSocketService");
        assert_eq!(directive["Metrics"][0]["Name"], "ActiveConnections");
    }
}
