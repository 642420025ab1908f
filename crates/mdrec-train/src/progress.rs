//! Progress display: an `indicatif` bar (rate, loss, ETA) on an interactive terminal, plain
//! lines otherwise (CI logs). Progress goes to stderr only; it never touches the run directory.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
/// Receives progress events from the trainer.
pub trait Progress {
    /// An epoch of `total` rows starts.
    fn start_epoch(&mut self, label: &str, epoch: usize, total: usize);
    /// `done` rows of the epoch are trained; `loss` is the running mean loss.
    fn step(&mut self, done: usize, loss: f64);
    /// A one-line message (end-of-epoch summary, notes).
    fn message(&mut self, line: &str);
    /// A checkpoint of `bytes` was written to `path` in `seconds`.
    fn checkpoint(&mut self, _path: &std::path::Path, _bytes: usize, _seconds: f64) {}
}

/// Writes to stderr: a progress bar on a terminal, a line every ~10 % or 15 s otherwise.
pub struct Console {
    tty: bool,
    quiet: bool,
    bar: Option<ProgressBar>,
    label: String,
    epoch: usize,
    total: usize,
    start: Instant,
    last: Instant,
    last_frac: f64,
}

impl Console {
    /// A console reporter; `quiet` suppresses step lines and the bar (messages still print).
    pub fn new(quiet: bool) -> Self {
        let now = Instant::now();
        Console {
            tty: std::io::stderr().is_terminal(),
            quiet,
            bar: None,
            label: String::new(),
            epoch: 0,
            total: 0,
            start: now,
            last: now,
            last_frac: 0.0,
        }
    }

    fn new_bar(&self) -> ProgressBar {
        let bar = ProgressBar::with_draw_target(
            Some(self.total as u64),
            ProgressDrawTarget::stderr_with_hz(10),
        );
        bar.set_style(
            ProgressStyle::with_template("{prefix} [{bar:30}] {percent:>3}% {msg} eta {eta}")
                .expect("a valid template")
                .progress_chars("=> "),
        );
        bar.set_prefix(format!("{} epoch {}", self.label, self.epoch));
        bar
    }
}

impl Progress for Console {
    fn start_epoch(&mut self, label: &str, epoch: usize, total: usize) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        self.label = label.to_string();
        self.epoch = epoch;
        self.total = total;
        self.start = Instant::now();
        self.last = self.start;
        self.last_frac = 0.0;
        if self.tty && !self.quiet {
            self.bar = Some(self.new_bar());
        }
    }

    fn step(&mut self, done: usize, loss: f64) {
        if self.quiet {
            return;
        }
        let now = Instant::now();
        let secs = now.duration_since(self.start).as_secs_f64().max(1e-9);
        let rate = done as f64 / secs;
        if let Some(bar) = &self.bar {
            bar.set_position(done as u64);
            bar.set_message(format!("{rate:>8.0} rows/s loss {loss:.5}"));
            if done >= self.total {
                // Leave the finished bar on screen, as the line it replaces did.
                bar.finish();
                self.bar = None;
            }
            return;
        }
        let frac = done as f64 / self.total.max(1) as f64;
        if frac - self.last_frac >= 0.1
            || now.duration_since(self.last) >= Duration::from_secs(15)
            || done >= self.total
        {
            let _ = writeln!(
                std::io::stderr().lock(),
                "{} epoch {} {:5.1}% {:.0} rows/s loss {:.5}",
                self.label,
                self.epoch,
                frac * 100.0,
                rate,
                loss
            );
            self.last_frac = frac;
            self.last = now;
        }
    }

    fn message(&mut self, line: &str) {
        let print = || {
            let _ = writeln!(std::io::stderr().lock(), "{line}");
        };
        match &self.bar {
            // Above the bar, which is redrawn below it.
            Some(bar) => bar.suspend(print),
            None => print(),
        }
    }

    fn checkpoint(&mut self, path: &std::path::Path, bytes: usize, seconds: f64) {
        if !self.quiet {
            self.message(&format!(
                "checkpoint {} ({:.1} MiB, {:.3} s)",
                path.display(),
                bytes as f64 / (1024.0 * 1024.0),
                seconds
            ));
        }
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.abandon();
        }
    }
}

/// Discards everything (tests, benchmarks).
pub struct Silent;

impl Progress for Silent {
    fn start_epoch(&mut self, _label: &str, _epoch: usize, _total: usize) {}
    fn step(&mut self, _done: usize, _loss: f64) {}
    fn message(&mut self, _line: &str) {}
}
