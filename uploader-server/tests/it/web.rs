//! What browsers meet: CORS (preflights and labelled responses for the listed origins only),
//! the upload page of `--ui` and its headers, the problem-type pages, request ids.

use axum::body::Body;
use axum::http::{Request, StatusCode};

use crate::common::{Daemon, Options, Part, multipart, upload};

const ALLOWED: &str = "https://app.example.com";

fn preflight(origin: &str) -> Request<Body> {
    Request::options("/v1/uploads")
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type,idempotency-key",
        )
        .body(Body::empty())
        .unwrap()
}

/// A GET of `path` with `headers`.
fn get(path: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut req = Request::get(path);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.body(Body::empty()).unwrap()
}

fn cors_headers(resp: &axum::http::Response<Body>) -> Vec<String> {
    resp.headers()
        .keys()
        .map(|k| k.as_str().to_owned())
        .filter(|k| k.starts_with("access-control-"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preflight_from_a_listed_origin_is_answered_and_others_get_no_allow_origin() {
    let d = Daemon::start(Options {
        cors_origins: vec![ALLOWED, "http://127.0.0.1:3000"],
        ..Options::default()
    })
    .await;
    let (resp, _) = d.send(preflight(ALLOWED)).await;
    assert!(resp.status().is_success(), "{:?}", resp.status());
    let h = resp.headers();
    assert_eq!(h["access-control-allow-origin"], ALLOWED);
    let methods = h["access-control-allow-methods"].to_str().unwrap();
    assert!(
        methods.contains("GET") && methods.contains("POST"),
        "{methods}"
    );
    let allowed = h["access-control-allow-headers"].to_str().unwrap();
    for name in ["authorization", "content-type", "idempotency-key"] {
        assert!(allowed.contains(name), "{name} not in {allowed}");
    }
    assert_eq!(h["access-control-max-age"], "600");
    assert!(h["vary"].to_str().unwrap().contains("origin"));

    // A method or a header that is not allowed (BAD_INPUTS 35): the answer does not list
    // it, so the browser refuses to send the request.
    let odd = Request::options("/v1/uploads")
        .header("origin", ALLOWED)
        .header("access-control-request-method", "DELETE")
        .header("access-control-request-headers", "x-evil")
        .body(Body::empty())
        .unwrap();
    let (resp, _) = d.send(odd).await;
    let h = resp.headers();
    assert!(
        !h["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("DELETE")
    );
    assert!(
        !h["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .contains("x-evil")
    );

    // Another origin, a look-alike, the `null` origin: no Access-Control-Allow-Origin, so
    // the browser refuses to send the request.
    for other in [
        "https://evil.example.com",
        "https://app.example.com.evil.net",
        "http://app.example.com",
        "null",
    ] {
        let (resp, _) = d.send(preflight(other)).await;
        assert!(
            !resp.headers().contains_key("access-control-allow-origin"),
            "{other}: {:?}",
            resp.headers()
        );
    }

    // The request itself, from the listed origin: labelled, with the headers a script reads.
    let mut req = upload(
        Body::from(multipart(&[Part("file", Some("c.txt"), b"cors")])),
        "",
    );
    req.headers_mut()
        .insert("origin", "http://127.0.0.1:3000".parse().unwrap());
    let (resp, json) = d.send(req).await;
    assert_eq!(resp.status(), StatusCode::CREATED, "{json}");
    assert_eq!(
        resp.headers()["access-control-allow-origin"],
        "http://127.0.0.1:3000"
    );
    let exposed = resp.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap();
    for name in ["x-request-id", "retry-after", "idempotent-replayed"] {
        assert!(exposed.contains(name), "{name} not in {exposed}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_listed_origins_there_are_no_cors_headers_at_all() {
    let d = Daemon::start(Options::default()).await;
    let (resp, _) = d.send(preflight(ALLOWED)).await;
    assert_eq!(cors_headers(&resp), Vec::<String>::new());
    let mut req = upload(
        Body::from(multipart(&[Part("file", Some("n.txt"), b"no cors")])),
        "",
    );
    req.headers_mut().insert("origin", ALLOWED.parse().unwrap());
    // A post from a page of another origin is refused (cross-site form posts), still without
    // CORS headers; the daemon's own origin (its Host) and clients that send no Origin may post.
    let (resp, json) = d.send(req).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{json}");
    assert_eq!(json["code"], "forbidden_origin", "{json}");
    assert_eq!(cors_headers(&resp), Vec::<String>::new());
    assert_eq!(d.get("root/n.txt").await, None);
    let mut own = upload(
        Body::from(multipart(&[Part("file", Some("own.txt"), b"own")])),
        "",
    );
    own.headers_mut()
        .insert("origin", "http://uploader.example:8080".parse().unwrap());
    own.headers_mut()
        .insert("host", "uploader.example:8080".parse().unwrap());
    let (resp, json) = d.send(own).await;
    assert_eq!(resp.status(), StatusCode::CREATED, "{json}");
    assert_eq!(cors_headers(&resp), Vec::<String>::new());
    assert_eq!(d.get("root/own.txt").await.as_deref(), Some(&b"own"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upload_page_is_served_with_ui_only_and_under_a_strict_policy() {
    let off = Daemon::start(Options::default()).await;
    let (resp, json) = off.send(get("/", &[])).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(json["type"], "/problems/not_found");

    let on = Daemon::start(Options {
        ui: true,
        ..Options::default()
    })
    .await;
    let (resp, body) = on.send_raw(get("/", &[])).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let h = resp.headers();
    assert!(h["content-type"].to_str().unwrap().starts_with("text/html"));
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["cache-control"], "no-store");
    let csp = h["content-security-policy"].to_str().unwrap();
    for directive in [
        "default-src 'none'",
        "connect-src 'self'",
        "script-src 'sha256-",
        "style-src 'sha256-",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "{directive} not in {csp}");
    }
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    let page = String::from_utf8(body).unwrap();
    assert!(page.contains("id=\"files\"") && page.contains("/v1/uploads"));
    // The API's own answers carry a policy that loads nothing.
    let (resp, _) = on.send(get("/healthz", &[])).await;
    assert_eq!(
        resp.headers()["content-security-policy"],
        "default-src 'none'; frame-ancestors 'none'"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_problem_type_resolves_to_a_page_of_the_daemon() {
    let d = Daemon::start(Options::default()).await;
    // A problem from a request (no token): its type is a path of this daemon...
    let (resp, json) = d
        .send(
            Request::post("/v1/uploads")
                .header("content-type", "multipart/form-data; boundary=x")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(json["code"], "unauthorized");
    let ty = json["type"].as_str().unwrap().to_owned();
    assert_eq!(ty, "/problems/unauthorized");
    // ... which explains it, without authentication.
    let (resp, body) = d.send_raw(get(&ty, &[])).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = String::from_utf8(body).unwrap();
    assert!(text.starts_with("unauthorized: HTTP 401"), "{text}");
    assert!(text.contains("Authorization: Bearer"), "{text}");
    // Every code of the OpenAPI document has its page.
    let (_, doc) = d.send(get("/openapi.json", &[])).await;
    let codes = doc["components"]["schemas"]["Problem"]["properties"]["code"]["enum"]
        .as_array()
        .unwrap()
        .clone();
    assert!(codes.len() >= 16, "{codes:?}");
    for code in codes {
        let code = code.as_str().unwrap();
        let (resp, _) = d.send_raw(get(&format!("/problems/{code}"), &[])).await;
        assert_eq!(resp.status(), StatusCode::OK, "{code}");
    }
    let (resp, json) = d.send(get("/problems/no_such_code", &[])).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(json["code"], "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_client_request_id_is_kept_and_anything_else_replaced() {
    let d = Daemon::start(Options::default()).await;
    let mut req = upload(
        Body::from(multipart(&[Part("file", Some("id.txt"), b"id")])),
        "",
    );
    req.headers_mut()
        .insert("x-request-id", "lb-7f3a.42".parse().unwrap());
    let (resp, json) = d.send(req).await;
    assert_eq!(resp.headers()["x-request-id"], "lb-7f3a.42");
    assert_eq!(json["request_id"], "lb-7f3a.42");
    let (resp, _) = d
        .send(get(
            "/healthz",
            &[("x-request-id", "{\"injected\": true} and spaces")],
        ))
        .await;
    let id = resp.headers()["x-request-id"].to_str().unwrap();
    assert_eq!(id.len(), 16, "{id}");
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
}
