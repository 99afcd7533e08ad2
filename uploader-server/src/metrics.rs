//! Prometheus metrics (names from PRODUCT.md), recorded with the `metrics` facade.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

const DURATION_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// The process-wide recorder (installed once; every app in the process shares it).
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), DURATION_BUCKETS)
            .expect("valid buckets")
            .build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed by an embedding program: then ours only
        // renders what is recorded through it, which is nothing; that is the embedder's choice.
        let _ = metrics::set_global_recorder(recorder);
        describe();
        handle
    })
}

/// Records the end of one upload request.
pub(crate) fn batch_done(status: u16, elapsed: std::time::Duration) {
    metrics::counter!("uploader_batches_total", "status" => status.to_string()).increment(1);
    metrics::histogram!("uploader_batch_duration_seconds").record(elapsed.as_secs_f64());
}

/// Per-token counters. The `token` label is a token id: one of the configured ids, `plain` or
/// `anonymous`, never a token, so the set of label values is bounded by the operator's file.
pub(crate) fn token_request(id: &str) {
    metrics::counter!("uploader_token_requests_total", "token" => id.to_owned()).increment(1);
}

/// A request of token `id` refused for its quota.
pub(crate) fn token_refused(id: &str) {
    metrics::counter!("uploader_token_quota_refusals_total", "token" => id.to_owned()).increment(1);
}

/// The files and stored bytes of a request of token `id`.
pub(crate) fn token_batch(id: &str, files: usize, bytes: u64) {
    metrics::counter!("uploader_token_files_total", "token" => id.to_owned())
        .increment(files as u64);
    metrics::counter!("uploader_token_bytes_total", "token" => id.to_owned()).increment(bytes);
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!("uploader_files_total", "Files processed, by outcome");
    describe_counter!("uploader_bytes_total", "Bytes of files stored");
    describe_histogram!("uploader_upload_duration_seconds", "Time to store one file");
    describe_histogram!(
        "uploader_batch_duration_seconds",
        "Time to serve one upload request"
    );
    describe_counter!("uploader_batches_total", "Upload requests, by HTTP status");
    describe_counter!("uploader_retries_total", "S3 requests retried");
    describe_counter!(
        "uploader_multipart_aborts_total",
        "Multipart uploads aborted"
    );
    describe_gauge!("uploader_in_flight_requests", "S3 requests in flight");
    describe_counter!(
        "uploader_token_requests_total",
        "Upload requests admitted, by token id"
    );
    describe_counter!(
        "uploader_token_quota_refusals_total",
        "Upload requests refused for a quota (429), by token id"
    );
    describe_counter!(
        "uploader_token_files_total",
        "File parts received, by token id"
    );
    describe_counter!("uploader_token_bytes_total", "Bytes stored, by token id");
    describe_counter!(
        "uploader_idempotency_total",
        "Requests with an Idempotency-Key, by outcome (claimed, replayed, in_use, reused)"
    );
    describe_counter!("http_requests_total", "HTTP requests, by route and status");
    describe_histogram!(
        "http_request_duration_seconds",
        "HTTP request latency, by route"
    );
}
