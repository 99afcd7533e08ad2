//! Progress bar state: what the bar shows while the walk is still finding files, and once the
//! totals are known.
//!
//! Files are announced (`Event::Queued`) only when the job gets to them, so while the walk is
//! still finding files the totals only grow: the bar then marks them (`+`, "counting…") and
//! shows no ETA, which would be computed from a partial total. The job's events do not say when
//! the walk is done; the CLI runs the walk itself (`uploader_core::walk::spawn_walk`), which
//! ends with the inputs it sent and their sizes ([`Walked`]): the totals are final then.
//!
//! The walk is paced by the job (bounded queues are the backpressure), so it can end only
//! when what remains fits in the queue. With a bar, the job's queue holds [`WALK_AHEAD`]
//! inputs (a few MiB) so that trees of up to that many files get their totals almost at once;
//! larger trees show "counting…" until their last [`WALK_AHEAD`] files.

use std::collections::HashSet;

/// Inputs queued between the walk and the job without a bar.
pub const WALK_QUEUE: usize = 1024;
/// Inputs the walk may run ahead of the job when a progress bar wants early totals (each is a
/// path and a key, some hundred bytes).
pub const WALK_AHEAD: usize = 16 * 1024;

/// What the walk found, once it has ended.
pub use uploader_core::WalkTotals as Walked;

/// Counts of the job's events, for the bar.
#[derive(Debug, Default)]
pub struct Tally {
    /// Files finished (uploaded, skipped or failed).
    done: usize,
    /// Inputs the job has reported, by `Queued` or, for those never queued (refused before
    /// being read), by `Finished`.
    seen: usize,
    /// Queued and not yet finished.
    open: HashSet<usize>,
    /// What the walk found, once it has ended.
    walked: Option<Walked>,
}

impl Tally {
    pub fn queued(&mut self, index: usize) {
        if self.open.insert(index) {
            self.seen += 1;
        }
    }

    pub fn finished(&mut self, index: usize) {
        self.done += 1;
        if !self.open.remove(&index) {
            self.seen += 1;
        }
    }

    /// The walk ended.
    pub fn walked(&mut self, walked: Walked) {
        self.walked = Some(walked);
    }

    /// The final totals, once the walk has ended.
    pub fn totals(&self) -> Option<Walked> {
        self.walked
    }

    /// The bar's message: files done of files found.
    pub fn message(&self) -> String {
        match self.walked {
            Some(w) => format!("{}/{} files", self.done, w.inputs.max(self.seen)),
            None => format!("{}/{}+ files, counting…", self.done, self.seen),
        }
    }
}

/// The bar's template: with an ETA only when the totals are final.
pub fn template(totals_known: bool) -> &'static str {
    if totals_known {
        "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta} {msg}"
    } else {
        "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes}+ {binary_bytes_per_sec} {msg}"
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle, TermLike};

    use super::*;

    #[derive(Debug, Clone, Default)]
    struct Screen(Arc<Mutex<String>>);

    impl Screen {
        fn take(&self) -> String {
            std::mem::take(&mut self.0.lock().unwrap())
        }
    }

    impl TermLike for Screen {
        fn width(&self) -> u16 {
            160
        }
        fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn write_line(&self, s: &str) -> std::io::Result<()> {
            self.write_str(s)
        }
        fn write_str(&self, s: &str) -> std::io::Result<()> {
            self.0.lock().unwrap().push_str(s);
            Ok(())
        }
        /// A redraw clears the line first: the screen then holds the last frame only.
        fn clear_line(&self) -> std::io::Result<()> {
            self.0.lock().unwrap().clear();
            Ok(())
        }
        fn flush(&self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Draws the bar as `render_events` sets it up for `tally`, and returns the line.
    fn draw(bar: &ProgressBar, screen: &Screen, tally: &Tally) -> String {
        std::thread::sleep(Duration::from_millis(30)); // past the draw rate limit
        screen.take();
        bar.set_style(ProgressStyle::with_template(template(tally.totals().is_some())).unwrap());
        if let Some(w) = tally.totals() {
            bar.set_length(w.bytes);
        }
        bar.set_message(tally.message());
        bar.tick();
        screen.take()
    }

    #[test]
    fn no_eta_while_the_walk_runs_and_an_eta_once_totals_are_known() {
        let screen = Screen::default();
        let bar = ProgressBar::with_draw_target(
            Some(0),
            ProgressDrawTarget::term_like_with_hz(Box::new(screen.clone()), 100),
        );
        let mut tally = Tally::default();
        // Five files of 1 MiB announced, one done: 20 %, and the walk is still going.
        for i in 0..5 {
            tally.queued(i);
            bar.inc_length(1 << 20);
        }
        bar.inc(1 << 20);
        tally.finished(0);
        // One refused before being read: finished without being queued.
        tally.finished(5);
        let line = draw(&bar, &screen, &tally);
        assert!(line.contains("2/6+ files, counting…"), "{line:?}");
        assert!(line.contains("/5.00 MiB+ "), "{line:?}");
        assert!(!line.contains("ETA"), "{line:?}");

        // The walk ended: 10 inputs, 9 MiB in all.
        tally.walked(Walked {
            inputs: 10,
            bytes: 9 << 20,
        });
        let line = draw(&bar, &screen, &tally);
        assert!(line.contains("ETA"), "{line:?}");
        assert!(
            line.contains("2/10 files") && !line.contains("counting"),
            "{line:?}"
        );
        assert!(
            line.contains("/9.00 MiB ") && !line.contains("MiB+"),
            "{line:?}"
        );
    }

    #[test]
    fn the_message_counts_files_found_until_the_walk_ends() {
        let mut t = Tally::default();
        assert_eq!(t.message(), "0/0+ files, counting…");
        t.queued(0);
        t.queued(1);
        t.finished(1);
        t.finished(2);
        assert_eq!(t.message(), "2/3+ files, counting…");
        t.walked(Walked {
            inputs: 7,
            bytes: 0,
        });
        assert_eq!(t.message(), "2/7 files");
    }

    #[test]
    fn both_templates_are_valid_and_only_the_final_one_has_an_eta() {
        for known in [false, true] {
            ProgressStyle::with_template(template(known)).unwrap();
            assert_eq!(template(known).contains("{eta}"), known);
        }
    }
}
