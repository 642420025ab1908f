//! Stream training (`train.mode = "stream"`): test-then-train over time-ordered windows, with
//! embedding tables that grow and shrink.
//!
//! The data path orders every row of the dataset by `train.stream.time_column` (ties keep the
//! source order) and fits the id space on all of them; windows are `window_rows` rows or
//! `window_seconds` of the schema's `time` column (default: one day; empty windows are
//! skipped). For each window, in order:
//!
//! 1. the tables start the window (rows not seen for `ttl_windows` windows expire);
//! 2. **progressive validation**: the current model scores the window's rows, which it has
//!    never trained on; an id without a row reads the OOV row;
//! 3. one pass of training over the window's rows (a seeded shuffle within the window, mixed
//!    batches); before each step the tables admit the batch's new ids
//!    ([`mdrec_nn::EmbeddingStore::admit`]); a bi-level model (M3oE `automl = "bilevel"`)
//!    makes its outer step on the window's first batch;
//! 4. one `metrics.jsonl` line ([`WindowLine`]): rows, progressive AUC / LogLoss per task and per
//!    (domain, task) cell where defined, calibration (mean prediction / observed rate), the
//!    tables' live rows, admissions, evictions and bytes;
//! 5. every `publish_every_windows` windows, with `publish_to`, the model is published to a
//!    serving repository as a new version.
//!
//! `report.json`'s `test` section is progressive validation over every row of the stream, its
//! `valid` section over the last 10 % of the rows (the model's recent quality); `stream` holds
//! the summary. The saved weights are the final ones, with each table's id → row map.
//!
//! AREAD trains with plain steps here: its HEMP schedule (mask search over epochs) needs epoch
//! training.

use std::io::Write;
use std::ops::Range;
use std::path::Path;
use std::time::Instant;

use mdrec_data::delayed::{schedule, EventKind, TrainEvent};
use mdrec_data::{epoch_order, EncodedData, Prepared};
use mdrec_metrics::EvalReport;
use mdrec_nn::TableStats;
use serde::{Deserialize, Serialize};

use crate::checkpoint::CheckpointWriter;
use crate::config::{
    Correction, DelayedFeedback, ResolvedRun, RunConfig, StreamConfig, DEFAULT_WINDOW_SECONDS,
};
use crate::engine::{Engine, Snapshot};
use crate::progress::Progress;
use crate::report::{write_reports, Params, RunReport, Timing};
use crate::resume::{bits, from_bits, TrainCheckpoint};
use crate::trainer::{
    context_from_schema, eval_split, open_metrics, remove_checkpoints, write_json, RunOutcome,
};
use crate::TrainError;

/// One task's progressive figures in a window.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskLine {
    /// Task name.
    pub task: String,
    /// AUC over the window's rows (`None` when the window has one class).
    pub auc: Option<f64>,
    /// Mean BCE.
    pub logloss: Option<f64>,
    /// Mean predicted probability.
    pub predicted_rate: f64,
    /// Observed positive rate.
    pub observed_rate: f64,
    /// `predicted_rate / observed_rate` (`None` without positives).
    pub calibration: Option<f64>,
}

/// One (domain, task) cell's progressive AUC in a window.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CellLine {
    /// Domain name.
    pub domain: String,
    /// Task name.
    pub task: String,
    /// Rows.
    pub n: usize,
    /// AUC (`None` when undefined).
    pub auc: Option<f64>,
}

