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

use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Byte permits are counted in KiB so that one acquisition fits in a `u32`.
const BYTE_UNIT: u64 = 1024;

/// Shared limits. Cloning shares them.
#[derive(Debug, Clone)]
pub struct Budget {
    requests: Arc<Semaphore>,
    max_requests: usize,
    bytes: Arc<Semaphore>,
    max_byte_units: u64,
    /// Idle body buffers, reused so that reading a part neither page-faults fresh memory nor
    /// fragments the allocator (glibc kept ~2× the budget resident without this).
    idle: Arc<Mutex<Vec<Vec<u8>>>>,
}

/// The right to send one request; dropped when the request is done.
#[derive(Debug)]
pub struct RequestPermit {
    _request: OwnedSemaphorePermit,
}

impl Budget {
    /// A budget of `max_requests` requests in flight and `max_bytes` bytes buffered.
    pub fn new(max_requests: usize, max_bytes: u64) -> Budget {
        let max_byte_units = max_bytes.div_ceil(BYTE_UNIT).max(1);
        Budget {
            requests: Arc::new(Semaphore::new(max_requests)),
            max_requests,
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
        RequestPermit { _request: request }
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
        self.max_requests - self.requests.available_permits()
    }

    /// The configured request limit.
    pub fn max_requests(&self) -> usize {
        self.max_requests
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
