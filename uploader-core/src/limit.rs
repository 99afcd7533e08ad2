//! RateLimits: bandwidth and request rate, shared by every transfer of an [`crate::Uploader`] (in the
//! daemon: by every HTTP request), changeable while uploads run.
//!
//! The token buckets are `async-speed-limit`'s [`Limiter`] (one per budget; a clone shares it).
//! Bytes are charged as the body is sent: the store wraps a paced body (`store::Body::Paced`, made by
//! the transfer) so that each frame of at most [`PACE_SLICE`] bytes waits for its share before it
//! goes out. A retry sends the body again and is charged again. Requests are charged by
//! `store::Metered`, the store wrapper every request passes, once per request of any kind.
//!

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_speed_limit::Limiter;

use crate::config::size_unit;

/// Largest slice of a paced body charged at once (bigger frames are split), so that a slow
/// limit sends smoothly instead of in part-sized bursts.
pub const PACE_SLICE: usize = 64 * 1024;

/// Bandwidth and request-rate limits. Cheap to clone; clones share the budgets, and a change
/// made through any clone applies to every transfer that starts a request after it.
#[derive(Clone)]
pub struct RateLimits(Arc<Inner>);

struct Inner {
    /// Bytes per second, shared by every transfer.
    bandwidth: Limiter,
    /// Bytes per second of each file (0: none).
    per_file: AtomicU64,
    /// Requests per second, shared by every request.
    requests: Limiter,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits")
            .field("bandwidth", &self.bandwidth())
            .field("per_file", &self.per_file())
            .field("requests", &self.requests())
            .finish()
    }
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits::unlimited()
    }
}

fn speed(limit: Option<f64>) -> f64 {
    limit.filter(|v| *v > 0.0).unwrap_or(f64::INFINITY)
}

fn finite(speed: f64) -> Option<f64> {
    speed.is_finite().then_some(speed)
}

impl RateLimits {
    /// No limit at all.
    pub fn unlimited() -> RateLimits {
        RateLimits(Arc::new(Inner {
            bandwidth: Limiter::new(f64::INFINITY),
            per_file: AtomicU64::new(0),
            requests: Limiter::new(f64::INFINITY),
        }))
    }

    /// RateLimits from the three settings (`None`: no limit).
    pub fn new(bandwidth: Option<u64>, per_file: Option<u64>, requests: Option<f64>) -> RateLimits {
        let limits = RateLimits::unlimited();
        limits.set_bandwidth(bandwidth);
        limits.set_per_file(per_file);
        limits.set_requests(requests);
        limits
    }

    /// Sets the bandwidth shared by every transfer, in bytes per second (`None` or 0: none).
    pub fn set_bandwidth(&self, bytes_per_second: Option<u64>) {
        self.0
            .bandwidth
            .set_speed_limit(speed(bytes_per_second.map(|b| b as f64)));
    }

    /// The bandwidth shared by every transfer, in bytes per second.
    pub fn bandwidth(&self) -> Option<u64> {
        finite(self.0.bandwidth.speed_limit()).map(|s| s as u64)
    }

    /// Sets the bandwidth of each file, in bytes per second (`None` or 0: none). Applies to the
    /// files that start after the change.
    pub fn set_per_file(&self, bytes_per_second: Option<u64>) {
        self.0
            .per_file
            .store(bytes_per_second.unwrap_or(0), Ordering::Relaxed);
    }

    /// The bandwidth of each file, in bytes per second.
    pub fn per_file(&self) -> Option<u64> {
        Some(self.0.per_file.load(Ordering::Relaxed)).filter(|b| *b > 0)
    }

    /// Sets the requests per second shared by every request (`None` or 0: none).
    pub fn set_requests(&self, per_second: Option<f64>) {
        self.0.requests.set_speed_limit(speed(per_second));
    }

    /// The requests per second shared by every request.
    pub fn requests(&self) -> Option<f64> {
        finite(self.0.requests.speed_limit())
    }

