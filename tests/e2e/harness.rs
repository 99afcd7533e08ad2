//! What the path-by-path tests share (moved here from lifecycle.rs): a server under test
//! ([`Target`]) and the `uploader serve` binary in front of it ([`Daemon`]), posted to with curl.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use uploader_core::{
    EmbeddedS3, MimePolicy, RateLimits, RetryPolicy, S3Config, S3Store, StaticCredentials,
    UploadConfig, Uploader,
};
use uploader_e2e::proxy::Proxy;
use uploader_e2e::servers::{ThirdParty, free_port};
use uploader_e2e::uploader;

/// A server under test.
pub struct Target {
    pub name: &'static str,
    pub endpoint: String,
    pub bucket: String,
    pub creds: StaticCredentials,
    pub s3: S3Config,
}

impl Target {
    pub fn embedded(server: &EmbeddedS3) -> Target {
        Target {
            name: "embedded",
            endpoint: server.endpoint_url(),
            bucket: server.s3_config().bucket,
            creds: server.credentials().clone(),
            s3: server.s3_config(),
        }
    }

    pub fn third_party(s: &ThirdParty, name: &'static str) -> Target {
        Target {
            name,
            endpoint: s.endpoint.clone(),
            bucket: s.bucket.clone(),
            creds: s.credentials.clone(),
            s3: s.s3_config(),
        }
    }

    /// A store talking to the server directly (no proxy): for checking what was stored.
    pub async fn direct(&self) -> S3Store {
        S3Store::connect(&self.s3).await.unwrap()
    }

    /// A store whose requests go through `proxy`, with the given read timeout (`None`: the
    /// default).
    pub async fn store_via(&self, proxy: &Proxy, read_timeout: Option<Duration>) -> S3Store {
        let mut cfg = self.s3.clone();
        cfg.endpoint_url = Some(proxy.endpoint());
        cfg.read_timeout = read_timeout;
        S3Store::connect(&cfg).await.unwrap()
    }

    /// An uploader through `proxy`: fast retries, 5 MiB threshold and parts, octet-stream
    /// allowed.
    pub async fn uploader_via(&self, proxy: &Proxy) -> Uploader {
        uploader_on(self.store_via(proxy, None).await, RateLimits::unlimited())
    }

    /// The binary, with this server's credentials and nothing else from the environment.
    pub fn command(&self, home: &Path) -> Command {
        let mut c = uploader(home);
        c.env("AWS_ACCESS_KEY_ID", &self.creds.access_key_id)
            .env("AWS_SECRET_ACCESS_KEY", &self.creds.secret_access_key)
            .env("AWS_REGION", "us-east-1");
        c
    }
}

/// An uploader on `store` with `limits`: fast retries, 5 MiB threshold and parts, octet-stream
/// allowed.
pub fn uploader_on(store: S3Store, limits: RateLimits) -> Uploader {
    Uploader::builder()
        .with_store(Arc::new(store))
        .with_config(UploadConfig {
            part_size: 5 << 20,
            multipart_threshold: 5 << 20,
            retry: fast_retries(4),
            mime: MimePolicy::new(&["application/octet-stream".into()], &[]).unwrap(),
            ..UploadConfig::default()
        })
        .with_limits(limits)
        .build()
        .unwrap()
}

/// `attempts` attempts per request with millisecond backoffs.
pub fn fast_retries(attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts: attempts,
        base: Duration::from_millis(10),
        max_backoff: Duration::from_millis(100),
    }
}

/// A reply to a request: status, headers (names lower-cased) and body.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    /// The value of header `name` (lower-case), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// `uploader serve` in front of an endpoint; killed (by PID) when dropped.
pub struct Daemon {
    child: Child,
    pub port: u16,
    log: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    /// 5 MiB threshold and parts, octet-stream allowed, CRC32C (`auto` would probe the
    /// endpoint at start-up with a multipart upload it aborts, through the test's proxy).
    pub fn start(t: &Target, home: &Path, endpoint: &str) -> Daemon {
        let extra = [
            "--allow-mime",
            "application/octet-stream",
            "--checksum",
            "crc32c",
        ];
        Daemon::start_with(t, home, endpoint, &extra)
    }

