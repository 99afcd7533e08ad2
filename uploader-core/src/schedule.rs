//! Schedule: one global budget of requests in flight and of buffered bytes.
//!
//! Every request that carries data — a small file's PUT or one part of a large file — takes a
//! permit from the same [`Budget`] *before* its data is read, so the number of open requests is
//! bounded by configuration whatever the mix of files, and so is memory. A budget is shared by
//! every job of an [`Uploader`](crate::Uploader) (the daemon's concurrent HTTP requests
//! included). Tokio's semaphore is fair: permits are handed out in request order, so a large
//! file's parts cannot starve small files that asked earlier.
//!
//! The byte budget counts request bodies the pipeline holds in memory, reserved before they are
//! read: each file in progress holds [`INLINE_MAX`](crate::source::file::INLINE_MAX) of it (its
//! small body or its sniff sample), each file range of at most a quarter of the budget its size
//! (read once into a pooled buffer, [`Budget::take_buffer`], and re-sent from it on retries),
//! and each network body its current part ([`crate::source::stream`]). Only file ranges over a
//! quarter of the budget take no byte permits: the HTTP client streams them from disk on each
//! attempt. Deliberately left out: what a body is and when it is read (the sources).
//!
//! # Requests in flight that follow the endpoint
//!
//! In [`ConcurrencyMode::Adaptive`] (the default) the number of request permits moves between a
//! floor ([`ADAPTIVE_FLOOR`]) and the configured concurrency (the ceiling), the way TCP finds
//! its window. Every request reports how long it took and whether the server throttled it
//! ([`Budget::observe`], called by the store wrapper `store::Metered`). After each
//! window (about one round of `limit` requests):
//!
//! * throttled (503 SlowDown, 429) in the window: the limit is halved (multiplicative decrease);
//! * else, when every permit was in use and the latency of the small requests (bodies up to
//!   [`SMALL_REQUEST`]; large bodies take as long as the link needs, whatever the load) stays
//!   within [`GROW_BELOW`] × the lowest seen: the limit doubles until its first decrease (slow
//!   start), then grows by a quarter;
//! * when that latency climbs above [`SHRINK_ABOVE`] × the lowest: the limit shrinks by a tenth.
//!
//! Memory stays bounded by the byte budget, not by the number of requests. A lowered limit
//! retires permits as requests give them back; nothing in flight is interrupted.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub use crate::config::ConcurrencyMode;

/// Byte permits are counted in KiB so that one acquisition fits in a `u32`.
const BYTE_UNIT: u64 = 1024;

/// The adaptive limit never goes below this (or the ceiling, if lower): the fixed default of
/// earlier versions, which keeps a loopback endpoint's two cores busy.
pub const ADAPTIVE_FLOOR: usize = crate::config::DEFAULT_FIXED_CONCURRENCY;
/// Requests whose body is at most this large are latency samples.
pub const SMALL_REQUEST: u64 = 1 << 20;
/// The limit grows while small requests take at most this × the lowest latency seen.
pub const GROW_BELOW: f64 = 1.5;
/// The limit shrinks when small requests take more than this × the lowest latency seen.
pub const SHRINK_ABOVE: f64 = 3.0;

/// Shared limits. Cloning shares them.
#[derive(Debug, Clone)]
pub struct Budget {
    requests: Arc<Semaphore>,
    control: Arc<Control>,
    bytes: Arc<Semaphore>,
    max_byte_units: u64,
    /// Idle body buffers, reused so that reading a part neither page-faults fresh memory nor
    /// fragments the allocator (glibc kept ~2× the budget resident without this).
    idle: Arc<Mutex<Vec<Vec<u8>>>>,
}

/// The right to send one request; dropped when the request is done.
#[derive(Debug)]
pub struct RequestPermit {
    request: Option<OwnedSemaphorePermit>,
    control: Arc<Control>,
}

