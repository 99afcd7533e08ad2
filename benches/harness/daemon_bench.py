#!/usr/bin/env python3
"""Daemon benchmark (loopback only): `uploader serve` against the CLI on the same S3 server.

For each server (discard, s3s-fs on the tmpfs):
  1. one 1 GiB file uploaded by the CLI (`uploader upload`), RUNS times;
  2. the same file POSTed through `uploader serve` (curl -F, streamed from disk), RUNS times;
     the ratio daemon MiB/s / CLI MiB/s is the figure of the performance issue (target >= 70 %);
  3. (discard only, the client-cost server) LOAD_CLIENTS clients posting batches of 20 x 64 KiB
     back to back for LOAD_SECONDS (the `daemon_load` binary): errors, p50/p99, daemon RSS.
Then prints a markdown table and writes results/results-daemon.{json,md}.

Run through bench_peers.sh (DAEMON=1, the default), which builds everything it needs first.
"""
import json
import os
import socket
import statistics
import subprocess
import sys
import time

import bench
from bench import ALLOW_MIME, BUCKET, LAB, RES, MiB, Server, base_env, uploader_bin

RUNS = int(os.environ.get("RUNS", "3"))
LOAD_CLIENTS = int(os.environ.get("LOAD_CLIENTS", "10"))
LOAD_SECONDS = int(os.environ.get("LOAD_SECONDS", "60"))
BIG = os.path.join(bench.DATA, "daemon", "big-1GiB.bin")
LOAD_BIN = os.environ.get("DAEMON_LOAD_BIN",
                          os.path.normpath(os.path.join(LAB, "..", "..", "target", "release", "daemon_load")))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_big():
    """1 GiB of random bytes: the two 512 MiB files of the large workload, end to end."""
    if os.path.exists(BIG) and os.path.getsize(BIG) == 1024 * MiB:
        return
    os.makedirs(os.path.dirname(BIG), exist_ok=True)
    parts = sorted(os.path.join(bench.DATA, "large", f) for f in os.listdir(os.path.join(bench.DATA, "large")))
    with open(BIG + ".tmp", "wb") as out:
        for p in parts:
            with open(p, "rb") as f:
                shutil_copy(f, out)
    os.replace(BIG + ".tmp", BIG)
    assert os.path.getsize(BIG) == 1024 * MiB, "the large workload should be 2 x 512 MiB"


def shutil_copy(src, dst):
    while True:
        b = src.read(8 * MiB)
        if not b:
            return
        dst.write(b)


def timed(argv, env):
    t = time.monotonic()
    p = subprocess.run(argv, env=env, capture_output=True, text=True)
    return time.monotonic() - t, p


def cli_once(server, run):
    argv = [uploader_bin(), "upload", "--endpoint-url", server.endpoint, "--force-path-style",
            "--allow-mime", ALLOW_MIME, "--quiet", BIG, f"s3://{BUCKET}/cli-{run}/"]
    wall, p = timed(argv, base_env())
    if p.returncode != 0:
        raise RuntimeError(f"CLI upload failed ({p.returncode}): {p.stderr[-2000:]}")
    return wall


class Daemon:
    def __init__(self, server):
        self.port = free_port()
        self.addr = f"127.0.0.1:{self.port}"
        argv = [uploader_bin(), "serve", "--listen", self.addr, "--bucket", BUCKET,
                "--endpoint-url", server.endpoint, "--force-path-style",
                "--allow-mime", ALLOW_MIME, "--quiet"]
        self.log = open(os.path.join(RES, f"daemon-{server.name}.log"), "w")
        self.proc = subprocess.Popen(argv, env=base_env(), stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        with open(os.path.join(RES, "server-daemon.pid"), "w") as f:  # bench_peers.sh's cleanup
            f.write(str(self.proc.pid))
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"uploader serve exited early, see results/daemon-{server.name}.log")
                time.sleep(0.1)
        raise RuntimeError("uploader serve did not open its port")

    def post_big(self, run):
        argv = ["curl", "-sS", "-o", os.devnull, "-w", "%{http_code}", "-H", "Expect:",
                "-F", f"file=@{BIG};filename=big-1GiB.bin;type=application/octet-stream",
                f"http://{self.addr}/v1/uploads?prefix=daemon-{run}"]
        wall, p = timed(argv, base_env())
        if p.stdout.strip() != "201":
            raise RuntimeError(f"daemon POST answered {p.stdout.strip()!r}: {p.stderr[-2000:]}")
        return wall

    def load(self):
        argv = [LOAD_BIN, "--addr", self.addr, "--clients", str(LOAD_CLIENTS), "--files", "20",
                "--size", str(64 * 1024), "--seconds", str(LOAD_SECONDS), "--pid", str(self.proc.pid)]
        p = subprocess.run(argv, capture_output=True, text=True)
        if p.returncode != 0:
            raise RuntimeError(f"daemon_load failed: {p.stderr[-2000:]}")
        human, js = p.stdout.strip().splitlines()[-2:]
        print("   ", human, flush=True)
        return json.loads(js)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.remove(os.path.join(RES, "server-daemon.pid"))


def main():
    servers = os.environ.get("SERVERS", "discard,s3s-fs").split(",")
    make_big()
    results = {}
    for name in servers:
        server = Server(name)
        server.start()
        try:
            cli, daemon = [], []
            d = Daemon(server)
            try:
                for run in range(RUNS):
                    server.reset()
                    cli.append(cli_once(server, run))
                    server.reset()
                    daemon.append(d.post_big(run))
                    print(f"    {name} run {run + 1}/{RUNS}: CLI {cli[-1]:.2f} s, daemon {daemon[-1]:.2f} s", flush=True)
                load = d.load() if name == "discard" and LOAD_SECONDS > 0 else None
            finally:
                d.stop()
        finally:
            server.stop()
        results[name] = {"cli_s": cli, "daemon_s": daemon, "load": load}
    with open(os.path.join(RES, "results-daemon.json"), "w") as f:
        json.dump(results, f, indent=1)
    lines = ["| server | CLI 1 GiB MiB/s | daemon 1 GiB POST MiB/s | daemon / CLI (target >= 0.70) |",
             "|---|---|---|---|"]
    for name, r in results.items():
        c, dm = 1024 / statistics.median(r["cli_s"]), 1024 / statistics.median(r["daemon_s"])
        lines.append(f"| {name} | {c:.0f} | {dm:.0f} | {dm / c:.2f}x |")
    for name, r in results.items():
        lo = r["load"]
        if lo:
            rss = lo["rss_mib"]
            settled = rss[min(10, len(rss) - 1)] if rss else 0
            lines += ["", f"Load on {name}: {lo['clients']} clients x {lo['files']} x {lo['size'] // 1024} KiB batches "
                          f"for {lo['seconds']:.0f} s (target: zero errors, p99 < 500 ms, RSS flat)", "",
                      "| requests | failed | p50 ms | p95 ms | p99 ms | MiB/s | daemon RSS MiB at 10 s / max / last |",
                      "|---|---|---|---|---|---|---|",
                      f"| {lo['requests']} | {lo['failed']} | {lo['p50_ms']:.1f} | {lo['p95_ms']:.1f} | "
                      f"{lo['p99_ms']:.1f} | {lo['mib_s']:.1f} | {settled:.1f} / {max(rss, default=0):.1f} / "
                      f"{(rss or [0])[-1]:.1f} |"]
    md = "\n".join(lines) + "\n"
    with open(os.path.join(RES, "results-daemon.md"), "w") as f:
        f.write(md)
    print(md)


if __name__ == "__main__":
    sys.exit(main())