    /// Keeps the shared bandwidth on `timetable`'s rate: sets it now, then at every minute
    /// boundary. `now` tells the local time as seconds since Monday 00:00 (the caller knows the
    /// time zone). The task runs until aborted.
    pub fn follow(
        &self,
        timetable: Timetable,
        now: impl Fn() -> u32 + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let limits = self.clone();
        tokio::spawn(async move {
            loop {
                let second = now();
                let rate = timetable.rate_at(second / 60);
                if limits.bandwidth() != rate {
                    tracing::info!(bytes_per_second = ?rate, "bandwidth limit changed by the timetable");
                    limits.set_bandwidth(rate);
                }
                let to_next_minute = 60 - u64::from(second % 60);
                tokio::time::sleep(Duration::from_secs(to_next_minute)).await;
            }
        })
    }

    /// Waits for the request budget to allow one more request; returns how long it waited.
    pub(crate) async fn request(&self) -> Duration {
        let wait = self.0.requests.consume_duration(1);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        wait
    }

    /// The pace of one file's bodies: the shared bandwidth (always, so that a limit set while
    /// the file is being sent applies to its later bytes) and, with a per-file rate, a budget
    /// of its own.
    pub(crate) fn pace_for_file(&self) -> Pace {
        let mut limiters = vec![self.0.bandwidth.clone()];
        if let Some(per_file) = self.per_file() {
            limiters.push(Limiter::new(per_file as f64));
        }
        Pace(limiters.into())
    }
}

/// Bodies larger than this are always paced (sent through the budgets even while no limit is
/// set), so that a limit set at run time reaches a part already being sent; smaller ones are
/// paced only while a limit is set.
pub const PACE_ALWAYS_ABOVE: u64 = 1 << 20;

/// The budgets one body's bytes are charged to (see `store::Body::Paced`).
#[derive(Clone)]
pub struct Pace(Arc<[Limiter]>);

impl std::fmt::Debug for Pace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let limits: Vec<f64> = self.0.iter().map(Limiter::speed_limit).collect();
        f.debug_tuple("Pace").field(&limits).finish()
    }
}

impl Pace {
    /// Whether a body of `len` bytes goes through the budgets (see [`PACE_ALWAYS_ABOVE`]).
    pub(crate) fn applies_to(&self, len: u64) -> bool {
        len > PACE_ALWAYS_ABOVE || self.0.iter().any(|l| l.speed_limit().is_finite())
    }

    /// Charges `bytes` to every budget; returns how long to wait before sending them (the
    /// longest wait of the budgets).
    pub fn charge(&self, bytes: usize) -> Duration {
        self.0
            .iter()
            .map(|l| l.consume_duration(bytes))
            .max()
            .unwrap_or_default()
    }
}

/// A rate that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid rate {0:?}: expected bytes per second with an optional binary unit, e.g. 512K, 50M, \
     1.5GiB, or off"
)]
pub struct RateError(String);

/// Parses a bandwidth in bytes per second: `50M`, `1.5GiB`, `512k`, `100` (bytes), `20MB`
/// (decimal), an optional `/s`; `off` or `0` is no limit (`None`). Units as in
/// [`crate::config::parse_size`] (K = KiB, as rclone's `--bwlimit`), with a fraction allowed.
pub fn parse_rate(s: &str) -> Result<Option<u64>, RateError> {
    let err = || RateError(s.to_owned());
    let t = s.trim();
    let t = t.strip_suffix("/s").unwrap_or(t);
    if t.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() || num.starts_with('.') || num.ends_with('.') {
        return Err(err());
    }
    let n: f64 = num.parse().map_err(|_| err())?;
    let bytes = n * size_unit(unit.trim()).ok_or_else(err)? as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(err());
    }
    // A rate above zero that rounds to no bytes at all would silently mean "no limit".
    if bytes > 0.0 && bytes.round() < 1.0 {
        return Err(err());
    }
    Ok(Some(bytes.round() as u64).filter(|b| *b > 0))
}

/// A request rate that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid request rate {0:?}: expected requests per second, e.g. 50 or 0.5, or off")]
pub struct RequestRateError(String);

/// Parses a request rate (requests per second, a fraction allowed; `off` or `0`: none).
pub fn parse_request_rate(s: &str) -> Result<Option<f64>, RequestRateError> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    match t.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 && !t.starts_with('+') => {
            Ok(Some(v).filter(|v| *v > 0.0))
        }
        _ => Err(RequestRateError(s.to_owned())),
    }
}

