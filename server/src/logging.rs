//! Log output: JSON lines for CloudWatch (`LOG_FORMAT=json`) or readable text, both on standard
//! output, filtered by `LOG_LEVEL`. Connections log one line when they open and one when they
//! close; nothing is logged per message at info level.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global log subscriber. `filter` was validated with the configuration.
pub fn init(format: LogFormat, filter: &str) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new(filter))
        .with_writer(std::io::stdout);
    match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
        LogFormat::Text => builder.init(),
    }
}
