//! What one client may send: a rate limit on its messages, frames and bytes, and a nesting limit on
//! the JSON it asks the server to broadcast. These exist so that one hostile or broken client cannot
//! take the service away from the others: a flood of small messages amplifies into every
//! recipient's egress (a 100-byte message to 10,000 clients is 1 MB written), a flood of frames
//! costs parsing however little it carries, and JSON nested thousands of levels deep crashes common
//! recursive client parsers.

use std::time::{Duration, Instant};

/// How long a client may stay over its rate limit before it is closed with 1008.
pub const OVER_LIMIT_GRACE: Duration = Duration::from_secs(5);

/// Deepest JSON nesting (arrays and objects) a broadcast message may have. 128 is serde_json's own
/// recursion limit, which browsers' and most servers' parsers also handle.
pub const MAX_JSON_DEPTH: usize = 128;

/// The rate limits every connection applies to what its client sends, from the configuration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimits {
    /// Messages per second (0: no limit) and the burst above it.
    pub messages_per_second: f32,
    /// Messages that may arrive at once.
    pub message_burst: f32,
    /// Payload bytes per second (0: no limit).
    pub bytes_per_second: f32,
    /// Payload bytes that may arrive at once.
    pub byte_burst: f32,
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
            messages_per_second: messages_per_second as f32,
            message_burst: message_burst as f32,
            bytes_per_second: bytes_per_second as f32,
            byte_burst: bytes_per_second.max(max_message_size) as f32,
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

/// One connection's message and byte buckets, for whole messages (the reader's): a message over
/// either is dropped.
#[derive(Debug)]
pub struct RateLimiter {
    messages: Bucket,
    bytes: Bucket,
    stretch: Stretch,
}

impl RateLimiter {
    /// Full buckets at the connection's opening, so that a client's first burst is as welcome as
    /// any other.
    pub fn new(limits: &RateLimits) -> RateLimiter {
        RateLimiter {
            messages: Bucket::full(limits.message_burst),
            bytes: Bucket::full(limits.byte_burst),
            stretch: Stretch::new(clock_ms()),
        }
    }

    /// Decides about a message of `bytes` payload bytes arriving now.
    pub fn admit(&mut self, limits: &RateLimits, bytes: usize) -> Verdict {
        self.admit_at(limits, clock_ms(), 1, bytes)
    }

    /// Decides about `messages` messages of `bytes` payload bytes in all, arriving together: all
    /// of them are accepted, or none is and nothing is taken from the buckets.
    pub fn admit_all(&mut self, limits: &RateLimits, messages: usize, bytes: usize) -> Verdict {
        self.admit_at(limits, clock_ms(), messages, bytes)
    }

    fn admit_at(
        &mut self,
        limits: &RateLimits,
        now: u32,
        messages: usize,
        bytes: usize,
    ) -> Verdict {
        let elapsed = self.stretch.elapsed(now);
        let messages_on = limits.messages_per_second > 0.0;
        let bytes_on = limits.bytes_per_second > 0.0;
        let messages_recovered = !messages_on
            || self
                .messages
                .refill(elapsed, limits.messages_per_second, limits.message_burst);
        let bytes_recovered = !bytes_on
            || self
                .bytes
                .refill(elapsed, limits.bytes_per_second, limits.byte_burst);
        if messages_recovered && bytes_recovered {
            self.stretch.recovered();
        }
        let (count, size) = (messages as f32, bytes as f32);
        if (messages_on && !self.messages.holds(count)) || (bytes_on && !self.bytes.holds(size)) {
            return self.stretch.over(now);
        }
        if messages_on {
            self.messages.take(count);
        }
        if bytes_on {
            self.bytes.take(size);
        }
        Verdict::Accept
    }
}

/// A token bucket; its rate and burst are kept by its owner, which has them for every bucket
/// alike. f32 tokens: the limiters live in every connection for its whole life.
#[derive(Debug)]
struct Bucket {
    tokens: f32,
}

