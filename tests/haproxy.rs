//! HAProxy in front of daemon replicas, for the replica tests: the system `haproxy` (installed
//! by `tests/servers/setup.sh`), run in the foreground with a configuration written to a
//! temporary directory, and read through its stats socket. Missing, it fails the test loudly;
//! nothing is skipped.

use std::io::{Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::servers::free_port;

/// The response header naming the replica that answered (set by HAProxy).
pub const SERVED_BY: &str = "x-served-by";
/// A request header that pins a request to the replica it names (while that replica is up).
pub const PIN: &str = "x-replica";

/// The `haproxy` binary on `PATH` (or in /usr/sbin, which a non-login `PATH` may lack).
pub fn haproxy_bin() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|d| d.join("haproxy"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "haproxy is not installed: run ./tests/servers/setup.sh (scripts/test.sh does), \
                 which installs the Debian package"
            )
        })
}

/// One server line of `show stat`.
#[derive(Debug, Clone)]
pub struct ServerStat {
    pub name: String,
    /// `UP`, `DOWN`, `UP 1/2` (going down), `DOWN 1/2` (going up), ...
    pub status: String,
    /// The last health check's result (`L7OK`, `L4CON`, ...).
    pub check_status: String,
    /// Sessions sent to this server.
    pub sessions: u64,
    /// Requests retried to another attempt (`wretr`).
    pub retries: u64,
    /// Requests redispatched away from this server (`wredis`).
    pub redispatches: u64,
    /// Connection errors to this server (`econ`).
    pub connect_errors: u64,
    /// Responses that were not received in full (`eresp`).
    pub response_errors: u64,
}

/// A running HAProxy balancing `backend`'s servers; killed (by PID) when dropped.
pub struct Haproxy {
    pub port: u16,
    child: Child,
    dir: tempfile::TempDir,
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The configuration: round robin over `servers` (name, port), health-checked on `GET /readyz`
/// every 200 ms (down after one failed check, up after two good ones), a failed connection
/// retried on the other server, and the daemon's own 503 (overloaded, shutting down) or a
/// connection closed without an answer retried where HAProxy still holds the whole request
/// (`retry-on` needs the request in one buffer; larger bodies are not retried by HAProxy).
fn config(dir: &Path, port: u16, servers: &[(&str, u16)]) -> String {
    let mut cfg = format!(
        "global
    maxconn 512
    nbthread 1
    stats socket {sock} mode 600 level admin
    log stdout format raw local0 info
defaults
    mode http
    log global
    option httplog
    timeout connect 500ms
    timeout client 30s
    timeout server 30s
    timeout http-request 10s
    timeout check 2s
    retries 3
    option redispatch 1
    retry-on conn-failure empty-response 503
frontend fe
    bind 127.0.0.1:{port}
    default_backend replicas
backend replicas
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
    http-response set-header {SERVED_BY} %[srv_name]
",
        sock = dir.join("admin.sock").display(),
    );
    for (name, _) in servers {
        cfg.push_str(&format!(
            "    use-server {name} if {{ req.hdr({PIN}) -m str {name} }}\n"
        ));
    }
    for (name, p) in servers {
        cfg.push_str(&format!(
            "    server {name} 127.0.0.1:{p} check inter 200ms fall 1 rise 2\n"
        ));
    }
    cfg
}

impl Haproxy {
    /// Starts HAProxy on a free loopback port in front of `servers` (name, port) and waits
    /// until every server has passed its health check.
    pub fn start(servers: &[(&str, u16)]) -> Haproxy {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let cfg = dir.path().join("haproxy.cfg");
        std::fs::write(&cfg, config(dir.path(), port, servers)).unwrap();
        let log = std::fs::File::create(dir.path().join("haproxy.log")).unwrap();
        let child = Command::new(haproxy_bin())
            .arg("-f")
            .arg(&cfg)
            .arg("-db")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("haproxy starts");
        let mut h = Haproxy { port, child, dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = h.child.try_wait() {
                panic!("haproxy exited at start-up ({status}):\n{}", h.log());
            }
            let up = h.try_stats().is_some_and(|s| {
                s.len() == servers.len()
                    && s.iter()
                        .all(|s| s.status == "UP" && s.check_status == "L7OK")
            });
            if up && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return h;
            }
            assert!(
                Instant::now() < deadline,
                "haproxy did not see every server up within 20 s: {:?}\n{}",
                h.try_stats(),
                h.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// HAProxy's log (its stdout and stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("haproxy.log")).unwrap_or_default()
    }

    /// The backend's servers as `show stat` reports them.
    pub fn stats(&self) -> Vec<ServerStat> {
        self.try_stats().expect("the haproxy stats socket answers")
    }

    fn try_stats(&self) -> Option<Vec<ServerStat>> {
        let mut sock = UnixStream::connect(self.dir.path().join("admin.sock")).ok()?;
        sock.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        sock.write_all(b"show stat\n").ok()?;
        let mut csv = String::new();
        sock.read_to_string(&mut csv).ok()?;
        let mut lines = csv.lines();
        let header: Vec<&str> = lines.next()?.trim_start_matches("# ").split(',').collect();
        let col = |name: &str| header.iter().position(|h| *h == name);
        let (px, sv, st, chk) = (
            col("pxname")?,
            col("svname")?,
            col("status")?,
            col("check_status")?,
        );
        let (stot, wretr, wredis) = (col("stot")?, col("wretr")?, col("wredis")?);
        let (econ, eresp) = (col("econ")?, col("eresp")?);
        let servers = lines
            .map(|l| l.split(',').collect::<Vec<_>>())
            .filter(|f| f.len() > px && f[px] == "replicas" && f[sv] != "BACKEND")
            .map(|f| {
                let n = |i: usize| f.get(i).and_then(|v| v.parse().ok()).unwrap_or(0);
                ServerStat {
                    name: f[sv].to_owned(),
                    status: f[st].to_owned(),
                    check_status: f.get(chk).unwrap_or(&"").to_string(),
                    sessions: n(stot),
                    retries: n(wretr),
                    redispatches: n(wredis),
                    connect_errors: n(econ),
                    response_errors: n(eresp),
                }
            })
            .collect();
        Some(servers)
    }
}
