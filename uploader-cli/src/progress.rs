//! Progress bar state: what the bar shows while the walk is still finding files, and once the
//! totals are known.
//!
//! Files are announced (`Event::Queued`) as the walk finds them, so until it has finished the
//! totals only grow: the bar then marks them (`+`, "counting…") and shows no ETA, which would
//! be computed from a partial total. The job's events do not say when the walk is done; the
//! CLI relays the walk's inputs to the job itself and counts them ([`relay_counting`]), and
//! the totals are final once every relayed input has been announced or finished.

use std::collections::HashSet;

use tokio::sync::{mpsc, oneshot};
use uploader_core::Input;

/// Inputs buffered on each side of the relay.
pub const RELAY_QUEUE: usize = 1024;

/// Forwards the walk's inputs to the job, and sends how many there were once the walk ends
/// (nothing when the job stops taking inputs first).
pub async fn relay_counting(
    mut walk: mpsc::Receiver<Input>,
    job: mpsc::Sender<Input>,
    walked: oneshot::Sender<usize>,
) {
    let mut n = 0;
    while let Some(input) = walk.recv().await {
        if job.send(input).await.is_err() {
            return;
        }
        n += 1;
    }
    let _ = walked.send(n);
}

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
    /// Inputs of the walk, once it has ended.
    walked: Option<usize>,
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

    /// The walk ended after `inputs` inputs.
    pub fn walked(&mut self, inputs: usize) {
        self.walked = Some(inputs);
    }

    /// Whether the file and byte totals are final: the walk ended and every input it produced
    /// has been reported.
    pub fn totals_known(&self) -> bool {
        self.walked.is_some_and(|n| self.seen >= n)
    }

    /// The bar's message: files done of files found.
    pub fn message(&self) -> String {
        if self.totals_known() {
            format!("{}/{} files", self.done, self.seen)
        } else {
            format!("{}/{}+ files, counting…", self.done, self.seen)
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
        fn clear_line(&self) -> std::io::Result<()> {
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
        bar.set_style(ProgressStyle::with_template(template(tally.totals_known())).unwrap());
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
        // Five files of 1 MiB found, one done: 20 %, and the walk is still going.
        for i in 0..5 {
            tally.queued(i);
            bar.inc_length(1 << 20);
        }
        bar.inc(1 << 20);
        tally.finished(0);
        let line = draw(&bar, &screen, &tally);
        assert!(line.contains("1/5+ files, counting…"), "{line:?}");
        assert!(line.contains("/5.00 MiB+ "), "{line:?}");
        assert!(!line.contains("ETA"), "{line:?}");

        // The walk ended after 6 inputs, one of them not reported yet: still counting.
        tally.walked(6);
        let line = draw(&bar, &screen, &tally);
        assert!(
            !line.contains("ETA") && line.contains("counting"),
            "{line:?}"
        );

        // The sixth was refused before being read: it finishes without being queued.
        tally.finished(5);
        let line = draw(&bar, &screen, &tally);
        assert!(line.contains("ETA"), "{line:?}");
        assert!(
            line.contains("2/6 files") && !line.contains("counting"),
            "{line:?}"
        );
        assert!(!line.contains("MiB+"), "{line:?}");
    }

    #[test]
    fn totals_are_known_only_when_the_walk_ended_and_every_input_was_reported() {
        // (events, walked, known): `q` queued, `f` finished, for input indices.
        type Step = (char, usize);
        let cases: [(&[Step], Option<usize>, bool); 6] = [
            (&[], None, false),
            (&[], Some(0), true),
            (&[('q', 0), ('q', 1)], None, false),
            (&[('q', 0), ('q', 1)], Some(3), false),
            (&[('q', 0), ('f', 1), ('f', 0)], Some(2), true),
            (&[('q', 0), ('f', 0), ('q', 1)], Some(2), true),
        ];
        for (steps, walked, known) in cases {
            let mut t = Tally::default();
            for &(kind, i) in steps {
                match kind {
                    'q' => t.queued(i),
                    _ => t.finished(i),
                }
            }
            if let Some(n) = walked {
                t.walked(n);
            }
            assert_eq!(t.totals_known(), known, "{steps:?} {walked:?}");
        }
    }

    #[test]
    fn both_templates_are_valid_and_only_the_final_one_has_an_eta() {
        for known in [false, true] {
            ProgressStyle::with_template(template(known)).unwrap();
            assert_eq!(template(known).contains("{eta}"), known);
        }
    }
}
