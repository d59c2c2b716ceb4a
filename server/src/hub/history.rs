//! Each channel's recent messages, so that a client that lost its connection can subscribe again
//! from the last offset it saw and get exactly what it missed.
//!
//! Every message kept gets an [`Offset`]: the channel's epoch and its position in the channel.
//! Positions count up from 1 within an epoch. A channel's epoch is drawn at random when its
//! history begins; its messages go when trimmed, expired or pushed out by the byte cap, and its
//! epoch and last position a day after its last message went (or sooner, under the byte cap):
//! an offset from an epoch that is gone cannot be resumed, and the client is told so instead of
//! being handed a gap.
//!
//! Memory is bounded three ways: `HISTORY_SIZE` messages per channel, `HISTORY_TTL` per message,
//! and [`MAX_BYTES`] over the whole process, past which the oldest messages of any channel go
//! first. Expiry is lazy (checked whenever history is written or read), so an idle process holds
//! at most what the last publishes left, within those bounds.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

use super::ChannelName;

/// History's share of the process's memory, messages and bookkeeping together. 64 MiB is an
/// eighth of the smallest Fargate task that runs the server (0.25 vCPU, 512 MiB).
pub const MAX_BYTES: usize = 64 << 20;

/// What one kept message costs besides its data: its entry, its place in the order of all kept
/// messages, and a share of its channel's bookkeeping (about 60 bytes measured on x86_64, rounded
/// up).
const ENTRY_OVERHEAD: usize = 96;

/// What a channel's history costs besides its messages: its log, its name, its map slot.
const LOG_OVERHEAD: usize = 256;

/// Where a message sits in its channel: the channel's epoch and the message's position in it.
/// On the wire an opaque string: 16 hex digits of epoch, `-`, the position in decimal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offset {
    epoch: u64,
    position: u64,
}

/// Why a string is not an offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidOffset;

impl Offset {
    /// Reads an offset the server handed out.
    pub fn parse(text: &str) -> Result<Offset, InvalidOffset> {
        let (epoch, position) = text.split_once('-').ok_or(InvalidOffset)?;
        let hex = |text: &str| text.len() == 16 && text.bytes().all(|b| b.is_ascii_hexdigit());
        let decimal = |text: &str| {
            !text.is_empty() && text.len() <= 20 && text.bytes().all(|b| b.is_ascii_digit())
        };
        if !hex(epoch) || !decimal(position) {
            return Err(InvalidOffset);
        }
        Ok(Offset {
            epoch: u64::from_str_radix(epoch, 16).map_err(|_| InvalidOffset)?,
            position: position.parse().map_err(|_| InvalidOffset)?,
        })
    }
}

impl Offset {
    /// An offset a relay's history gave out.
    pub fn new(epoch: u64, position: u64) -> Offset {
        Offset { epoch, position }
    }

    /// Whether this offset is `other` or comes before it in the same epoch.
    pub fn not_after(self, other: Offset) -> bool {
        self.epoch == other.epoch && self.position <= other.position
    }

    /// The channel's epoch.
    pub fn epoch(self) -> u64 {
        self.epoch
    }

    /// The position in the channel.
    pub fn position(self) -> u64 {
        self.position
    }
}

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}-{}", self.epoch, self.position)
    }
}

/// How much history to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryLimits {
    /// Messages kept per channel; 0 keeps none, and messages carry no offset.
    pub size: usize,
    /// How long a message is kept.
    pub ttl: Duration,
}

impl HistoryLimits {
    /// No history: messages carry no offset, and nothing can be resumed.
    pub const OFF: HistoryLimits = HistoryLimits {
        size: 0,
        ttl: Duration::ZERO,
    };
}

