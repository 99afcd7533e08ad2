//! `uploader`: parse arguments, resolve them into core configuration, call core, render.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser as _;
use uploader_core::validate;

mod args;
mod jobs;
mod output;
mod progress;
mod resolve;

use args::{CheckArgs, CleanupArgs, Cli, Command, ConnectionArgs, ServeArgs};
use output::Output;
use resolve::{CleanupPlan, S3Target, UploadPlan};
use uploader_core::connect::{ConnectOptions, Connection};
use uploader_server::ServerConfig;

/// mimalloc instead of glibc's allocator: the SDK allocates per request, and with glibc's malloc
/// (its consolidation included) about an eighth of a small file's client CPU went to it.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit statuses (documented in `--help`).
mod exit {
    pub const OK: u8 = 0;
    pub const SOME_FAILED: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const INTERRUPTED: u8 = 130;
}

/// An error that ends the command with a given status.
struct Fatal(u8, anyhow::Error);

fn usage(e: impl Into<anyhow::Error>) -> Fatal {
    Fatal(exit::USAGE, e.into())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.output.verbose, cli.output.log_format);
    let out = Output::new(&cli.output);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    let result = rt.block_on(async {
        match &cli.command {
            Command::Upload(a) => match UploadPlan::try_from(&**a) {
                Ok(plan) => upload(out, plan, &a.connection).await,
                Err(e) => Err(usage(e)),
            },
            Command::Sync(a) => match UploadPlan::try_from(&**a) {
                Ok(plan) => upload(out, plan, &a.upload.connection).await,
                Err(e) => Err(usage(e)),
            },
            Command::Check(a) => check(out, a).await,
            Command::Cleanup(a) => cleanup(out, a).await,
            Command::Jobs(a) => jobs::jobs(out, a).await,
            Command::Serve(a) => serve(a).await,
            Command::Token(args::TokenCommand::New(a)) => new_token(a),
        }
    });
    match result {
        Ok(code) => ExitCode::from(code),
        Err(Fatal(code, e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(code)
        }
    }
}

fn init_tracing(verbose: u8, format: args::LogFormat) {
    use tracing_subscriber::EnvFilter;
    // The SDK warns about every provider it tries (instance metadata off EC2, ...); those
    // reach the user through our own errors, so they are shown only with -vv. The daemon's
    // access log (one line per request) is on at every level.
    let default = match verbose {
        0 => {
            "error,uploader=warn,uploader_core=warn,uploader_server=warn,uploader_server::access=info"
        }
        1 => "warn,uploader=info,uploader_core=info,uploader_server=info,aws_config=error",
        _ => "debug",
    };
    let filter = std::env::var(uploader_core::env::UPLOADER_LOG)
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(default));
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        args::LogFormat::Text => fmt
            .with_ansi(std::env::var_os(uploader_core::env::NO_COLOR).is_none())
            .init(),
        // One object per line: the event's fields at the top level, the fields of the span it
        // is in (the request's, for the daemon) under "span".
        args::LogFormat::Json => fmt
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
}

/// Opens the store for `bucket` (starting the embedded endpoint when asked).
async fn connect(args: &ConnectionArgs, bucket: &str) -> Result<Connection, Fatal> {
    Connection::open(&ConnectOptions::from(args), bucket)
        .await
        .map_err(usage)
}

async fn serve(args: &ServeArgs) -> Result<u8, Fatal> {
    let config = ServerConfig::try_from(args).map_err(usage)?;
    uploader_server::serve::run(config)
        .await
        .map(|()| exit::OK)
        .map_err(usage)
}

