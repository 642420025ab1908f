//! Epochs, early stopping, training settings and the run directory.
//!
//! A run directory holds `config.resolved.json`, `schema.json`, `weights.safetensors`,
//! `metrics.jsonl` (one JSON object per epoch), `report.json` and `report.md`.
//! `mdrec eval --run DIR` rebuilds the model from those files and re-scores the test split.
//!
//! AREAD's HEMP schedule (single-domain batches, warm-up, mask updates) replaces the epoch's
//! batch loop when the model is AREAD (see [`crate::hemp`]).
//!
//! Bi-level schedule: when the model has outer parameters ([`Engine::has_outer_params`]), each
//! epoch ends, after its training steps and before validation, with one outer step on the first
//! `batch_size` rows of a seeded shuffle (`seed ^ 0xA11`, that epoch) of the split named by
//! `train.automl_batch_source` (`valid` | `train`). `metrics.jsonl` then records that step's
//! loss (`outer_loss`); any model report (M3oE's fusion weights) is recorded per epoch as
//! `model_report`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use burn::tensor::Device;
use mdrec_data::{domain_batches, epoch_order, EncodedData, Prepared, Schema};
use mdrec_metrics::{evaluate, EvalInput, EvalReport};
use mdrec_models::{ModelFactory, Setting};
use mdrec_nn::ModelContext;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{Checkpoint, CheckpointWriter};
use crate::config::{
    AutomlBatchSource, Batching, Keep, ResolvedRun, RunConfig, TrainConfig, TrainMode,
};
use crate::engine::{Engine, Snapshot};
use crate::hemp::{self, Hemp};
use crate::progress::Progress;
use crate::report::{write_reports, RunReport, Timing};
use crate::resume::{bits, from_bits, TrainCheckpoint};
use crate::TrainError;

/// The [`ModelContext`] of a fitted schema ([`ModelContext::from_schema`]).
pub fn context_from_schema(schema: &Schema, default_dim: usize) -> ModelContext {
    ModelContext::from_schema(schema, default_dim)
}

/// Resolve the dataset section to a prepared dataset (through the on-disk cache). Every
/// dataset key is checked before any file is read; the recipe table (`mdrec_data::recipe`)
/// supplies each dataset's defaults.
pub fn prepare_dataset(cfg: &RunConfig) -> Result<Prepared, TrainError> {
    // Every key is checked before any file is read.
    cfg.resolve()?;
    let mut req = cfg
        .dataset
        .request(cfg.train.seed)
        .map_err(|e| TrainError::Config(e.to_string()))?;
    if cfg.train.mode == TrainMode::Stream {
        // Every row, in time order; the vocabularies (the id space) are fitted on all of them,
        // and rows are admitted to the tables as they appear (see `crate::stream`).
        req.split = mdrec_data::split::SplitSpec::Stream {
            column: cfg.train.stream.time_column.clone(),
        };
    }
    let prepare = || mdrec_data::prepare_for(&req, &cfg.dataset, cfg.train.seed);
    // Under MPI, with a cache folder (always out of core), rank 0 prepares and writes the
    // cache or store, and the other ranks read it (their prepare finds it): one pass over the
    // files instead of one per rank.
    let cached = cfg.dataset.out_of_core || req.cache_dir.is_some();
    if let Some(g) = crate::dist::group().filter(|g| !g.threads() && cached) {
        let first = (g.rank() == 0).then(prepare);
        g.barrier();
        if let Some(p) = first {
            return Ok(p?);
        }
    }
    Ok(prepare()?)
}

/// What a finished run produced.
pub struct RunOutcome {
    /// The report written to `report.json`.
    pub report: RunReport,
    /// Test logits `[n_test, T]` of the restored best weights (empty on ranks other than
    /// the writer of a data-parallel group: the writer alone evaluates).
    pub test_logits: Vec<f32>,
}

#[derive(Serialize, Deserialize)]
struct EpochLine {
    cell: Option<String>,
    epoch: usize,
    train_loss: f64,
    train_rows: usize,
    train_seconds: f64,
    monitor: String,
    monitor_value: Option<f64>,
    improved: bool,
    valid_auc_mean_cells: Option<f64>,
    valid_auc_task_pooled_mean: Option<f64>,
    valid_logloss: Option<f64>,
    /// Loss of the epoch's outer (bi-level) step, before its update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    outer_loss: Option<f64>,
    /// [`mdrec_models::DynModel::report`] at the end of the epoch, when the model has one.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    model_report: serde_json::Value,
}

/// Rows of a window of [`mdrec_data::block_order`]: out of core, the training split's mapped
/// pages are released from the resident set after each.
const WINDOW_ROWS: usize = mdrec_data::SHUFFLE_BLOCK_ROWS * mdrec_data::SHUFFLE_WINDOW_BLOCKS;

/// The rows of the outer step of `epoch`: the first `batch_size` rows of a seeded shuffle of
/// the `source` split.
fn outer_rows(n: usize, seed: u64, epoch: usize, batch_size: usize) -> Vec<u32> {
    let mut order = epoch_order(n, true, seed ^ 0xA11, epoch);
    order.truncate(batch_size);
    order
}

/// The training rows of `epoch` in the order the steps take them. Out of core the order is
/// block-wise, so that the pages in use stay near one window, and in a group each process
/// reads the features of its own part of the store. The replica threads of one process share
/// one copy: the order is a function of its arguments alone, so the first replica to ask
/// computes it and the others reuse it while any of them holds it (4 bytes per training row
/// each otherwise).
fn epoch_rows(train: &EncodedData, cfg: &TrainConfig, epoch: usize) -> Arc<Vec<u32>> {
    type Key = (u8, usize, usize, usize, u64, usize);
    static ORDERS: Mutex<Vec<(Key, Weak<Vec<u32>>)>> = Mutex::new(Vec::new());
    let (n, ranks, batch, seed) = (train.len(), crate::dist::size(), cfg.batch_size, cfg.seed);
    let kind = match (train.is_mapped(), ranks > 1) {
        (true, true) => 0,
        (true, false) => 1,
        (false, _) => 2,
    };
    let key = (kind, n, ranks, batch, seed, epoch);
    let mut orders = ORDERS.lock().unwrap_or_else(|e| e.into_inner());
    orders.retain(|(_, w)| w.strong_count() > 0);
    if let Some(order) = orders
        .iter()
        .find(|(k, _)| *k == key)
        .and_then(|(_, w)| w.upgrade())
    {
        return order;
    }
    let order = Arc::new(match kind {
        0 => mdrec_data::partitioned_order(n, ranks, batch, seed, epoch),
        1 => mdrec_data::block_order(
            n,
            mdrec_data::SHUFFLE_BLOCK_ROWS,
            mdrec_data::SHUFFLE_WINDOW_BLOCKS,
            seed,
            epoch,
        ),
        _ => epoch_order(n, true, seed, epoch),
    });
    orders.push((key, Arc::downgrade(&order)));
    order
}

