"""Sync re-run benchmark: `uploader sync` beside `aws s3 sync`, `rclone sync --checksum` and
`s5cmd sync`, each re-syncing a tree it uploaded before and that has not changed since, on the
same local server in the same run: wall time (median of RUNS) and the requests of one re-run,
counted by a forwarding proxy (separate, untimed re-runs, so the proxy costs the timings
nothing; the first through the proxy is not counted, because the proxy is a new endpoint for
the checksum cache).

Usage (from the repository root; the peers come from the harness venv, see benches/README.md):

    benches/harness/.venv/bin/python benches/harness/bench_sync.py [--server s3s-fs|rclone]
        [--runs 3] [--workloads small,medium] [--uploader target/release/uploader]

Workloads: small = 2 000 x 16 KiB in 20 directories, medium = 100 x 4 MiB (random bytes).
Everything it creates lives in a temporary directory that is removed at the end.
"""

import argparse
import collections
import http.client
import http.server
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

LAB = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(LAB))
VENV_BIN = os.path.join(LAB, ".venv", "bin")
KEY, SECRET = "benchaccesskey0123456", "benchsecretkey0123456789abcdefghijklmnop"
BUCKET = "bench"
WORKLOADS = {"small": (2000, 16 * 1024), "medium": (100, 4 * 1024 * 1024)}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc):
    for _ in range(300):
        if proc.poll() is not None:
            sys.exit(f"the server exited: {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit("the server did not listen")


def start_server(kind, root):
    port = free_port()
    os.makedirs(os.path.join(root, BUCKET))
    if kind == "s3s-fs":
        cmd = [os.path.join(LAB, ".tools", "bin", "s3s-fs"), "--host", "127.0.0.1", "--port", str(port),
               "--access-key", KEY, "--secret-key", SECRET, root]
    else:
        cmd = [os.path.join(VENV_BIN, "rclone"), "serve", "s3", "--addr", f"127.0.0.1:{port}",
               "--auth-key", f"{KEY},{SECRET}", "--config", os.devnull, root]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port, proc)
    return proc, f"http://127.0.0.1:{port}"


def classify(method, path):
    query = path.partition("?")[2]
    keys = {kv.partition("=")[0] for kv in query.split("&") if kv}
    key_part = path.partition("?")[0].strip("/").partition("/")[2]
    if method == "GET" and ("list-type" in keys or not key_part):
        return "LIST"
    if method == "HEAD":
        return "HEAD" if key_part else "HeadBucket"
    if method == "PUT" and "partNumber" in keys:
        return "UploadPart"
    if method == "PUT":
        return "PUT"
    if method == "POST":
        return "multipart"
    return method


class Counting(http.server.ThreadingHTTPServer):
    daemon_threads = True


def proxy(upstream):
    """A forwarding proxy on a free port that counts requests by operation."""
    host, port = upstream.rsplit("/", 1)[-1].split(":")
    counts = collections.Counter()
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def body(self):
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                data = b""
                while True:
                    size = int(self.rfile.readline().split(b";")[0], 16)
                    if size == 0:
                        self.rfile.readline()
                        return data
                    data += self.rfile.read(size)
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("Content-Length", 0)))

        def forward(self):
            with lock:
                counts[classify(self.command, self.path)] += 1
            data = self.body()
            headers = {k: v for k, v in self.headers.items() if k.lower() != "transfer-encoding"}
            if data or "Content-Length" in self.headers:
                headers["Content-Length"] = str(len(data))
            conn = getattr(self, "_conn", None) or http.client.HTTPConnection(host, int(port))
            self._conn = conn
            conn.request(self.command, self.path, body=data, headers=headers)
            resp = conn.getresponse()
            payload = resp.read()
            self.send_response(resp.status, resp.reason)
            for k, v in resp.getheaders():
                if k.lower() not in ("transfer-encoding", "content-length", "connection"):
                    self.send_header(k, v)
            length = resp.getheader("Content-Length") if self.command == "HEAD" else str(len(payload))
            self.send_header("Content-Length", length or "0")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = forward

    server = Counting(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}", counts


def make_tree(root, n, size):
    for i in range(n):
        d = os.path.join(root, f"d{i % 20:02d}")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, f"f{i:05d}.bin"), "wb") as f:
            f.write(os.urandom(size))