/// A bandwidth timetable, rclone's `--bwlimit` syntax: space-separated `WHEN,RATE` entries, where
/// `WHEN` is `HH:MM` (every day) or `Ddd-HH:MM` (one weekday: `Mon`..`Sun`), e.g.
/// `"08:00,512k 19:00,off"` or `"Mon-00:00,1M Sat-00:00,off"`. The rate in force at a moment is the
/// one of the latest entry at or before it, going round the week (before the first entry, the
/// last one is in force). A plain rate (`"10M"`) is a timetable of one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timetable {
    /// Entries sorted by minute of the week; daily entries appear on all seven days.
    entries: Vec<(u32, Option<u64>)>,
}

/// A timetable that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimetableError {
    /// A rate of an entry.
    #[error(transparent)]
    Rate(#[from] RateError),
    /// An entry that is not `HH:MM,RATE` or `Ddd-HH:MM,RATE`.
    #[error(
        "invalid timetable entry {0:?}: expected HH:MM,RATE or Ddd-HH:MM,RATE, e.g. 08:00,512k"
    )]
    Entry(String),
    /// Two entries for the same minute.
    #[error("the timetable has two entries for {0:?}")]
    Duplicate(String),
    /// An empty timetable.
    #[error("the timetable is empty")]
    Empty,
}

const MINUTES_PER_DAY: u32 = 24 * 60;
/// Minutes in a week.
pub const MINUTES_PER_WEEK: u32 = 7 * MINUTES_PER_DAY;
const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

fn parse_when(when: &str) -> Option<(Option<u32>, u32)> {
    let (day, time) = match when.split_once('-') {
        Some((d, t)) => {
            let d = d.to_ascii_lowercase();
            (Some(WEEKDAYS.iter().position(|w| **w == d)? as u32), t)
        }
        None => (None, when),
    };
    let (h, m) = time.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some((day, h * 60 + m))
}

impl Timetable {
    /// Parses a timetable or a plain rate.
    pub fn parse(s: &str) -> Result<Timetable, TimetableError> {
        let items: Vec<&str> = s.split_whitespace().collect();
        if items.is_empty() {
            return Err(TimetableError::Empty);
        }
        if let [single] = items[..]
            && !single.contains(',')
        {
            return Ok(Timetable {
                entries: vec![(0, parse_rate(single)?)],
            });
        }
        let mut entries = Vec::new();
        for item in items {
            let (when, rate) = item
                .split_once(',')
                .ok_or_else(|| TimetableError::Entry(item.to_owned()))?;
            let (day, minute) =
                parse_when(when).ok_or_else(|| TimetableError::Entry(item.to_owned()))?;
            let rate = parse_rate(rate)?;
            let days = match day {
                Some(d) => d..d + 1,
                None => 0..7,
            };
            for d in days {
                let at = d * MINUTES_PER_DAY + minute;
                if entries.iter().any(|(m, _)| *m == at) {
                    return Err(TimetableError::Duplicate(when.to_owned()));
                }
                entries.push((at, rate));
            }
        }
        entries.sort_by_key(|(m, _)| *m);
        Ok(Timetable { entries })
    }

    /// Whether the rate never changes (a plain rate).
    pub fn is_constant(&self) -> bool {
        self.entries.iter().all(|(_, r)| *r == self.entries[0].1)
    }