struct Fitted {
    snapshot: Snapshot,
    epochs_run: usize,
    best_epoch: usize,
    train_rows: usize,
    train_seconds: f64,
}

pub(crate) fn eval_split(
    ctx: &ModelContext,
    logits: &[f32],
    data: &EncodedData,
    train_counts: &[usize],
) -> Result<EvalReport, TrainError> {
    let labels = row_major_labels(data);
    evaluate(&EvalInput {
        logits,
        labels: &labels,
        n_tasks: ctx.n_tasks(),
        domain: &data.domain,
        group: Some(&data.group),
        domain_names: &ctx.domains,
        task_names: &ctx.tasks,
        train_domain_counts: Some(train_counts),
    })
    .map_err(|e| TrainError::Metrics(e.to_string()))
}

/// The writer's monitored value of an epoch (and whether higher is better) on every rank of
/// a data-parallel group, bit for bit; without a group, the arguments.
fn monitor_from_writer(value: Option<f64>, higher: bool) -> (Option<f64>, bool) {
    let mut mine = vec![u8::from(value.is_some()), u8::from(higher)];
    mine.extend(value.unwrap_or(0.0).to_le_bytes());
    let got = crate::dist::from_writer(&mine);
    let v = f64::from_le_bytes(got[2..10].try_into().expect("ten bytes from the writer"));
    ((got[0] == 1).then_some(v), got[1] == 1)
}

/// The writer's test and validation reports on every rank of a data-parallel group (the
/// other ranks pass `None`); without a group, the argument.
fn reports_from_writer(
    mine: Option<(EvalReport, EvalReport)>,
) -> Result<(EvalReport, EvalReport), TrainError> {
    let mine = match mine {
        Some(r) if crate::dist::group().is_none() => return Ok(r),
        mine => mine,
    };
    let bytes = match &mine {
        Some(r) => serde_json::to_vec(r).map_err(|e| TrainError::Tensor(e.to_string()))?,
        None => Vec::new(),
    };
    let got = crate::dist::from_writer(&bytes);
    match mine {
        Some(r) => Ok(r),
        None => serde_json::from_slice(&got).map_err(|e| {
            TrainError::Tensor(format!(
                "the writer's evaluation report could not be read: {e}"
            ))
        }),
    }
}

pub(crate) fn row_major_labels(data: &EncodedData) -> Vec<f32> {
    let t = data.labels.len();
    let mut out = vec![0.0; data.len() * t];
    for (j, col) in data.labels.iter().enumerate() {
        for (i, &y) in col.iter().enumerate() {
            out[i * t + j] = y;
        }
    }
    out
}