impl Bucket {
    fn full(burst: f32) -> Bucket {
        Bucket { tokens: burst }
    }

    /// Refills for `elapsed` seconds; returns whether the bucket is at least half full again,
    /// which ends a stretch over the limit.
    fn refill(&mut self, elapsed: f32, rate: f32, burst: f32) -> bool {
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        self.tokens >= burst / 2.0
    }

    fn holds(&self, amount: f32) -> bool {
        self.tokens >= amount
    }

    fn take(&mut self, amount: f32) {
        self.tokens -= amount;
    }

    fn empty(&mut self) {
        self.tokens = 0.0;
    }
}

/// `Stretch::over_since` while the client is not over the limit.
const NOT_OVER: u32 = u32::MAX;

/// A limiter's clock: when its buckets were last refilled, and since when its client has been over
/// the limit. Times are milliseconds of a process-wide clock in a u32, compared with wrapping
/// arithmetic (they wrap after 49 days; only differences of less than that matter). A stretch over
/// the limit ends once the buckets have refilled to half, so that a client that bursts now and
/// then is never closed, and one that keeps pushing is, with no second time to keep.
#[derive(Debug)]
struct Stretch {
    refilled_at: u32,
    over_since: u32,
}

impl Stretch {
    fn new(now: u32) -> Stretch {
        Stretch {
            refilled_at: now,
            over_since: NOT_OVER,
        }
    }

    /// Seconds since the buckets were last refilled, which they are now.
    fn elapsed(&mut self, now: u32) -> f32 {
        let elapsed = now.wrapping_sub(self.refilled_at) as f32 / 1000.0;
        self.refilled_at = now;
        elapsed
    }

    fn recovered(&mut self) {
        self.over_since = NOT_OVER;
    }

    /// Something arrived over the limit `now`: drop it, or close once over for the grace period.
    fn over(&mut self, now: u32) -> Verdict {
        if self.over_since == NOT_OVER {
            self.over_since = now.min(NOT_OVER - 1);
        }
        if now.wrapping_sub(self.over_since) >= OVER_LIMIT_GRACE.as_millis() as u32 {
            Verdict::Close
        } else {
            Verdict::Drop
        }
    }
}

/// Milliseconds since the process first asked, in a u32 that wraps after 49 days (see
/// [`Stretch`]).
fn clock_ms() -> u32 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u32
}

/// A client's frames over the message rate for [`OVER_LIMIT_GRACE`]: it is closed with 1008.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverRateLimit;

/// Every frame a client sends, data, continuation or control, held to the message rate.
///
/// The connection's reader limits whole messages, so a client that sends a message's first
/// fragment and then empty continuation frames forever would never be seen: nothing completes, so
/// nothing counts, and the size limit is never reached. Counted here, every frame takes a token of
/// `MAX_MESSAGES_PER_SECOND`; a client over that for [`OVER_LIMIT_GRACE`] is [`OverRateLimit`].
/// Nothing is dropped here: whole messages are dropped by the reader's own limiter.
///
/// It is in every connection for the connection's whole life, so it is kept to 20 bytes.
#[derive(Debug)]
pub struct FrameRate {
    frames: Bucket,
    stretch: Stretch,
    rate: f32,
    burst: f32,
}

impl FrameRate {
    /// A full bucket at `limits`' message rate (no limit if that is 0).
    pub fn new(limits: &RateLimits) -> FrameRate {
        FrameRate {
            frames: Bucket::full(limits.message_burst),
            stretch: Stretch::new(clock_ms()),
            rate: limits.messages_per_second,
            burst: limits.message_burst,
        }
    }

    /// Counts a frame arriving now; an error once frames have been over the rate for
    /// [`OVER_LIMIT_GRACE`].
    pub fn admit(&mut self) -> Result<(), OverRateLimit> {
        if self.rate == 0.0 {
            return Ok(());
        }
        self.admit_at(1, clock_ms())
    }

