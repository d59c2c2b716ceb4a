//! Log output: JSON lines for CloudWatch (`LOG_FORMAT=json`) or readable text, both on standard
//! output, filtered by `LOG_LEVEL`. Connections log one line when they open and one when they
//! close; nothing is logged per message at info level.
//!
//! Lines are formatted where they are logged but written by a thread of their own, which writes
//! whatever has queued up in one go and then lets the next lines gather for a millisecond
//! ([`Batches`]): two lines per connection, one `write` each, had cost about 8 % of the handshakes
//! a second when clients reconnect en masse (`make bench`, churn), and waking the thread for every
//! line or two another 9 %. Nothing is dropped: a full queue makes the logging thread wait, and
//! the returned guard writes what is left when the process ends.

use std::io::{self, BufWriter, Stdout, Write, stdout};
use std::time::Duration;

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global log subscriber. `filter` was validated with the configuration. Keep the
/// guard until the process ends: dropping it writes out the lines still queued.
#[must_use = "dropping the guard stops the log writer"]
pub fn init(format: LogFormat, filter: &str) -> WorkerGuard {
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(false)
        .finish(Batches::new());
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

/// How long the logging thread lets lines gather after it wrote a batch.
const LINGER: Duration = Duration::from_millis(1);

/// Standard output as the logging thread writes it: buffered, so that a batch is one `write` (the
/// thread flushes after each batch), and after a batch it waits [`LINGER`] before it takes the
/// next. Without the wait, lines logged faster than a `write` but slower than the thread wakes
/// went out one or two at a time, and each woke the thread again: with clients reconnecting en
/// masse (`make bench`, churn: two lines per connection, 54,000 a second) that was 121,000
/// `write`s, 34,000 `futex` calls and 5 % of the server's CPU in 5 s. A quiet server's thread
/// sleeps until a line comes, and a line waits at most about a millisecond.
struct Batches {
    out: BufWriter<Stdout>,
}

impl Batches {
    fn new() -> Batches {
        Batches {
            // A millisecond's lines at that rate, about 13 KiB, in one write.
            out: BufWriter::with_capacity(64 << 10, stdout()),
        }
    }
}

impl Write for Batches {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        self.out.write(line)
    }

    fn flush(&mut self) -> io::Result<()> {
        let wrote = !self.out.buffer().is_empty();
        self.out.flush()?;
        if wrote {
            std::thread::sleep(LINGER);
        }
        Ok(())
    }
}