/// Train one model on `train` with early stopping on `valid`; returns the kept weights (the
/// best validation epoch's, or the last epoch's with `train.keep = "last"`).
#[allow(clippy::too_many_arguments)]
fn fit(
    factory: &dyn ModelFactory,
    model_cfg: &serde_json::Value,
    ctx: ModelContext,
    cfg: &TrainConfig,
    train: &EncodedData,
    augmented: Option<&EncodedData>,
    valid: &EncodedData,
    device: &Device,
    label: &str,
    cell: Option<String>,
    metrics_log: &mut std::fs::File,
    progress: &mut dyn Progress,
    ckpt: Checkpointing,
) -> Result<Fitted, TrainError> {
    let mut engine = Engine::new(factory, model_cfg, ctx.clone(), cfg, cfg.seed, device)?;
    let whole_bytes = engine.store.held_bytes();
    let sharded = engine.shard_tables()?;
    if !sharded.is_empty() {
        progress.message(&format!(
            "embedding tables sharded row-wise over {} ranks: {} (train.embedding.sharding); this rank holds {:.1} of {:.1} MiB of rows and optimizer state",
            crate::dist::size(),
            sharded.join(", "),
            engine.store.held_bytes() as f64 / (1 << 20) as f64,
            whole_bytes as f64 / (1 << 20) as f64
        ));
    }
    // AREAD opts into its HEMP schedule (single-domain batches, warm-up, mask updates); its
    // candidates train on the augmented rows when `train.augment` is set.
    let mut hemp = if hemp::applies(&engine) {
        Some(Hemp::new(&engine, train, augmented)?)
    } else if augmented.is_some() {
        return Err(TrainError::Config(format!(
            "train.augment is used only by a HEMP schedule (model aread with hemp.enabled = true), not by `{}`",
            factory.name()
        )));
    } else {
        None
    };
    let mut row_weights = crate::engine::column_weights(train, ctx.n_tasks());
    if row_weights.is_some() && hemp.is_some() {
        return Err(TrainError::Config(
            "the schema's weight column: AREAD's HEMP schedule trains on its own batches; drop the weight column or set hemp.enabled = false".into(),
        ));
    }
    if let Some(rew) = cfg.rew.as_ref().filter(|r| r.enabled) {
        if hemp.is_some() {
            return Err(TrainError::Config(
                "train.rew: AREAD's HEMP schedule trains on its own batches; use REW with another model or hemp.enabled = false".into(),
            ));
        }
        let col = rew.item_column(&ctx)?;
        let rew = crate::rew::rew_weights(train, col, ctx.n_tasks(), rew)?;
        row_weights = Some(match row_weights {
            // REW's weights and the sample weights multiply.
            Some(w) => w.iter().zip(rew).map(|(a, b)| a * b).collect(),
            None => rew,
        });
    }
    engine.set_row_weights(row_weights);
    let train_counts = train.domain_counts(ctx.n_domains());
    train.release();
    // Fail fast on a misspelt monitor: the accepted names depend on the domains and tasks, so
    // ask a report of this validation split (constant scores, cheap) before training. The
    // writer evaluates (see below); its error ends the group.
    if crate::dist::is_writer() {
        let probe = eval_split(
            &ctx,
            &vec![0.0; valid.len() * ctx.n_tasks()],
            valid,
            &train_counts,
        )?;
        if let Err(e @ mdrec_metrics::MetricsError::UnknownMetric { .. }) =
            probe.metric(&cfg.monitor)
        {
            return Err(TrainError::Config(format!("train.monitor: {e}")));
        }
    }
    if hemp.is_some() && ckpt.active() {
        return Err(TrainError::Config(
            "train.checkpoint_every_steps / --resume: AREAD's HEMP schedule keeps state (candidate masks, schedules) that checkpoints do not hold yet; train it without them or with model.hemp.enabled = false".into(),
        ));
    }
    let mut best: Option<(f64, usize, Snapshot)> = None;
    let mut bad_epochs = 0;
    let mut epochs_run = 0;
    let mut train_rows = 0usize;
    let mut train_seconds = 0.0;
    let (mut start_epoch, mut start_step, mut resumed_sums) = (1, 0, None);
    let mut global_step = 0u64;
    if let Some(ck) = &ckpt.resume {
        engine.restore_checkpoint(&ck.engine)?;
        let c = &ck.cursor;
        let n = |k: &str| c[k].as_u64().unwrap_or(0) as usize;
        start_epoch = n("epoch");
        start_step = n("step");
        resumed_sums = Some((from_bits(&c["loss_sum"]), n("done")));
        bad_epochs = n("bad_epochs");
        epochs_run = n("epochs_run");
        train_rows = n("train_rows");
        train_seconds = from_bits(&c["train_seconds"]);
        global_step = n("global_step") as u64;
        if let Some(b) = c.get("best").filter(|b| !b.is_null()) {
            let mut e = Engine::new(factory, model_cfg, ctx.clone(), cfg, cfg.seed, device)?;
            e.shard_tables()?;
            load_weights(&mut e, &ck.extra, "best.")?;
            best = Some((
                from_bits(&b["value"]),
                b["epoch"].as_u64().unwrap_or(0) as usize,
                e.snapshot(),
            ));
        }
    }
    for epoch in start_epoch..=cfg.epochs {
        // AREAD's sampler (single-domain batches) for HEMP or `train.batching = "domain"`,
        // else shuffled mixed batches.
        let order;
        let domain_batches = (hemp.is_some() || cfg.batching == Batching::Domain)
            .then(|| domain_batches(train, ctx.n_domains(), cfg.batch_size, cfg.seed, epoch));
        let steps: Vec<&[u32]> = match &domain_batches {
            Some(b) => b.iter().map(Vec::as_slice).collect(),
            None => {
                order = epoch_rows(train, cfg, epoch);
                order.chunks(cfg.batch_size).collect()
            }
        };
        let steps = match cfg.max_steps_per_epoch {
            Some(m) => &steps[..m.min(steps.len())],
            None => &steps[..],
        };
        let total: usize = steps.iter().map(|s| s.len()).sum();
        progress.start_epoch(label, epoch, total);
        let t0 = Instant::now();
        let first = if epoch == start_epoch { start_step } else { 0 };
        let (mut loss_sum, mut done) = match resumed_sums.take() {
            Some(s) if epoch == start_epoch => s,
            _ => (0.0, 0usize),
        };
        if let (Some(h), 1) = (hemp.as_mut(), epoch) {
            h.warm_up(&mut engine, train, progress)?;
        }
        let mut prefetched = 0;
        for (i, rows) in steps.iter().enumerate().skip(first) {
            if train.is_mapped() && i >= prefetched {
                // out of core: the next window's blocks (this process's shares) are read in
                // ahead of the steps that need them
                let end = (i + (WINDOW_ROWS / cfg.batch_size.max(1)).max(1)).min(steps.len());
                let mine: Vec<u32> = steps[i..end]
                    .iter()
                    .flat_map(|b| {
                        let s =
                            crate::dist::share(b.len(), crate::dist::rank(), crate::dist::size());
                        b[s].iter().copied()
                    })
                    .collect();
                train.prefetch(&mine);
                prefetched = end;
            }
            let l = match hemp.as_mut() {
                Some(h) => h.step(&mut engine, train, epoch, i, rows, progress)?,
                None => engine.train_step(train, rows)?,
            };
            loss_sum += l;
            done += rows.len();
            if train.is_mapped() && done / WINDOW_ROWS != (done - rows.len()) / WINDOW_ROWS {
                // a window is done: its pages leave the resident set
                train.release();
            }
            progress.step(done, loss_sum / (i + 1) as f64);
            global_step += 1;
            if ckpt.due(global_step) {
                let cursor = serde_json::json!({
                    "kind": "epoch",
                    "epoch": epoch,
                    "step": i + 1,
                    "loss_sum": bits(loss_sum),
                    "done": done,
                    "bad_epochs": bad_epochs,
                    "epochs_run": epochs_run,
                    "train_rows": train_rows,
                    "train_seconds": bits(train_seconds + t0.elapsed().as_secs_f64()),
                    "global_step": global_step,
                    "metrics_lines": ckpt.metrics_lines_before + (epoch - 1),
                    "best": best.as_ref().map(|(v, e, _)| serde_json::json!({"value": bits(*v), "epoch": e})),
                });
                let mut extra = BTreeMap::new();
                if let Some((_, _, snap)) = &best {
                    save_weights(&mut extra, snap, "best.");
                }
                engine.sync_buffers()?;
                ckpt.write(&engine, cursor, extra, global_step, progress)?;
            }
        }
        let outer_loss = if engine.has_outer_params() {
            let name = cfg.automl_batch_source.name();
            let src = match cfg.automl_batch_source {
                AutomlBatchSource::Train => train,
                AutomlBatchSource::Valid => valid,
            };
            if src.is_empty() {
                return Err(TrainError::Data(mdrec_data::DataError::Config(format!(
                    "{label}: the outer (bi-level) step needs rows from the {name} split, which is empty"
                ))));
            }
            let rows = outer_rows(src.len(), cfg.seed, epoch, cfg.batch_size);
            Some(engine.outer_step(src, &rows)?)
        } else {
            None
        };
        let secs = t0.elapsed().as_secs_f64();
        train_seconds += secs;
        train_rows += done;
        epochs_run = epoch;
        engine.sync_buffers()?;
        crate::dist::check_replicas(&engine, &format!("epoch {epoch}"))?;
        let snap = engine.snapshot();
        // The writer alone holds the logits and computes the metrics; the group learns the
        // monitored value from it, so every rank keeps the same best epoch and stops together.
        let logits = snap.predict_on_writer(valid, cfg.eval_batch_size, device)?;
        valid.release();
        let rep = match logits {
            Some(l) => Some(eval_split(&engine.ctx, &l, valid, &train_counts)?),
            None => None,
        };
        let (value, higher) = match rep.as_ref().map(|r| r.metric(&cfg.monitor)) {
            Some(Ok((v, higher))) => (Some(v), higher),
            // Checked before training; kept for safety.
            Some(Err(e @ mdrec_metrics::MetricsError::UnknownMetric { .. })) => {
                return Err(TrainError::Config(format!("train.monitor: {e}")))
            }
            // Undefined on this validation split (e.g. a single-class cell): say so; the
            // epoch cannot count as an improvement.
            Some(Err(e)) => {
                progress.message(&format!("{label}: train.monitor: {e}"));
                (None, true)
            }
            None => (None, true),
        };
        let (value, higher) = monitor_from_writer(value, higher);
        let improved = match (value, &best) {
            (Some(v), Some((b, _, _))) => {
                if higher {
                    v > *b
                } else {
                    v < *b
                }
            }
            (Some(_), None) => true,
            (None, _) => false,
        };
        let overall = rep.as_ref().map(|r| &r.overall);
        let line = EpochLine {
            cell: cell.clone(),
            epoch,
            train_loss: loss_sum / steps.len().max(1) as f64,
            train_rows: done,
            train_seconds: secs,
            monitor: cfg.monitor.clone(),
            monitor_value: value,
            improved,
            valid_auc_mean_cells: overall.and_then(|o| o.auc_mean_cells),
            valid_auc_task_pooled_mean: overall.and_then(|o| o.auc_task_pooled_mean),
            valid_logloss: overall.and_then(|o| o.logloss),
            outer_loss,
            model_report: engine.model.report(),
        };
        let json = serde_json::to_string(&line).expect("epoch line serialises");
        writeln!(metrics_log, "{json}")
            .map_err(|e| TrainError::io(Path::new("metrics.jsonl"), e))?;
        progress.message(&format!(
            "{label} epoch {epoch}: loss {:.5}, {:.0} rows/s, valid {} = {}{}",
            line.train_loss,
            done as f64 / secs.max(1e-9),
            cfg.monitor,
            value
                .map(|v| format!("{v:.5}"))
                .unwrap_or_else(|| "undefined".into()),
            if improved { " (best)" } else { "" }
        ));
        if improved {
            best = Some((value.expect("improved implies a value"), epoch, snap));
            bad_epochs = 0;
        } else {
            bad_epochs += 1;
            if bad_epochs >= cfg.patience {
                progress.message(&format!(
                    "{label}: early stop after epoch {epoch} (patience {})",
                    cfg.patience
                ));
                break;
            }
        }
    }
    let (snapshot, best_epoch) = match best {
        Some((_, e, s)) if cfg.keep == Keep::Best => (s, e),
        _ => (engine.snapshot(), epochs_run),
    };
    Ok(Fitted {
        snapshot,
        epochs_run,
        best_epoch,
        train_rows,
        train_seconds,
    })
}

