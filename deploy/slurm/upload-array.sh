#!/usr/bin/env bash
# A sharded bulk upload as a Slurm job array: array task K of N uploads the files of SRC whose
# relative path hashes to K (`--shard auto/N` reads K from SLURM_ARRAY_TASK_ID). Together the N
# tasks upload every file exactly once, with no coordination (docs/DEPLOYMENT.md).
#
#   sbatch deploy/slurm/upload-array.sh /shared/data s3://my-bucket/run-42/
#
# N is SHARDS below and must match --array=0-(N-1). Another N: SHARDS=16 sbatch --array=0-15 ...
# To retry only the shards that failed, resubmit their indices with the same N:
#   sbatch --array=3,5 deploy/slurm/upload-array.sh /shared/data s3://my-bucket/run-42/
#
# SRC must be the same path on every node (a shared filesystem). Credentials come from the
# AWS default chain on the nodes (AWS_PROFILE and ~/.aws, instance roles, ...); UPLOADER names
# the binary when it is not on PATH.
#
# Each task's stdout is its report: one JSON line per file, then a summary line.
#SBATCH --job-name=uploader
#SBATCH --array=0-7
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=2
#SBATCH --mem=1G
#SBATCH --time=04:00:00
#SBATCH --output=uploader-%A_%a.jsonl
#SBATCH --error=uploader-%A_%a.err
# SIGINT two minutes before the time limit: the uploader stops and aborts its open multipart
# uploads (exit 130) before Slurm ends the task.
#SBATCH --signal=INT@120
#
# The same shards elsewhere:
# * AWS Batch array job: the same command in the container (`--shard auto/N` reads
#   AWS_BATCH_JOB_ARRAY_INDEX), submitted with --array-properties size=N, e.g.
#     aws batch submit-job --job-name uploader --job-queue QUEUE --job-definition uploader \
#       --array-properties size=8 \
#       --retry-strategy '{"attempts":3,"evaluateOnExit":[{"onExitCode":"2","action":"EXIT"}]}' \
#       --container-overrides '{"command":["upload","/data","s3://my-bucket/run-42/","--shard","auto/8","--json"]}'
#   (exit 2 is a usage, configuration or credential error: not worth a retry).
# * GNU parallel, K given explicitly, one report per shard, failed shards retried from the log:
#     parallel --joblog shards.log uploader upload /shared/data s3://my-bucket/run-42/ \
#       --shard {}/8 --json '>' shard-{}.jsonl ::: $(seq 0 7)
#     parallel --retry-failed --joblog shards.log
#   Add -S host1,host2,... to spread the shards over machines; on one machine a single
#   `uploader upload` with a higher --concurrency does the same work with less overhead.
set -euo pipefail

SHARDS="${SHARDS:-8}"
UPLOADER="${UPLOADER:-uploader}"

if [ "$#" -ne 2 ]; then
  echo "usage: sbatch [--array=0-$((SHARDS - 1))] $0 SRC s3://bucket/prefix/" >&2
  exit 2
fi
src="$1"
dest="$2"
if [ -z "${SLURM_ARRAY_TASK_ID:-}" ]; then
  echo "$0: SLURM_ARRAY_TASK_ID is not set: submit this script with sbatch as a job array" >&2
  exit 2
fi
if [ "$SLURM_ARRAY_TASK_ID" -ge "$SHARDS" ]; then
  echo "$0: array task $SLURM_ARRAY_TASK_ID is not a shard of $SHARDS (use --array=0-$((SHARDS - 1)))" >&2
  exit 2
fi

echo "shard $SLURM_ARRAY_TASK_ID/$SHARDS: $src -> $dest" >&2
# srun makes the upload a job step, which is what --signal above reaches.
exec srun --ntasks=1 "$UPLOADER" upload "$src" "$dest" --shard "auto/$SHARDS" --json
