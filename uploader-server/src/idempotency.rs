//! `Idempotency-Key` on `POST /v1/uploads` (the IETF httpapi draft's header): the first
//! request with a key is processed and its response stored; a repeat of the same request with
//! the same key (and token) gets the stored response, marked `Idempotent-Replayed: true`,
//! without anything being uploaded again; a repeat while the first still runs is 409; the same
//! key with a different request is 422.
//!
//! The records live in the bucket itself, so replicas share them with no database:
//! `<root prefix>.uploader/idempotency/<sha256(scope)>/<sha256(key)>.json` (128 bits of each
//! digest, in hex; the reserved
//! directory [`RESERVED_DIR`], which no upload may write: [`is_reserved`]). A record is
//! claimed with a conditional PUT (`If-None-Match: *`) and read back; it says `running` (with a
//! lease the claiming replica renews) until it is overwritten with the final response. What
//! "the same request" means is [`fingerprint`]; the semantics, expiry and the race on servers
//! that ignore conditional writes are in docs/SEMANTICS.md ("Idempotency keys").

pub(crate) mod fingerprint;

pub use crate::reserved::{RESERVED_DIR, is_reserved, reserved_message};

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body as HttpBody;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uploader_core::store::PutOptions;
use uploader_core::{
    Body, KeyPrefix, ObjectKey, ObjectStore, RetryPolicy, ServiceErrorKind, StoreError,
};

use crate::problem::{ApiError, ProblemKind};
use crate::tenants::Auth;

/// The request header.
pub const HEADER: HeaderName = HeaderName::from_static("idempotency-key");
/// The response header of a replayed response.
pub const REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");
/// Longest accepted key, in characters.
pub const MAX_KEY_LEN: usize = 255;
/// Default time a final response is kept for replays.
pub const DEFAULT_TTL: Duration = Duration::from_secs(24 * 3600);
/// Default lease of a `running` record: a replica renews it every third of it while the
/// request runs; one that stopped renewing (crashed) blocks the key this long at most.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);
/// Largest response body stored for replays (a batch of 1 000 results is far less); a larger
/// one is sent to the client in full but not stored: the key is released.
pub(crate) const MAX_STORED_BODY: usize = 16 << 20;

/// How long records count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdempotencyConfig {
    /// A final response is replayed for this long after it was stored; older records are
    /// treated as absent (default [`DEFAULT_TTL`]).
    pub ttl: Duration,
    /// Lease of a `running` record (default [`DEFAULT_LEASE`]).
    pub lease: Duration,
}

impl Default for IdempotencyConfig {
    fn default() -> Self {
        IdempotencyConfig {
            ttl: DEFAULT_TTL,
            lease: DEFAULT_LEASE,
        }
    }
}

/// A valid idempotency key: 1 to [`MAX_KEY_LEN`] printable ASCII characters, sent bare or as
/// a structured-field string (`"..."`, the draft's form; the quotes are not part of the key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// The key of a request, `None` without the header; a 400 problem when it is malformed.
    pub fn from_headers(headers: &HeaderMap) -> Result<Option<IdempotencyKey>, ApiError> {
        let mut values = headers.get_all(&HEADER).iter();
        let Some(value) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(bad_key("send one Idempotency-Key header, not several"));
        }
        IdempotencyKey::parse(value.as_bytes()).map(Some)
    }

    fn parse(raw: &[u8]) -> Result<IdempotencyKey, ApiError> {
        if !raw.iter().all(|b| (0x20..0x7f).contains(b)) {
            return Err(bad_key(
                "the Idempotency-Key must be printable ASCII (no control or non-ASCII characters)",
            ));
        }
        let text = std::str::from_utf8(raw).expect("ASCII");
        let key = match text.strip_prefix('"') {
            Some(rest) => unquote(rest)?,
            None => text.to_owned(),
        };
        if key.is_empty() {
            return Err(bad_key("the Idempotency-Key is empty"));
        }
        if key.len() > MAX_KEY_LEN {
            return Err(bad_key(format!(
                "the Idempotency-Key is longer than {MAX_KEY_LEN} characters"
            )));
        }
        Ok(IdempotencyKey(key))
    }

    /// The key.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The inside of a structured-field string (RFC 8941 3.3.3), after its opening quote.
