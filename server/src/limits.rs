//! What one client may send: a rate limit on its messages and bytes, and a nesting limit on the JSON
//! it asks the server to broadcast. These exist so that one hostile or broken client cannot take the
//! service away from the others: a flood of small messages amplifies into every recipient's egress
//! (a 100-byte message to 10,000 clients is 1 MB written), and JSON nested thousands of levels deep
//! crashes common recursive client parsers.

use std::time::Duration;

/// How long a client may stay over its rate limit before it is closed with 1008.
pub const OVER_LIMIT_GRACE: Duration = Duration::from_secs(5);

/// A quiet spell this long ends a stretch over the limit: a client that bursts now and then is
/// never closed, one that keeps pushing is.
const OVER_LIMIT_GAP: Duration = Duration::from_secs(1);

/// Deepest JSON nesting (arrays and objects) a broadcast message may have. 128 is serde_json's own
/// recursion limit, which browsers' and most servers' parsers also handle.
pub const MAX_JSON_DEPTH: usize = 128;

/// The rate limits every connection applies to what its client sends, from the configuration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimits {
    /// Messages per second (0: no limit) and the burst above it.
    pub messages_per_second: f64,
    /// Messages that may arrive at once.
    pub message_burst: f64,
    /// Payload bytes per second (0: no limit).
    pub bytes_per_second: f64,
    /// Payload bytes that may arrive at once.
    pub byte_burst: f64,
}

impl RateLimits {
    /// Limits as configured; the byte burst is one second's worth, but never less than one message
    /// of the largest size allowed, which must always be able to pass.
    pub fn new(
        messages_per_second: u32,
        message_burst: u32,
        bytes_per_second: u64,
        max_message_size: u64,
    ) -> RateLimits {
        RateLimits {
            messages_per_second: f64::from(messages_per_second),
            message_burst: f64::from(message_burst),
            bytes_per_second: bytes_per_second as f64,
            byte_burst: bytes_per_second.max(max_message_size) as f64,
        }
    }
}

/// What to do with a client's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within the limits: handle it.
    Accept,
    /// Over the limit: drop it, keep the connection.
    Drop,
    /// Over the limit for [`OVER_LIMIT_GRACE`]: drop it and close with 1008.
    Close,
}

/// One connection's token buckets.
///
/// It lives in every connection's task for the connection's whole life, so it is kept small: f32
/// tokens, and times as milliseconds since the connection opened in a u32, compared with wrapping
/// arithmetic (they wrap after 49 days, and only differences of less than that matter).
#[derive(Debug)]
pub struct RateLimiter {
    message_tokens: f32,
    byte_tokens: f32,
    refilled_at: u32,
    /// When the current stretch over the limit began, if the client is over it.
    over_since: Option<u32>,
    last_dropped: u32,
}

impl RateLimiter {
    /// Full buckets at the connection's opening, so that a client's first burst is as welcome as
    /// any other.
    pub fn new(limits: &RateLimits) -> RateLimiter {
        RateLimiter {
            message_tokens: limits.message_burst as f32,
            byte_tokens: limits.byte_burst as f32,
            refilled_at: 0,
            over_since: None,
            last_dropped: 0,
        }
    }

    /// Decides about a message of `bytes` payload bytes arriving `now` after the connection opened.
    pub fn admit(&mut self, limits: &RateLimits, now: Duration, bytes: usize) -> Verdict {
        // Truncated on purpose: see the type's documentation.
        let now = now.as_millis() as u32;
        let elapsed = f64::from(now.wrapping_sub(self.refilled_at)) / 1000.0;
        self.refilled_at = now;
        self.message_tokens = (f64::from(self.message_tokens)
            + elapsed * limits.messages_per_second)
            .min(limits.message_burst) as f32;
        self.byte_tokens = (f64::from(self.byte_tokens) + elapsed * limits.bytes_per_second)
            .min(limits.byte_burst) as f32;

        let bytes = bytes as f32;
        let messages_ok = limits.messages_per_second == 0.0 || self.message_tokens >= 1.0;
        let bytes_ok = limits.bytes_per_second == 0.0 || self.byte_tokens >= bytes;
        if messages_ok && bytes_ok {
            if limits.messages_per_second > 0.0 {
                self.message_tokens -= 1.0;
            }
            if limits.bytes_per_second > 0.0 {
                self.byte_tokens -= bytes;
            }
            return Verdict::Accept;
        }
        let gap = millis(OVER_LIMIT_GAP);
        let over_since = match self.over_since {
            Some(since) if now.wrapping_sub(self.last_dropped) < gap => since,
            _ => now,
        };
        self.over_since = Some(over_since);
        self.last_dropped = now;
        if now.wrapping_sub(over_since) >= millis(OVER_LIMIT_GRACE) {
            Verdict::Close
        } else {
            Verdict::Drop
        }
    }
}

