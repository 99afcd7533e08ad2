//! The fingerprint of an upload request: what makes two requests with one idempotency key "the
//! same request". It is computed from the parsed form while it streams, never from the raw
//! body, so it does not depend on the multipart boundary (curl and browsers pick a new one for
//! every request) nor on how the client chunks its body.
//!
//! It is SHA-256 over, in order: a version tag; the query's `prefix` and `skip_existing` as
//! given; then per form part, in request order, a text field's name and value, or a file
//! part's field name, filename, size and the SHA-256 of its bytes. Every item is
//! length-prefixed, so no two different sequences hash the same input. It is complete only
//! when the form was read to its closing boundary and every file part was read to its end:
//! an incomplete one (a body that broke, a request refused half-way) is never compared.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::Stream;
use sha2::{Digest as _, Sha256};

/// The fingerprint being computed; shared by the form and its file parts' streams.
#[derive(Clone)]
pub(crate) struct Fingerprint(Arc<Mutex<State>>);

struct State {
    hasher: Sha256,
    /// File parts started and not yet read to their end.
    open: usize,
    /// The form was read to its closing boundary.
    ended: bool,
}

fn absorb(h: &mut Sha256, item: &[u8]) {
    h.update((item.len() as u64).to_be_bytes());
    h.update(item);
}

fn absorb_opt(h: &mut Sha256, item: Option<&str>) {
    match item {
        None => h.update([0u8]),
        Some(s) => {
            h.update([1u8]);
            absorb(h, s.as_bytes());
        }
    }
}

impl Fingerprint {
    /// A fingerprint of `POST /v1/uploads` with the query's `prefix` and `skip_existing`.
    pub(crate) fn new(query_prefix: Option<&str>, query_skip: Option<&str>) -> Fingerprint {
        let mut hasher = Sha256::new();
        absorb(&mut hasher, b"uploader idempotency fingerprint v1");
        absorb(&mut hasher, b"POST /v1/uploads");
        absorb_opt(&mut hasher, query_prefix);
        absorb_opt(&mut hasher, query_skip);
        Fingerprint(Arc::new(Mutex::new(State {
            hasher,
            open: 0,
            ended: false,
        })))
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.0.lock().expect("never poisoned"))
    }

    /// A text field and its value.
    pub(crate) fn text(&self, name: &str, value: &str) {
        self.with(|s| {
            s.hasher.update(b"T");
            absorb(&mut s.hasher, name.as_bytes());
            absorb(&mut s.hasher, value.as_bytes());
        });
    }

    /// A file part's data, hashed as it is read; the part counts once its end is read.
    pub(crate) fn file<S>(&self, name: &str, filename: Option<&str>, data: S) -> Hashed<S> {
        self.with(|s| s.open += 1);
        Hashed {
            inner: data,
            fingerprint: self.clone(),
            name: name.to_owned(),
            filename: filename.map(str::to_owned),
            size: 0,
            hasher: Some(Sha256::new()),
        }
    }

    /// The form was read to its closing boundary.
    pub(crate) fn end(&self) {
        self.with(|s| s.ended = true);
    }

    /// The fingerprint (hex), when the whole request was read.
    pub(crate) fn finish(&self) -> Option<String> {
        self.with(|s| (s.ended && s.open == 0).then(|| hex::encode(s.hasher.clone().finalize())))
    }
}

/// A file part's data stream that feeds the fingerprint.
pub(crate) struct Hashed<S> {
    inner: S,
    fingerprint: Fingerprint,
    name: String,
    filename: Option<String>,
    size: u64,
    /// `None` once the part is counted.
    hasher: Option<Sha256>,
}

impl<S, E> Stream for Hashed<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    type Item = Result<Bytes, E>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_next(cx);
        match &polled {
            Poll::Ready(Some(Ok(b))) => {
                this.size += b.len() as u64;
                if let Some(h) = this.hasher.as_mut() {
                    h.update(b);
                }
            }
            Poll::Ready(None) => {
                if let Some(h) = this.hasher.take() {
                    let digest = h.finalize();
                    this.fingerprint.with(|s| {
                        s.hasher.update(b"F");
                        absorb(&mut s.hasher, this.name.as_bytes());
                        absorb_opt(&mut s.hasher, this.filename.as_deref());
                        s.hasher.update(this.size.to_be_bytes());
                        s.hasher.update(digest);
                        s.open -= 1;
                    });
                }
            }
            // An error leaves the part open: the fingerprint stays incomplete.
            Poll::Ready(Some(Err(_))) | Poll::Pending => {}
        }
        polled
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt as _;

    use super::*;

    /// A file part: field name, filename, chunks.
    type Part<'a> = (&'a str, Option<&'a str>, &'a [&'a [u8]]);

    async fn of(parts: &[Part<'_>], query: Option<&str>) -> String {
        let f = Fingerprint::new(query, None);
        for (name, filename, chunks) in parts {
            let chunks: Vec<Result<Bytes, ()>> = chunks
                .iter()
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .collect();
            let mut s = f.file(name, *filename, futures::stream::iter(chunks));
            while s.next().await.is_some() {}
        }
        f.end();
        f.finish().unwrap()
    }

    #[tokio::test]
    async fn equal_forms_match_however_chunked_and_different_ones_do_not() {
        let base = of(&[("file", Some("a.txt"), &[b"hello world"])], None).await;
        let rechunked = of(&[("file", Some("a.txt"), &[b"hello", b" world"])], None).await;
        assert_eq!(base, rechunked);
        for other in [
            of(&[("file", Some("a.txt"), &[b"hello worle"])], None).await,
            of(&[("file", Some("b.txt"), &[b"hello world"])], None).await,
            of(&[("files", Some("a.txt"), &[b"hello world"])], None).await,
            of(&[("file", Some("a.txt"), &[b"hello world"])], Some("p")).await,
            // The same bytes split over two parts differently.
            of(
                &[
                    ("file", Some("a.txt"), &[b"hello"]),
                    ("file", Some("a.txt"), &[b" world"]),
                ],
                None,
            )
            .await,
            of(&[("file", None, &[b"hello world"])], None).await,
        ] {
            assert_ne!(base, other);
        }
    }

    #[tokio::test]
    async fn an_unfinished_form_or_part_has_no_fingerprint() {
        let f = Fingerprint::new(None, None);
        f.text("prefix", "p");
        assert_eq!(f.finish(), None, "the form did not end");
        let data = futures::stream::iter(vec![Ok::<_, ()>(Bytes::from_static(b"x")), Err(())]);
        let mut s = f.file("file", Some("a"), data);
        while let Some(Ok(_)) = s.next().await {}
        f.end();
        assert_eq!(f.finish(), None, "a part broke");
    }
}