/// One `metrics.jsonl` line of a stream run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WindowLine {
    /// Window index (0-based, empty windows skipped).
    pub window: usize,
    /// Time of the window's first and last row (`None` without a time column).
    pub first_time: Option<i64>,
    /// See `first_time`.
    pub last_time: Option<i64>,
    /// Rows in the window.
    pub rows: usize,
    /// Rows scored before this window.
    pub rows_before: usize,
    /// Training examples of the window's pass: its rows, or with delayed feedback the events
    /// released during it (rows whose wait ended, late positives).
    pub trained: usize,
    /// Progressive AUC, mean over (domain, task) cells where defined.
    pub auc_mean_cells: Option<f64>,
    /// Progressive AUC pooled per task, mean over tasks.
    pub auc_task_pooled_mean: Option<f64>,
    /// Progressive LogLoss.
    pub logloss: Option<f64>,
    /// Per task.
    pub tasks: Vec<TaskLine>,
    /// Per (domain, task) cell.
    pub cells: Vec<CellLine>,
    /// Mean training loss of the window's pass.
    pub train_loss: f64,
    /// Seconds of the window's training pass.
    pub train_seconds: f64,
    /// Seconds of the window's scoring.
    pub score_seconds: f64,
    /// The embedding tables after the window.
    pub tables: Vec<TableStats>,
}

/// The `stream` section of a stream run's `report.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StreamSummary {
    /// How windows were cut (`"50000 rows"`, `"86400 s"`).
    pub windows_by: String,
    /// Windows processed.
    pub windows: usize,
    /// Rows scored and trained on.
    pub rows: usize,
    /// Progressive AUC (mean over cells) over every row.
    pub progressive_auc: Option<f64>,
    /// Progressive LogLoss over every row.
    pub progressive_logloss: Option<f64>,
    /// Training rows per second (training passes only).
    pub train_rows_per_s: f64,
    /// Scoring rows per second (progressive validation only).
    pub score_rows_per_s: f64,
    /// The tables at the end.
    pub tables: Vec<TableStats>,
    /// Largest total bytes of the tables' rows (weights + optimizer state) after any window.
    pub peak_table_bytes: usize,
    /// Versions published to `train.stream.publish_to`.
    pub published: Vec<String>,
    /// Per task over every row: progressive AUC, LogLoss, mean prediction, observed rate and
    /// their ratio (calibration; with delayed feedback, against the final labels).
    pub tasks: Vec<TaskLine>,
}

/// The row ranges of the windows of `data` (already in time order).
pub fn windows(
    data: &EncodedData,
    s: &StreamConfig,
) -> Result<(Vec<Range<usize>>, String), TrainError> {
    let n = data.len();
    if let Some(w) = s.window_rows {
        let out = (0..n).step_by(w).map(|a| a..(a + w).min(n)).collect();
        return Ok((out, format!("{w} rows")));
    }
    let secs = s.window_seconds.unwrap_or(DEFAULT_WINDOW_SECONDS);
    if data.time.is_empty() {
        return Err(TrainError::Config(format!(
            "train.stream.window_seconds ({secs} s) needs the schema's time column (schema key `time`); set train.stream.window_rows instead"
        )));
    }
    let t0 = data.time.first().copied().unwrap_or(0);
    let mut out: Vec<Range<usize>> = Vec::new();
    let mut current = None;
    for (r, &t) in data.time.iter().enumerate() {
        let w = (t - t0).div_euclid(secs);
        if current != Some(w) {
            if let Some(last) = out.last_mut() {
                last.end = r;
            }
            out.push(r..n);
            current = Some(w);
        }
    }
    Ok((out, format!("{secs} s")))
}

fn sigmoid(x: f32) -> f64 {
    1.0 / (1.0 + (-f64::from(x)).exp())
}

fn task_lines(
    rep: &EvalReport,
    logits: &[f32],
    data: &EncodedData,
    tasks: &[String],
) -> Vec<TaskLine> {
    let t = tasks.len();
    tasks
        .iter()
        .enumerate()
        .map(|(j, name)| {
            let n = data.len().max(1) as f64;
            let predicted = (0..data.len())
                .map(|i| sigmoid(logits[i * t + j]))
                .sum::<f64>()
                / n;
            let observed = data.labels[j].iter().map(|&y| f64::from(y)).sum::<f64>() / n;
            let tr = rep.tasks.iter().find(|x| &x.name == name);
            TaskLine {
                task: name.clone(),
                auc: tr.and_then(|x| x.auc),
                logloss: tr.and_then(|x| x.logloss),
                predicted_rate: predicted,
                observed_rate: observed,
                calibration: (observed > 0.0).then(|| predicted / observed),
            }
        })
        .collect()
}

