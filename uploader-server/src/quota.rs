//! Per-token quotas: requests and file bytes per minute, counted in a fixed one-minute window
//! per token and per process (each replica counts its own).
//!
//! The window opens at the first request after the previous one closed and lasts
//! [`WINDOW`]; a refusal's `Retry-After` is the time until it closes. By hand: the governor
//! crates are token buckets (no "N per minute" with an exact Retry-After for bytes charged as
//! they stream), and this is a counter and a timestamp under a mutex.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt as _;
use futures::stream::BoxStream;

/// The length of a quota window.
pub const WINDOW: Duration = Duration::from_secs(60);

/// What a token may do per window (`None`: unlimited).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rates {
    /// Upload requests per window.
    pub requests: Option<u64>,
    /// File bytes received per window.
    pub bytes: Option<u64>,
}

/// A refusal: which quota, and the seconds until the window closes (at least 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverQuota {
    pub what: &'static str,
    pub retry_after: u64,
}

impl OverQuota {
    /// The 429 problem for the token `id`, with `Retry-After`.
    pub(crate) fn problem(self, id: &str) -> crate::problem::ApiError {
        crate::problem::ApiError::new(
            crate::problem::ProblemKind::QuotaExceeded,
            format!(
                "the token {id:?} is over its {} quota; retry after {} s",
                self.what, self.retry_after
            ),
        )
        .retry_after(self.retry_after)
    }
}

/// The counters of one token.
#[derive(Debug)]
pub struct Quota {
    window: Mutex<Window>,
}

#[derive(Debug)]
struct Window {
    start: Instant,
    requests: u64,
    bytes: u64,
}

impl Default for Quota {
    fn default() -> Self {
        Quota {
            window: Mutex::new(Window {
                start: Instant::now(),
                requests: 0,
                bytes: 0,
            }),
        }
    }
}

impl Window {
    /// Opens a new window when the current one has closed.
    fn roll(&mut self, now: Instant) {
        if now.duration_since(self.start) >= WINDOW {
            *self = Window {
                start: now,
                requests: 0,
                bytes: 0,
            };
        }
    }

    fn over(&self, what: &'static str, now: Instant) -> OverQuota {
        let left = (self.start + WINDOW).saturating_duration_since(now);
        OverQuota {
            what,
            retry_after: left.as_secs_f64().ceil().max(1.0) as u64,
        }
    }
}

impl Quota {
    /// Counts one request, unless it is over the request quota, or `declared` (the body's
    /// Content-Length) is more than what is left of the byte quota.
    pub fn admit(&self, rates: Rates, declared: Option<u64>) -> Result<(), OverQuota> {
        let now = Instant::now();
        let mut w = self.window.lock().expect("never poisoned");
        w.roll(now);
        if rates.requests.is_some_and(|max| w.requests >= max) {
            return Err(w.over("requests per minute", now));
        }
        if let (Some(max), Some(n)) = (rates.bytes, declared)
            && w.bytes.saturating_add(n) > max
        {
            return Err(w.over("bytes per minute", now));
        }
        w.requests += 1;
        Ok(())
    }

    /// Charges `n` bytes, unless that would go over the byte quota; returns the start of the
    /// window charged (the tag a [`Quota::refund`] needs).
    pub fn charge(&self, rates: Rates, n: u64) -> Result<Instant, OverQuota> {
        let now = Instant::now();
        let mut w = self.window.lock().expect("never poisoned");
        w.roll(now);
        if rates
            .bytes
            .is_some_and(|max| w.bytes.saturating_add(n) > max)
        {
            return Err(w.over("bytes per minute", now));
        }
        w.bytes += n;
        Ok(w.start)
    }

    /// Gives back `n` bytes charged in the window that started at `window` (those of a file
    /// that was not stored); nothing once that window has closed, since a new window never
    /// held them.
    pub fn refund(&self, window: Instant, n: u64) {
        let mut w = self.window.lock().expect("never poisoned");
        w.roll(Instant::now());
        if w.start == window {
            w.bytes = w.bytes.saturating_sub(n);
        }
    }
}

/// How a metered file stream failed.
#[derive(Debug)]
pub(crate) enum MeterError<E> {
    /// The body itself.
    Body(E),
    /// The next bytes would go over the byte quota.
    Over(OverQuota),
}

impl<E: std::fmt::Display> std::fmt::Display for MeterError<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MeterError::Body(e) => e.fmt(f),
            MeterError::Over(o) => write!(f, "over the {} quota", o.what),
        }
    }
}

