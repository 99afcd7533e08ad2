//! Third-party S3 servers for the tests: `rclone serve s3` and `moto_server`, from the
//! project-local venv that `tests/servers/setup.sh` installs (scripts/test.sh runs it). A server
//! that cannot start fails the test loudly; nothing is skipped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use uploader_core::{S3Config, S3Store, StaticCredentials};

/// What a server does differently (see ../shared/S3_SERVERS.md).
#[derive(Debug, Clone, Copy)]
pub struct Quirks {
    pub name: &'static str,
    /// Honours `If-None-Match: *` on PUT.
    pub conditional_put: bool,
    /// Rejects a wrong `x-amz-checksum-crc32c`.
    pub verifies_crc32c: bool,
    /// Rejects a wrong `Content-MD5`.
    pub verifies_md5: bool,
    /// Rejects a wrong secret key.
    pub checks_signatures: bool,
}

pub const EMBEDDED: Quirks = Quirks {
    name: "embedded",
    conditional_put: true,
    verifies_crc32c: true,
    verifies_md5: true,
    checks_signatures: true,
};
pub const RCLONE: Quirks = Quirks {
    name: "rclone",
    conditional_put: false,
    verifies_crc32c: false,
    verifies_md5: true,
    checks_signatures: true,
};
pub const MOTO: Quirks = Quirks {
    name: "moto",
    conditional_put: true,
    verifies_crc32c: false,
    verifies_md5: false,
    checks_signatures: false,
};

/// The project-local venv.
pub fn venv() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv")
}

/// A program of the project-local venv (rclone, moto_server, python); fails with the set-up
/// command when it is missing.
pub fn venv_bin(name: &str) -> PathBuf {
    let p = venv().join("bin").join(name);
    assert!(
        p.exists(),
        "{} is missing: run ./tests/servers/setup.sh (scripts/test.sh does)",
        p.display()
    );
    p
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn token(len: usize) -> String {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher as _, Hasher as _};
    let mut s = String::new();
    while s.len() < len {
        let mut h = RandomState::new().build_hasher();
        h.write_usize(s.len());
        s.push_str(&format!("{:016X}", h.finish()));
    }
    s.truncate(len);
    s
}

/// A running third-party server; killed (by PID) when dropped.
pub struct ThirdParty {
    pub quirks: Quirks,
    pub endpoint: String,
    pub bucket: String,
    pub credentials: StaticCredentials,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for ThirdParty {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_listening(port: u16, child: &mut Child, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited before listening: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not listen on {port} within 30 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl ThirdParty {
    /// `rclone serve s3` over a temporary directory; the bucket is a directory.
    pub fn rclone() -> ThirdParty {
        let dir = tempfile::tempdir().unwrap();
        let bucket = "rclone-bucket".to_owned();
        std::fs::create_dir_all(dir.path().join(&bucket)).unwrap();
        let conf = dir.path().join("rclone.conf");
        std::fs::write(&conf, "").unwrap();
        let credentials = StaticCredentials {
            access_key_id: token(20),
            secret_access_key: token(40),
        };
        let port = free_port();
        let mut child = Command::new(venv_bin("rclone"))
            .args(["serve", "s3", "--addr"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--auth-key")
            .arg(format!(
                "{},{}",
                credentials.access_key_id, credentials.secret_access_key
            ))
            .arg("--config")
            .arg(&conf)
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("rclone starts");
        wait_listening(port, &mut child, "rclone serve s3");
        ThirdParty {
            quirks: RCLONE,
            endpoint: format!("http://127.0.0.1:{port}"),
            bucket,
            credentials,
            child,
            _dir: dir,
        }
    }

    /// `moto_server` (in memory); the bucket is created over the API.
    pub async fn moto() -> ThirdParty {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut child = Command::new(venv_bin("moto_server"))
            .args(["-H", "127.0.0.1", "-p"])
            .arg(port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server starts");
        wait_listening(port, &mut child, "moto_server");
        let s = ThirdParty {
            quirks: MOTO,
            endpoint: format!("http://127.0.0.1:{port}"),
            bucket: "moto-bucket".into(),
            credentials: StaticCredentials {
                access_key_id: token(20),
                secret_access_key: token(40),
            },
            child,
            _dir: dir,
        };
        let store = s.store().await;
        store
            .client()
            .create_bucket()
            .bucket(&s.bucket)
            .send()
            .await
            .expect("moto creates the bucket");
        s
    }

    pub fn s3_config(&self) -> S3Config {
        S3Config {
            bucket: self.bucket.clone(),
            region: Some("us-east-1".into()),
            endpoint_url: Some(self.endpoint.clone()),
            force_path_style: Some(true),
            credentials: Some(self.credentials.clone()),
            ..S3Config::default()
        }
    }

    pub async fn store(&self) -> S3Store {
        S3Store::connect(&self.s3_config()).await.unwrap()
    }
}

/// Reads an object back with boto3 (an independent client): bytes, Content-Type, metadata.
pub fn boto3_get(
    endpoint: &str,
    creds: &StaticCredentials,
    bucket: &str,
    key: &str,
) -> (Vec<u8>, Option<String>, serde_json::Value) {
    let script = r#"
import sys, json, base64, boto3
from botocore.config import Config
endpoint, bucket, key = sys.argv[1:4]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                  config=Config(s3={"addressing_style": "path"}))
r = s3.get_object(Bucket=bucket, Key=key)
body = r["Body"].read()
print(json.dumps({"body": base64.b64encode(body).decode(), "content_type": r.get("ContentType"),
                  "metadata": r.get("Metadata", {})}))
"#;
    let out = Command::new(venv().join("bin/python"))
        .arg("-c")
        .arg(script)
        .args([endpoint, bucket, key])
        .env("AWS_ACCESS_KEY_ID", &creds.access_key_id)
        .env("AWS_SECRET_ACCESS_KEY", &creds.secret_access_key)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "boto3 get {key}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    use base64::Engine as _;
    let body = base64::engine::general_purpose::STANDARD
        .decode(v["body"].as_str().unwrap())
        .unwrap();
    (
        body,
        v["content_type"].as_str().map(str::to_owned),
        v["metadata"].clone(),
    )
}

/// Writes a file as an object with boto3 (another tool: no metadata of ours): one PUT, or with
/// `multipart` a multipart upload of 5 MiB parts (`upload_file`).
pub fn boto3_put(
    endpoint: &str,
    creds: &StaticCredentials,
    bucket: &str,
    key: &str,
    file: &std::path::Path,
    multipart: bool,
) {
    let script = r#"
import sys, boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
endpoint, bucket, key, path, multipart = sys.argv[1:6]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                  config=Config(s3={"addressing_style": "path"}))
if multipart == "1":
    mb = 5 * 1024 * 1024
    s3.upload_file(path, bucket, key, Config=TransferConfig(multipart_threshold=mb, multipart_chunksize=mb))
else:
    with open(path, "rb") as f:
        s3.put_object(Bucket=bucket, Key=key, Body=f.read())
"#;
    let out = Command::new(venv().join("bin/python"))
        .arg("-c")
        .arg(script)
        .args([endpoint, bucket, key])
        .arg(file)
        .arg(if multipart { "1" } else { "0" })
        .env("AWS_ACCESS_KEY_ID", &creds.access_key_id)
        .env("AWS_SECRET_ACCESS_KEY", &creds.secret_access_key)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        // No aws-chunked CRC32 trailers: a plain body, as older clients send.
        .env("AWS_REQUEST_CHECKSUM_CALCULATION", "when_required")
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "boto3 put {key}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