/// Train `cfg` as a stream over `prepared.train` (all rows, time-ordered) and write the run
/// directory `out`; `home` is the run directory every rank of a group shares (where each rank
/// writes its checkpoint files when the tables are sharded).
pub fn train_stream(
    cfg: &RunConfig,
    prepared: &Prepared,
    out: &Path,
    home: &Path,
    progress: &mut dyn Progress,
    resume: Option<TrainCheckpoint>,
) -> Result<RunOutcome, TrainError> {
    let t_start = Instant::now();
    let ResolvedRun {
        cfg: resolved,
        factory,
        model_cfg,
        setting,
    } = cfg.resolve()?;
    let tc = &resolved.train;
    let sc = &tc.stream;
    let device = tc.device.device()?;
    let data = &prepared.train;
    if data.is_empty() {
        return Err(TrainError::Data(mdrec_data::DataError::Config(
            "stream training: the dataset has no rows".into(),
        )));
    }
    let (wins, windows_by) = windows(data, sc)?;
    let wins = &wins[..sc.max_windows.unwrap_or(usize::MAX).min(wins.len())];
    std::fs::create_dir_all(out).map_err(|e| TrainError::io(out, e))?;
    write_json(&out.join("config.resolved.json"), &resolved)?;
    std::fs::write(out.join("schema.json"), prepared.schema.to_json_pretty())
        .map_err(|e| TrainError::io(out, e))?;
    write_json(&out.join("vocabs.json"), &prepared.vocabs)?;
    let metrics_path = out.join("metrics.jsonl");
    let keep_lines = resume
        .as_ref()
        .map(|ck| ck.cursor["metrics_lines"].as_u64().unwrap_or(0) as usize);
    let mut metrics_log = open_metrics(out, keep_lines)?;

    let ctx = context_from_schema(&prepared.schema, tc.embedding.dim);
    let n_t = ctx.n_tasks();
    let mut engine = Engine::new(factory, &model_cfg, ctx.clone(), tc, tc.seed, &device)?;
    engine
        .store
        .make_dynamic(&sc.tables, tc.seed)
        .map_err(|e| TrainError::Config(e.to_string()))?;
    let n_tables = engine.store.table_names().len();
    let sharded = engine.shard_tables()?;
    if !sharded.is_empty() {
        progress.message(&format!(
            "dynamic embedding tables sharded row-wise over {} ranks: {} of {n_tables} tables (train.embedding.sharding); each rank admits, evicts and holds the rows of its ids",
            crate::dist::size(),
            sharded.join(", "),
        ));
    }
    engine.set_row_weights(crate::engine::column_weights(data, n_t));
    let label = factory.name().to_string();
    let total_rows: usize = wins.iter().map(|w| w.len()).sum();
    progress.start_epoch(&label, 1, total_rows);

    let mut prog_logits: Vec<f32> = Vec::with_capacity(total_rows * n_t);
    let mut domain_counts = vec![0usize; ctx.n_domains()];
    let (mut rows_done, mut loss_sum, mut steps) = (0usize, 0.0f64, 0usize);
    let (mut train_seconds, mut score_seconds) = (0.0f64, 0.0f64);
    let mut peak_bytes = 0usize;
    let mut published: Vec<String> = Vec::new();
    let mut order: Vec<u32> = Vec::new();
    let (mut start, mut last_ckpt) = (0usize, 0usize);
    let (events, delayed) = match &sc.delayed {
        Some(df) => {
            let (events, task) = delayed_events(data, &ctx.tasks, df)?;
            (Some(events), Some((task, df.correction)))
        }
        None => (None, None),
    };
    let mut events_done = 0usize;
    // Each rank writes its own file when the tables are sharded, into the shared run folder.
    let ckpt_dir =
        crate::resume::checkpoint_dir(if engine.store.is_sharded() { home } else { out });
    if let Some(ck) = &resume {
        engine.restore_checkpoint(&ck.engine)?;
        let c = &ck.cursor;
        let n = |k: &str| c[k].as_u64().unwrap_or(0) as usize;
        start = n("window");
        rows_done = n("rows_done");
        steps = n("steps");
        last_ckpt = steps;
        loss_sum = from_bits(&c["loss_sum"]);
        train_seconds = from_bits(&c["train_seconds"]);
        score_seconds = from_bits(&c["score_seconds"]);
        peak_bytes = n("peak_bytes");
        events_done = n("events_done");
        published = serde_json::from_value(c["published"].clone()).unwrap_or_default();
        domain_counts = serde_json::from_value(c["domain_counts"].clone())
            .map_err(|e| TrainError::Checkpoint(format!("cursor domain_counts: {e}")))?;
        prog_logits = ck.extra.get("progressive").cloned().unwrap_or_default();
        if prog_logits.len() != rows_done * n_t || domain_counts.len() != ctx.n_domains() {
            return Err(TrainError::Checkpoint(
                "the checkpoint's progressive predictions do not match its position".into(),
            ));
        }
        progress.step(rows_done, loss_sum / steps.max(1) as f64);
    }
    for (k, range) in wins.iter().enumerate().skip(start) {
        engine.store.begin_window(k as u64);
        let rows: Vec<u32> = (range.start as u32..range.end as u32).collect();
        let window = data.subset(&rows);

        // 1. progressive validation: rows the model has never trained on
        let t0 = Instant::now();
        let logits = engine.predict_rows(data, &rows, tc.eval_batch_size)?;
        let secs_score = t0.elapsed().as_secs_f64();
        score_seconds += secs_score;
        let rep = eval_split(&ctx, &logits, &window, &domain_counts)?;
        prog_logits.extend_from_slice(&logits);

        // 2. one pass over the window
        let t0 = Instant::now();
        // the window's training examples: its rows, or the delayed-feedback events that fall
        // before the next window starts
        let batch_events: &[TrainEvent] = match &events {
            Some(ev) => {
                let end = wins.get(k + 1).map_or(i64::MAX, |w| data.time[w.start]);
                let from = events_done;
                while events_done < ev.len() && ev[events_done].at < end {
                    events_done += 1;
                }
                &ev[from..events_done]
            }
            None => &[],
        };
        let n_items = if events.is_some() {
            batch_events.len()
        } else {
            rows.len()
        };
        let perm = epoch_order(n_items, true, tc.seed, k + 1);
        order.clear();
        order.extend(perm.iter().map(|&i| match &events {
            Some(_) => batch_events[i as usize].row,
            None => rows[i as usize],
        }));
        let (mut w_loss, mut w_steps, mut w_rows) = (0.0f64, 0usize, 0usize);
        for (b, chunk) in order.chunks(tc.batch_size).enumerate() {
            w_loss += match (&events, delayed) {
                (Some(_), Some((task, correction))) => {
                    let ev: Vec<&TrainEvent> = perm
                        [b * tc.batch_size..b * tc.batch_size + chunk.len()]
                        .iter()
                        .map(|&i| &batch_events[i as usize])
                        .collect();
                    let (labels, scale) = delayed_targets(
                        &engine,
                        data,
                        chunk,
                        &ev,
                        (task, correction),
                        tc.eval_batch_size,
                    )?;
                    engine.train_step_adjusted(data, chunk, labels, scale)?
                }
                _ => engine.train_step(data, chunk)?,
            };
            w_steps += 1;
            w_rows += chunk.len();
            progress.step(
                rows_done + w_rows.min(rows.len()),
                (loss_sum + w_loss) / (steps + w_steps) as f64,
            );
        }
        if engine.has_outer_params() && !order.is_empty() {
            let first = &order[..tc.batch_size.min(order.len())];
            engine.outer_step(data, first)?;
        }
        let secs_train = t0.elapsed().as_secs_f64();
        train_seconds += secs_train;
        for &d in &window.domain {
            domain_counts[d as usize] += 1;
        }
        let tables = engine
            .store
            .group_table_stats()
            .map_err(TrainError::Tensor)?;
        peak_bytes = peak_bytes.max(tables.iter().map(|t| t.bytes).sum());
        let line = WindowLine {
            window: k,
            first_time: window.time.first().copied(),
            last_time: window.time.last().copied(),
            rows: rows.len(),
            rows_before: rows_done,
            trained: order.len(),
            auc_mean_cells: rep.overall.auc_mean_cells,
            auc_task_pooled_mean: rep.overall.auc_task_pooled_mean,
            logloss: rep.overall.logloss,
            tasks: task_lines(&rep, &logits, &window, &ctx.tasks),
            cells: rep
                .cells
                .iter()
                .map(|c| CellLine {
                    domain: c.domain.clone(),
                    task: c.task.clone(),
                    n: c.n,
                    auc: c.auc,
                })
                .collect(),
            train_loss: w_loss / w_steps.max(1) as f64,
            train_seconds: secs_train,
            score_seconds: secs_score,
            tables,
        };
        let json = serde_json::to_string(&line).expect("window line serialises");
        writeln!(metrics_log, "{json}").map_err(|e| TrainError::io(&metrics_path, e))?;
        rows_done += rows.len();
        loss_sum += w_loss;
        steps += w_steps;
        progress.step(rows_done, loss_sum / steps.max(1) as f64);
        let every = (wins.len() / 10).max(1);
        if k % every == every - 1 || k + 1 == wins.len() {
            progress.message(&format!(
                "{label} window {}/{}: {} rows, progressive AUC {}, live rows {}",
                k + 1,
                wins.len(),
                rows.len(),
                line.auc_mean_cells
                    .map(|v| format!("{v:.4}"))
                    .unwrap_or_else(|| "undefined".into()),
                line.tables.iter().map(|t| t.live_rows).sum::<usize>()
            ));
        }
        engine.sync_buffers()?;
        crate::dist::check_replicas(&engine, &format!("window {}", k + 1))?;
        // Rank 0 alone publishes (the other ranks hold the same model, or, with sharded
        // tables, join their shards into it).
        if let Some(repo) = sc.publish_to.as_ref() {
            if (k + 1) % sc.publish_every_windows == 0 || k + 1 == wins.len() {
                let snap = engine.whole_snapshot()?;
                if crate::dist::is_writer() {
                    published.push(publish(repo, out, &snap, &label, prepared)?);
                }
            }
        }
        if let Some(every) = tc.checkpoint_every_steps {
            if steps - last_ckpt >= every && k + 1 < wins.len() {
                last_ckpt = steps;
                let cursor = serde_json::json!({
                    "kind": "stream",
                    "window": k + 1,
                    "rows_done": rows_done,
                    "steps": steps,
                    "loss_sum": bits(loss_sum),
                    "train_seconds": bits(train_seconds),
                    "score_seconds": bits(score_seconds),
                    "peak_bytes": peak_bytes,
                    "events_done": events_done,
                    "published": published,
                    "domain_counts": domain_counts,
                    "metrics_lines": k + 1,
                });
                let t0 = Instant::now();
                let ck = TrainCheckpoint {
                    engine: engine.checkpoint()?,
                    cursor,
                    extra: [("progressive".to_string(), prog_logits.clone())].into(),
                };
                let (path, bytes) =
                    crate::resume::write_checkpoint(&ckpt_dir, steps as u64, &ck, 2)?;
                progress.checkpoint(&path, bytes, t0.elapsed().as_secs_f64());
            }
        }
    }

    // Rank 0 writes the weights (with sharded tables, the joined ones).
    let snap = engine.whole_snapshot()?;
    if crate::dist::is_writer() {
        let mut ckpt = CheckpointWriter::default();
        ckpt.add("", snap.model.as_ref(), &snap.store);
        ckpt.write(
            &out.join("weights.safetensors"),
            weights_metadata(&label, prepared, setting),
        )?;
    }

    let t_eval = Instant::now();
    let seen = data.subset(&(0..total_rows as u32).collect::<Vec<_>>());
    let test = eval_split(&ctx, &prog_logits, &seen, &domain_counts)?;
    let tail_from = total_rows - total_rows / 10;
    let tail_rows: Vec<u32> = (tail_from as u32..total_rows as u32).collect();
    let tail = seen.subset(&tail_rows);
    let valid = eval_split(&ctx, &prog_logits[tail_from * n_t..], &tail, &domain_counts)?;
    let tables = engine
        .store
        .group_table_stats()
        .map_err(TrainError::Tensor)?;
    if engine.store.is_sharded() {
        let mib = |b: usize| b as f64 / (1 << 20) as f64;
        progress.message(&format!(
            "embedding tables: this rank holds {:.2} MiB of the group's {:.2} MiB of rows and optimizer state",
            mib(engine.store.held_bytes()),
            mib(tables.iter().map(|t| t.bytes).sum())
        ));
    }
    let summary = StreamSummary {
        windows_by,
        windows: wins.len(),
        rows: total_rows,
        progressive_auc: test.overall.auc_mean_cells,
        progressive_logloss: test.overall.logloss,
        train_rows_per_s: rows_done as f64 / train_seconds.max(1e-9),
        score_rows_per_s: rows_done as f64 / score_seconds.max(1e-9),
        tables,
        peak_table_bytes: peak_bytes,
        published,
        tasks: task_lines(&test, &prog_logits, &seen, &ctx.tasks),
    };
    let report = RunReport {
        model: factory.name().to_string(),
        paper: factory.paper().to_string(),
        dataset: cfg.dataset.name.to_string(),
        split: "stream".into(),
        source: prepared.source.clone(),
        seed: tc.seed,
        setting,
        epochs_run: 1,
        best_epoch: [("all".to_string(), 1)].into(),
        monitor: tc.monitor.clone(),
        schema_hash: prepared.schema.hash.clone(),
        rows: [total_rows, 0, 0],
        params: Params {
            dense: snap.model.num_params(),
            embedding: snap.store.num_params(),
        },
        model_report: snap.model.report(),
        config: serde_json::to_value(&resolved).expect("config serialises"),
        test,
        valid,
        timing: Timing {
            train_samples_per_s: summary.train_rows_per_s,
            train_seconds,
            eval_seconds: score_seconds + t_eval.elapsed().as_secs_f64(),
            total_seconds: t_start.elapsed().as_secs_f64(),
            threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
        },
        version: env!("CARGO_PKG_VERSION").to_string(),
        stream: Some(summary),
    };
    write_reports(out, &report)?;
    remove_checkpoints(out);
    Ok(RunOutcome {
        report,
        test_logits: prog_logits,
    })
}