    /// The rate in force at `minute_of_week` (0 = Monday 00:00).
    pub fn rate_at(&self, minute_of_week: u32) -> Option<u64> {
        let m = minute_of_week % MINUTES_PER_WEEK;
        self.entries
            .iter()
            .rev()
            .find(|(at, _)| *at <= m)
            .or(self.entries.last())
            .and_then(|(_, r)| *r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_with_binary_units_fractions_and_off() {
        assert_eq!(parse_rate("50M"), Ok(Some(50 << 20)));
        assert_eq!(parse_rate("1.5GiB"), Ok(Some(3 << 29)));
        assert_eq!(parse_rate("512k"), Ok(Some(512 << 10)));
        assert_eq!(parse_rate("20MB/s"), Ok(Some(20_000_000)));
        assert_eq!(parse_rate("100"), Ok(Some(100)));
        assert_eq!(parse_rate("off"), Ok(None));
        assert_eq!(parse_rate("0"), Ok(None));
        for bad in [
            "",
            "M",
            "-5M",
            "1.2.3M",
            ".5M",
            "5.M",
            "5X",
            "1e9",
            "inf",
            "NaN",
            "99999999T",
        ] {
            assert!(parse_rate(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn request_rates_parse() {
        assert_eq!(parse_request_rate("50"), Ok(Some(50.0)));
        assert_eq!(parse_request_rate("0.5"), Ok(Some(0.5)));
        assert_eq!(parse_request_rate("off"), Ok(None));
        for bad in ["-1", "inf", "NaN", "x", "", "+3"] {
            assert!(parse_request_rate(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn timetables_follow_rclone_and_wrap_round_the_week() {
        let t = Timetable::parse("08:00,512k 19:00,off").unwrap();
        assert!(!t.is_constant());
        assert_eq!(t.rate_at(8 * 60), Some(512 << 10));
        assert_eq!(t.rate_at(18 * 60 + 59), Some(512 << 10));
        assert_eq!(t.rate_at(19 * 60), None);
        // Before the first entry of Monday: Sunday's last entry is in force.
        assert_eq!(t.rate_at(7 * 60), None);
        let w = Timetable::parse("Mon-00:00,1M Sat-00:00,off").unwrap();
        assert_eq!(w.rate_at(2 * MINUTES_PER_DAY), Some(1 << 20));
        assert_eq!(w.rate_at(6 * MINUTES_PER_DAY + 5), None);
        let plain = Timetable::parse("10M").unwrap();
        assert!(plain.is_constant());
        assert_eq!(plain.rate_at(12345), Some(10 << 20));
        for bad in [
            "",
            "25:00,1M",
            "08:00",
            "8:00,1M",
            "Xyz-08:00,1M",
            "08:00,1M 08:00,2M",
        ] {
            assert!(Timetable::parse(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[tokio::test]
    async fn the_request_budget_spaces_requests() {
        let limits = RateLimits::new(None, None, Some(20.0));
        let start = std::time::Instant::now();
        for _ in 0..12 {
            limits.request().await;
        }
        // 12 requests at 20/s: at least ~0.5 s (a lower bound only: the machine may be slow).
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(450), "{waited:?}");
        limits.set_requests(None);
        assert_eq!(limits.requests(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_timetable_changes_the_shared_bandwidth_at_its_boundaries() {
        let limits = RateLimits::unlimited();
        let clock = std::sync::Arc::new(AtomicU64::new(7 * 3600 + 59 * 60 + 30));
        let c = std::sync::Arc::clone(&clock);
        let task = limits.follow(
            Timetable::parse("08:00,512k 19:00,off").unwrap(),
            move || c.load(Ordering::SeqCst) as u32,
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(
            limits.bandwidth(),
            None,
            "07:59:31: off (Sunday's 19:00 entry)"
        );
        clock.store(8 * 3600, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!(limits.bandwidth(), Some(512 << 10), "08:00: 512k");
        task.abort();
    }

    #[test]
    fn each_file_has_a_budget_of_its_own_and_the_shared_one() {
        let free = RateLimits::unlimited().pace_for_file();
        assert!(
            !free.applies_to(PACE_ALWAYS_ABOVE),
            "small bodies are sent as they are"
        );
        assert!(
            free.applies_to(PACE_ALWAYS_ABOVE + 1),
            "large ones always go through"
        );
        let limits = RateLimits::new(None, Some(1000), None);
        let first = limits.pace_for_file();
        assert!(first.applies_to(1));
        // 5 000 bytes at 1 000 B/s: about 5 s owed by this file...
        assert!(first.charge(5000) >= Duration::from_secs(4));
        // ...and not by the next one.
        assert!(limits.pace_for_file().charge(10) < Duration::from_secs(1));
        let shared = RateLimits::new(Some(1000), None, None);
        let a = shared.pace_for_file();
        assert!(a.charge(5000) >= Duration::from_secs(4));
        // The shared budget is owed by every file.
        assert!(shared.pace_for_file().charge(10) >= Duration::from_secs(4));
        shared.set_bandwidth(None);
        assert!(!shared.pace_for_file().applies_to(10));
        // A limit set after a file started reaches its next bytes.
        let later = RateLimits::unlimited();
        let started = later.pace_for_file();
        assert!(started.charge(5000).is_zero());
        later.set_bandwidth(Some(1000));
        assert!(started.applies_to(10));
        assert!(started.charge(5000) >= Duration::from_secs(4));
    }
}