/// Checkpoint settings of one [`fit`]: where, how often, and the checkpoint to resume from.
pub(crate) struct Checkpointing {
    /// `RUN/checkpoints` when checkpoints are written (a scratch folder on ranks other than
    /// 0 of a group).
    pub dir: Option<std::path::PathBuf>,
    /// The run directory's `checkpoints` folder, where every rank writes its file when the
    /// tables are sharded.
    pub shared_dir: std::path::PathBuf,
    /// `train.checkpoint_every_steps`.
    pub every: Option<usize>,
    /// The checkpoint to continue from.
    pub resume: Option<TrainCheckpoint>,
    /// `metrics.jsonl` lines written before this fit started.
    pub metrics_lines_before: usize,
}

impl Checkpointing {
    fn active(&self) -> bool {
        self.every.is_some() || self.resume.is_some()
    }

    /// Whether a checkpoint is due after `step` steps.
    pub fn due(&self, step: u64) -> bool {
        matches!((self.every, &self.dir), (Some(n), Some(_)) if step.is_multiple_of(n as u64))
    }

    /// Writes a checkpoint of `engine` with the loop's `cursor` and `extra` arrays.
    pub fn write(
        &self,
        engine: &Engine,
        cursor: serde_json::Value,
        extra: BTreeMap<String, Vec<f32>>,
        step: u64,
        progress: &mut dyn Progress,
    ) -> Result<(), TrainError> {
        let Some(dir) = &self.dir else {
            return Ok(());
        };
        let dir = if engine.store.is_sharded() {
            &self.shared_dir
        } else {
            dir
        };
        let t0 = Instant::now();
        let ck = TrainCheckpoint {
            engine: engine.checkpoint()?,
            cursor,
            extra,
        };
        let (path, bytes) = crate::resume::write_checkpoint(dir, step, &ck, 2)?;
        progress.checkpoint(&path, bytes, t0.elapsed().as_secs_f64());
        Ok(())
    }
}

/// Adds a snapshot's dense tensors and table weights to `extra` under `prefix`.
fn save_weights(extra: &mut BTreeMap<String, Vec<f32>>, snap: &Snapshot, prefix: &str) {
    for (name, _, values) in snap.model.named_tensors() {
        extra.insert(format!("{prefix}model.{name}"), values);
    }
    for (name, _, _, values) in snap.store.tables() {
        extra.insert(format!("{prefix}embedding.{name}"), values.to_vec());
    }
}