fn unquote(rest: &str) -> Result<String, ApiError> {
    let mut out = String::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e @ ('"' | '\\')) => out.push(e),
                _ => return Err(bad_key("a quoted Idempotency-Key has an invalid escape")),
            },
            '"' if chars.as_str().is_empty() => return Ok(out),
            '"' => return Err(bad_key("a quoted Idempotency-Key has text after its end")),
            c => out.push(c),
        }
    }
    Err(bad_key("a quoted Idempotency-Key has no closing quote"))
}

fn bad_key(detail: impl Into<String>) -> ApiError {
    ApiError::new(ProblemKind::InvalidIdempotencyKey, detail)
}

/// Whose records a request may see: the same key under two scopes is two keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope(String);

/// The scope of a request: its bearer token (as a SHA-256 digest, never the token), or
/// `anonymous` when the daemon runs without authentication. The one place that decides it.
pub fn idempotency_scope(auth: &Auth, authorization: Option<&[u8]>) -> Scope {
    match crate::auth::bearer_token(authorization) {
        Some(token) if auth.enabled() => {
            let mut h = Sha256::new();
            h.update(b"uploader idempotency scope v1\0");
            h.update(token);
            Scope(format!("token:{}", hex::encode(h.finalize())))
        }
        _ => Scope("anonymous".into()),
    }
}

/// One record, as stored (JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    version: u32,
    state: RecordState,
    /// A random id of the claim that wrote it.
    claim: String,
    /// The replica (process) that claimed it.
    replica: String,
    /// When the request started (ms since the epoch).
    started_at_ms: u64,
    /// Until when a `running` record holds (ms since the epoch).
    lease_until_ms: u64,
    /// When the final response was stored (ms since the epoch).
    completed_at_ms: Option<u64>,
    /// The request's fingerprint (hex), with the final response.
    fingerprint: Option<String>,
    /// The final response.
    response: Option<StoredResponse>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum RecordState {
    Running,
    Completed,
}

/// A stored final response: its status, type and body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StoredResponse {
    status: u16,
    content_type: String,
    body: String,
}

fn now_ms() -> u64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Where a key's record stands for a new request.
pub(crate) enum Begin {
    /// This request holds the key: process it, then [`Claim::finish`].
    Claimed(Box<Claim>),
    /// Another request with the key is running (409).
    Running,
    /// The key has a final response: replay it if the request is the same (else 422).
    Completed(Completed),
}

/// A final response found for a key.
pub(crate) struct Completed {
    fingerprint: Option<String>,
    response: StoredResponse,
}

impl Completed {
    /// The stored response, marked replayed, when `fingerprint` is the stored request's; the
    /// 422 problem otherwise.
    pub(crate) fn replay(self, fingerprint: Option<&str>) -> Result<Response, ApiError> {
        if fingerprint.is_none() || fingerprint != self.fingerprint.as_deref() {
            metrics::counter!("uploader_idempotency_total", "outcome" => "reused").increment(1);
            return Err(ApiError::new(
                ProblemKind::IdempotencyKeyReused,
                "this Idempotency-Key was used for a different request; use a new key for a \
                 new request",
            ));
        }
        metrics::counter!("uploader_idempotency_total", "outcome" => "replayed").increment(1);
        let r = self.response;
        let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::OK);
        let mut resp = (status, r.body).into_response();
        let h = resp.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&r.content_type) {
            h.insert(header::CONTENT_TYPE, v);
        }
        h.insert(REPLAYED, HeaderValue::from_static("true"));
        Ok(resp)
    }
}

/// The records of one daemon (shared by its requests).
#[derive(Debug, Clone)]
pub struct Records {
    store: Arc<dyn ObjectStore>,
    root: KeyPrefix,
    config: IdempotencyConfig,
    retry: RetryPolicy,
    /// This process, as named in the records it writes.
    replica: Arc<str>,
}

