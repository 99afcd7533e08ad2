//! Every status the endpoint can answer, through `oneshot`, and the multipart-form cases of
//! BAD_INPUTS.md sections 18–24.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use bytes::Bytes;
use uploader_core::ObjectStore as _;
use uploader_core::store::{Fault, FaultRule, FaultyStore, Operation};
use uploader_server::Limits;

use crate::common::{BOUNDARY, Daemon, Options, Part, TOKEN, data, multipart, upload};

fn body(parts: &[Part<'_>]) -> Body {
    Body::from(multipart(parts))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_files_stored_is_201_with_results_in_order() {
    let d = Daemon::start(Options::default()).await;
    let (resp, json) = d
        .send(upload(
            body(&[
                Part("file", Some("a.txt"), b"hello\n"),
                Part("file", Some("dir/b.json"), b"{\"x\": 1}"),
            ]),
            "?prefix=batch",
        ))
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED, "{json}");
    assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
    assert_eq!(resp.headers()["cache-control"], "no-store");
    assert_eq!(
        json["request_id"],
        resp.headers()["x-request-id"].to_str().unwrap()
    );
    assert_eq!(json["summary"]["total"], 2);
    assert_eq!(json["summary"]["succeeded"], 2);
    assert_eq!(json["summary"]["bytes"], 14);
    let r = &json["results"];
    assert_eq!(r[0]["index"], 0);
    assert_eq!(r[0]["key"], "root/batch/a.txt");
    assert_eq!(r[0]["content_type"], "text/plain");
    assert!(r[0]["checksum"].as_str().unwrap().starts_with("crc32c:"));
    assert!(r[0]["etag"].is_string());
    assert_eq!(r[1]["key"], "root/batch/dir/b.json");
    assert_eq!(r[1]["content_type"], "application/json");
    assert_eq!(d.get("root/batch/a.txt").await.unwrap(), b"hello\n");
    let meta = d.s3.head("root/batch/dir/b.json").await.unwrap().unwrap();
    assert_eq!(meta.content_type.as_deref(), Some("application/json"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_batch_is_207_and_only_the_good_file_is_stored() {
    let d = Daemon::start(Options::default()).await;
    let (resp, json) = d
        .send(upload(
            body(&[
                Part("file", Some("evil.png"), b"<html><script>alert(1)</script>"),
                Part("file", Some("../../etc/passwd"), b"root:x:0:0"),
                Part("file", Some("good.txt"), b"good"),
            ]),
            "",
        ))
        .await;
    assert_eq!(resp.status(), StatusCode::MULTI_STATUS, "{json}");
    let r = &json["results"];
    assert_eq!(r[0]["error"]["code"], "mime_not_allowed");
    assert!(
        r[0]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("text/html")
    );
    assert_eq!(r[1]["error"]["code"], "invalid_key");
    assert_eq!(r[1]["error"]["retryable"], false);
    assert_eq!(r[2]["status"], "uploaded");
    assert_eq!(json["summary"]["failed"], 2);
    assert_eq!(d.get("root/good.txt").await.unwrap(), b"good");
    assert!(d.get("root/evil.png").await.is_none());
    assert!(d.get("etc/passwd").await.is_none());
    assert!(d.get("root/etc/passwd").await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_invalid_is_422_and_duplicates_and_nameless_parts_are_per_file_errors() {
    let d = Daemon::start(Options::default()).await;
    let (resp, json) = d
        .send(upload(
            body(&[
                Part("file", Some("x.sh"), b"#!/bin/sh\nrm -rf /\n"),
                Part("file", None, b"no filename"),
                Part("file", Some("C:\\win.ini"), b"[x]"),
                Part("file", Some("\u{202e}gnp.exe"), b"x"),
            ]),
            "",
        ))
        .await;
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY, "{json}");
    let codes: Vec<_> = json["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["error"]["code"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        codes,
        [
            "mime_not_allowed",
            "invalid_key",
            "invalid_key",
            "invalid_key"
        ]
    );

    // Two parts with the same name: the second is a duplicate, the first is stored.
    let (resp, json) = d
        .send(upload(
            body(&[
                Part("file", Some("same.txt"), b"first"),
                Part("files", Some("same.txt"), b"second"),
            ]),
            "",
        ))
        .await;
    assert_eq!(resp.status(), StatusCode::MULTI_STATUS, "{json}");
    assert_eq!(json["results"][1]["error"]["code"], "duplicate_key");
    assert_eq!(d.get("root/same.txt").await.unwrap(), b"first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_failure_of_every_file_is_502() {
    let d = Daemon::start(Options {
        wrap: Some(Box::new(|inner| {
            Arc::new(FaultyStore::new(
                inner,
                vec![FaultRule::always(
                    Operation::Put,
                    Fault::Error {
                        status: 500,
                        code: "InternalError",
                    },
                )],
            ))
        })),
        ..Options::default()
    })
    .await;
    let (resp, json) = d
        .send(upload(body(&[Part("file", Some("a.txt"), b"hello")]), ""))
        .await;
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY, "{json}");
    assert_eq!(json["results"][0]["error"]["code"], "upstream_error");
    assert_eq!(json["results"][0]["error"]["retryable"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_cases() {
    let d = Daemon::start(Options::default()).await;
    let long = format!("Bearer {}", "A".repeat(64 * 1024));
    let last_byte = format!("Bearer {}X", &TOKEN[..TOKEN.len() - 1]);
    for auth in [
        None,
        Some("Basic dXNlcjpwYXNz"),
        Some("Bearer"),
        Some("Bearer wrong-token-0123456789"),
        Some(last_byte.as_str()),
        Some(long.as_str()),
    ] {
        let mut req = Request::post("/v1/uploads").header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        );
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let req = req
            .body(body(&[Part("file", Some("a.txt"), b"x")]))
            .unwrap();
        let (resp, json) = d.send(req).await;
        assert_eq!(
            resp.status(),
            StatusCode::UNAUTHORIZED,
            "{:?}",
            auth.map(|a| &a[..a.len().min(40)])
        );
        assert_eq!(resp.headers()["content-type"], "application/problem+json");
        assert_eq!(resp.headers()["www-authenticate"], "Bearer");
        assert_eq!(json["status"], 401);
    }
    assert!(d.get("root/a.txt").await.is_none());
    // Health, readiness and metrics need no token.
    for path in ["/healthz", "/readyz", "/metrics", "/openapi.json"] {
        let (resp, _) = d
            .send(Request::get(path).body(Body::empty()).unwrap())
            .await;
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_requests_are_413_declared_or_streamed() {
    let d = Daemon::start(Options {
        limits: Limits {
            max_request_size: 64 * 1024,
            max_file_size: 16 * 1024,
            max_files: 3,
            ..Limits::default()
        },
        ..Options::default()
    })
    .await;
    // Declared Content-Length over the limit: refused before reading.
    let mut req = upload(body(&[Part("file", Some("a.txt"), b"x")]), "");
    req.headers_mut()
        .insert("content-length", "999999".parse().unwrap());
    let (resp, json) = d.send(req).await;
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE, "{json}");
    assert_eq!(json["type"], "/problems/request_too_large");

    // Chunked (no length) and over the limit: 413 once the limit is crossed, with the results
    // of the files handled before.
    let big = "a".repeat(100 * 1024);
    let bytes = multipart(&[
        Part("file", Some("small.txt"), b"first"),
        Part("file", Some("big.txt"), big.as_bytes()),
    ]);
    let stream = futures::stream::iter(
        bytes
            .chunks(4096)
            .map(|c| Ok::<_, std::io::Error>(Bytes::copy_from_slice(c)))
            .collect::<Vec<_>>(),
    );
    let (resp, json) = d.send(upload(Body::from_stream(stream), "")).await;
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE, "{json}");
    assert_eq!(json["results"][0]["status"], "uploaded", "{json}");
    assert_eq!(json["results"][1]["status"], "failed", "{json}");
    assert!(d.get("root/big.txt").await.is_none());

    // One file over the per-file limit fails alone.
    let huge = "b".repeat(20 * 1024);
    let (resp, json) = d
        .send(upload(
            body(&[
                Part("file", Some("ok.txt"), b"fine"),
                Part("file", Some("huge.txt"), huge.as_bytes()),
            ]),
            "",
        ))
        .await;
    assert_eq!(resp.status(), StatusCode::MULTI_STATUS, "{json}");
    assert_eq!(json["results"][1]["error"]["code"], "file_too_large");
    assert!(d.get("root/huge.txt").await.is_none());

    // Too many parts (BAD_INPUTS 20, scaled to the limit of 3).
    let parts: Vec<_> = (0..5).map(|_| Part("file", Some("t.txt"), b"t")).collect();
    let (resp, json) = d.send(upload(body(&parts), "")).await;
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE, "{json}");
    assert_eq!(json["type"], "/problems/too_many_files");
    assert_eq!(json["results"].as_array().unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_multipart_is_400_and_not_multipart_is_415() {
    let d = Daemon::start(Options::default()).await;
    let good = multipart(&[Part("file", Some("a.txt"), b"x")]);
    // No boundary parameter.
    let mut req = upload(Body::from(good.clone()), "");
    req.headers_mut()
        .insert("content-type", "multipart/form-data".parse().unwrap());
    assert_eq!(d.send(req).await.0.status(), StatusCode::BAD_REQUEST);
    // Wrong boundary.
    let mut req = upload(Body::from(good.clone()), "");
    req.headers_mut().insert(
        "content-type",
        "multipart/form-data; boundary=other".parse().unwrap(),
    );
    assert_eq!(d.send(req).await.0.status(), StatusCode::BAD_REQUEST);
    // No closing boundary.
    let truncated = good[..good.len() - (BOUNDARY.len() + 6)].to_vec();
    let (resp, json) = d.send(upload(Body::from(truncated), "")).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{json}");
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    // LF-only line endings.
    let lf: Vec<u8> = String::from_utf8(good.clone())
        .unwrap()
        .replace("\r\n", "\n")
        .into_bytes();
    assert_eq!(
        d.send(upload(Body::from(lf), "")).await.0.status(),
        StatusCode::BAD_REQUEST
    );
    // 100 headers in one part.
    let mut many = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"h.txt\"\r\n"
    );
    for i in 0..100 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str(&format!("\r\nx\r\n--{BOUNDARY}--\r\n"));
    assert_eq!(
        d.send(upload(Body::from(many), "")).await.0.status(),
        StatusCode::BAD_REQUEST
    );
    // Unknown field, prefix after files, duplicate prefix, a huge text field.
    for (parts, kind) in [
        (vec![Part("comment", None, b"hi")], "unknown_field"),
        (
            vec![
                Part("file", Some("a.txt"), b"x"),
                Part("prefix", None, b"p"),
            ],
            "misplaced_prefix",
        ),
        (
            vec![Part("prefix", None, b"p"), Part("prefix", None, b"q")],
            "misplaced_prefix",
        ),
        (
            vec![Part("prefix", None, &[b'p'; 2 << 20])],
            "field_too_large",
        ),
        (vec![Part("prefix", None, b"../up")], "invalid_prefix"),
    ] {
        let (resp, json) = d.send(upload(body(&parts), "")).await;
        assert!(resp.status().is_client_error(), "{kind}: {json}");
        assert_eq!(json["type"], format!("/problems/{kind}"), "{json}");
        assert_eq!(json["code"], kind, "{json}");
    }
    // Not multipart at all.
    let req = Request::post("/v1/uploads")
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/json")
        .body(Body::from("{}"))
        .unwrap();
    assert_eq!(
        d.send(req).await.0.status(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
    // No files at all.
    let (resp, json) = d.send(upload(body(&[]), "")).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{json}");
    assert!(
        d.get("root/a.txt").await.is_none() || d.get("root/a.txt").await == Some(b"x".to_vec())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_disconnects_mid_part_leaves_no_multipart_upload() {
    let d = Daemon::start(Options {
        allow_binary: true,
        ..Options::default()
    })
    .await;
    // 30 MiB promised, 20 MiB sent, then the connection breaks.
    let head = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.bin\"\r\n\r\n"
    );
    let payload = data(20 << 20, 5);
    let mut chunks: Vec<Result<Bytes, std::io::Error>> = vec![Ok(Bytes::from(head))];
    chunks.extend(
        payload
            .chunks(1 << 20)
            .map(|c| Ok(Bytes::copy_from_slice(c))),
    );
    chunks.push(Err(std::io::Error::new(
        std::io::ErrorKind::ConnectionReset,
        "reset",
    )));
    let (resp, json) = d
        .send(upload(Body::from_stream(futures::stream::iter(chunks)), ""))
        .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{json}");
    assert_eq!(json["results"][0]["status"], "failed", "{json}");
    assert_eq!(d.pending().await, 0, "a multipart upload was left open");
    assert!(d.get("root/big.bin").await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_times_out_with_408() {
    let d = Daemon::start(Options {
        limits: Limits {
            body_idle_timeout: Duration::from_millis(300),
            ..Limits::default()
        },
        ..Options::default()
    })
    .await;
    let head = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"slow.txt\"\r\n\r\nsome"
    );
    let stream = futures::stream::once(async move { Ok::<_, std::io::Error>(Bytes::from(head)) })
        .chain(futures::stream::pending());
    let t0 = std::time::Instant::now();
    let (resp, json) = d.send(upload(Body::from_stream(stream), "")).await;
    assert_eq!(resp.status(), StatusCode::REQUEST_TIMEOUT, "{json}");
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert!(d.get("root/slow.txt").await.is_none());
}

use futures::StreamExt as _;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_concurrency_limit_is_503_with_retry_after_but_health_is_served() {
    let d = Daemon::start(Options {
        limits: Limits {
            max_concurrent_uploads: 1,
            ..Limits::default()
        },
        ..Options::default()
    })
    .await;
    // Hold the only slot with a request whose body never ends.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
    let head = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"held.txt\"\r\n\r\nx"
    );
    tx.send(Ok(Bytes::from(head))).await.unwrap();
    let stream = tokio_stream_from(rx);
    let app = uploader_server::app(d.state.clone());
    let held = tokio::spawn({
        use tower::ServiceExt as _;
        let req = upload(Body::from_stream(stream), "");
        async move { app.oneshot(req).await.unwrap().status() }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (resp, json) = d
        .send(upload(body(&[Part("file", Some("b.txt"), b"x")]), ""))
        .await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE, "{json}");
    assert_eq!(resp.headers()["retry-after"], "1");
    let (h, _) = d
        .send(Request::get("/healthz").body(Body::empty()).unwrap())
        .await;
    assert_eq!(h.status(), StatusCode::OK);
    let (m, _) = d
        .send(Request::get("/metrics").body(Body::empty()).unwrap())
        .await;
    assert_eq!(m.status(), StatusCode::OK);
    // Finish the held request: it succeeds, and the slot is free again.
    tx.send(Ok(Bytes::from(format!("\r\n--{BOUNDARY}--\r\n"))))
        .await
        .unwrap();
    drop(tx);
    assert_eq!(held.await.unwrap(), StatusCode::CREATED);
    let (resp, _) = d
        .send(upload(body(&[Part("file", Some("c.txt"), b"x")]), ""))
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_false_with_bad_credentials() {
    let d = Daemon::start(Options::default()).await;
    let mut cfg = d.server.s3_config();
    cfg.credentials = Some(uploader_core::StaticCredentials {
        access_key_id: "WRONGKEYWRONGKEYWRON".into(),
        secret_access_key: "wrongwrongwrongwrongwrongwrongwrongwrong".into(),
    });
    let bad = Arc::new(uploader_core::S3Store::connect(&cfg).await.unwrap());
    let state = uploader_server::AppState::new(
        uploader_core::Uploader::builder()
            .with_store(bad.clone())
            .build()
            .unwrap(),
        uploader_core::KeyPrefix::root(),
        Limits::default(),
        &[],
        Some(bad),
    );
    use tower::ServiceExt as _;
    let resp = uploader_server::app(state)
        .oneshot(Request::get("/readyz").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let (ok, json) = d
        .send(Request::get("/readyz").body(Body::empty()).unwrap())
        .await;
    assert_eq!(ok.status(), StatusCode::OK, "{json}");
    assert_eq!(json["ready"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_use_the_product_names() {
    let d = Daemon::start(Options::default()).await;
    d.send(upload(
        body(&[
            Part("file", Some("m.txt"), b"x"),
            Part("file", Some("m.png"), b"x"),
        ]),
        "",
    ))
    .await;
    let resp = {
        use tower::ServiceExt as _;
        uploader_server::app(d.state.clone())
            .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
            .await
            .unwrap()
    };
    use http_body_util::BodyExt as _;
    let text = String::from_utf8(
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    for name in [
        "uploader_files_total{outcome=\"uploaded\"}",
        "uploader_files_total{outcome=\"failed\"}",
        "uploader_bytes_total",
        "uploader_upload_duration_seconds_bucket",
        "uploader_batch_duration_seconds_bucket",
        "uploader_batches_total{status=\"207\"}",
        "uploader_retries_total",
        "uploader_in_flight_requests",
        "http_requests_total",
        "http_request_duration_seconds_bucket",
    ] {
        assert!(text.contains(name), "missing {name}\n{text}");
    }
}

/// Sniffing through HTTP: an executable under an image name is `mime_not_allowed` (not a name
/// mismatch), an allowed type under another type's extension is `mime_mismatch`, and random
/// bytes that begin with one of `infer`'s weak magic numbers (a DER certificate's `30 82`, a
/// COFF object's `4C 01`) are stored as `application/octet-stream` when that is allowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sniffing_refuses_by_content_and_stores_random_bytes_as_binary() {
    let d = Daemon::start(Options {
        allow_binary: true,
        ..Options::default()
    })
    .await;
    let mut elf = vec![0x7f, b'E', b'L', b'F', 2, 1, 1, 0];
    elf.resize(64, 0);
    elf[16] = 2; // ET_EXEC
    elf[18] = 0x3e; // x86-64
    elf.extend(data(4000, 1));
    let mut der = vec![0x30, 0x82];
    der.extend(data(9000, 2));
    let mut coff = vec![0x4c, 0x01];
    coff.extend(data(9000, 3));
    let (resp, json) = d
        .send(upload(
            body(&[
                Part("file", Some("evil.png"), &elf),
                Part("file", Some("notes.png"), b"plain words, not a picture\n"),
                Part("file", Some("cert-like.bin"), &der),
                Part("file", Some("coff-like.bin"), &coff),
            ]),
            "?prefix=sniff",
        ))
        .await;
    assert_eq!(resp.status(), StatusCode::MULTI_STATUS, "{json}");
    let r = &json["results"];
    assert_eq!(r[0]["error"]["code"], "mime_not_allowed", "{json}");
    assert_eq!(r[1]["error"]["code"], "mime_mismatch", "{json}");
    for (i, key, bytes) in [
        (2, "root/sniff/cert-like.bin", &der),
        (3, "root/sniff/coff-like.bin", &coff),
    ] {
        assert_eq!(r[i]["status"], "uploaded", "{json}");
        assert_eq!(r[i]["content_type"], "application/octet-stream", "{json}");
        assert!(d.get(key).await.unwrap() == *bytes, "{key}");
    }
    assert_eq!(d.get("root/sniff/evil.png").await, None);
}