/// A file's data, charged to `quota` as it streams in. When the next chunk would go over the
/// byte quota the stream fails (the file is refused, not stored), the file's bytes are given
/// back, and the refusal is left in `over`.
pub(crate) fn metered<E: Send + 'static>(
    data: BoxStream<'static, Result<Bytes, E>>,
    quota: Arc<Quota>,
    rates: Rates,
    over: Arc<Mutex<Option<OverQuota>>>,
) -> BoxStream<'static, Result<Bytes, MeterError<E>>> {
    // What this file charged to the current window (a file may span two windows: only the
    // current one's share is given back).
    let mut charged: Option<(Instant, u64)> = None;
    data.map(move |r| {
        let bytes = r.map_err(MeterError::Body)?;
        let n = bytes.len() as u64;
        match quota.charge(rates, n) {
            Ok(start) => {
                charged = match charged {
                    Some((s, sum)) if s == start => Some((s, sum + n)),
                    _ => Some((start, n)),
                };
                Ok(bytes)
            }
            Err(o) => {
                if let Some((start, n)) = charged.take() {
                    quota.refund(start, n);
                }
                *over.lock().expect("never poisoned") = Some(o);
                Err(MeterError::Over(o))
            }
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_bytes_are_counted_per_window() {
        let q = Quota::default();
        let rates = Rates {
            requests: Some(2),
            bytes: Some(100),
        };
        assert_eq!(q.admit(rates, Some(60)), Ok(()));
        assert!(q.charge(rates, 60).is_ok());
        let over = q.admit(rates, Some(41)).unwrap_err();
        assert_eq!(over.what, "bytes per minute");
        assert!((1..=60).contains(&over.retry_after), "{over:?}");
        assert_eq!(q.admit(rates, None), Ok(()), "no declared length");
        let start = q.charge(rates, 40).expect("exactly the quota");
        assert!(q.charge(rates, 1).is_err());
        q.refund(start, 40);
        assert_eq!(
            q.charge(rates, 40),
            Ok(start),
            "refunded bytes are free again"
        );
        let over = q.admit(rates, None).unwrap_err();
        assert_eq!(over.what, "requests per minute");
        // A closed window: everything is free again.
        q.window.lock().unwrap().start = Instant::now() - WINDOW;
        assert_eq!(q.admit(rates, Some(100)), Ok(()));
        let unlimited = Rates::default();
        assert!(q.charge(unlimited, u64::MAX).is_ok());
    }

    /// A refund of bytes charged in a window that has closed gives nothing back to the new
    /// window (it never held them), so a file spanning two windows cannot free quota it did
    /// not use.
    #[test]
    fn a_refund_never_crosses_a_window_boundary() {
        let q = Quota::default();
        let rates = Rates {
            requests: None,
            bytes: Some(100),
        };
        let old = q.charge(rates, 70).unwrap();
        // The window closes; the new one is charged 80 by another file.
        q.window.lock().unwrap().start = Instant::now() - WINDOW;
        let new = q.charge(rates, 80).unwrap();
        assert_ne!(old, new);
        q.refund(old, 70);
        assert_eq!(
            q.window.lock().unwrap().bytes,
            80,
            "the old window's refund is void"
        );
        assert!(
            q.charge(rates, 21).is_err(),
            "the new window is still charged 80"
        );
        q.refund(new, 30);
        assert_eq!(q.window.lock().unwrap().bytes, 50);
    }

    /// A metered stream that spans two windows refunds only the current window's share when
    /// it goes over.
    #[tokio::test]
    async fn a_metered_file_over_the_quota_refunds_only_the_current_windows_share() {
        let q = Arc::new(Quota::default());
        let rates = Rates {
            requests: None,
            bytes: Some(100),
        };
        let (tx, rx) = futures::channel::mpsc::unbounded::<Result<Bytes, ()>>();
        let over = Arc::new(Mutex::new(None));
        let mut s = metered(rx.boxed(), Arc::clone(&q), rates, Arc::clone(&over));
        tx.unbounded_send(Ok(Bytes::from(vec![0; 60]))).unwrap();
        assert!(s.next().await.unwrap().is_ok());
        q.window.lock().unwrap().start = Instant::now() - WINDOW;
        for _ in 0..2 {
            tx.unbounded_send(Ok(Bytes::from(vec![0; 40]))).unwrap();
            assert!(s.next().await.unwrap().is_ok());
        }
        // Another request of the token charges 10 in the new window: 90 in all.
        q.charge(rates, 10).unwrap();
        tx.unbounded_send(Ok(Bytes::from(vec![0; 20]))).unwrap();
        assert!(matches!(s.next().await.unwrap(), Err(MeterError::Over(_))));
        assert!(over.lock().unwrap().is_some());
        assert_eq!(
            q.window.lock().unwrap().bytes,
            10,
            "the 80 of this window are given back, the 60 of the closed one are not taken"
        );
    }
}