/// The training events of the delayed task (`train.stream.delayed`) and its index.
fn delayed_events(
    data: &EncodedData,
    tasks: &[String],
    df: &DelayedFeedback,
) -> Result<(Vec<TrainEvent>, usize), TrainError> {
    let t = tasks.iter().position(|x| *x == df.task).ok_or_else(|| {
        TrainError::Config(format!(
            "train.stream.delayed.task: no task `{}`; the tasks are {}",
            df.task,
            tasks.join(", ")
        ))
    })?;
    if data.time.is_empty() {
        return Err(TrainError::Config(
            "train.stream.delayed needs the schema's time column (schema key `time`)".into(),
        ));
    }
    if data.label_time.get(t).is_none_or(|c| c.is_empty()) {
        return Err(TrainError::Config(format!(
            "train.stream.delayed: task `{}` has no label_time column in the schema",
            df.task
        )));
    }
    Ok((
        schedule(&data.time, &data.labels[t], &data.label_time[t], &df.wait),
        t,
    ))
}

/// Labels and loss scales (`[B, T]`) of a batch of delayed-feedback events: the delayed task
/// gets the event's label (what was known at release, or 1 for a late positive), the other
/// tasks their own; a late positive trains only the delayed task; FNW multiplies the delayed
/// task's weight by `1 + f` (positives) or `(1 − f)(1 + f)` (negatives).
fn delayed_targets(
    engine: &Engine,
    data: &EncodedData,
    rows: &[u32],
    events: &[&TrainEvent],
    (task, correction): (usize, Correction),
    eval_batch_size: usize,
) -> Result<(Vec<f32>, Vec<f32>), TrainError> {
    let n_t = data.labels.len();
    let mut labels = vec![0.0f32; rows.len() * n_t];
    let mut scale = vec![1.0f32; rows.len() * n_t];
    for (i, (&r, e)) in rows.iter().zip(events).enumerate() {
        for (j, col) in data.labels.iter().enumerate() {
            labels[i * n_t + j] = col[r as usize];
            if e.kind == EventKind::LatePositive && j != task {
                scale[i * n_t + j] = 0.0;
            }
        }
        labels[i * n_t + task] = e.label;
    }
    if correction == Correction::Fnw {
        let logits = engine.predict_rows(data, rows, eval_batch_size)?;
        for i in 0..rows.len() {
            let f = sigmoid(logits[i * n_t + task]) as f32;
            scale[i * n_t + task] *= if labels[i * n_t + task] > 0.5 {
                1.0 + f
            } else {
                (1.0 - f) * (1.0 + f)
            };
        }
    }
    Ok((labels, scale))
}