impl Drop for RequestPermit {
    fn drop(&mut self) {
        self.control.in_flight.fetch_sub(1, Ordering::Relaxed);
        // A lowered limit retires permits as they come back.
        let retire = self
            .control
            .debt
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |d| d.checked_sub(1))
            .is_ok();
        if retire && let Some(p) = self.request.take() {
            p.forget();
        }
    }
}

/// What one request went through, for the adaptive limit.
#[derive(Debug, Clone, Copy)]
pub struct RequestSample {
    /// How long it took.
    pub elapsed: Duration,
    /// Whether its body was at most [`SMALL_REQUEST`] (its latency is the endpoint's).
    pub small: bool,
    /// Whether the server throttled it (503 SlowDown, 429).
    pub throttled: bool,
    /// Whether it waited for the request rate (`--tps-limit`) while holding its permit: then
    /// more permits would not help, and the limit does not grow.
    pub rate_limited: bool,
}

/// The adaptive limit and what it is decided from.
#[derive(Debug)]
struct Control {
    mode: ConcurrencyMode,
    ceiling: usize,
    floor: usize,
    limit: AtomicUsize,
    peak: AtomicUsize,
    /// Permits to retire as requests give them back.
    debt: AtomicUsize,
    in_flight: AtomicUsize,
    /// Every permit was in use at some point of the window.
    saturated: AtomicBool,
    window: Mutex<Window>,
}

#[derive(Debug, Default)]
struct Window {
    completed: usize,
    small: u32,
    small_total: Duration,
    small_min: Option<Duration>,
    throttled: bool,
    rate_limited: bool,
    /// The lowest small-request latency seen (slowly forgotten, so that a changed path is
    /// learnt).
    base: Option<Duration>,
    /// Past slow start: the limit has come down once (throttled or latency climbing).
    settled: bool,
}

impl Control {
    /// Ends the window after about one round of requests; returns the new limit if it changed.
    fn observe(&self, s: RequestSample, requests: &Semaphore) -> Option<(usize, usize)> {
        if self.mode == ConcurrencyMode::Fixed {
            return None;
        }
        let mut w = self.window.lock().expect("never poisoned");
        w.completed += 1;
        w.throttled |= s.throttled;
        w.rate_limited |= s.rate_limited;
        if s.small && !s.throttled {
            w.small += 1;
            w.small_total += s.elapsed;
            w.small_min = Some(w.small_min.map_or(s.elapsed, |m| m.min(s.elapsed)));
        }
        let limit = self.limit.load(Ordering::Relaxed);
        if w.completed < limit.max(8) {
            return None;
        }
        if let Some(m) = w.small_min {
            // Forgotten at 1 % a window.
            let kept = w.base.map(|b| b.mul_f64(1.01));
            w.base = Some(kept.map_or(m, |b| b.min(m)));
        }
        let saturated = self.saturated.swap(false, Ordering::Relaxed);
        let mut settled = w.settled;
        let next = if w.throttled {
            settled = true;
            limit / 2
        } else if let (true, Some(base)) = (w.small >= 4, w.base) {
            let mean = w.small_total / w.small;
            let ratio = mean.as_secs_f64() / base.as_secs_f64().max(1e-6);
            if ratio <= GROW_BELOW && saturated && !w.rate_limited {
                // Slow start doubles until the first decrease; then a quarter at a time.
                limit + if settled { (limit / 4).max(1) } else { limit }
            } else if ratio > SHRINK_ABOVE {
                settled = true;
                limit - (limit / 10).max(1)
            } else {
                limit
            }
        } else {
            limit
        }
        .clamp(self.floor, self.ceiling);
        let base = w.base;
        *w = Window {
            base,
            settled,
            ..Window::default()
        };
        if next == limit {
            return None;
        }
        self.set(limit, next, requests);
        Some((limit, next))
    }

