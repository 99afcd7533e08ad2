//! Headless Chromium for the browser tests, driven by `chromedriver` over its W3C WebDriver
//! HTTP API on a loopback port: the Debian `chromium` and `chromium-driver` packages, which
//! `tests/servers/setup.sh` installs (scripts/test.sh runs it).
//!
//! A dozen WebDriver calls (new session, navigate, find, send keys, click, text, execute
//! script, delete session) as plain JSON over HTTP, rather than a WebDriver crate: they are all
//! the tests need, and they build with the hyper client this crate already has.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

use crate::servers::free_port;

/// The key under which WebDriver names an element.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A program of the system `PATH` (or /usr/bin, which a trimmed `PATH` may lack); fails with
/// the set-up command when it is missing.
fn system_bin(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{name} is not installed: run ./tests/servers/setup.sh (scripts/test.sh does), \
                 which installs the Debian packages chromium and chromium-driver"
            )
        })
}

/// `chromedriver` on a free loopback port, with one Chromium session; both end when dropped.
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: Client<HttpConnector, Full<Bytes>>,
    _profile: tempfile::TempDir,
}

/// An element of the page (its WebDriver id).
#[derive(Debug, Clone)]
pub struct Element(String);

impl Browser {
    /// Starts chromedriver and a headless Chromium with a fresh profile.
    pub async fn start() -> Browser {
        let chromium = system_bin("chromium");
        let driver_bin = system_bin("chromedriver");
        let port = free_port();
        let driver = Command::new(driver_bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let profile = tempfile::tempdir().unwrap();
        let mut b = Browser {
            driver,
            base: format!("http://127.0.0.1:{port}"),
            session: String::new(),
            http: Client::builder(TokioExecutor::new()).build_http(),
            _profile: profile,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(v) = b.call("GET", "/status", None).await
                && v["value"]["ready"] == true
            {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let args = [
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(), // the tests run as root
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            format!("--user-data-dir={}", b._profile.path().display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "pageLoadStrategy": "normal",
            "timeouts": {"script": 15000, "pageLoad": 15000},
            "goog:chromeOptions": {"binary": chromium, "args": args},
        }}});
        let v = b
            .call("POST", "/session", Some(caps))
            .await
            .expect("a Chromium session starts");
        b.session = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"))
            .to_owned();
        b
    }

    /// One WebDriver call; the answer's JSON, or the WebDriver error it carries.
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let req = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(
                body.map(|b| b.to_string()).unwrap_or_default(),
            )))
            .unwrap();
        let resp = self.http.request(req).await.map_err(|e| e.to_string())?;
        let ok = resp.status().is_success();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        let v: Value = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
        if ok {
            Ok(v)
        } else {
            Err(v["value"].to_string())
        }
    }

    /// A call in the session that must succeed.
    async fn session_call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}{path}", self.session);
        match self.call(method, &path, body).await {
            Ok(v) => v["value"].clone(),
            Err(e) => panic!("WebDriver {method} {path}: {e}"),
        }
    }

    /// Loads `url` (waits for the load event).
    pub async fn goto(&self, url: &str) {
        self.session_call("POST", "/url", Some(json!({"url": url})))
            .await;
    }

    /// The element matching a CSS selector.
    pub async fn find(&self, css: &str) -> Element {
        let v = self
            .session_call(
                "POST",
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        Element(v[ELEMENT].as_str().expect("an element id").to_owned())
    }

    /// Types into an element; for a file input, `text` is the paths, one per line.
    pub async fn send_keys(&self, e: &Element, text: &str) {
        let path = format!("/element/{}/value", e.0);
        self.session_call("POST", &path, Some(json!({"text": text})))
            .await;
    }

    /// Clicks an element.
    pub async fn click(&self, e: &Element) {
        let path = format!("/element/{}/click", e.0);
        self.session_call("POST", &path, Some(json!({}))).await;
    }

    /// The rendered text of an element.
    pub async fn text(&self, e: &Element) -> String {
        let path = format!("/element/{}/text", e.0);
        let v = self.session_call("GET", &path, None).await;
        v.as_str().unwrap_or_default().to_owned()
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page; its return value.
    pub async fn execute(&self, script: &str, args: Value) -> Value {
        self.run_script("sync", script, args).await
    }

    /// Runs `script` in the page, which calls `arguments[arguments.length - 1]` with its result
    /// (within the session's script timeout); that result.
    pub async fn execute_async(&self, script: &str, args: Value) -> Value {
        self.run_script("async", script, args).await
    }

    async fn run_script(&self, mode: &str, script: &str, args: Value) -> Value {
        let body = json!({"script": script, "args": args});
        let path = format!("/execute/{mode}");
        self.session_call("POST", &path, Some(body)).await
    }

    /// Polls `script` (returning a value) until `done` holds for it, up to `within`; the last
    /// value. Panics with that value when time runs out.
    pub async fn wait_for(
        &self,
        script: &str,
        within: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let v = self.execute(script, json!([])).await;
            if done(&v) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "waited {within:?} for {script}; last value {v}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ending the session closes Chromium; chromedriver is then killed by PID.
        if !self.session.is_empty() {
            let url = format!("{}/session/{}", self.base, self.session);
            let _ = std::process::Command::new("curl")
                .args(["-s", "-m", "5", "-X", "DELETE", &url])
                .stdout(Stdio::null())
                .status();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