/// Loads what [`save_weights`] saved into `engine` (whose shapes give the tensors' shapes).
fn load_weights(
    engine: &mut Engine,
    extra: &BTreeMap<String, Vec<f32>>,
    prefix: &str,
) -> Result<(), TrainError> {
    let missing = |k: &str| TrainError::Checkpoint(format!("checkpoint lacks `extra.{k}`"));
    let mut tensors = BTreeMap::new();
    for (name, shape, _) in engine.model.named_tensors() {
        let k = format!("{prefix}model.{name}");
        let v = extra.get(&k).ok_or_else(|| missing(&k))?;
        tensors.insert(name, (shape, v.clone()));
    }
    engine
        .model
        .load_named(&tensors)
        .map_err(|e| TrainError::Checkpoint(e.to_string()))?;
    let tables: Vec<(String, usize)> = engine
        .store
        .tables()
        .map(|(n, _, d, _)| (n.to_string(), d))
        .collect();
    for (name, dim) in tables {
        let k = format!("{prefix}embedding.{name}");
        let v = extra.get(&k).ok_or_else(|| missing(&k))?;
        // The checkpoint holds whole tables (shards are joined when read); a sharded table
        // keeps its own rows of them.
        engine
            .store
            .load_table(&name, v.len() / dim.max(1), dim, v)
            .map_err(TrainError::Checkpoint)?;
    }
    Ok(())
}

/// One independently trained model of a setting: which domain's rows it sees (all when
/// `None`) and which tasks it predicts.
struct Part {
    name: String,
    domain: Option<usize>,
    tasks: Vec<usize>,
}

/// The models a setting trains: one (`mdmt`), one per domain (`mtl`), one per task (`mdl`), one
/// per (domain, task) cell (`isolated`).
fn parts(setting: Setting, ctx: &ModelContext) -> Vec<Part> {
    let all_tasks: Vec<usize> = (0..ctx.n_tasks()).collect();
    // One part per domain (all tasks) or per (domain, task) cell.
    let per_domain = |cells: bool| -> Vec<Part> {
        let mut out = Vec::new();
        for (d, dn) in ctx.domains.iter().enumerate() {
            if cells {
                for (t, tn) in ctx.tasks.iter().enumerate() {
                    out.push(Part {
                        name: format!("{dn}/{tn}"),
                        domain: Some(d),
                        tasks: vec![t],
                    });
                }
            } else {
                out.push(Part {
                    name: dn.clone(),
                    domain: Some(d),
                    tasks: all_tasks.clone(),
                });
            }
        }
        out
    };
    match setting {
        Setting::Mdmt => vec![Part {
            name: "all".into(),
            domain: None,
            tasks: all_tasks,
        }],
        Setting::Mdl => (0..ctx.n_tasks())
            .map(|t| Part {
                name: ctx.tasks[t].clone(),
                domain: None,
                tasks: vec![t],
            })
            .collect(),
        Setting::Mtl => per_domain(false),
        Setting::Isolated => per_domain(true),
    }
}

impl Part {
    /// The rows of `data` this part sees and its view of them (its label columns; domain 0 when
    /// the part holds one domain).
    fn view(&self, data: &EncodedData) -> (Vec<u32>, EncodedData) {
        let (rows, mut v) = match self.domain {
            Some(d) => {
                let rows = data.rows_of_domain(d as u32);
                let v = data.subset(&rows);
                (rows, v)
            }
            None => ((0..data.len() as u32).collect(), data.clone()),
        };
        v.labels = self.tasks.iter().map(|&t| v.labels[t].clone()).collect();
        if self.domain.is_some() {
            v.domain.iter_mut().for_each(|x| *x = 0);
        }
        (rows, v)
    }

    fn ctx(&self, ctx: &ModelContext) -> ModelContext {
        ModelContext {
            domains: match self.domain {
                Some(d) => vec![ctx.domains[d].clone()],
                None => ctx.domains.clone(),
            },
            tasks: self.tasks.iter().map(|&t| ctx.tasks[t].clone()).collect(),
            ..ctx.clone()
        }
    }

    /// Write this part's logits (`[rows, |tasks|]`) into the full `[n, T]` matrix.
    fn place(&self, rows: &[u32], logits: &[f32], n_tasks: usize, dst: &mut [f32]) {
        let k = self.tasks.len();
        for (i, &r) in rows.iter().enumerate() {
            for (j, &t) in self.tasks.iter().enumerate() {
                dst[r as usize * n_tasks + t] = logits[i * k + j];
            }
        }
    }

    fn prefix(&self, index: usize, n_parts: usize) -> String {
        if n_parts == 1 {
            String::new()
        } else {
            format!("parts.{index}.")
        }
    }
}

/// `cfg` with every default spelled out (see [`RunConfig::resolve`]): what a run directory's
/// `config.resolved.json` holds.
pub fn resolve_config(cfg: &RunConfig) -> Result<RunConfig, TrainError> {
    Ok(cfg.resolve()?.cfg)
}

/// Train the configured model, evaluate on test with the best weights, and write the run
/// directory `out`.
pub fn train_run(
    cfg: &RunConfig,
    prepared: &Prepared,
    out: &Path,
    progress: &mut dyn Progress,
) -> Result<RunOutcome, TrainError> {
    run(cfg, prepared, out, progress, None)
}

/// Continue the run in `out` from its newest usable checkpoint (`mdrec train --resume`): the
/// result (weights, `report.json` metrics) is the one the run would have had uninterrupted.
/// `cfg` is the run's `config.resolved.json`.
pub fn resume_run(
    cfg: &RunConfig,
    prepared: &Prepared,
    out: &Path,
    progress: &mut dyn Progress,
) -> Result<RunOutcome, TrainError> {
    // The checkpoint's cursor indexes rows of the data the run started on.
    check_schema(out, prepared)?;
    let dir = crate::resume::checkpoint_dir(out);
    let t0 = Instant::now();
    let mut warn = |m: String| progress.message(&m);
    let Some((ck, path)) = crate::resume::read_latest(&dir, &mut warn)? else {
        return Err(TrainError::Config(format!(
            "--resume: {} holds no usable checkpoint{}",
            dir.display(),
            if out.join("report.json").exists() {
                " (the run finished: its report.json is written)"
            } else {
                "; the run stopped before its first checkpoint (train.checkpoint_every_steps) and must start again"
            }
        )));
    };
    progress.message(&format!(
        "resuming from {} (read and verified in {:.3} s)",
        path.display(),
        t0.elapsed().as_secs_f64()
    ));
    run(cfg, prepared, out, progress, Some(ck))
}