    /// Takes a token for each of `frames` arriving at `now`.
    fn admit_at(&mut self, frames: u32, now: u32) -> Result<(), OverRateLimit> {
        let elapsed = self.stretch.elapsed(now);
        if self.frames.refill(elapsed, self.rate, self.burst) {
            self.stretch.recovered();
        }
        let frames = frames as f32;
        if self.frames.holds(frames) {
            self.frames.take(frames);
            return Ok(());
        }
        // Over: the frames were read all the same, so no debt is carried; the stretch is.
        self.frames.empty();
        match self.stretch.over(now) {
            Verdict::Close => Err(OverRateLimit),
            Verdict::Accept | Verdict::Drop => Ok(()),
        }
    }
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

    #[test]
    fn the_frame_rate_is_small() {
        // It is in every connection for the connection's whole life.
        assert_eq!(std::mem::size_of::<FrameRate>(), 20);
    }

    #[test]
    fn frames_over_the_rate_for_the_grace_period_are_an_error_and_bursts_are_not() {
        let grace = OVER_LIMIT_GRACE.as_millis() as u32;
        let mut rate = FrameRate::new(&DEFAULTS);
        let start = rate.stretch.refilled_at;
        // 1,000 frames a second: over from the 223rd millisecond on.
        let mut failed_at = None;
        for ms in 0..grace + 1_000 {
            if rate.admit_at(1, start + ms).is_err() {
                failed_at = Some(ms);
                break;
            }
        }
        let failed_at = failed_at.expect("closed");
        assert!(
            (grace + 200..grace + 250).contains(&failed_at),
            "{failed_at}"
        );
        // Bursts of 250 every 3 s: over for a moment each time, never for 5 s.
        let mut rate = FrameRate::new(&DEFAULTS);
        for burst in 0..20 {
            assert!(rate.admit_at(250, start + burst * 3_000).is_ok());
        }
    }

    #[test]
    fn a_burst_passes_then_the_rate_applies() {
        let mut limiter = RateLimiter::new(&DEFAULTS);
        for _ in 0..200 {
            assert_eq!(limiter.admit_at(&DEFAULTS, 0, 1, 10), Verdict::Accept);
        }
        assert_eq!(limiter.admit_at(&DEFAULTS, 0, 1, 10), Verdict::Drop);
        // 100 messages a second: one token every 10 ms.
        assert_eq!(limiter.admit_at(&DEFAULTS, 10, 1, 10), Verdict::Accept);
        assert_eq!(limiter.admit_at(&DEFAULTS, 10, 1, 10), Verdict::Drop);
    }

    #[test]
    fn bytes_are_limited_too() {
        let mut limiter = RateLimiter::new(&DEFAULTS);
        assert_eq!(
            limiter.admit_at(&DEFAULTS, 0, 1, 1_000_000),
            Verdict::Accept
        );
        assert_eq!(limiter.admit_at(&DEFAULTS, 0, 1, 100_000), Verdict::Drop);
        assert_eq!(
            limiter.admit_at(&DEFAULTS, 100, 1, 100_000),
            Verdict::Accept
        );
    }

    #[test]
    fn staying_over_the_limit_for_the_grace_period_closes() {
        let mut limiter = RateLimiter::new(&DEFAULTS);
        let mut verdicts = Vec::new();
        // 1,000 messages a second for 6 s.
        for tick in 0..6_000 {
            verdicts.push((tick, limiter.admit_at(&DEFAULTS, tick, 1, 10)));
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
                let verdict = limiter.admit_at(&DEFAULTS, second * 3_000, 1, 10);
                assert_ne!(verdict, Verdict::Close);
            }
        }
    }

    #[test]
    fn zero_turns_a_limit_off() {
        let off = RateLimits::new(0, 1, 0, 65_536);
        let mut limiter = RateLimiter::new(&off);
        for _ in 0..100_000 {
            assert_eq!(limiter.admit_at(&off, 0, 1, 65_536), Verdict::Accept);
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