    /// 5 MiB threshold and parts, and `extra` flags; the daemon's stderr goes to
    /// `home/daemon.log`.
    pub fn start_with(t: &Target, home: &Path, endpoint: &str, extra: &[&str]) -> Daemon {
        let port = free_port();
        let log_path = home.join("daemon.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let child = t
            .command(home)
            .args(["serve", "--bucket", &t.bucket, "--endpoint-url", endpoint])
            .args(["--multipart-threshold", "5MiB", "--part-size", "5MiB"])
            .args(extra)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the daemon did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Daemon {
            child,
            port,
            log: log_path,
        }
    }

    /// Sends SIGTERM, the graceful shutdown signal (with `kill`, by PID).
    pub fn terminate(&self) {
        self.signal("TERM");
    }

    /// Sends the signal `name` (`TERM`, `HUP`) with `kill`, by PID.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{name} {}", self.child.id());
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Waits up to `within` for the process to exit; its status. Panics (with the daemon's
    /// log) when it is still running.
    pub async fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the daemon on port {} did not exit within {within:?}; its log:\n{}",
                self.port,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// What the daemon wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// POSTs the files with curl; returns the status and the JSON body.
    pub async fn post(&self, files: &[&Path], prefix: &str) -> (u16, serde_json::Value) {
        self.request(files, &format!("prefix={prefix}"), &[]).await
    }

    /// POSTs the files with curl to `/v1/uploads?<query>`; returns the status and the JSON body.
    pub async fn post_query(&self, files: &[&Path], query: &str) -> (u16, serde_json::Value) {
        self.request(files, query, &[]).await
    }

    /// POSTs the files with curl and extra request headers (`Name: value`); returns the
    /// status and the JSON body.
    pub async fn post_with(
        &self,
        files: &[&Path],
        prefix: &str,
        headers: &[&str],
    ) -> (u16, serde_json::Value) {
        self.request(files, &format!("prefix={prefix}"), headers)
            .await
    }

    /// POSTs the files with curl to `/v1/uploads?<query>` with extra request headers.
    async fn request(
        &self,
        files: &[&Path],
        query: &str,
        headers: &[&str],
    ) -> (u16, serde_json::Value) {
        let form: Vec<String> = files
            .iter()
            .map(|f| format!("file=@{}", f.display()))
            .collect();
        let reply = self.exchange(&form, query, headers).await;
        (reply.status, reply.json())
    }

    /// POSTs a form with curl (`form`: curl's `-F` values) to `/v1/uploads?<query>` with extra
    /// request headers; the whole reply.
    pub async fn exchange(&self, form: &[String], query: &str, headers: &[&str]) -> Reply {
        let mut c = Command::new("curl");
        c.args(["-s", "-D", "-", "-w", "\n%{http_code}"]);
        for h in headers {
            c.arg("-H").arg(h);
        }
        for f in form {
            c.arg("-F").arg(f);
        }
        c.arg(format!("http://127.0.0.1:{}/v1/uploads?{query}", self.port));
        let out = tokio::task::spawn_blocking(move || c.output().expect("curl runs"))
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (rest, status) = text
            .trim_end()
            .rsplit_once('\n')
            .unwrap_or_else(|| panic!("{text}"));
        // The last header block (a `100 Continue` comes first when curl asked for it).
        let (head, body) = rest
            .rsplit_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("{text}"));
        let head = head.rsplit("\r\n\r\n").next().unwrap_or(head);
        let headers = head
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        Reply {
            status: status.parse().unwrap(),
            headers,
            body: body.to_owned(),
        }
    }

    /// The value of a counter without labels on `/metrics` (0 when absent).
    pub async fn counter(&self, name: &str) -> f64 {
        let url = format!("http://127.0.0.1:{}/metrics", self.port);
        let out = tokio::task::spawn_blocking(move || {
            Command::new("curl")
                .args(["-s", &url])
                .output()
                .expect("curl runs")
        })
        .await
        .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or(0.0)
    }
}