/// `metrics.jsonl` of `out`: created empty, or (resuming) cut back to its first `keep` lines
/// (what the checkpoint had seen) and opened for appending.
pub(crate) fn open_metrics(out: &Path, keep: Option<usize>) -> Result<std::fs::File, TrainError> {
    let path = out.join("metrics.jsonl");
    let Some(keep) = keep else {
        return std::fs::File::create(&path).map_err(|e| TrainError::io(&path, e));
    };
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let kept: String = text.lines().take(keep).map(|l| format!("{l}\n")).collect();
    std::fs::write(&path, kept).map_err(|e| TrainError::io(&path, e))?;
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .map_err(|e| TrainError::io(&path, e))
}

/// [`run_rank`] in this process, or as `train.replicas` replica threads of it.
fn run(
    cfg: &RunConfig,
    prepared: &Prepared,
    out: &Path,
    progress: &mut dyn Progress,
    resume: Option<TrainCheckpoint>,
) -> Result<RunOutcome, TrainError> {
    match cfg.train.replicas {
        0 | 1 => run_rank(cfg, prepared, out, progress, resume),
        n => crate::dist::replicated(n, progress, |progress| {
            run_rank(cfg, prepared, out, progress, resume.clone())
        }),
    }
}

/// [`run_in`] `out`, or, on a rank other than 0 of a data-parallel group, in a scratch
/// directory removed afterwards: rank 0 alone writes the run directory (and reports the
/// group's traffic).
fn run_rank(
    cfg: &RunConfig,
    prepared: &Prepared,
    out: &Path,
    progress: &mut dyn Progress,
    resume: Option<TrainCheckpoint>,
) -> Result<RunOutcome, TrainError> {
    if crate::dist::is_writer() {
        let t0 = Instant::now();
        let r = run_in(cfg, prepared, out, out, progress, resume);
        if let (Ok(_), Some(g)) = (&r, crate::dist::group()) {
            progress.message(&crate::dist::summary(g.size(), t0.elapsed().as_secs_f64()));
        }
        return r;
    }
    // A fresh folder per rank and run (replica threads share the process id), removed when
    // dropped.
    let scratch = tempfile::Builder::new()
        .prefix(&format!("mdrec-rank{}-", crate::dist::rank()))
        .tempdir()
        .map_err(|e| TrainError::io(&std::env::temp_dir(), e))?;
    run_in(cfg, prepared, scratch.path(), out, progress, resume)
}

