use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, Response};
use http_body_util::BodyExt as _;
use tower::ServiceExt as _;
use uploader_core::{
    EmbeddedS3, KeyPrefix, MimePolicy, ObjectStore, RetryPolicy, S3Store, UploadConfig, Uploader,
};
use uploader_server::{AppState, Limits, app};

pub const TOKEN: &str = "test-token-0123456789abcdef";

/// A daemon over the embedded endpoint.
pub struct Daemon {
    pub state: AppState,
    pub s3: Arc<S3Store>,
    pub server: EmbeddedS3,
    _dir: tempfile::TempDir,
}

/// Wraps a store (e.g. in a `FaultyStore`).
pub type Wrap = Box<dyn FnOnce(Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore>>;

pub struct Options {
    pub limits: Limits,
    pub tokens: Vec<String>,
    pub allow_binary: bool,
    /// Wraps the S3 store (fault injection).
    pub wrap: Option<Wrap>,
    /// Origins allowed by CORS (`--cors-origin`).
    pub cors_origins: Vec<&'static str>,
    /// Serve the upload page (`--ui`).
    pub ui: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            limits: Limits::default(),
            tokens: vec![TOKEN.into()],
            allow_binary: false,
            wrap: None,
            cors_origins: vec![],
            ui: false,
        }
    }
}

impl Daemon {
    pub async fn start(opts: Options) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let server = EmbeddedS3::start(dir.path(), "daemon-bucket")
            .await
            .unwrap();
        let s3 = Arc::new(S3Store::connect(&server.s3_config()).await.unwrap());
        let mut store: Arc<dyn ObjectStore> = s3.clone();
        if let Some(wrap) = opts.wrap {
            store = wrap(store);
        }
        let allow = if opts.allow_binary {
            vec!["application/octet-stream".to_owned()]
        } else {
            vec![]
        };
        let config = UploadConfig {
            mime: MimePolicy::new(&allow, &[]).unwrap(),
            retry: RetryPolicy {
                max_attempts: 3,
                base: Duration::from_millis(5),
                max_backoff: Duration::from_millis(20),
            },
            ..UploadConfig::default()
        };
        let uploader = Uploader::builder()
            .with_store(store)
            .with_config(config)
            .build()
            .unwrap();
        let state = AppState::new(
            uploader,
            KeyPrefix::new("root").unwrap(),
            opts.limits,
            &opts.tokens,
            Some(s3.clone()),
        )
        .with_cors_origins(
            &opts
                .cors_origins
                .iter()
                .map(|o| uploader_server::config::CorsOrigin::parse(o).unwrap())
                .collect::<Vec<_>>(),
        )
        .with_ui(opts.ui);
        Daemon {
            state,
            s3,
            server,
            _dir: dir,
        }
    }

    pub async fn send(&self, req: Request<Body>) -> (Response<Body>, serde_json::Value) {
        let (resp, bytes) = self.send_raw(req).await;
        let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        (resp, json)
    }

    /// Sends a request; the response head and the body's bytes.
    pub async fn send_raw(&self, req: Request<Body>) -> (Response<Body>, Vec<u8>) {
        let resp = app(self.state.clone()).oneshot(req).await.unwrap();
        let (parts, body) = resp.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        (Response::from_parts(parts, Body::empty()), bytes.to_vec())
    }

    pub async fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.s3.get(key).await.unwrap().map(|b| b.to_vec())
    }

    pub async fn pending(&self) -> usize {
        self.s3.list_multipart_uploads("").await.unwrap().len()
    }
}

pub const BOUNDARY: &str = "XyZ-boundary-123";

/// A part of a multipart body: field name, optional filename, data.
pub struct Part<'a>(pub &'a str, pub Option<&'a str>, pub &'a [u8]);

/// A well-formed multipart/form-data body.
pub fn multipart(parts: &[Part<'_>]) -> Vec<u8> {
    let mut b = Vec::new();
    for Part(name, filename, data) in parts {
        b.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        match filename {
            Some(f) => b.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes(),
            ),
            None => b.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
            ),
        }
        b.extend_from_slice(data);
        b.extend_from_slice(b"\r\n");
    }
    b.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    b
}

/// A POST /v1/uploads request with the test token.
pub fn upload(body: Body, query: &str) -> Request<Body> {
    Request::post(format!("/v1/uploads{query}"))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(body)
        .unwrap()
}

pub use uploader_core::testing::pseudo_random as data;