fn millis(duration: Duration) -> u32 {
    duration.as_millis() as u32
}

/// Whether `json` (already known to be valid JSON) nests arrays and objects deeper than `limit`.
/// One pass over the bytes, skipping strings, with no allocation: the parser that validated the
/// message keeps no tree, so nothing else knows its depth.
pub fn json_deeper_than(json: &str, limit: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &byte in json.as_bytes() {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULTS: RateLimits = RateLimits {
        messages_per_second: 100.0,
        message_burst: 200.0,
        bytes_per_second: 1_048_576.0,
        byte_burst: 1_048_576.0,
    };

    fn ms(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    #[test]
    fn a_burst_passes_then_the_rate_applies() {
        let mut limiter = RateLimiter::new(&DEFAULTS);
        for _ in 0..200 {
            assert_eq!(limiter.admit(&DEFAULTS, ms(0), 10), Verdict::Accept);
        }
        assert_eq!(limiter.admit(&DEFAULTS, ms(0), 10), Verdict::Drop);
        // 100 messages a second: one token every 10 ms.
        assert_eq!(limiter.admit(&DEFAULTS, ms(10), 10), Verdict::Accept);
        assert_eq!(limiter.admit(&DEFAULTS, ms(10), 10), Verdict::Drop);
    }

    #[test]
    fn bytes_are_limited_too() {
        let mut limiter = RateLimiter::new(&DEFAULTS);
        assert_eq!(limiter.admit(&DEFAULTS, ms(0), 1_000_000), Verdict::Accept);
        assert_eq!(limiter.admit(&DEFAULTS, ms(0), 100_000), Verdict::Drop);
        assert_eq!(limiter.admit(&DEFAULTS, ms(100), 100_000), Verdict::Accept);
    }

    #[test]
    fn staying_over_the_limit_for_the_grace_period_closes() {
        let mut limiter = RateLimiter::new(&DEFAULTS);
        let mut verdicts = Vec::new();
        // 1,000 messages a second for 6 s.
        for tick in 0..6_000 {
            verdicts.push((tick, limiter.admit(&DEFAULTS, ms(tick), 10)));
        }
        let first_drop = verdicts
            .iter()
            .find(|(_, v)| *v == Verdict::Drop)
            .unwrap()
            .0;
        let first_close = verdicts
            .iter()
            .find(|(_, v)| *v == Verdict::Close)
            .unwrap()
            .0;
        // At the first drop 5 s after the first one (a token may let one through at that moment).
        assert!((5_000..=5_010).contains(&(first_close - first_drop)));
    }

    #[test]
    fn bursts_with_quiet_spells_never_close() {
        let mut limiter = RateLimiter::new(&DEFAULTS);
        for second in 0..20 {
            for _ in 0..250 {
                let verdict = limiter.admit(&DEFAULTS, Duration::from_secs(second * 3), 10);
                assert_ne!(verdict, Verdict::Close);
            }
        }
    }

    #[test]
    fn zero_turns_a_limit_off() {
        let off = RateLimits::new(0, 1, 0, 65_536);
        let mut limiter = RateLimiter::new(&off);
        for _ in 0..100_000 {
            assert_eq!(limiter.admit(&off, ms(0), 65_536), Verdict::Accept);
        }
    }

    #[test]
    fn depth_counts_brackets_outside_strings() {
        assert!(!json_deeper_than("[[1]]", 2));
        assert!(json_deeper_than("[[[1]]]", 2));
        assert!(!json_deeper_than(r#"{"a":"[[[[\"[[["}"#, 1));
        assert!(!json_deeper_than(r#"["\\", {"b": []}]"#, 3));
        assert!(json_deeper_than(r#"["\\", {"b": [[]]}]"#, 3));
        let deep = format!("{}{}", "[".repeat(129), "]".repeat(129));
        assert!(json_deeper_than(&deep, MAX_JSON_DEPTH));
        let ok = format!("{}{}", "[".repeat(128), "]".repeat(128));
        assert!(!json_deeper_than(&ok, MAX_JSON_DEPTH));
    }
}