/// Train into `out`; `home` is the run directory every rank shares (where each rank writes
/// its shard files when the tables are sharded; `out` itself on rank 0).
fn run_in(
    cfg: &RunConfig,
    prepared: &Prepared,
    out: &Path,
    home: &Path,
    progress: &mut dyn Progress,
    resume: Option<TrainCheckpoint>,
) -> Result<RunOutcome, TrainError> {
    if resume.is_none() {
        // A fresh run in an old run directory: the old run's checkpoints belong to another
        // run (their steps may even be ahead of this one's), so `--resume` must never see them.
        let dir = crate::resume::checkpoint_dir(out);
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(TrainError::io(&dir, e))
            }
            _ => {}
        }
    }
    if cfg.train.mode == TrainMode::Stream {
        return crate::stream::train_stream(cfg, prepared, out, home, progress, resume);
    }
    let t_start = Instant::now();
    let ResolvedRun {
        cfg: resolved,
        factory,
        model_cfg,
        setting,
    } = cfg.resolve()?;
    let device = cfg.train.device.device()?;
    std::fs::create_dir_all(out).map_err(|e| TrainError::io(out, e))?;
    write_json(&out.join("config.resolved.json"), &resolved)?;
    std::fs::write(out.join("schema.json"), prepared.schema.to_json_pretty())
        .map_err(|e| TrainError::io(out, e))?;
    write_json(&out.join("vocabs.json"), &prepared.vocabs)?;
    let keep_lines = resume
        .as_ref()
        .map(|ck| ck.cursor["metrics_lines"].as_u64().unwrap_or(0) as usize);
    let mut metrics_log = open_metrics(out, keep_lines)?;

    let ctx = context_from_schema(&prepared.schema, cfg.train.embedding.dim);
    let train_counts = prepared.train.domain_counts(ctx.n_domains());
    let n_t = ctx.n_tasks();
    let mut ckpt = CheckpointWriter::default();
    let mut epochs_run = 0;
    let mut best_epochs = BTreeMap::new();
    let (mut train_rows, mut train_seconds) = (0usize, 0.0f64);
    let mut model_report = serde_json::Map::new();
    let all_parts = parts(setting, &ctx);
    let augmented = match &cfg.train.augment {
        None => None,
        Some(_) if all_parts.len() > 1 => {
            return Err(TrainError::Config(format!(
                "train.augment needs one model over every domain (setting mdmt), not {setting:?}"
            )))
        }
        Some(a) => {
            let aug = mdrec_data::augment(prepared, a, cfg.train.seed)
                .map_err(|e| TrainError::Config(format!("train.augment: {e}")))?;
            progress.message(&format!(
                "augmentation: {} rows ({} cold items; pool {} positives of large domains) into {} small domains",
                aug.data.len(),
                aug.n_cold_items,
                aug.pool.len(),
                aug.small_domains.len()
            ));
            // HEMP's "augmented training data of d" is the domain's original rows plus the
            // rows copied into it (AREAD writes original ∪ augmented to one file).
            Some(prepared.train.concat(&aug.data))
        }
    };
    let every = cfg.train.checkpoint_every_steps;
    if (every.is_some() || resume.is_some()) && all_parts.len() > 1 {
        return Err(TrainError::Config(format!(
            "train.checkpoint_every_steps / --resume: setting {setting:?} trains {} models; checkpoints hold one (setting mdmt) for now",
            all_parts.len()
        )));
    }
    let mut resume = resume;
    // The writer alone holds the logits and evaluates (ranks of a group learn its report).
    let writer = crate::dist::is_writer();
    let mut test_logits = vec![0.0f32; if writer { prepared.test.len() * n_t } else { 0 }];
    let mut valid_logits = vec![
        0.0f32;
        if writer {
            prepared.valid.len() * n_t
        } else {
            0
        }
    ];
    let (mut dense_params, mut emb_params) = (0, 0);
    for (i, part) in all_parts.iter().enumerate() {
        let (_, tr) = part.view(&prepared.train);
        let (_, va) = part.view(&prepared.valid);
        if tr.is_empty() {
            return Err(TrainError::Data(mdrec_data::DataError::Config(format!(
                "setting {setting:?}: part {} has no training rows",
                part.name
            ))));
        }
        let label = if all_parts.len() == 1 {
            factory.name().to_string()
        } else {
            format!("{} [{}]", factory.name(), part.name)
        };
        let f = fit(
            factory,
            &model_cfg,
            part.ctx(&ctx),
            &resolved.train,
            &tr,
            // AREAD's counterfactually augmented training set (AREAD paper); `None` = candidates
            // train on the original rows.
            augmented.as_ref(),
            &va,
            &device,
            &label,
            (all_parts.len() > 1).then(|| part.name.clone()),
            &mut metrics_log,
            progress,
            Checkpointing {
                dir: every.map(|_| crate::resume::checkpoint_dir(out)),
                shared_dir: crate::resume::checkpoint_dir(home),
                every,
                resume: resume.take(),
                metrics_lines_before: 0,
            },
        )?;
        epochs_run = epochs_run.max(f.epochs_run);
        best_epochs.insert(part.name.clone(), f.best_epoch);
        train_rows += f.train_rows;
        train_seconds += f.train_seconds;
        ckpt.add(
            &part.prefix(i, all_parts.len()),
            f.snapshot.model.as_ref(),
            &f.snapshot.store,
        );
        model_report.insert(part.name.clone(), f.snapshot.model.report());
        dense_params += f.snapshot.model.num_params();
        emb_params += f.snapshot.store.num_params();
        for (split, dst) in [
            (&prepared.test, &mut test_logits),
            (&prepared.valid, &mut valid_logits),
        ] {
            let (rows, view) = part.view(split);
            let l = f
                .snapshot
                .predict_on_writer(&view, cfg.train.eval_batch_size, &device)?;
            if let Some(l) = l {
                part.place(&rows, &l, n_t, dst);
            }
        }
    }
    let mut meta = BTreeMap::new();
    meta.insert("model".to_string(), factory.name().to_string());
    meta.insert("schema_hash".to_string(), prepared.schema.hash.clone());
    meta.insert("setting".to_string(), format!("{setting:?}"));
    ckpt.write_with_shards(&out.join("weights.safetensors"), meta, home)?;

    let t_eval = Instant::now();
    let evaluated = if writer {
        let mut test = eval_split(&ctx, &test_logits, &prepared.test, &train_counts)?;
        let valid = eval_split(&ctx, &valid_logits, &prepared.valid, &train_counts)?;
        if let Some(rew) = &cfg.train.rew {
            let col = rew.item_column(&ctx)?;
            let (top, all) = crate::rew::repeat_exposure(
                &prepared.train,
                &prepared.test,
                &test_logits,
                n_t,
                col,
                rew,
            )?;
            test.extra
                .insert(format!("repeat_exposure_top{}", rew.top_k), top);
            test.extra.insert("repeat_exposure_all".into(), all);
        }
        Some((test, valid))
    } else {
        None
    };
    let (test, valid) = reports_from_writer(evaluated)?;
    let report = RunReport {
        model: factory.name().to_string(),
        paper: factory.paper().to_string(),
        dataset: cfg.dataset.name.to_string(),
        split: cfg.dataset.split().to_string(),
        source: prepared.source.clone(),
        seed: cfg.train.seed,
        setting,
        epochs_run,
        best_epoch: best_epochs,
        monitor: cfg.train.monitor.clone(),
        schema_hash: prepared.schema.hash.clone(),
        rows: [
            prepared.train.len(),
            prepared.valid.len(),
            prepared.test.len(),
        ],
        params: crate::report::Params {
            dense: dense_params,
            embedding: emb_params,
        },
        model_report: if all_parts.len() == 1 {
            model_report.remove("all").unwrap_or_default()
        } else if model_report.values().all(|v| v.is_null()) {
            serde_json::Value::Null
        } else {
            serde_json::Value::Object(model_report)
        },
        config: serde_json::to_value(&resolved).expect("config serialises"),
        test,
        valid,
        timing: Timing {
            train_samples_per_s: train_rows as f64 / train_seconds.max(1e-9),
            train_seconds,
            eval_seconds: t_eval.elapsed().as_secs_f64(),
            total_seconds: t_start.elapsed().as_secs_f64(),
            threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
        },
        version: env!("CARGO_PKG_VERSION").to_string(),
        stream: None,
    };
    write_reports(out, &report)?;
    remove_checkpoints(out);
    Ok(RunOutcome {
        report,
        test_logits,
    })
}

/// A finished run needs no checkpoints: they are removed once its results are written.
pub(crate) fn remove_checkpoints(out: &Path) {
    let _ = std::fs::remove_dir_all(crate::resume::checkpoint_dir(out));
}

/// The trained models of a run directory with their weights restored: one per part of the
/// run's setting (`all` for a one-model setting). Needs only the run directory, not its data.
pub struct TrainedModels {
    /// The run's resolved config.
    pub cfg: RunConfig,
    /// The schema's model context (without embedding sets; each snapshot has its own).
    pub ctx: ModelContext,
    /// One `(part name, weights)` per trained model.
    pub models: Vec<(String, Snapshot)>,
    parts: Vec<Part>,
    device: Device,
}

impl TrainedModels {
    /// Reads `config.resolved.json` and the weights of `run`, for the fitted `schema`.
    pub fn load(run: &Path, schema: &Schema) -> Result<Self, TrainError> {
        let cfg = read_run_config(run)?;
        let ResolvedRun {
            factory,
            model_cfg,
            setting,
            ..
        } = cfg.resolve()?;
        let device = cfg.train.device.device()?;
        let ckpt = Checkpoint::read(&run.join("weights.safetensors"))?;
        let ctx = context_from_schema(schema, cfg.train.embedding.dim);
        let all_parts = parts(setting, &ctx);
        let mut models = Vec::with_capacity(all_parts.len());
        for (i, part) in all_parts.iter().enumerate() {
            let mut e = Engine::new(
                factory,
                &model_cfg,
                part.ctx(&ctx),
                &cfg.train,
                cfg.train.seed,
                &device,
            )?;
            ckpt.load_into(
                &part.prefix(i, all_parts.len()),
                e.model.as_mut(),
                &mut e.store,
            )?;
            models.push((part.name.clone(), e.snapshot()));
        }
        Ok(TrainedModels {
            cfg,
            ctx,
            models,
            parts: all_parts,
            device,
        })
    }