impl Records {
    /// Records in `store` under `root`.
    pub fn new(
        store: Arc<dyn ObjectStore>,
        root: KeyPrefix,
        config: IdempotencyConfig,
        retry: RetryPolicy,
    ) -> Records {
        let host = std::env::var("HOSTNAME").unwrap_or_default();
        let replica = format!(
            "{host}:{}:{}",
            std::process::id(),
            hex::encode(rand::random::<[u8; 4]>())
        );
        Records {
            store,
            root,
            config,
            retry,
            replica: replica.into(),
        }
    }

    /// The record's object key: the first 128 bits of each SHA-256, in hex (short keys: the
    /// embedded endpoint fails on keys longer than about 110 to 180 bytes, depending on the bucket name).
    fn object_key(&self, scope: &Scope, key: &IdempotencyKey) -> ObjectKey {
        let s = hex::encode(&Sha256::digest(scope.0.as_bytes())[..16]);
        let k = hex::encode(&Sha256::digest(key.0.as_bytes())[..16]);
        ObjectKey::derive(
            &self.root,
            &format!("{RESERVED_DIR}/idempotency/{s}/{k}.json"),
        )
        .expect("hex segments under a valid prefix are a valid key")
    }

    /// Finds or claims the record of `key` in `scope`.
    pub(crate) async fn begin(
        &self,
        scope: &Scope,
        key: &IdempotencyKey,
    ) -> Result<Begin, ApiError> {
        let object = self.object_key(scope, key);
        let claim = hex::encode(rand::random::<[u8; 16]>());
        let mut record = self.running(&claim, now_ms());
        // Two rounds: a claim that lost a race reads what won it.
        for _ in 0..2 {
            let conditional = match self.read(&object).await? {
                Some(found) => match self.verdict(found) {
                    Some(begin) => return Ok(begin),
                    // Expired, stale or unreadable: taken over by an unconditional write.
                    None => false,
                },
                None => true,
            };
            match self.write(&object, &record, conditional).await {
                Ok(()) => {}
                Err(e) if e.kind() == Some(ServiceErrorKind::PreconditionFailed) => continue,
                Err(e) => return Err(unavailable(&e)),
            }
            // Read back: a server that ignores If-None-Match lets a concurrent claim
            // overwrite ours, and the later writer wins.
            match self.read(&object).await? {
                Some(back) if back.claim == claim => {
                    metrics::counter!("uploader_idempotency_total", "outcome" => "claimed")
                        .increment(1);
                    record = back;
                    return Ok(Begin::Claimed(Box::new(self.hold(object, record))));
                }
                Some(other) => match self.verdict(other) {
                    Some(begin) => return Ok(begin),
                    None => return Ok(in_use()),
                },
                None => return Ok(in_use()),
            }
        }
        Ok(in_use())
    }

    /// What a record found means, `None` when it no longer counts (expired, stale).
    fn verdict(&self, found: Record) -> Option<Begin> {
        let now = now_ms();
        match (found.state, found.completed_at_ms, found.response) {
            (RecordState::Completed, Some(at), Some(response))
                if now < at.saturating_add(ms(self.config.ttl)) =>
            {
                Some(Begin::Completed(Completed {
                    fingerprint: found.fingerprint,
                    response,
                }))
            }
            (RecordState::Running, ..) if now < found.lease_until_ms => Some(in_use()),
            _ => None,
        }
    }

    fn running(&self, claim: &str, started_at_ms: u64) -> Record {
        Record {
            version: 1,
            state: RecordState::Running,
            claim: claim.to_owned(),
            replica: self.replica.to_string(),
            started_at_ms,
            lease_until_ms: now_ms().saturating_add(ms(self.config.lease)),
            completed_at_ms: None,
            fingerprint: None,
            response: None,
        }
    }

    /// The record at `object` (`None`: absent, or not a record of ours).
    async fn read(&self, object: &ObjectKey) -> Result<Option<Record>, ApiError> {
        let bytes = self
            .retried(|| self.store.get(object.as_str()))
            .await
            .map_err(|e| unavailable(&e))?;
        Ok(bytes.and_then(|b| {
            serde_json::from_slice::<Record>(&b)
                .inspect_err(|e| {
                    tracing::warn!(
                        key = object.as_str(),
                        "ignoring an unreadable idempotency record: {e}"
                    )
                })
                .ok()
        }))
    }

