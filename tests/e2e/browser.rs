//! In a real browser (headless Chromium through chromedriver, `uploader_e2e::webdriver`): the
//! upload page of `uploader serve --ui`, and the API called from a page of another origin,
//! allowed by `--cors-origin` or blocked by the browser.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use uploader_core::{EmbeddedS3, ObjectStore as _};
use uploader_e2e::webdriver::Browser;
use uploader_e2e::write;

use crate::harness::{Daemon, Target};

const TOKEN: &str = "browser-token-0123456789abcdef";

/// A 1×1 PNG.
const PNG: [u8; 70] = [
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0xf8, 0xcf, 0xc0, 0xf0,
    0x1f, 0x00, 0x05, 0x00, 0x01, 0xff, 0x89, 0x99, 0x3d, 0x1d, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45,
    0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];

/// How long a page may take to show its answer (the machine may be loaded).
const PATIENCE: Duration = Duration::from_secs(15);

/// The daemon in front of an embedded endpoint of this process, with `flags`.
fn daemon(t: &Target, home: &Path, flags: &[&str]) -> Daemon {
    let mut all = vec!["--tokens", TOKEN, "--checksum", "crc32c"];
    all.extend_from_slice(flags);
    // The daemon checks the bucket on the endpoint this runtime serves: off its workers.
    tokio::task::block_in_place(|| Daemon::start_with(t, home, &t.endpoint, &all))
}

/// The page's results table: (file name, status, key or reason) per row.
async fn rows(b: &Browser) -> Vec<(String, String, String)> {
    let v = b
        .execute(
            "return Array.from(document.querySelectorAll('#rows tr')).map(tr => \
               Array.from(tr.children).map(td => td.textContent));",
            json!([]),
        )
        .await;
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let c = |i: usize| r[i].as_str().unwrap().to_owned();
            (c(1), c(4), c(5))
        })
        .collect()
}

/// Three files picked on the page (one refused by sniffing, one whose name is HTML), the token
/// typed in, Upload clicked: the page shows the 207 per file, as text; the two good files are
/// stored with their bytes, the refused one is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upload_page_uploads_three_files_and_shows_the_207() {
    let (home, src, store_dir) = (tempdir(), tempdir(), tempdir());
    let server = EmbeddedS3::start(store_dir.path(), "web").await.unwrap();
    let t = Target::embedded(&server);
    let d = daemon(&t, home.path(), &["--ui"]);
    // The name is markup: rendered as text, it creates no element.
    let notes_name = "<i id=injected>notes.txt";
    let notes = write(src.path(), notes_name, b"plain notes\n");
    let pixel = write(src.path(), "pixel.png", &PNG);
    let fake = write(
        src.path(),
        "cat.png",
        b"<!doctype html><html><script>alert(1)</script></html>",
    );

    let b = Browser::start().await;
    let page = format!("http://127.0.0.1:{}/", d.port);
    b.goto(&page).await;
    b.send_keys(&b.find("#token").await, TOKEN).await;
    b.send_keys(&b.find("#prefix").await, "web").await;
    let paths = [&notes, &pixel, &fake].map(|p| p.display().to_string());
    b.send_keys(&b.find("#files").await, &paths.join("\n"))
        .await;
    b.click(&b.find("#submit").await).await;
    let state = b
        .wait_for(
            "return document.getElementById('status').dataset.state;",
            PATIENCE,
            |v| v == "done" || v == "error",
        )
        .await;
    let status = b.text(&b.find("#status").await).await;
    assert_eq!(state, "done", "{status}");
    assert!(
        status.starts_with("207") && status.contains("2 uploaded, 1 failed"),
        "{status}"
    );

    let rows = rows(&b).await;
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert_eq!(rows[0].0, notes_name);
    assert_eq!(rows[0].1, "uploaded");
    assert!(
        rows[0].2.starts_with("web/<i id=injected>notes.txt"),
        "{rows:?}"
    );
    assert_eq!(rows[1].1, "uploaded");
    assert_eq!(rows[1].2, "web/pixel.png (image/png)");
    assert_eq!(rows[2].0, "cat.png");
    assert_eq!(rows[2].1, "failed");
    assert!(
        rows[2].2.starts_with("mime_not_allowed: ") && rows[2].2.contains("text/html"),
        "{rows:?}"
    );
    let page_state = b
        .execute(
            "return {injected: document.getElementById('injected') !== null, url: location.href, \
               stored: sessionStorage.length + localStorage.length, \
               progress: Number(document.getElementById('results').dataset.progressEvents || 0), \
               bars: Array.from(document.querySelectorAll('progress')).map(p => p.value)};",
            json!([]),
        )
        .await;
    assert_eq!(page_state["injected"], false, "{page_state}");
    assert_eq!(page_state["url"], page, "the token never goes in a URL");
    assert_eq!(page_state["stored"], 0, "the token is not stored");
    assert!(
        page_state["progress"].as_u64().unwrap() >= 1,
        "{page_state}"
    );
    assert_eq!(page_state["bars"], json!([1, 1, 1]));
    drop(b);

    let store = t.direct().await;
    let got = store.get("web/<i id=injected>notes.txt").await.unwrap();
    assert_eq!(got.as_deref(), Some(&b"plain notes\n"[..]));
    assert_eq!(
        store.get("web/pixel.png").await.unwrap().as_deref(),
        Some(&PNG[..])
    );
    let meta = store.head("web/pixel.png").await.unwrap().unwrap();
    assert_eq!(meta.content_type.as_deref(), Some("image/png"));
    assert!(store.head("web/cat.png").await.unwrap().is_none());
}

