//! Body adapters: the request body as a stream that fails when the client goes quiet, handed
//! to `multer` one chunk per poll, and the classification of how reading it failed.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt as _};

use crate::problem::{ApiError, ProblemKind};

/// Why reading the request stopped early; shared by the body stream and the field streams.
#[derive(Default)]
pub(crate) struct BodyFailure {
    idle: AtomicBool,
    kind: Mutex<Option<FailureKind>>,
}

/// How `multer` failed.
#[derive(Debug, Clone, Copy)]
pub(crate) enum FailureKind {
    TooLarge,
    Malformed,
}

impl BodyFailure {
    /// Remembers how `multer` failed, for the problem document.
    pub(crate) fn record(&self, e: &multer::Error) {
        *self.kind.lock().expect("never poisoned") = Some(classify(e));
    }

    /// The request-level error for a body that broke with `msg`.
    pub(crate) fn problem(&self, msg: &str) -> ApiError {
        if self.idle.load(Ordering::SeqCst) {
            return ApiError::new(
                ProblemKind::BodyIdleTimeout,
                "the client sent nothing for too long",
            );
        }
        match *self.kind.lock().expect("never poisoned") {
            Some(FailureKind::TooLarge) => ApiError::new(
                ProblemKind::RequestTooLarge,
                "the request body is over the size limit",
            ),
            _ => ApiError::new(
                ProblemKind::MalformedMultipart,
                format!("the multipart body is invalid: {msg}"),
            ),
        }
    }
}

pub(crate) fn classify(e: &multer::Error) -> FailureKind {
    match e {
        multer::Error::StreamSizeExceeded { .. } | multer::Error::FieldSizeExceeded { .. } => {
            FailureKind::TooLarge
        }
        _ => FailureKind::Malformed,
    }
}

/// The request body, failing when the client sends nothing for `idle`, and handing out one
/// chunk per poll: `multer` reads its input until it is pending, so an always-ready body (a
/// fast client on a fast network) would otherwise pile up in its buffer without bound.
///
/// The idle timeout is tower-http's `TimeoutBody` (the body of its `RequestBodyTimeoutLayer`:
/// a timer started when the next frame is awaited, reset by every frame; time the daemon spends
/// not reading, e.g. waiting for S3, does not count), applied here rather than as a layer so
/// that its `TimeoutError` is recognised before multer wraps it, and recorded in
/// [`BodyFailure`] for the 408. There is no overall request timeout, on purpose: an upload may
/// be long (docs/CONFIGURATION.md, `--body-idle-timeout`).
pub(crate) fn idle_guarded(
    body: axum::body::Body,
    idle: Duration,
    failure: Arc<BodyFailure>,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send {
    let body = axum::body::Body::new(tower_http::timeout::TimeoutBody::new(idle, body));
    let chunks = body.into_data_stream().map(move |r| {
        r.map_err(|e| {
            let e = e.into_inner();
            if e.is::<tower_http::timeout::TimeoutError>() {
                failure.idle.store(true, Ordering::SeqCst);
                std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the client sent nothing for too long",
                )
            } else {
                std::io::Error::other(e)
            }
        })
    });
    OneChunkPerPoll {
        inner: Box::pin(chunks),
        yielded: false,
    }
}

/// Returns `Pending` (after waking itself) between chunks.
struct OneChunkPerPoll<S> {
    inner: Pin<Box<S>>,
    yielded: bool,
}

impl<S: Stream> Stream for OneChunkPerPoll<S> {
    type Item = S::Item;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        if self.yielded {
            self.yielded = false;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let polled = self.inner.as_mut().poll_next(cx);
        if matches!(polled, Poll::Ready(Some(_))) {
            self.yielded = true;
        }
        polled
    }
}
