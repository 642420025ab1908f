//! Dynamic batching for one served model version: a queue of parsed requests and `workers`
//! dedicated OS threads (not tokio tasks, so a slow `score` never blocks the async runtime).
//!
//! A worker takes the first queued request, then keeps taking requests until the merged rows
//! reach `max_batch_rows` or `max_delay_us` passed since it took the first one. Requests with the
//! same set of present columns are concatenated and scored with one `score` call; the scores are
//! split back by row ranges and each request is answered through its oneshot channel. If a merged
//! call fails, each request of that group is re-scored alone so only the bad one gets the error
//! (with row numbers of its own). Column buffers of merged batches are reused between batches.
//!
//! The queue lives as long as the [`Batcher`]: when the last handle to a version goes away (it was
//! swapped out and its in-flight requests finished), the sender drops, the workers drain what is
//! still queued and exit.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::api::{RawBatch, Scorer, Scores};
use crate::metrics::Metrics;

/// Why a queued request got no scores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobError {
    /// The scorer refused a row of this request (HTTP 400); the message uses the request's rows.
    Client(String),
    /// The scorer panicked or returned scores of the wrong shape (HTTP 500).
    Internal(String),
    /// The request's deadline passed before a worker got to it (HTTP 504).
    Timeout,
}

/// The answer to one queued request: its own rows' scores, task-major.
pub type JobResult = Result<Scores, JobError>;

/// One queued request.
pub struct Job {
    /// The request's rows (columns in `meta.inputs` order).
    pub batch: RawBatch,
    /// When the request was queued (for `mdrec_queue_seconds`).
    pub enqueued: Instant,
    /// Past this instant the request is answered with [`JobError::Timeout`] instead of scored.
    pub deadline: Instant,
    /// Where the answer goes.
    pub reply: oneshot::Sender<JobResult>,
}

/// Batching limits.
#[derive(Clone, Copy, Debug)]
pub struct BatchLimits {
    /// Stop collecting once a batch holds this many rows.
    pub max_rows: usize,
    /// Stop collecting this long after the first request of a batch was taken.
    pub max_delay: Duration,
    /// Worker threads.
    pub workers: usize,
}

/// Handle to one version's queue; dropping it stops the workers once the queue is drained.
pub struct Batcher {
    tx: Sender<Job>,
}

struct Queue {
    rx: Receiver<Job>,
    /// A request taken that did not fit in the previous batch; it starts the next one.
    carry: Option<Job>,
}

struct Worker {
    scorer: Arc<dyn Scorer>,
    limits: BatchLimits,
    metrics: Arc<Metrics>,
    model: String,
    version: String,
    /// Reused column buffers for merged batches, one per input.
    bufs: Vec<Vec<String>>,
}

impl Batcher {
    /// Starts the worker threads for `scorer`.
    pub fn spawn(
        scorer: Arc<dyn Scorer>,
        limits: BatchLimits,
        metrics: Arc<Metrics>,
        model: &str,
        version: u64,
    ) -> Result<Batcher, String> {
        let (tx, rx) = mpsc::channel();
        let queue = Arc::new(Mutex::new(Queue { rx, carry: None }));
        let n_inputs = scorer.meta().inputs.len();
        for i in 0..limits.workers.max(1) {
            let mut worker = Worker {
                scorer: scorer.clone(),
                limits,
                metrics: metrics.clone(),
                model: model.to_string(),
                version: version.to_string(),
                bufs: vec![Vec::new(); n_inputs],
            };
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("mdrec-score-{model}-v{version}-{i}"))
                .spawn(move || worker.run(&queue))
                .map_err(|e| format!("cannot start a scoring thread: {e}"))?;
        }
        Ok(Batcher { tx })
    }

    /// Queues a request; gives it back when the workers are gone.
    pub fn submit(&self, job: Job) -> Result<(), Box<Job>> {
        self.tx.send(job).map_err(|e| Box::new(e.0))
    }
}

fn rows(job: &Job) -> usize {
    job.batch.n_rows
}

fn mask(batch: &RawBatch) -> Vec<bool> {
    batch.columns.iter().map(Option::is_some).collect()
}