    /// Moves the limit from `old` to `new` (under the window lock).
    fn set(&self, old: usize, new: usize, requests: &Semaphore) {
        if new > old {
            let mut more = new - old;
            // Cancel retirements still owed before adding permits.
            while more > 0 {
                let d = self.debt.load(Ordering::Acquire);
                if d == 0 {
                    break;
                }
                let take = d.min(more);
                if self
                    .debt
                    .compare_exchange(d, d - take, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    more -= take;
                }
            }
            requests.add_permits(more);
        } else {
            let fewer = old - new;
            let now = requests.forget_permits(fewer);
            self.debt.fetch_add(fewer - now, Ordering::AcqRel);
        }
        self.limit.store(new, Ordering::Relaxed);
        self.peak.fetch_max(new, Ordering::Relaxed);
    }
}

impl Budget {
    /// A budget of `max_requests` requests in flight (fixed) and `max_bytes` bytes buffered.
    pub fn new(max_requests: usize, max_bytes: u64) -> Budget {
        Budget::with_mode(max_requests, max_bytes, ConcurrencyMode::Fixed)
    }

    /// A budget of at most `max_requests` requests in flight, fixed or adaptive (starting at
    /// the floor), and `max_bytes` bytes buffered.
    pub fn with_mode(max_requests: usize, max_bytes: u64, mode: ConcurrencyMode) -> Budget {
        let max_byte_units = max_bytes.div_ceil(BYTE_UNIT).max(1);
        let floor = ADAPTIVE_FLOOR.min(max_requests);
        let start = match mode {
            ConcurrencyMode::Adaptive => floor,
            ConcurrencyMode::Fixed => max_requests,
        };
        Budget {
            requests: Arc::new(Semaphore::new(start)),
            control: Arc::new(Control {
                mode,
                ceiling: max_requests,
                floor,
                limit: AtomicUsize::new(start),
                peak: AtomicUsize::new(start),
                debt: AtomicUsize::new(0),
                in_flight: AtomicUsize::new(0),
                saturated: AtomicBool::new(false),
                window: Mutex::default(),
            }),
            bytes: Arc::new(Semaphore::new(
                usize::try_from(max_byte_units).unwrap_or(Semaphore::MAX_PERMITS),
            )),
            max_byte_units,
            idle: Arc::default(),
        }
    }

    /// A buffer of exactly `len` bytes whose contents are unspecified (zeros, or old data to be
    /// overwritten): an idle one of a fitting size if there is one (between `len` and twice
    /// it), else a new one. Hold a byte reservation for it.
    pub fn take_buffer(&self, len: usize) -> Vec<u8> {
        let reused = {
            let mut idle = self.idle.lock().expect("never poisoned");
            idle.iter()
                .position(|b| b.capacity() >= len && b.capacity() / 2 <= len)
                .map(|i| idle.swap_remove(i))
        };
        match reused {
            // Zero-fills only what was never written (a longer body than last time).
            Some(mut b) => {
                b.resize(len, 0);
                b
            }
            // Zeroed by the allocator (fresh pages from the kernel for large sizes).
            None => vec![0; len],
        }
    }

    /// Gives a buffer back for reuse. Idle buffers are kept while they total at most the byte
    /// budget, so memory stays within twice the budget even with mixed sizes.
    pub fn give_buffer(&self, buf: Vec<u8>) {
        let mut idle = self.idle.lock().expect("never poisoned");
        let held: u64 = idle.iter().map(|b| b.capacity() as u64).sum();
        if held + buf.capacity() as u64 <= self.max_byte_units * BYTE_UNIT {
            idle.push(buf);
        }
    }

    /// Waits for a request slot.
    pub async fn acquire(&self) -> RequestPermit {
        let request = Arc::clone(&self.requests)
            .acquire_owned()
            .await
            .expect("the budget semaphore is never closed");
        let c = &self.control;
        if c.in_flight.fetch_add(1, Ordering::Relaxed) + 1 >= c.limit.load(Ordering::Relaxed) {
            c.saturated.store(true, Ordering::Relaxed);
        }
        RequestPermit {
            request: Some(request),
            control: Arc::clone(c),
        }
    }

