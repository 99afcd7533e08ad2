//! `uploader jobs` and `uploader jobs clean`: the resumable jobs of this user (their journals,
//! see `uploader_core::journal`), and their removal.

use std::time::{Duration, SystemTime};

use serde::Serialize;
use uploader_core::ObjectStore as _;
use uploader_core::config::parse_duration;
use uploader_core::journal::{self, JobEntry, JobState};

use crate::args::{JobsAction, JobsArgs, JobsCleanArgs};
use crate::output::{Output, human_bytes};
use crate::{Fatal, connect, exit, usage};

/// One job as listed.
#[derive(Serialize)]
struct JobLine<'a> {
    r#type: &'static str,
    id: &'a str,
    journal: String,
    destination: String,
    status: &'static str,
    age_secs: Option<u64>,
    files_done: usize,
    bytes_done: u64,
    open_uploads: usize,
    parts_done: usize,
    command: &'a [String],
}

fn age(e: &JobEntry) -> Option<Duration> {
    SystemTime::now().duration_since(e.modified?).ok()
}

fn status(s: &JobState) -> &'static str {
    if s.finished { "finished" } else { "resumable" }
}

fn line<'a>(e: &'a JobEntry, s: &'a JobState) -> JobLine<'a> {
    let parts: usize = s.uploads.values().map(|u| u.parts.len()).sum();
    let part_bytes: u64 = s
        .uploads
        .values()
        .flat_map(|u| u.parts.values())
        .map(|p| p.size)
        .sum();
    JobLine {
        r#type: "job",
        id: &s.job.id,
        journal: e.path.display().to_string(),
        destination: format!("s3://{}/{}", s.job.bucket, s.job.prefix),
        status: status(s),
        age_secs: age(e).map(|a| a.as_secs()),
        files_done: s.done.len(),
        bytes_done: s.done.values().map(|d| d.size).sum::<u64>() + part_bytes,
        open_uploads: s.uploads.len(),
        parts_done: parts,
        command: &s.job.command,
    }
}

/// `uploader jobs [clean]`.
pub async fn jobs(out: Output, args: &JobsArgs) -> Result<u8, Fatal> {
    let dir = match args.dir.clone().or_else(journal::default_dir) {
        Some(d) => d,
        None => {
            return Err(usage(anyhow::anyhow!(
                "no state directory: set XDG_STATE_HOME or HOME, or pass --dir"
            )));
        }
    };
    let entries = journal::list(&dir)
        .map_err(|e| usage(anyhow::anyhow!("listing {}: {e}", dir.display())))?;
    match &args.action {
        None => {
            for e in &entries {
                match &e.state {
                    Ok(s) => show(out, e, s),
                    Err(why) => out.line(format_args!("unreadable {}: {why}", e.path.display())),
                }
            }
            out.line(format_args!("{} jobs in {}", entries.len(), dir.display()));
            Ok(exit::OK)
        }
        Some(JobsAction::Clean(c)) => clean(out, entries, c).await,
    }
}

fn show(out: Output, e: &JobEntry, s: &JobState) {
    let l = line(e, s);
    if out.json {
        out.json_line(&l);
        return;
    }
    let age = crate::output::hours(l.age_secs);
    out.line(format_args!(
        "{} {:<9} {} ({age} old): {} files done, {} uploaded, {} open multipart uploads ({} parts)",
        &s.job.id[..s.job.id.len().min(12)],
        l.status,
        l.destination,
        l.files_done,
        human_bytes(l.bytes_done),
        l.open_uploads,
        l.parts_done,
    ));
    if !s.job.command.is_empty() {
        out.line(format_args!(
            "    {}",
            shlex::try_join(s.job.command.iter().map(String::as_str)).unwrap_or_default()
        ));
    }
}

/// Removes finished jobs, and unfinished ones at least `--older-than` old after aborting their
/// open multipart uploads (on the store the connection flags name; a job of another store is
/// left as it is).
async fn clean(out: Output, entries: Vec<JobEntry>, c: &JobsCleanArgs) -> Result<u8, Fatal> {
    let older = parse_duration(&c.older_than).map_err(usage)?;
    let mut failed = false;
    for e in &entries {
        let Ok(s) = &e.state else {
            out.line(format_args!(
                "kept       {} (unreadable: not a journal of this version)",
                e.path.display()
            ));
            continue;
        };
        let abandoned = !s.finished && age(e).is_some_and(|a| a >= older);
        if !s.finished && !abandoned {
            out.line(format_args!(
                "kept       {} (resumable, younger than {})",
                s.job.id, c.older_than
            ));
            continue;
        }
        if abandoned && !s.uploads.is_empty() {
            match abort_uploads(out, s, c).await {
                Ok(true) => {}
                Ok(false) => continue,
                Err(why) => {
                    failed = true;
                    out.line(format_args!("FAILED     {}: {why}", s.job.id));
                    continue;
                }
            }
        }
        if c.dry_run {
            out.line(format_args!("would remove {} ({})", s.job.id, status(s)));
        } else if let Err(err) = std::fs::remove_file(&e.path) {
            failed = true;
            out.line(format_args!(
                "FAILED     removing {}: {err}",
                e.path.display()
            ));
        } else {
            out.line(format_args!("removed    {} ({})", s.job.id, status(s)));
        }
    }
    Ok(if failed { exit::SOME_FAILED } else { exit::OK })
}

/// Aborts the open uploads of an abandoned job; `Ok(false)` when the job is of another store.
async fn abort_uploads(out: Output, s: &JobState, c: &JobsCleanArgs) -> Result<bool, String> {
    let conn = connect(&c.connection, &s.job.bucket)
        .await
        .map_err(|Fatal(_, e)| format!("{e:#}"))?;
    let location = crate::location(&c.connection, conn.store().as_ref());
    if location != s.job.location {
        out.line(format_args!(
            "kept       {} (its uploads are on {}: pass that store's connection flags)",
            s.job.id, s.job.location
        ));
        return Ok(false);
    }
    for (key, u) in &s.uploads {
        if c.dry_run {
            out.line(format_args!(
                "would abort s3://{}/{key} (upload {})",
                s.job.bucket, u.upload_id
            ));
            continue;
        }
        match conn.store().abort_multipart(key, &u.upload_id).await {
            Ok(()) => out.line(format_args!(
                "aborted    s3://{}/{key} (upload {})",
                s.job.bucket, u.upload_id
            )),
            Err(e) if e.kind() == Some(uploader_core::ServiceErrorKind::NoSuchUpload) => {}
            Err(e) => {
                return Err(format!(
                    "aborting s3://{}/{key}: {}",
                    s.job.bucket,
                    uploader_core::error_chain(&e)
                ));
            }
        }
    }
    Ok(true)
}