impl Worker {
    fn run(&mut self, queue: &Mutex<Queue>) {
        loop {
            let jobs = {
                let mut q = queue.lock().unwrap_or_else(PoisonError::into_inner);
                match self.collect(&mut q) {
                    Some(jobs) => jobs,
                    None => return,
                }
            };
            self.process(jobs);
        }
    }

    /// Takes one batch worth of requests; `None` when the queue is closed and empty.
    fn collect(&self, q: &mut Queue) -> Option<Vec<Job>> {
        let first = match q.carry.take() {
            Some(job) => job,
            None => q.rx.recv().ok()?,
        };
        let until = Instant::now() + self.limits.max_delay;
        let mut total = rows(&first);
        let mut jobs = vec![first];
        while total < self.limits.max_rows {
            let left = until.saturating_duration_since(Instant::now());
            let next = if left.is_zero() {
                q.rx.try_recv().map_err(|_| RecvTimeoutError::Timeout)
            } else {
                q.rx.recv_timeout(left)
            };
            match next {
                Ok(job) if total + rows(&job) > self.limits.max_rows => {
                    q.carry = Some(job);
                    break;
                }
                Ok(job) => {
                    total += rows(&job);
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        Some(jobs)
    }

    fn process(&mut self, jobs: Vec<Job>) {
        let now = Instant::now();
        // Group live requests by the set of present columns, keeping arrival order.
        let mut groups: Vec<(Vec<bool>, Vec<Job>)> = Vec::new();
        for job in jobs {
            if job.reply.is_closed() {
                continue; // the client went away (its deadline passed in the handler)
            }
            if now > job.deadline {
                let _ = job.reply.send(Err(JobError::Timeout));
                continue;
            }
            self.metrics
                .queue
                .with_label_values(&[&self.model])
                .observe(now.duration_since(job.enqueued).as_secs_f64());
            let m = mask(&job.batch);
            match groups.iter_mut().find(|(k, _)| *k == m) {
                Some((_, g)) => g.push(job),
                None => groups.push((m, vec![job])),
            }
        }
        for (m, group) in groups {
            if group.len() == 1 {
                for job in group {
                    let result = self.score_checked(&job.batch);
                    self.answer(job, result.map_err(JobError::from_score));
                }
            } else {
                self.score_merged(&m, group);
            }
        }
    }

    /// Scores with panics caught and the output shape checked.
    fn score_checked(&self, batch: &RawBatch) -> Result<Scores, ScoreFailure> {
        self.metrics
            .batch_rows
            .with_label_values(&[&self.model])
            .observe(batch.n_rows as f64);
        let scores = match catch_unwind(AssertUnwindSafe(|| self.scorer.score(batch))) {
            Ok(Ok(s)) => s,
            Ok(Err(msg)) => return Err(ScoreFailure::Rows(msg)),
            Err(_) => return Err(ScoreFailure::Internal("the scorer panicked".to_string())),
        };
        let tasks = self.scorer.meta().outputs.len();
        if scores.tasks.len() != tasks || scores.tasks.iter().any(|t| t.len() != batch.n_rows) {
            return Err(ScoreFailure::Internal(format!(
                "the scorer returned {} tasks of lengths {:?} for {} rows; expected {tasks} tasks",
                scores.tasks.len(),
                scores.tasks.iter().map(Vec::len).collect::<Vec<_>>(),
                batch.n_rows
            )));
        }
        Ok(scores)
    }

    fn answer(&self, job: Job, result: JobResult) {
        if result.is_ok() {
            self.metrics
                .rows_scored
                .with_label_values(&[&self.model, &self.version])
                .inc_by(job.batch.n_rows as u64);
        }
        let _ = job.reply.send(result);
    }

    fn score_merged(&mut self, m: &[bool], mut group: Vec<Job>) {
        // Move every request's strings into the reused buffers.
        let mut merged = RawBatch {
            n_rows: 0,
            columns: Vec::with_capacity(m.len()),
        };
        for (i, &present) in m.iter().enumerate() {
            merged.columns.push(if present {
                let mut buf = std::mem::take(&mut self.bufs[i]);
                buf.clear();
                Some(buf)
            } else {
                None
            });
        }
        for job in &mut group {
            merged.n_rows += job.batch.n_rows;
            for (dst, src) in merged.columns.iter_mut().zip(&mut job.batch.columns) {
                if let (Some(dst), Some(src)) = (dst.as_mut(), src.as_mut()) {
                    dst.append(src);
                }
            }
        }
        let result = self.score_checked(&merged);
        // Give every request its strings back (needed to re-score alone; cheap moves).
        for (i, col) in merged.columns.iter_mut().enumerate() {
            if let Some(col) = col {
                let mut it = col.drain(..);
                for job in &mut group {
                    if let Some(Some(dst)) = job.batch.columns.get_mut(i) {
                        dst.extend(it.by_ref().take(job.batch.n_rows));
                    }
                }
            }
        }
        for (i, col) in merged.columns.into_iter().enumerate() {
            if let Some(col) = col {
                self.bufs[i] = col;
            }
        }
        match result {
            Ok(scores) => {
                let mut offset = 0;
                for job in group {
                    let n = job.batch.n_rows;
                    let own = Scores {
                        tasks: scores
                            .tasks
                            .iter()
                            .map(|t| t[offset..offset + n].to_vec())
                            .collect(),
                    };
                    offset += n;
                    self.answer(job, Ok(own));
                }
            }
            Err(_) => {
                for job in group {
                    let result = self.score_checked(&job.batch);
                    self.answer(job, result.map_err(JobError::from_score));
                }
            }
        }
    }
}

enum ScoreFailure {
    Rows(String),
    Internal(String),
}

impl JobError {
    fn from_score(f: ScoreFailure) -> JobError {
        match f {
            ScoreFailure::Rows(m) => JobError::Client(m),
            ScoreFailure::Internal(m) => JobError::Internal(m),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Datatype, InputSpec, ModelMeta};

    struct Echo {
        meta: ModelMeta,
        batches: Mutex<Vec<usize>>,
    }

    impl Scorer for Echo {
        fn meta(&self) -> &ModelMeta {
            &self.meta
        }
        fn score(&self, batch: &RawBatch) -> Result<Scores, String> {
            self.batches
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(batch.n_rows);
            let col = batch.columns[0].as_ref().ok_or("missing")?;
            let mut out = Vec::new();
            for (r, v) in col.iter().enumerate() {
                match v.parse::<f32>() {
                    Ok(x) => out.push(x),
                    Err(_) => return Err(format!("row {r}, `x`: `{v}` is not a number")),
                }
            }
            Ok(Scores { tasks: vec![out] })
        }
    }

    fn job(values: &[&str]) -> (Job, oneshot::Receiver<JobResult>) {
        let (tx, rx) = oneshot::channel();
        let now = Instant::now();
        let job = Job {
            batch: RawBatch {
                n_rows: values.len(),
                columns: vec![Some(values.iter().map(|s| s.to_string()).collect())],
            },
            enqueued: now,
            deadline: now + Duration::from_secs(30),
            reply: tx,
        };
        (job, rx)
    }

    #[test]
    fn merges_splits_and_isolates_errors() {
        let scorer = Arc::new(Echo {
            meta: ModelMeta {
                inputs: vec![InputSpec {
                    name: "x".into(),
                    datatype: Datatype::Bytes,
                    optional: false,
                }],
                outputs: vec!["t".into()],
                domains: vec![],
                platform: "test".into(),
            },
            batches: Mutex::new(Vec::new()),
        });
        let limits = BatchLimits {
            max_rows: 100,
            max_delay: Duration::from_millis(300),
            workers: 1,
        };
        let b = Batcher::spawn(scorer.clone(), limits, Arc::new(Metrics::new()), "m", 1).unwrap();
        let (j1, r1) = job(&["1", "2"]);
        let (j2, r2) = job(&["3", "oops"]);
        let (j3, r3) = job(&["5"]);
        for j in [j1, j2, j3] {
            assert!(b.submit(j).is_ok());
        }
        let r1 = r1.blocking_recv().unwrap().unwrap();
        let r2 = r2.blocking_recv().unwrap().unwrap_err();
        let r3 = r3.blocking_recv().unwrap().unwrap();
        assert_eq!(r1.tasks, vec![vec![1.0, 2.0]]);
        assert_eq!(
            r2,
            JobError::Client("row 1, `x`: `oops` is not a number".into())
        );
        assert_eq!(r3.tasks, vec![vec![5.0]]);
        // One merged call of 5 rows, then the three requests alone.
        assert_eq!(*scorer.batches.lock().unwrap(), vec![5, 2, 2, 1]);
    }
}