    /// Reports what a request went through; in adaptive mode, may move the limit.
    pub fn observe(&self, sample: RequestSample) {
        if let Some((old, new)) = self.control.observe(sample, &self.requests) {
            if new.abs_diff(old) * 4 >= old || new == self.control.ceiling {
                tracing::info!(from = old, to = new, "requests in flight");
            } else {
                tracing::debug!(from = old, to = new, "requests in flight");
            }
        }
    }

    /// Waits for `bytes` of the byte budget (capped at the whole budget, so a body larger than
    /// the budget still runs, alone), for data about to be buffered in memory. Dropping the
    /// permit returns the bytes.
    pub async fn acquire_bytes(&self, bytes: u64) -> OwnedSemaphorePermit {
        let units = bytes.div_ceil(BYTE_UNIT).clamp(1, self.max_byte_units);
        Arc::clone(&self.bytes)
            .acquire_many_owned(u32::try_from(units).unwrap_or(u32::MAX))
            .await
            .expect("the budget semaphore is never closed")
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> usize {
        self.control.in_flight.load(Ordering::Relaxed)
    }

    /// The configured request limit (the ceiling, in adaptive mode).
    pub fn max_requests(&self) -> usize {
        self.control.ceiling
    }

    /// The request limit in force now.
    pub fn limit(&self) -> usize {
        self.control.limit.load(Ordering::Relaxed)
    }

    /// The highest request limit reached so far.
    pub fn peak_limit(&self) -> usize {
        self.control.peak.load(Ordering::Relaxed)
    }

    /// Fixed or adaptive.
    pub fn mode(&self) -> ConcurrencyMode {
        self.control.mode
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn never_more_than_max_requests_in_flight() {
        let budget = Budget::new(3, 1 << 20);
        let now = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (budget, now, peak) = (budget.clone(), now.clone(), peak.clone());
            tasks.push(tokio::spawn(async move {
                let _p = budget.acquire().await;
                let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(n, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
                now.fetch_sub(1, Ordering::SeqCst);
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(peak.load(Ordering::SeqCst), 3);
        assert_eq!(budget.in_flight(), 0);
    }

    fn sample(ms: u64, throttled: bool) -> RequestSample {
        RequestSample {
            elapsed: Duration::from_millis(ms),
            small: true,
            throttled,
            rate_limited: false,
        }
    }

    /// Holds `n` permits (so that the budget is saturated) while `samples` are observed.
    async fn rounds(budget: &Budget, n: usize, rounds: usize, ms: u64, throttled: bool) {
        for _ in 0..rounds {
            let limit = budget.limit();
            let held: Vec<_> =
                futures::future::join_all((0..limit.min(n)).map(|_| budget.acquire())).await;
            for _ in 0..limit {
                budget.observe(sample(ms, throttled));
            }
            drop(held);
        }
    }

    #[tokio::test]
    async fn the_adaptive_limit_grows_while_latency_is_flat_and_halves_when_throttled() {
        let budget = Budget::with_mode(256, 1 << 30, ConcurrencyMode::Adaptive);
        assert_eq!(budget.limit(), ADAPTIVE_FLOOR, "starts at the floor");
        // Flat 20 ms latency with every permit in use: up to the ceiling.
        rounds(&budget, 1024, 40, 20, false).await;
        assert_eq!(budget.limit(), 256);
        assert_eq!(budget.peak_limit(), 256);
        // The permits really are there: 256 at once.
        let all: Vec<_> = futures::future::join_all((0..256).map(|_| budget.acquire())).await;
        assert_eq!(budget.in_flight(), 256);
        drop(all);
        // Throttled: halved per window, down to the floor and no further.
        rounds(&budget, 1024, 1, 20, true).await;
        assert_eq!(budget.limit(), 128);
        rounds(&budget, 1024, 10, 20, true).await;
        assert_eq!(budget.limit(), ADAPTIVE_FLOOR);
        // Only the floor's permits are left.
        let floor: Vec<_> =
            futures::future::join_all((0..ADAPTIVE_FLOOR).map(|_| budget.acquire())).await;
        let one_more = tokio::time::timeout(Duration::from_millis(50), budget.acquire()).await;
        assert!(one_more.is_err(), "no permit beyond the limit");
        drop(floor);
    }

    #[tokio::test]
    async fn the_adaptive_limit_shrinks_when_latency_climbs_and_does_not_grow_unused() {
        let budget = Budget::with_mode(256, 1 << 30, ConcurrencyMode::Adaptive);
        rounds(&budget, 1024, 12, 20, false).await;
        let high = budget.limit();
        assert!(high > 64, "{high}");
        // Latency four times the lowest: shrinks.
        rounds(&budget, 1024, 3, 80, false).await;
        assert!(budget.limit() < high, "{} after {high}", budget.limit());
        // Flat latency but the permits not all in use: no growth.
        let before = budget.limit();
        rounds(&budget, 2, 5, 20, false).await;
        assert_eq!(budget.limit(), before);
        // All in use, but held back by the request rate: no growth either.
        let held: Vec<_> = futures::future::join_all((0..before).map(|_| budget.acquire())).await;
        for _ in 0..before {
            budget.observe(RequestSample {
                rate_limited: true,
                ..sample(20, false)
            });
        }
        drop(held);
        assert_eq!(budget.limit(), before);
        // Permits retired while in use come back as debt, never as extra permits.
        let fixed = Budget::new(8, 1 << 20);
        for _ in 0..100 {
            fixed.observe(sample(1, true));
        }
        assert_eq!(fixed.limit(), 8, "a fixed budget never moves");
    }

    #[tokio::test]
    async fn byte_budget_limits_buffered_requests() {
        // 10 request slots but only 2 MiB of buffer: two 1 MiB bodies at a time.
        let budget = Budget::new(10, 2 << 20);
        let a = budget.acquire_bytes(1 << 20).await;
        let _b = budget.acquire_bytes(1 << 20).await;
        let third =
            tokio::time::timeout(Duration::from_millis(50), budget.acquire_bytes(1 << 20)).await;
        assert!(
            third.is_err(),
            "a third 1 MiB body must wait for the byte budget"
        );
        drop(a);
        let third =
            tokio::time::timeout(Duration::from_millis(500), budget.acquire_bytes(1 << 20)).await;
        assert!(third.is_ok());
        // A body larger than the whole budget still runs (alone).
        let budget = Budget::new(10, 1 << 20);
        let big =
            tokio::time::timeout(Duration::from_millis(500), budget.acquire_bytes(8 << 20)).await;
        assert!(big.is_ok());
    }

    #[test]
    fn idle_buffers_are_reused_and_capped_by_the_budget() {
        let budget = Budget::new(4, 4 << 20);
        let a = budget.take_buffer(1 << 20);
        assert_eq!(a.len(), 1 << 20);
        let ptr = a.as_ptr();
        budget.give_buffer(a);
        // The same allocation comes back for a fitting size, resized to it.
        let b = budget.take_buffer((1 << 20) - 10);
        assert_eq!(b.as_ptr(), ptr);
        assert_eq!(b.len(), (1 << 20) - 10);
        // Too large for the idle buffer (or less than half of it): a new one.
        budget.give_buffer(b);
        let c = budget.take_buffer(2 << 20);
        assert_ne!(c.as_ptr(), ptr);
        let d = budget.take_buffer(100);
        assert_ne!(d.as_ptr(), ptr);
        // Idle buffers never total more than the budget.
        budget.give_buffer(c);
        budget.give_buffer(vec![0; 2 << 20]);
        budget.give_buffer(vec![0; 2 << 20]);
        let idle: usize = budget.idle.lock().unwrap().iter().map(Vec::capacity).sum();
        assert!(idle <= 4 << 20, "{idle} bytes idle");
        drop(d);
    }
}