def env_for(home):
    e = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RCLONE_", "UPLOADER_"))}
    e.update(HOME=home, AWS_ACCESS_KEY_ID=KEY, AWS_SECRET_ACCESS_KEY=SECRET, AWS_DEFAULT_REGION="us-east-1",
             AWS_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true",
             AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull,
             RCLONE_CONFIG=os.devnull)
    return e


def s5cmd_bin():
    import glob
    hits = glob.glob(os.path.join(LAB, ".venv", "lib", "python*", "site-packages", "s5cmd", "bin", "s5cmd"))
    return hits[0] if hits else os.path.join(VENV_BIN, "s5cmd")


def clients(uploader):
    """name -> function(endpoint, src, prefix) -> argv."""
    rclone_remote = lambda e, p: (f":s3,provider=Other,env_auth=false,access_key_id={KEY},"
                                  f"secret_access_key={SECRET},endpoint='{e}':{BUCKET}/{p}")
    return {
        "uploader": lambda e, src, p: [uploader, "sync", "-q", src, f"s3://{BUCKET}/{p}", "--endpoint-url", e,
                                       "--allow-mime", "application/octet-stream"],
        "aws s3 sync": lambda e, src, p: [os.path.join(VENV_BIN, "aws"), "--endpoint-url", e, "s3", "sync",
                                          "--only-show-errors", src, f"s3://{BUCKET}/{p}"],
        "rclone sync --checksum": lambda e, src, p: [os.path.join(VENV_BIN, "rclone"), "sync", "--checksum",
                                                     "-q", src, rclone_remote(e, p)],
        "s5cmd sync": lambda e, src, p: [s5cmd_bin(), "--endpoint-url", e, "sync", src + "/",
                                         f"s3://{BUCKET}/{p}"],
    }


def run(argv, env):
    t0 = time.monotonic()
    r = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if r.returncode != 0:
        sys.exit(f"{argv[0]} failed ({r.returncode}): {r.stderr.decode()[-2000:]}")
    return time.monotonic() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--server", choices=["s3s-fs", "rclone"], default="s3s-fs")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--workloads", default="small,medium")
    ap.add_argument("--uploader", default=os.path.join(ROOT, "target", "release", "uploader"))
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench-sync-")
    server = None
    try:
        server, endpoint = start_server(a.server, os.path.join(tmp, "srv"))
        home = os.path.join(tmp, "home")
        os.makedirs(home)
        env = env_for(home)
        rows = []
        for w in a.workloads.split(","):
            n, size = WORKLOADS[w]
            src = os.path.join(tmp, "data", w)
            make_tree(src, n, size)
            for name, argv in clients(a.uploader).items():
                prefix = f"{name.split()[0]}-{w}/"
                run(argv(endpoint, src, prefix), env)  # the first sync uploads everything
                times = [run(argv(endpoint, src, prefix), env) for _ in range(a.runs)]
                px, px_endpoint, counts = proxy(endpoint)
                # One re-run through the proxy first: a client that caches per endpoint (ours)
                # sees the proxy as another endpoint, once.
                run(argv(px_endpoint, src, prefix), env)
                counts.clear()
                run(argv(px_endpoint, src, prefix), env)
                px.shutdown()
                rows.append((w, name, statistics.median(times), min(times), max(times), dict(counts)))
                print(f"{w:7} {name:24} {statistics.median(times):7.2f} s  {dict(counts)}", file=sys.stderr)
        print(f"\nRe-run of an unchanged tree on {a.server} ({a.runs} runs, median; requests of one re-run):\n")
        print("| workload | client | wall s (median) | min-max s | LIST | HEAD | PUT+parts | other |")
        print("|---|---|---|---|---|---|---|---|")
        for w, name, med, lo, hi, c in rows:
            puts = c.get("PUT", 0) + c.get("UploadPart", 0) + c.get("multipart", 0)
            other = sum(v for k, v in c.items() if k not in ("LIST", "HEAD", "PUT", "UploadPart", "multipart"))
            print(f"| {w} ({WORKLOADS[w][0]} files) | {name} | {med:.2f} | {lo:.2f}-{hi:.2f} | "
                  f"{c.get('LIST', 0)} | {c.get('HEAD', 0)} | {puts} | {other} |")
    finally:
        if server:
            server.terminate()
            server.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