    async fn write(
        &self,
        object: &ObjectKey,
        record: &Record,
        if_none_match: bool,
    ) -> Result<(), StoreError> {
        let body = Bytes::from(serde_json::to_vec(record).expect("a record serializes"));
        let opts = PutOptions {
            content_type: Some("application/json".into()),
            if_none_match,
            ..PutOptions::default()
        };
        self.retried(|| self.store.put(object, Body::Bytes(body.clone()), &opts))
            .await
            .map(|_| ())
    }

    /// `op`, retried by the uploader's policy (a 412 is not retried: it is an answer).
    async fn retried<T, F, Fut>(&self, mut op: F) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        let mut attempt = 1;
        loop {
            match op().await {
                Err(e) if self.retry.should_retry(attempt, &e) => {
                    tokio::time::sleep(self.retry.backoff(attempt, &e)).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// Holds a claimed record: renews its lease until the claim is finished or dropped.
    fn hold(&self, object: ObjectKey, record: Record) -> Claim {
        let stop = CancellationToken::new();
        let (records, key, claim, token) = (
            self.clone(),
            object.clone(),
            record.claim.clone(),
            stop.clone(),
        );
        let started = record.started_at_ms;
        let task = tokio::spawn(async move {
            let every = records.config.lease / 3;
            loop {
                tokio::select! {
                    () = token.cancelled() => return,
                    () = tokio::time::sleep(every) => {}
                }
                // Renew only a record that is still ours (after a stall, another replica may
                // have taken it over). A failed read says nothing: try again at the next tick
                // (giving up would let the lease run out under a running request).
                match records.read(&key).await {
                    Ok(Some(r)) if r.claim == claim && r.state == RecordState::Running => {}
                    Ok(_) => return,
                    Err(_) => {
                        tracing::warn!(
                            "reading an idempotency claim to renew it failed; retrying at the next renewal"
                        );
                        continue;
                    }
                }
                if token.is_cancelled() {
                    return;
                }
                let renewed = records.running(&claim, started);
                if let Err(e) = records.write(&key, &renewed, false).await {
                    tracing::warn!("renewing an idempotency claim failed: {e}");
                }
            }
        });
        Claim {
            records: self.clone(),
            object,
            record,
            renewal: Some(Renewal { stop, task }),
            finished: false,
        }
    }
}

fn in_use() -> Begin {
    metrics::counter!("uploader_idempotency_total", "outcome" => "in_use").increment(1);
    Begin::Running
}

/// The idempotency records could not be read or written.
fn unavailable(e: &StoreError) -> ApiError {
    tracing::warn!("idempotency record: {e}");
    ApiError::new(
        ProblemKind::IdempotencyUnavailable,
        "the idempotency record could not be read or written; nothing was uploaded, retry \
         with the same key",
    )
}

/// A key this request holds. Finish it with the response; dropped unfinished (the client
/// went away), the record is deleted so that a retry runs.
pub(crate) struct Claim {
    records: Records,
    object: ObjectKey,
    record: Record,
    renewal: Option<Renewal>,
    finished: bool,
}

/// The task that renews a claim's lease.
struct Renewal {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Renewal {
    /// Stops the renewals and waits for one in flight, so that none lands after what the
    /// claim writes next.
    async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

impl Claim {
    /// Stores `response` as the key's final response when the whole request was read
    /// (`fingerprint` is `Some`), the status is below 500 and not 429, and the body at most
    /// [`MAX_STORED_BODY`]; otherwise releases the key so a retry runs again (a 5xx stored
    /// nothing: a 502 means no file was stored, a 503 that the request was cut short; a 429
    /// passes once the quota allows). Returns the response unchanged. Nothing is written when
    /// the record is no longer this claim's (its lease ran out and another request took it).
    pub(crate) async fn finish(
        mut self,
        response: Response,
        fingerprint: Option<String>,
    ) -> Response {
        self.stop_renewal().await;
        let (parts, body) = response.into_parts();
        // The body is in memory already (a JSON document the handler built): collected whole,
        // it reaches the client whatever its size.
        let bytes = match axum::body::to_bytes(body, usize::MAX).await {
            Ok(b) => b,
            // Only a body that fails to produce its own bytes (never one the handler builds).
            Err(e) => {
                tracing::warn!("an upload response could not be read to store it: {e}");
                self.release_held().await;
                return Response::from_parts(parts, HttpBody::empty());
            }
        };
        let storable = !parts.status.is_server_error()
            && parts.status != StatusCode::TOO_MANY_REQUESTS
            && bytes.len() <= MAX_STORED_BODY;
        if bytes.len() > MAX_STORED_BODY {
            tracing::warn!(
                bytes = bytes.len(),
                "an upload response is too large to store for replays; the key is released"
            );
        }
        match fingerprint {
            Some(_) if storable && !self.still_ours().await => {
                tracing::warn!(
                    "an idempotency claim was taken over before its request finished; its response is not stored"
                );
            }
            Some(fp) if storable => {
                let content_type = parts
                    .headers
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("application/json")
                    .to_owned();
                let done = Record {
                    state: RecordState::Completed,
                    completed_at_ms: Some(now_ms()),
                    fingerprint: Some(fp),
                    response: Some(StoredResponse {
                        status: parts.status.as_u16(),
                        content_type,
                        body: String::from_utf8_lossy(&bytes).into_owned(),
                    }),
                    ..self.record.clone()
                };
                if let Err(e) = self.records.write(&self.object, &done, false).await {
                    // The client gets its answer; the record stays `running` until its lease
                    // ends, then the key is free again.
                    tracing::warn!("storing the response of an idempotency key failed: {e}");
                }
            }
            _ => self.release_held().await,
        }
        Response::from_parts(parts, HttpBody::from(bytes))
    }

    /// Gives the key up without a response (e.g. the request was refused by a quota), so
    /// that a retry runs.
    pub(crate) async fn release(mut self) {
        self.stop_renewal().await;
        self.release_held().await;
    }

    async fn stop_renewal(&mut self) {
        if let Some(renewal) = self.renewal.take() {
            renewal.stop().await;
        }
        self.finished = true;
    }

    /// Deletes the record, if it is still this claim's.
    async fn release_held(&self) {
        release_if_ours(&self.records, &self.object, &self.record.claim).await;
    }

    /// Whether the record is still this claim's `running` one (see [`still_ours`]).
    async fn still_ours(&self) -> bool {
        still_ours(&self.records, &self.object, &self.record.claim).await
    }
}

/// Whether the record at `object` is still the `running` one of `claim`. Read just before a
/// write or a delete: the store has no conditional write on an ETag (`If-Match`) here, so a
/// takeover between the read and the write is still possible, but only by a request that
/// found the lease run out in that instant.
async fn still_ours(records: &Records, object: &ObjectKey, claim: &str) -> bool {
    match records.read(object).await {
        Ok(Some(r)) => r.claim == claim && r.state == RecordState::Running,
        Ok(None) => false,
        // Unreadable now: go ahead (the write or delete fails too if the store is down).
        Err(_) => true,
    }
}

/// Deletes the record at `object` if it is still `claim`'s, so that a retry runs.
async fn release_if_ours(records: &Records, object: &ObjectKey, claim: &str) {
    if !still_ours(records, object, claim).await {
        return;
    }
    if let Err(e) = records
        .retried(|| records.store.delete_object(object.as_str()))
        .await
    {
        tracing::warn!("releasing an idempotency key failed: {e}");
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if !self.finished {
            let (records, object) = (self.records.clone(), self.object.clone());
            let claim = self.record.claim.clone();
            let renewal = self.renewal.take();
            tokio::spawn(async move {
                if let Some(renewal) = renewal {
                    renewal.stop().await;
                }
                release_if_ours(&records, &object, &claim).await;
            });
        }
    }
}

#[cfg(test)]
mod tests;