/// `uploader token new`: 32 random bytes, base64url, after `upl_` (so secret scanners can
/// match it); the token on stdout's first line, the line for the file on the second.
fn new_token(a: &args::TokenNewArgs) -> Result<u8, Fatal> {
    use base64::Engine as _;
    use rand::Rng as _;
    use uploader_server::tenants;
    let id =
        a.id.clone()
            .unwrap_or_else(|| format!("token-{:08x}", rand::rng().random::<u32>()));
    tenants::check_id(&id)
        .map_err(anyhow::Error::msg)
        .context("--id")
        .map_err(usage)?;
    let prefix = a.prefix.clone().unwrap_or_else(|| format!("{id}/"));
    let prefix = tenants::parse_prefix(&prefix)
        .map_err(anyhow::Error::msg)
        .context("--prefix")
        .map_err(usage)?;
    let bytes: [u8; 32] = rand::rng().random();
    let token = format!(
        "upl_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    println!("{token}");
    println!("{}", tenants::line_for(&id, &token, &prefix));
    eprintln!(
        "uploader token: the first line is the token (shown only now: give it to the client); \
         add the second line to the --scoped-tokens file, then send the daemon SIGHUP"
    );
    Ok(exit::OK)
}

/// `upload` and `sync` (an upload with a skip mode, and maybe `--delete`).
async fn upload(out: Output, mut plan: UploadPlan, conn: &ConnectionArgs) -> Result<u8, Fatal> {
    let conn_args = conn;
    let conn = connect(conn, &plan.target.bucket).await?;
    let store = conn.store();
    let location = location(conn_args, store.as_ref());
    plan.config.journal = plan.journal_config(location).map_err(usage)?;
    let keeps = plan.config.keep_uploads_on_cancel;
    if !plan.config.dry_run {
        // Fail fast: credentials and bucket are checked before the first byte.
        validate::check(store, &plan.target.prefix, false)
            .await
            .map_err(usage)?;
        if plan.detect_checksum {
            plan.config.checksum = validate::detect_checksum(store.as_ref(), &plan.target.prefix)
                .await
                .context("probing which checksum the endpoint verifies")
                .map_err(usage)?;
            tracing::info!(checksum = %plan.config.checksum, "checksum chosen by probing the endpoint");
        }
    }
    let uploader = uploader_core::Uploader::builder()
        .with_store(Arc::clone(store) as _)
        .with_config(plan.config)
        .with_limits(plan.rates.start())
        .build()
        .map_err(usage)?;
    // The walk feeds the job directly and ends with its totals, so the progress bar learns
    // them when the walk ends (`Uploader::upload_sources`, which drops them).
    let ahead = if out.progress {
        progress::WALK_AHEAD
    } else {
        progress::WALK_QUEUE
    };
    let (walk_tx, job_rx) = tokio::sync::mpsc::channel(ahead);
    let mut job = uploader.upload_inputs_to(job_rx, plan.dest);
    let shard = plan.walk.shard;
    let walked = uploader_core::walk::spawn_walk(
        plan.sources,
        plan.target.prefix.clone(),
        plan.walk,
        walk_tx,
        job.cancel_token(),
    );
    let events = job.events().expect("events are taken once");
    let renderer = tokio::spawn(output::render_events(out, events, walked));
    let cancel = job.cancel_token();
    let interrupted = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = Arc::clone(&interrupted);
    tokio::spawn(async move {
        // SIGTERM is how job runners (Kubernetes, Slurm's scancel, AWS Batch) stop a task: it
        // is an interruption like Ctrl-C, never a reason to leave multipart uploads open.
        // Either signal that could not be registered is left out (and said), never both lost.
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| tracing::warn!(error = %e, "SIGTERM is not handled"))
            .ok();
        let sigterm = async {
            match term.as_mut() {
                Some(t) => drop(t.recv().await),
                None => std::future::pending().await,
            }
        };
        let ctrl_c = async {
            if let Err(e) = tokio::signal::ctrl_c().await {
                tracing::warn!(error = %e, "Ctrl-C is not handled");
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            () = ctrl_c => {}
            () = sigterm => {}
        }
        flag.store(true, std::sync::atomic::Ordering::SeqCst);
        if keeps {
            eprintln!(
                "interrupted: stopping, waiting for the requests in flight; open multipart uploads are kept for --resume..."
            );
        } else {
            eprintln!("interrupted: stopping, aborting open multipart uploads...");
        }
        cancel.cancel();
    });
    let report = job.wait().await;
    let _ = renderer.await;
    output::deletions(out, &report, &plan.target);
    output::summary(out, &report, shard);
    let interrupted = interrupted.load(std::sync::atomic::Ordering::SeqCst);
    if interrupted && keeps {
        eprintln!("resume with: {}", resume_command());
    }
    Ok(if interrupted {
        exit::INTERRUPTED
    } else if report.is_success() {
        exit::OK
    } else {
        exit::SOME_FAILED
    })
}

/// Where a job's store is, as its journal records it. The embedded endpoint listens on another
/// port each run: its data directory is its place.
fn location(args: &ConnectionArgs, store: &uploader_core::S3Store) -> String {
    match &args.embedded_s3 {
        Some(dir) => format!(
            "embedded:{}",
            std::fs::canonicalize(dir)
                .unwrap_or_else(|_| dir.clone())
                .display()
        ),
        None => uploader_core::ObjectStore::location(store).unwrap_or_default(),
    }
}

/// This very command line with `--resume` (once), quoted for a POSIX shell.
fn resume_command() -> String {
    let mut args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--resume") {
        args.push("--resume".into());
    }
    shlex::try_join(args.iter().map(String::as_str))
        .unwrap_or_else(|_| format!("{} (with --resume)", args.join(" ")))
}

async fn check(out: Output, args: &CheckArgs) -> Result<u8, Fatal> {
    let target = S3Target::parse(&args.target).map_err(usage)?;
    let conn = connect(&args.connection, &target.bucket).await?;
    let report = validate::check(conn.store(), &target.prefix, args.write_probe)
        .await
        .context("check failed")
        .map_err(usage)?;
    if out.json {
        out.json_line(&report);
    } else {
        out.line(format_args!(
            "credentials: resolved ({})",
            report.credentials_source
        ));
        out.line(format_args!(
            "bucket:      {} reachable (HeadBucket)",
            report.bucket
        ));
        if report.write_probe {
            out.line(format_args!(
                "write:       allowed under {} (multipart upload created and aborted)",
                target.url(target.prefix.as_str())
            ));
        }
        out.line(format_args!("ok in {:.2} s", report.elapsed.as_secs_f64()));
    }
    Ok(exit::OK)
}

async fn cleanup(out: Output, args: &CleanupArgs) -> Result<u8, Fatal> {
    let plan = CleanupPlan::try_from(args).map_err(usage)?;
    let conn = connect(&args.connection, &plan.target.bucket).await?;
    let entries = uploader_core::cleanup::cleanup(
        conn.store().as_ref(),
        plan.target.prefix.as_str(),
        plan.older_than,
        args.dry_run,
    )
    .await
    .context("listing multipart uploads")
    .map_err(usage)?;
    let mut failed = 0;
    for e in &entries {
        failed += usize::from(e.action.starts_with("failed"));
        if out.json {
            out.json_line(e);
        } else {
            let age = output::hours(e.age_secs);
            out.line(format_args!(
                "{:<12} {} (upload {}, {age})",
                e.action,
                plan.target.url(&e.key),
                e.upload_id
            ));
        }
    }
    out.line(format_args!(
        "{} pending multipart uploads found",
        entries.len()
    ));
    Ok(if failed > 0 {
        exit::SOME_FAILED
    } else {
        exit::OK
    })
}
