//! What every scenario reports: latency percentiles, the server's CPU time and memory read from
//! /proc (given its pids), and the load generator's own CPU time, which says whether the figure was
//! limited by the server or by the load generator sharing its cores.

use std::fs;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    /// Percentiles of a histogram of microseconds.
    pub fn from_micros(histogram: &Histogram<u64>) -> Latency {
        let ms = |micros: u64| micros as f64 / 1000.0;
        Latency {
            p50_ms: ms(histogram.value_at_quantile(0.50)),
            p90_ms: ms(histogram.value_at_quantile(0.90)),
            p99_ms: ms(histogram.value_at_quantile(0.99)),
            max_ms: ms(histogram.max()),
        }
    }
}

impl std::fmt::Display for Latency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            self.p50_ms, self.p90_ms, self.p99_ms, self.max_ms
        )
    }
}

/// A latency histogram in microseconds, 1 µs to 10 minutes at three significant digits.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

/// CPU time and resident memory of a set of processes (the server's; two with a backplane).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    /// User plus system CPU seconds since each process started.
    pub cpu_seconds: f64,
    /// Resident set size, bytes.
    pub rss_bytes: u64,
}

/// `/proc/<pid>/stat` counts CPU time in clock ticks of `USER_HZ`, which Linux fixes at 100 for
/// user space on every architecture it runs on.
const USER_HZ: f64 = 100.0;

impl Usage {
    /// Reads the usage of `pids` now; `None` for no pids. An unreadable pid is an error naming it.
    pub fn of(pids: &[u32]) -> Result<Option<Usage>, String> {
        if pids.is_empty() {
            return Ok(None);
        }
        let mut total = Usage::default();
        for &pid in pids {
            let usage = Usage::read(&pid.to_string()).ok_or_else(|| {
                format!("cannot read /proc/{pid} (is --server-pid {pid} running?)")
            })?;
            total.cpu_seconds += usage.cpu_seconds;
            total.rss_bytes += usage.rss_bytes;
        }
        Ok(Some(total))
    }

    /// This process's own usage.
    pub fn own() -> Usage {
        Usage::read("self").unwrap_or_default()
    }

    fn read(pid: &str) -> Option<Usage> {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name may hold spaces and parentheses; the fields after its last ')' do not.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of the whole line, so 12 and 13 after the name.
        let ticks: u64 =
            fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let rss_kib: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(Usage {
            cpu_seconds: ticks as f64 / USER_HZ,
            rss_bytes: rss_kib * 1024,
        })
    }
}

/// CPU seconds and memory growth of the server and the load generator over one measured phase.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct PhaseUsage {
    /// The server's CPU seconds in the phase (absent without `--server-pid`).
    pub server_cpu_s: Option<f64>,
    /// The server's resident memory at the end of the phase, bytes.
    pub server_rss_bytes: Option<u64>,
    /// The load generator's own CPU seconds in the phase.
    pub loadgen_cpu_s: f64,
}

/// The usage at the start of a phase, to subtract at its end.
#[derive(Debug, Clone, Copy)]
pub struct PhaseStart {
    server: Option<Usage>,
    own: Usage,
}

impl PhaseStart {
    /// Reads the server's and our own usage now.
    pub fn now(server_pids: &[u32]) -> Result<PhaseStart, String> {
        Ok(PhaseStart {
            server: Usage::of(server_pids)?,
            own: Usage::own(),
        })
    }

    /// The usage since [`PhaseStart::now`].
    pub fn end(&self, server_pids: &[u32]) -> Result<PhaseUsage, String> {
        let server = Usage::of(server_pids)?;
        let own = Usage::own();
        Ok(PhaseUsage {
            server_cpu_s: server
                .zip(self.server)
                .map(|(end, start)| end.cpu_seconds - start.cpu_seconds),
            server_rss_bytes: server.map(|usage| usage.rss_bytes),
            loadgen_cpu_s: own.cpu_seconds - self.own.cpu_seconds,
        })
    }

    /// The server's usage at the start, if known.
    pub fn server(&self) -> Option<Usage> {
        self.server
    }
}

impl std::fmt::Display for PhaseUsage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(cpu) = self.server_cpu_s {
            write!(f, "server CPU {cpu:.2} s, ")?;
        }
        if let Some(rss) = self.server_rss_bytes {
            write!(f, "server RSS {:.1} MiB, ", rss as f64 / 1048576.0)?;
        }
        write!(f, "load generator CPU {:.2} s", self.loadgen_cpu_s)
    }
}

/// A run's failures: how many, and the first, which usually says what to look at. Serialized as
/// the result's `errors` and `first_error` fields.
#[derive(Debug, Default, Serialize)]
pub struct Errors {
    #[serde(rename = "errors")]
    pub count: u64,
    #[serde(rename = "first_error")]
    pub first: Option<String>,
}

impl Errors {
    /// Counts one failure, described by `what` if it is the first.
    pub fn add(&mut self, what: impl FnOnce() -> String) {
        self.count += 1;
        if self.first.is_none() {
            self.first = Some(what());
        }
    }

    /// Adds another task's failures; the first of them stays first only if there was none yet.
    pub fn merge(&mut self, other: Errors) {
        self.count += other.count;
        if self.first.is_none() {
            self.first = other.first;
        }
    }

    /// Whether nothing failed.
    pub fn none(&self) -> bool {
        self.count == 0
    }
}

impl std::fmt::Display for Errors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "errors {}", self.count)?;
        match &self.first {
            Some(first) => write!(f, " (first: {first})"),
            None => Ok(()),
        }
    }
}

/// Prints a scenario's result: the human summary, or with `json` one JSON line.
pub fn print<T: Serialize + std::fmt::Display>(result: &T, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string(result).expect("results serialize")
        );
    } else {
        print!("{result}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_usage() {
        let usage = Usage::of(&[std::process::id()]).unwrap().unwrap();
        assert!(usage.rss_bytes > 1024 * 1024, "{usage:?}");
        assert!(usage.cpu_seconds >= 0.0);
    }

    #[test]
    fn a_missing_pid_is_an_error_naming_it() {
        let err = Usage::of(&[u32::MAX]).unwrap_err();
        assert!(err.contains(&u32::MAX.to_string()), "{err}");
    }

    #[test]
    fn percentiles_are_in_milliseconds() {
        let mut histogram = latency_histogram();
        for micros in 1..=1000 {
            histogram.record(micros).unwrap();
        }
        let latency = Latency::from_micros(&histogram);
        assert!((latency.p50_ms - 0.5).abs() < 0.01, "{latency:?}");
        assert!((latency.max_ms - 1.0).abs() < 0.01, "{latency:?}");
    }
}
