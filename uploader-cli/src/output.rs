//! Rendering: JSON lines or human text on stdout, progress and logs on stderr.

use std::io::{IsTerminal as _, Write as _};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use uploader_core::walk::Shard;
use uploader_core::{DeleteOutcome, Deletion, Event, FileOutcome, FileReport, Report};

use crate::args::OutputArgs;
use crate::progress::{self, Tally};
use crate::resolve::S3Target;

/// How results are shown.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    pub json: bool,
    pub quiet: bool,
    /// Draw a progress bar (stderr is a terminal, not quiet).
    pub progress: bool,
    /// `-v`: the summary also says how many files were read for hashing and how many requests
    /// were in flight.
    pub verbose: bool,
}

impl Output {
    pub fn new(args: &OutputArgs) -> Output {
        Output {
            json: args.json,
            quiet: args.quiet,
            progress: !args.quiet && std::io::stderr().is_terminal(),
            verbose: args.verbose > 0,
        }
    }

    /// Prints one JSON object as a line on stdout.
    pub fn json_line<T: Serialize>(&self, value: &T) {
        let mut out = std::io::stdout().lock();
        let _ = serde_json::to_writer(&mut out, value);
        let _ = out.write_all(b"\n");
    }

    /// Prints a human line on stdout unless quiet.
    pub fn line(&self, text: impl std::fmt::Display) {
        if !self.quiet && !self.json {
            println!("{text}");
        }
    }
}

#[derive(Serialize)]
struct FileLine<'a> {
    r#type: &'static str,
    #[serde(flatten)]
    file: &'a FileReport,
}

#[derive(Serialize)]
struct SummaryLine {
    r#type: &'static str,
    total: usize,
    uploaded: usize,
    skipped: usize,
    failed: usize,
    bytes: u64,
    seconds: f64,
    mib_per_s: f64,
    retries: u64,
    aborted_multipart: u64,
    cancelled: bool,
    /// Files read to compute a checksum for sync (0 on an unchanged re-run: the cache).
    hashed: u64,
    /// With `sync --delete`: objects deleted (or, with --dry-run, that would be).
    #[serde(skip_serializing_if = "Option::is_none")]
    deleted: Option<usize>,
    /// With `sync --delete`: why nothing was deleted.
    #[serde(skip_serializing_if = "Option::is_none")]
    delete_refused: Option<String>,
    /// `K/N` with `--shard`.
    #[serde(skip_serializing_if = "Option::is_none")]
    shard: Option<String>,
    /// Requests in flight: mode, final and peak limit, ceiling.
    concurrency: uploader_core::ConcurrencyReport,
    /// What a resumed job did not send again (files skipped, parts reused, bytes).
    resumed: uploader_core::ResumeReport,
}

/// An age in hours (`"1.5 h"`), or `"unknown age"`.
pub fn hours(secs: Option<u64>) -> String {
    secs.map(|s| format!("{:.1} h", s as f64 / 3600.0))
        .unwrap_or_else(|| "unknown age".into())
}

pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Consumes a job's events: progress bar on stderr, one line per finished file on stdout.
/// `walked` ends with what the walk found (see `progress`).
pub async fn render_events(
    out: Output,
    mut events: tokio::sync::mpsc::UnboundedReceiver<Event>,
    mut walked: tokio::task::JoinHandle<Option<uploader_core::WalkTotals>>,
) {
    let bar = out.progress.then(|| {
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
        bar.set_style(style(false));
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    });
    let mut tally = Tally::default();
    let mut walking = true;
    loop {
        let ev = tokio::select! {
            w = &mut walked, if walking => {
                walking = false;
                if let Ok(Some(w)) = w {
                    tally.walked(w);
                    if let Some(b) = &bar {
                        b.set_style(style(true));
                        b.set_length(w.bytes);
                    }
                }
                None
            }
            ev = events.recv() => match ev {
                Some(ev) => Some(ev),
                None => break,
            },
        };
        match ev {
            Some(Event::Queued { index, size }) => {
                tally.queued(index);
                if let Some(b) = bar.as_ref().filter(|_| tally.totals().is_none()) {
                    b.inc_length(size);
                }
            }
            Some(Event::Progress { bytes, .. }) => {
                if let Some(b) = &bar {
                    b.inc(bytes);
                }
            }
            Some(Event::Finished(file)) => {
                tally.finished(file.index);
                print_file(out, bar.as_ref(), &file);
            }
            _ => {}
        }
        if let Some(b) = &bar {
            b.set_message(tally.message());
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
}

fn style(totals_known: bool) -> ProgressStyle {
    ProgressStyle::with_template(progress::template(totals_known)).expect("valid template")
}

/// One finished file: a JSON line, or a text line (above the bar, which shows uploads itself).
fn print_file(out: Output, bar: Option<&ProgressBar>, file: &FileReport) {
    if out.json {
        out.json_line(&FileLine {
            r#type: "file",
            file,
        });
    } else if !out.quiet {
        let line = file_line(file);
        match bar {
            Some(b) if !matches!(file.outcome, FileOutcome::Uploaded { .. }) => b.println(line),
            Some(_) => {}
            None => println!("{line}"),
        }
    }
}

fn file_line(f: &FileReport) -> String {
    let key = f.key.as_deref().unwrap_or("-");
    match &f.outcome {
        FileOutcome::Uploaded { .. } => {
            format!("uploaded  {} → {key} ({})", f.source, human_bytes(f.size))
        }
        FileOutcome::Skipped { reason } => format!("skipped   {} → {key}: {reason}", f.source),
        FileOutcome::Failed { error } => {
            format!("FAILED    {}: {}: {}", f.source, error.code, error.message)
        }
    }
}

/// Objects deleted by `--delete` (or, in a dry run, that would be).
fn deleted(report: &Report) -> usize {
    report
        .deletions
        .iter()
        .filter(|d| !matches!(d.outcome, DeleteOutcome::Failed { .. }))
        .count()
}

#[derive(Serialize)]
struct DeleteLine<'a> {
    r#type: &'static str,
    #[serde(flatten)]
    deletion: &'a Deletion,
}

/// One line per object `sync --delete` deleted, would delete (dry run), or failed to.
pub fn deletions(out: Output, report: &Report, target: &S3Target) {
    for d in &report.deletions {
        if out.json {
            out.json_line(&DeleteLine {
                r#type: "delete",
                deletion: d,
            });
            continue;
        }
        if out.quiet && !matches!(d.outcome, DeleteOutcome::Failed { .. }) {
            continue;
        }
        let url = target.url(&d.key);
        match &d.outcome {
            DeleteOutcome::Deleted => println!("deleted   {url}"),
            DeleteOutcome::WouldDelete => println!("would delete {url} (dry run)"),
            DeleteOutcome::Failed { error } => {
                println!("FAILED    delete {url}: {}: {}", error.code, error.message)
            }
        }
    }
}

/// The final summary: a JSON object, or text.
pub fn summary(out: Output, report: &Report, shard: Option<Shard>) {
    let s = report.summary();
    let deleting = report.delete_requested;
    let secs = report.elapsed.as_secs_f64();
    let mib_s = if secs > 0.0 {
        s.bytes as f64 / (1024.0 * 1024.0) / secs
    } else {
        0.0
    };
    if out.json {
        out.json_line(&SummaryLine {
            r#type: "summary",
            total: s.total,
            uploaded: s.uploaded,
            skipped: s.skipped,
            failed: s.failed,
            bytes: s.bytes,
            seconds: (secs * 1000.0).round() / 1000.0,
            mib_per_s: (mib_s * 10.0).round() / 10.0,
            retries: report.retries,
            aborted_multipart: report.aborted_multipart,
            cancelled: report.cancelled,
            hashed: report.hashed,
            deleted: deleting.then(|| deleted(report)),
            delete_refused: report.delete_refused.clone(),
            shard: shard.map(|s| s.to_string()),
            concurrency: report.concurrency,
            resumed: report.resumed,
        });
        return;
    }
    if out.quiet {
        return;
    }
    let of_shard = shard.map(|s| format!("shard {s}: ")).unwrap_or_default();
    println!(
        "{of_shard}{} files uploaded ({}) in {secs:.2} s, {mib_s:.1} MiB/s; {} skipped, {} failed{}",
        s.uploaded,
        human_bytes(s.bytes),
        s.skipped,
        s.failed,
        if report.cancelled {
            " (interrupted)"
        } else {
            ""
        }
    );
    let r = report.resumed;
    if r != uploader_core::ResumeReport::default() {
        println!(
            "resumed: {} files already uploaded, {} parts reused, {} not sent again",
            r.files_skipped,
            r.parts_reused,
            human_bytes(r.bytes_not_resent)
        );
    }
    if deleting {
        match &report.delete_refused {
            Some(why) => println!("delete: {why}"),
            None if report
                .deletions
                .iter()
                .any(|d| d.outcome == DeleteOutcome::WouldDelete) =>
            {
                println!(
                    "{} orphaned objects would be deleted (dry run)",
                    deleted(report)
                )
            }
            None => println!("{} orphaned objects deleted", deleted(report)),
        }
    }
    if out.verbose {
        println!("{} files read to compute their checksum", report.hashed);
        let c = report.concurrency;
        println!(
            "requests in flight: {} (limit {} at the end, peak {}, ceiling {})",
            c.mode, c.limit, c.peak, c.ceiling
        );
    }
    if s.failed > 0 {
        println!("failures:");
        for f in report.failures() {
            let e = f.error().expect("failures have errors");
            println!("  {}: {} ({})", f.source, e.message, e.code);
        }
    }
}
