//! Log output: JSON lines for CloudWatch (`LOG_FORMAT=json`) or readable text, both on standard
//! output, filtered by `LOG_LEVEL`. Connections log one line when they open and one when they
//! close; nothing is logged per message at info level.
//!
//! Lines are formatted where they are logged but written by a thread of their own, which writes
//! whatever has queued up in one go: two lines per connection, one `write` each, had cost about 8 %
//! of the handshakes a second when clients reconnect en masse (`make bench`, churn). Nothing is
//! dropped: a full queue makes the logging thread wait, and the returned guard writes what is left
//! when the process ends.

use std::io::{BufWriter, stdout};

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global log subscriber. `filter` was validated with the configuration. Keep the
/// guard until the process ends: dropping it writes out the lines still queued.
#[must_use = "dropping the guard stops the log writer"]
pub fn init(format: LogFormat, filter: &str) -> WorkerGuard {
    // Buffered, so that a batch is one write; the worker flushes after each batch.
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(false)
        .finish(BufWriter::new(stdout()));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new(filter))
        .with_writer(writer);
    match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
        LogFormat::Text => builder.init(),
    }
    guard
}