    /// The model when one model scores every row and task (a one-part setting), else `None`.
    pub fn single(&self) -> Option<&Snapshot> {
        match (self.parts.as_slice(), self.models.as_slice()) {
            ([part], [(_, snap)])
                if part.domain.is_none() && part.tasks.len() == self.ctx.n_tasks() =>
            {
                Some(snap)
            }
            _ => None,
        }
    }

    /// The device the models run on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Logits `[n, T]` (row-major) for every row of `data`: each part scores its own rows.
    pub fn logits(&self, data: &EncodedData, batch_size: usize) -> Result<Vec<f32>, TrainError> {
        let n_t = self.ctx.n_tasks();
        if let ([part], [(_, snap)]) = (self.parts.as_slice(), self.models.as_slice()) {
            if part.domain.is_none() && part.tasks.len() == n_t {
                // one model for every row and task: its logits are the answer, no view or copy
                return snap.predict(data, batch_size, &self.device);
            }
        }
        let mut logits = vec![0.0f32; data.len() * n_t];
        for (part, (_, snap)) in self.parts.iter().zip(&self.models) {
            let (rows, view) = part.view(data);
            let l = snap.predict(&view, batch_size, &self.device)?;
            part.place(&rows, &l, n_t, &mut logits);
        }
        Ok(logits)
    }
}

/// A run's `config.resolved.json`.
pub fn read_run_config(run: &Path) -> Result<RunConfig, TrainError> {
    let cfg_path = run.join("config.resolved.json");
    let text = std::fs::read_to_string(&cfg_path).map_err(|e| TrainError::io(&cfg_path, e))?;
    serde_json::from_str(&text)
        .map_err(|e| TrainError::Config(format!("{}: {e}", cfg_path.display())))
}

/// A run directory loaded back: its data (through the cache, checked against `schema.json`)
/// and its trained models.
pub struct LoadedRun {
    /// The dataset, prepared as the run saw it.
    pub prepared: Prepared,
    /// The trained models.
    pub trained: TrainedModels,
}

/// Load a run directory: saved config, data with a schema check, weights.
pub fn load_run(run: &Path) -> Result<LoadedRun, TrainError> {
    let cfg = read_run_config(run)?;
    if cfg.train.mode == TrainMode::Stream {
        return Err(TrainError::Config(format!(
            "{} is a stream run: every row was scored before it was trained on, and its report.json holds that progressive validation; there is no held-out split to re-score (`mdrec predict` scores new records with it)",
            run.display()
        )));
    }
    let prepared = prepare_dataset(&cfg)?;
    check_schema(run, &prepared)?;
    let trained = TrainedModels::load(run, &prepared.schema)?;
    Ok(LoadedRun { prepared, trained })
}

/// `Err` unless `prepared` fits the schema the run in `run` was trained with (its
/// `schema.json`): evaluating or resuming a run on other data would silently mix the two.
fn check_schema(run: &Path, prepared: &Prepared) -> Result<(), TrainError> {
    let schema_path = run.join("schema.json");
    let saved =
        std::fs::read_to_string(&schema_path).map_err(|e| TrainError::io(&schema_path, e))?;
    if saved != prepared.schema.to_json_pretty() {
        return Err(TrainError::Data(mdrec_data::DataError::Config(format!(
            "{}: the data now fits a different schema (hash {}) than the run was trained with; re-train or restore the data",
            schema_path.display(),
            prepared.schema.hash
        ))));
    }
    Ok(())
}

/// Re-score a run directory's test split from its saved config, schema and weights; also
/// returns the logits (row-major `[n, T]`, test split order).
pub fn evaluate_run(run: &Path) -> Result<(EvalReport, Vec<f32>, LoadedRun), TrainError> {
    let loaded = load_run(run)?;
    let (t, prepared) = (&loaded.trained, &loaded.prepared);
    let logits = t.logits(&prepared.test, t.cfg.train.eval_batch_size)?;
    let counts = prepared.train.domain_counts(t.ctx.n_domains());
    let report = eval_split(&t.ctx, &logits, &prepared.test, &counts)?;
    Ok((report, logits, loaded))
}

pub(crate) fn write_json<T: Serialize>(path: &Path, v: &T) -> Result<(), TrainError> {
    let s = serde_json::to_string_pretty(v).expect("serialises");
    std::fs::write(path, s + "\n").map_err(|e| TrainError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_become_row_major_rows_of_tasks() {
        let data = EncodedData {
            n_rows: 3,
            labels: vec![vec![1.0, 0.0, 1.0].into(), vec![0.0, 0.0, 1.0].into()],
            domain: vec![0, 1, 0].into(),
            ..Default::default()
        };
        assert_eq!(row_major_labels(&data), [1.0, 0.0, 0.0, 0.0, 1.0, 1.0]);
    }

    #[test]
    fn outer_rows_are_a_seeded_per_epoch_draw_of_one_batch() {
        let a = outer_rows(100, 7, 1, 16);
        assert_eq!(a.len(), 16);
        assert_eq!(a, outer_rows(100, 7, 1, 16), "same seed and epoch");
        assert_ne!(a, outer_rows(100, 7, 2, 16), "another epoch");
        assert_ne!(a, outer_rows(100, 8, 1, 16), "another seed");
        // not the training order of that epoch
        assert_ne!(a[..], epoch_order(100, true, 7, 1)[..16]);
        let mut distinct = a.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), 16);
        assert!(a.iter().all(|&r| r < 100));
        // a split smaller than the batch gives all of its rows
        let mut small = outer_rows(5, 7, 1, 16);
        small.sort_unstable();
        assert_eq!(small, [0, 1, 2, 3, 4]);
    }

    #[test]
    fn metrics_are_created_empty_or_cut_back_to_the_checkpointed_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        std::fs::write(&path, "{\"epoch\":1}\n{\"epoch\":2}\n{\"epoch\":3}\n").unwrap();
        let mut f = open_metrics(dir.path(), Some(2)).unwrap();
        writeln!(f, "{{\"epoch\":3,\"resumed\":true}}").unwrap();
        drop(f);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"epoch\":1}\n{\"epoch\":2}\n{\"epoch\":3,\"resumed\":true}\n"
        );
        drop(open_metrics(dir.path(), None).unwrap());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
    }
}