/// What a resume gets.
#[derive(Debug, PartialEq, Eq)]
pub enum Replay<'a> {
    /// Everything after the offset, in order (possibly nothing): the client misses nothing.
    Recovered(Vec<(Offset, &'a str)>),
    /// Some of what followed the offset is gone, or the offset's epoch is: the client must reload.
    Lost,
}

/// Every channel's kept messages. Lives under the hub's lock, so that a message is kept and
/// delivered in one step, and a resume reads history and goes live in one step: nothing falls
/// between the replay and the live messages, and nothing is in both.
#[derive(Debug)]
pub(super) struct History {
    limits: HistoryLimits,
    logs: HashMap<ChannelName, Log>,
    /// Each channel with messages, by the stamp of its oldest one: the oldest message of all is
    /// the first one's, which is what expiry and the byte cap drop first.
    oldest: BTreeSet<(u64, ChannelName)>,
    /// Each channel whose messages are all gone, by when its last went: its epoch and position
    /// are kept for [`POSITION_TTL`], so that a client that saw its last message resumes with
    /// nothing missed instead of being told it lost some.
    emptied: BTreeSet<(Instant, ChannelName)>,
    /// Stamps order messages across channels.
    next_stamp: u64,
    bytes: usize,
}

/// How long a channel's epoch and last position outlive its messages. A quiet channel (one
/// message an hour, say) would otherwise start a new epoch at every message, and every client
/// resuming on it would be told to reload although it missed nothing.
pub const POSITION_TTL: Duration = Duration::from_secs(24 * 60 * 60);

#[derive(Debug)]
struct Log {
    epoch: u64,
    last_position: u64,
    entries: VecDeque<Entry>,
    /// When its last message went, while it has none.
    emptied_at: Option<Instant>,
}

#[derive(Debug)]
struct Entry {
    position: u64,
    stamp: u64,
    at: Instant,
    data: Box<str>,
}

impl Log {
    fn oldest_stamp(&self) -> u64 {
        self.entries.front().map_or(0, |entry| entry.stamp)
    }
}

impl History {
    pub(super) fn new(limits: HistoryLimits) -> History {
        History {
            limits,
            logs: HashMap::new(),
            oldest: BTreeSet::new(),
            emptied: BTreeSet::new(),
            next_stamp: 0,
            bytes: 0,
        }
    }

    /// Whether messages are kept (and carry offsets).
    pub(super) fn enabled(&self) -> bool {
        self.limits.size > 0
    }

    /// Keeps `data` as the next message of `channel`, and returns its offset (none when history
    /// is off).
    pub(super) fn record(
        &mut self,
        channel: &ChannelName,
        data: &str,
        now: Instant,
    ) -> Option<Offset> {
        if !self.enabled() {
            return None;
        }
        self.expire(now);
        let stamp = self.next_stamp;
        self.next_stamp += 1;
        match self.logs.get_mut(channel) {
            Some(log) => match log.emptied_at.take() {
                Some(at) => {
                    self.emptied.remove(&(at, channel.clone()));
                }
                None => {
                    self.oldest.remove(&(log.oldest_stamp(), channel.clone()));
                }
            },
            None => {
                self.bytes += LOG_OVERHEAD + channel.as_str().len();
                let log = Log {
                    epoch: rand::random(),
                    last_position: 0,
                    entries: VecDeque::new(),
                    emptied_at: None,
                };
                self.logs.insert(channel.clone(), log);
            }
        }
        let log = self.logs.get_mut(channel).expect("inserted above");
        log.last_position += 1;
        let offset = Offset {
            epoch: log.epoch,
            position: log.last_position,
        };
        log.entries.push_back(Entry {
            position: offset.position,
            stamp,
            at: now,
            data: data.into(),
        });
        self.bytes += ENTRY_OVERHEAD + data.len();
        if log.entries.len() > self.limits.size
            && let Some(trimmed) = log.entries.pop_front()
        {
            self.bytes -= ENTRY_OVERHEAD + trimmed.data.len();
        }
        self.oldest.insert((log.oldest_stamp(), channel.clone()));
        while self.bytes > MAX_BYTES && self.shed(now) {}
        Some(offset)
    }

    /// What a client that last saw `since` on `channel` missed, if history still holds all of it.
    pub(super) fn replay(&mut self, channel: &str, since: Offset, now: Instant) -> Replay<'_> {
        self.expire(now);
        let Some(log) = self.logs.get(channel) else {
            return Replay::Lost;
        };
        if log.epoch != since.epoch || since.position > log.last_position {
            return Replay::Lost;
        }
        if since.position == log.last_position {
            return Replay::Recovered(Vec::new());
        }
        let whole = log
            .entries
            .front()
            .is_some_and(|first| since.position + 1 >= first.position);
        if !whole {
            return Replay::Lost;
        }
        Replay::Recovered(
            log.entries
                .iter()
                .filter(|entry| entry.position > since.position)
                .map(|entry| {
                    let offset = Offset {
                        epoch: log.epoch,
                        position: entry.position,
                    };
                    (offset, &*entry.data)
                })
                .collect(),
        )
    }

    /// Drops every message older than the time to live, and every channel position older than
    /// [`POSITION_TTL`].
    fn expire(&mut self, now: Instant) {
        while let Some((_, channel)) = self.oldest.first()
            && let Some(log) = self.logs.get(channel)
            && log
                .entries
                .front()
                .is_some_and(|entry| now.duration_since(entry.at) >= self.limits.ttl)
        {
            self.drop_oldest(now);
        }
        while let Some((at, _)) = self.emptied.first()
            && now.duration_since(*at) >= POSITION_TTL
        {
            self.forget_oldest_position();
        }
    }

    /// Frees memory for the byte cap: a position nobody has messages for first, then the oldest
    /// message of all. Returns whether there was anything to free.
    fn shed(&mut self, now: Instant) -> bool {
        if !self.emptied.is_empty() {
            self.forget_oldest_position();
            return true;
        }
        self.drop_oldest(now)
    }

    /// Drops the oldest message of all; a channel left without messages keeps its position.
    /// Returns whether there was one.
    fn drop_oldest(&mut self, now: Instant) -> bool {
        let Some((_, channel)) = self.oldest.pop_first() else {
            return false;
        };
        let log = self
            .logs
            .get_mut(&channel)
            .expect("every indexed channel has a log");
        let dropped = log.entries.pop_front().expect("indexed logs have messages");
        self.bytes -= ENTRY_OVERHEAD + dropped.data.len();
        if log.entries.is_empty() {
            log.emptied_at = Some(now);
            self.emptied.insert((now, channel));
        } else {
            self.oldest.insert((log.oldest_stamp(), channel));
        }
        true
    }

    /// Forgets the channel whose messages went longest ago: its history ends, with its epoch.
    fn forget_oldest_position(&mut self) {
        if let Some((_, channel)) = self.emptied.pop_first() {
            self.logs.remove(&channel);
            self.bytes -= LOG_OVERHEAD + channel.as_str().len();
        }
    }

    /// Bytes accounted to history, for the tests of the cap.
    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(name: &str) -> ChannelName {
        ChannelName::parse(name).unwrap()
    }

    fn history(size: usize, ttl_seconds: u64) -> History {
        History::new(HistoryLimits {
            size,
            ttl: Duration::from_secs(ttl_seconds),
        })
    }

    fn recovered(replay: Replay<'_>) -> Vec<String> {
        match replay {
            Replay::Recovered(messages) => messages.iter().map(|(_, d)| d.to_string()).collect(),
            Replay::Lost => panic!("lost"),
        }
    }

    #[test]
    fn offsets_read_back_and_nothing_else_reads() {
        let offset = Offset {
            epoch: 0xabc,
            position: 42,
        };
        assert_eq!(offset.to_string(), "0000000000000abc-42");
        assert_eq!(Offset::parse(&offset.to_string()), Ok(offset));
        for bad in [
            "",
            "42",
            "abc-42",
            "0000000000000abc-",
            "0000000000000abc-4x",
            "0000000000000abg-42",
            "0000000000000abc-99999999999999999999",
            "0000000000000abc--1",
        ] {
            assert_eq!(Offset::parse(bad), Err(InvalidOffset), "{bad}");
        }
    }

    #[test]
    fn a_resume_gets_what_followed_its_offset_while_the_channel_keeps_it() {
        let mut history = history(3, 300);
        let now = Instant::now();
        let a = name("a");
        let offsets: Vec<Offset> = (1..=5)
            .map(|n| history.record(&a, &n.to_string(), now).unwrap())
            .collect();
        // Kept: 3, 4, 5. From 2 on nothing is missing; from 1, message 2 is gone.
        assert_eq!(
            recovered(history.replay("a", offsets[1], now)),
            ["3", "4", "5"]
        );
        assert_eq!(recovered(history.replay("a", offsets[3], now)), ["5"]);
        assert!(recovered(history.replay("a", offsets[4], now)).is_empty());
        assert_eq!(history.replay("a", offsets[0], now), Replay::Lost);
        let other_epoch = Offset {
            epoch: offsets[4].epoch ^ 1,
            ..offsets[4]
        };
        assert_eq!(history.replay("a", other_epoch, now), Replay::Lost);
        let ahead = Offset {
            position: 6,
            ..offsets[4]
        };
        assert_eq!(history.replay("a", ahead, now), Replay::Lost);
        assert_eq!(history.replay("b", offsets[4], now), Replay::Lost);
    }

    #[test]
    fn expired_messages_go_but_the_position_stays_for_a_day() {
        let mut history = history(10, 5);
        let start = Instant::now();
        let a = name("a");
        let first = history.record(&a, "1", start).unwrap();
        let second = history
            .record(&a, "2", start + Duration::from_secs(3))
            .unwrap();
        // At 6 s the first is gone: a resume from before it is lost, one from it is whole.
        let later = start + Duration::from_secs(6);
        let before_first = Offset {
            position: 0,
            ..first
        };
        assert_eq!(history.replay("a", before_first, later), Replay::Lost);
        assert_eq!(recovered(history.replay("a", first, later)), ["2"]);
        // At 9 s both are gone: from the last one nothing is missed; from the first, one is.
        let gone = start + Duration::from_secs(9);
        assert!(recovered(history.replay("a", second, gone)).is_empty());
        assert_eq!(history.replay("a", first, gone), Replay::Lost);
        // The next message follows in the same epoch.
        let third = history.record(&a, "3", gone).unwrap();
        assert_eq!((third.epoch, third.position), (first.epoch, 3));
        assert_eq!(recovered(history.replay("a", second, gone)), ["3"]);
    }

    #[test]
    fn a_day_after_its_last_message_went_a_channels_epoch_ends() {
        let mut history = history(10, 5);
        let start = Instant::now();
        let a = name("a");
        let first = history.record(&a, "1", start).unwrap();
        let emptied = start + Duration::from_secs(6);
        assert!(recovered(history.replay("a", first, emptied)).is_empty());
        let next_day = emptied + POSITION_TTL;
        assert_eq!(history.replay("a", first, next_day), Replay::Lost);
        assert_eq!(history.bytes(), 0);
        let next = history.record(&a, "2", next_day).unwrap();
        assert_ne!(next.epoch, first.epoch);
        assert_eq!(next.position, 1);
    }

    #[test]
    fn the_byte_cap_drops_the_oldest_messages_of_any_channel_first() {
        let mut history = history(1000, 300);
        let now = Instant::now();
        let data = "x".repeat(64 << 10);
        let mut kept = Vec::new();
        for n in 0..2000 {
            let channel = name(&format!("c{}", n % 7));
            kept.push((
                channel.clone(),
                history.record(&channel, &data, now).unwrap(),
            ));
            assert!(history.bytes() <= MAX_BYTES);
        }
        // The newest messages, of every channel, are kept; the oldest went first.
        let (channel, newest) = &kept[1999];
        assert!(recovered(history.replay(channel.as_str(), *newest, now)).is_empty());
        // 64 MiB holds about 1,000 of these: from 1,500 on everything is there, from 500 it is not.
        let (channel, recent) = &kept[1500];
        let missed = recovered(history.replay(channel.as_str(), *recent, now)).len();
        assert_eq!(missed, (1501..2000).filter(|n| n % 7 == 1500 % 7).count());
        let (channel, old) = &kept[500];
        assert_eq!(history.replay(channel.as_str(), *old, now), Replay::Lost);
        let per_message = data.len() + ENTRY_OVERHEAD;
        assert!(history.bytes() > MAX_BYTES - per_message - 7 * LOG_OVERHEAD);
    }

    #[test]
    fn off_keeps_nothing_and_gives_no_offsets() {
        let mut history = history(0, 300);
        assert!(!history.enabled());
        assert_eq!(history.record(&name("a"), "1", Instant::now()), None);
    }
}
