//! Helpers for the end-to-end tests: locating the `uploader` binary built by this workspace,
//! running it with a clean AWS environment, and making test data.

pub mod conformance;
pub mod haproxy;
pub mod proxy;
pub mod servers;
pub mod webdriver;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The `uploader` binary of this build (target/<profile>/uploader, next to the test's deps dir).
pub fn uploader_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps/<test>");
    let bin = dir.join("uploader");
    assert!(
        bin.exists(),
        "{} is missing: run the tests with `cargo nextest run --workspace` (or build uploader-cli)",
        bin.display()
    );
    bin
}

/// A command for the binary with no ambient AWS configuration: credentials and endpoints come
/// only from what the test passes.
pub fn uploader(home: &Path) -> Command {
    let mut c = Command::new(uploader_bin());
    for (k, _) in std::env::vars() {
        // And the job runners' shard indexes (`--shard auto/N`); AWS Batch's starts with AWS_.
        if k.starts_with("AWS_")
            || k.starts_with("UPLOADER_")
            || k == "JOB_COMPLETION_INDEX"
            || k == "SLURM_ARRAY_TASK_ID"
        {
            c.env_remove(k);
        }
    }
    c.env("HOME", home)
        .env("AWS_CONFIG_FILE", home.join("no-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", home.join("no-credentials"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    c
}

/// Runs a command and returns its output.
pub fn run(c: &mut Command) -> Output {
    c.output().expect("the uploader binary runs")
}

/// Stdout as JSON lines.
pub fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}")))
        .collect()
}

pub use uploader_core::testing::pseudo_random as data;

/// Writes a file, creating parent directories.
pub fn write(root: &Path, rel: &str, bytes: &[u8]) -> PathBuf {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, bytes).unwrap();
    p
}

/// Describes an output for assertion messages.
pub fn describe(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