/// The page of another origin: a script that posts one file with `fetch` and `FormData`
/// (with the Authorization header, so the browser sends a preflight first) and reports what
/// it could read.
const CALLER: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>caller</title></head>
<body><pre id="out"></pre>
<script>
window.tryUpload = async (api, token, name) => {
  const form = new FormData();
  form.append("prefix", "cors");
  form.append("file", new Blob(["sent from " + location.origin + "\n"], {type: "text/plain"}), name);
  let out;
  try {
    const r = await fetch(api + "/v1/uploads", {
      method: "POST", headers: {"Authorization": "Bearer " + token}, body: form});
    out = {ok: true, status: r.status, requestId: r.headers.get("x-request-id"), body: await r.json()};
  } catch (e) {
    out = {ok: false, error: e.name, message: String(e.message)};
  }
  document.getElementById("out").textContent = JSON.stringify(out);
  return out;
};
</script></body></html>
"#;

/// Serves [`CALLER`] at `/` on a new loopback port; its origin.
async fn caller_origin() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(|| async { axum::response::Html(CALLER) }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

/// Runs `tryUpload` in the page at `origin`; what it reported.
async fn try_upload(b: &Browser, origin: &str, api: &str, name: &str) -> Value {
    b.goto(&format!("{origin}/")).await;
    let v = b
        .execute_async(
            "tryUpload(arguments[0], arguments[1], arguments[2]).then(arguments[3]);",
            json!([api, TOKEN, name]),
        )
        .await;
    // What the script wrote into its page is what it returned.
    let shown = b.text(&b.find("#out").await).await;
    assert_eq!(serde_json::from_str::<Value>(&shown).unwrap(), v);
    v
}

/// From an origin listed in `--cors-origin`, the script posts and reads the 201 and the
/// exposed request id; from another origin the browser blocks the call (fetch rejects with a
/// TypeError after the refused preflight) and nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_of_an_allowed_origin_calls_the_api_and_another_is_blocked() {
    let (home, store_dir) = (tempdir(), tempdir());
    let server = EmbeddedS3::start(store_dir.path(), "cors").await.unwrap();
    let t = Target::embedded(&server);
    let (allowed, other) = (caller_origin().await, caller_origin().await);
    let d = daemon(&t, home.path(), &["--cors-origin", &allowed]);
    let api = format!("http://127.0.0.1:{}", d.port);
    let b = Browser::start().await;

    let ok = try_upload(&b, &allowed, &api, "hello.txt").await;
    assert_eq!(ok["ok"], true, "{ok}");
    assert_eq!(ok["status"], 201, "{ok}");
    assert_eq!(ok["body"]["results"][0]["key"], "cors/hello.txt", "{ok}");
    assert_eq!(
        ok["requestId"], ok["body"]["request_id"],
        "x-request-id is exposed"
    );

    let blocked = try_upload(&b, &other, &api, "blocked.txt").await;
    assert_eq!(blocked["ok"], false, "{blocked}");
    assert_eq!(blocked["error"], "TypeError", "{blocked}");
    drop(b);

    let store = t.direct().await;
    let stored = store.get("cors/hello.txt").await.unwrap().unwrap();
    assert_eq!(&stored[..], format!("sent from {allowed}\n").as_bytes());
    assert!(store.head("cors/blocked.txt").await.unwrap().is_none());
    // The browser stopped at the preflight: the daemon's access log has both preflights and
    // one upload.
    let log = d.log();
    let count = |what: &str| log.lines().filter(|l| l.contains(what)).count();
    assert_eq!(count("method=POST path=/v1/uploads"), 1, "{log}");
    assert_eq!(count("method=OPTIONS path=/v1/uploads"), 2, "{log}");
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}
