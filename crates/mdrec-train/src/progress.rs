//! Progress display: a live line on an interactive terminal, plain lines otherwise (CI logs).

use std::io::{IsTerminal, Write};
use std::time::Instant;

/// Receives progress events from the trainer.
pub trait Progress {
    /// An epoch of `total` rows starts.
    fn start_epoch(&mut self, label: &str, epoch: usize, total: usize);
    /// `done` rows of the epoch are trained; `loss` is the running mean loss.
    fn step(&mut self, done: usize, loss: f64);
    /// A one-line message (end-of-epoch summary, notes).
    fn message(&mut self, line: &str);
}

/// Writes to stderr: a redrawn line on a terminal, a line every ~10 % or 15 s otherwise.
pub struct Console {
    tty: bool,
    quiet: bool,
    label: String,
    epoch: usize,
    total: usize,
    start: Instant,
    last: Instant,
    last_frac: f64,
}

impl Console {
    /// A console reporter; `quiet` suppresses step lines (messages still print).
    pub fn new(quiet: bool) -> Self {
        let now = Instant::now();
        Console {
            tty: std::io::stderr().is_terminal(),
            quiet,
            label: String::new(),
            epoch: 0,
            total: 0,
            start: now,
            last: now,
            last_frac: 0.0,
        }
    }
}

impl Progress for Console {
    fn start_epoch(&mut self, label: &str, epoch: usize, total: usize) {
        self.label = label.to_string();
        self.epoch = epoch;
        self.total = total;
        self.start = Instant::now();
        self.last = self.start;
        self.last_frac = 0.0;
    }

    fn step(&mut self, done: usize, loss: f64) {
        if self.quiet {
            return;
        }
        let now = Instant::now();
        let frac = done as f64 / self.total.max(1) as f64;
        let secs = now.duration_since(self.start).as_secs_f64().max(1e-9);
        let rate = done as f64 / secs;
        let eta = (self.total - done.min(self.total)) as f64 / rate.max(1e-9);
        let mut err = std::io::stderr().lock();
        if self.tty {
            if now.duration_since(self.last).as_millis() < 100 && done < self.total {
                return;
            }
            let width = 30;
            let filled = ((frac * width as f64) as usize).min(width);
            let _ = write!(
                err,
                "\r{} epoch {} [{}{}] {:5.1}% {:>8.0} rows/s loss {:.5} eta {:>4.0}s ",
                self.label,
                self.epoch,
                "=".repeat(filled),
                " ".repeat(width - filled),
                frac * 100.0,
                rate,
                loss,
                eta
            );
            if done >= self.total {
                let _ = writeln!(err);
            }
        } else if frac - self.last_frac >= 0.1
            || now.duration_since(self.last).as_secs() >= 15
            || done >= self.total
        {
            let _ = writeln!(
                err,
                "{} epoch {} {:5.1}% {:.0} rows/s loss {:.5}",
                self.label,
                self.epoch,
                frac * 100.0,
                rate,
                loss
            );
            self.last_frac = frac;
        } else {
            return;
        }
        self.last = now;
    }

    fn message(&mut self, line: &str) {
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    }
}

/// Discards everything (tests, benchmarks).
pub struct Silent;

impl Progress for Silent {
    fn start_epoch(&mut self, _label: &str, _epoch: usize, _total: usize) {}
    fn step(&mut self, _done: usize, _loss: f64) {}
    fn message(&mut self, _line: &str) {}
}
