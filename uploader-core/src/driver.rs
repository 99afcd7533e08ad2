//! Driver: the scheduler loop of a job. It takes inputs in order, refuses a key already used in
//! this job (`duplicate_key`), starts at most twice the request limit in force of file tasks at
//! once (enough to keep every request slot busy with small files while others are being read), and gathers one
//! report per input, in input order. What a file task does is the file source's business
//! ([`crate::source::file`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use tokio::sync::mpsc::Receiver;
use tokio::task::JoinSet;

use crate::job::Job;
use crate::key::ObjectKey;
use crate::report::{ConcurrencyReport, ErrorCode, FileError, FileOutcome, FileReport, Report};
use crate::walk::Input;

/// The scheduler loop: takes inputs in order, refuses duplicates, spawns a bounded number of
/// file tasks, and gathers one report per input.
pub(crate) async fn run(job: Arc<Job>, mut rx: Receiver<Input>) -> Report {
    let started = Instant::now();
    let mut tasks: JoinSet<FileReport> = JoinSet::new();
    let mut done: Vec<FileReport> = Vec::new();
    let mut keys: HashMap<ObjectKey, usize> = HashMap::new();
    let mut index = 0usize;

    while let Some(input) = rx.recv().await {
        let i = index;
        index += 1;
        let (path, key) = match input {
            Input::File { path, key } => (path, key),
            Input::Skip {
                source,
                key,
                reason,
            } => {
                done.push(job.finish(i, source, key, 0, FileOutcome::Skipped { reason }));
                continue;
            }
            Input::Fail { source, key, error } => {
                done.push(job.finish(i, source, key, 0, FileOutcome::Failed { error }));
                continue;
            }
        };
        let source = path.display().to_string();
        if let Some(refused) = refuse(&job, &keys, &key) {
            let key = Some(key.into_string());
            done.push(job.finish(i, source, key, 0, FileOutcome::Failed { error: refused }));
            continue;
        }
        keys.insert(key.clone(), i);
        // Twice the requests in flight now (the adaptive limit moves): more would only wait,
        // each holding its sample's reservation and a task.
        while tasks.len() >= job.budget.limit() * 2 {
            let r = tasks.join_next().await.expect("tasks are running");
            done.push(r.expect("file tasks do not panic"));
        }
        let job = Arc::clone(&job);
        tasks.spawn(async move {
            let t0 = Instant::now();
            let (size, outcome) = crate::source::file::upload(&job, i, path, key.clone()).await;
            let mut r = job.finish(i, source, Some(key.into_string()), size, outcome);
            r.elapsed = t0.elapsed();
            r
        });
        // Collect finished tasks as we go so their memory is not held until the end.
        while let Some(r) = tasks.try_join_next() {
            done.push(r.expect("file tasks do not panic"));
        }
    }
    while let Some(r) = tasks.join_next().await {
        done.push(r.expect("file tasks do not panic"));
    }
    done.sort_by_key(|r| r.index);
    Report {
        files: done,
        elapsed: started.elapsed(),
        retries: job.retries.load(Ordering::Relaxed),
        aborted_multipart: job.aborted.load(Ordering::Relaxed),
        cancelled: job.cancel.is_cancelled(),
        concurrency: ConcurrencyReport {
            mode: job.budget.mode(),
            limit: job.budget.limit(),
            peak: job.budget.peak_limit(),
            ceiling: job.budget.max_requests(),
        },
        ..Report::default()
    }
}

/// Why an input is refused before it starts: its key is taken, or the job is cancelled.
fn refuse(job: &Job, keys: &HashMap<ObjectKey, usize>, key: &ObjectKey) -> Option<FileError> {
    if let Some(first) = keys.get(key) {
        return Some(FileError::new(
            ErrorCode::DuplicateKey,
            format!("input #{first} already maps to key {key:?}"),
            false,
        ));
    }
    job.cancel
        .is_cancelled()
        .then(|| FileError::new(ErrorCode::Cancelled, "the upload was cancelled", true))
}