fn weights_metadata(
    model: &str,
    prepared: &Prepared,
    setting: mdrec_models::Setting,
) -> std::collections::BTreeMap<String, String> {
    let mut meta = std::collections::BTreeMap::new();
    meta.insert("model".to_string(), model.to_string());
    meta.insert("schema_hash".to_string(), prepared.schema.hash.clone());
    meta.insert("setting".to_string(), format!("{setting:?}"));
    meta
}

/// Publishes the current model as the next version (one above the largest integer-named
/// folder) of the serving model folder `repo` (`mdrec serve --repository` serves
/// `<repository>/<model>/<version>/`): a run directory written to a hidden temporary folder
/// and then renamed, so a polling server never sees a half-written version.
fn publish(
    repo: &Path,
    run: &Path,
    snap: &Snapshot,
    model: &str,
    prepared: &Prepared,
) -> Result<String, TrainError> {
    std::fs::create_dir_all(repo).map_err(|e| TrainError::io(repo, e))?;
    let newest = std::fs::read_dir(repo)
        .map_err(|e| TrainError::io(repo, e))?
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        .filter_map(|n| n.parse::<u64>().ok())
        .max()
        .unwrap_or(0);
    let version = (newest + 1).to_string();
    let tmp = repo.join(format!(".publishing-{version}"));
    let dst = repo.join(&version);
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| TrainError::io(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| TrainError::io(&tmp, e))?;
    for f in ["config.resolved.json", "schema.json", "vocabs.json"] {
        std::fs::copy(run.join(f), tmp.join(f)).map_err(|e| TrainError::io(&tmp.join(f), e))?;
    }
    let mut ckpt = CheckpointWriter::default();
    ckpt.add("", snap.model.as_ref(), &snap.store);
    ckpt.write(
        &tmp.join("weights.safetensors"),
        weights_metadata(model, prepared, mdrec_models::Setting::Mdmt),
    )?;
    std::fs::rename(&tmp, &dst).map_err(|e| TrainError::io(&dst, e))?;
    Ok(version)
}
