//! `mdrec speed`: training and inference samples/s, as a Markdown table (never pass/fail).
//!
//! Workloads:
//! - `engine`: the foundation measurement — MMoE, batch 1024, 20 categorical fields × 10k
//!   vocabulary, dim 16, 6 experts 320→256→128, 3 domain towers 128→64→1, one task, random ids.
//! - `dataset`: any model on a prepared dataset (e.g. MovieLens-1M), first N batches of an epoch.
//! - `zoo`: the engine workload, then every registered model (or `--models a,b`) with its
//!   default (paper-size) config on a prepared dataset; one table row per model, optionally
//!   written to `--out FILE` with the environment card.
//! - `domains`: how cost grows with the number of domains: each model (`--models`, default
//!   mmoe, star) on the synthetic dataset with each domain count of `--domains` (default
//!   3, 18, 100), same rows; the table adds the epoch time relative to the first count.

use std::path::{Path, PathBuf};
use std::time::Instant;

use mdrec_data::rng::Rng;
use mdrec_data::{epoch_order, EncodedData};
use mdrec_nn::device::DeviceKind;
use mdrec_nn::ModelContext;
use mdrec_train::engine::Engine;
use mdrec_train::progress::Silent;
use mdrec_train::{context_from_schema, prepare_dataset, RunConfig};

use crate::TrainError;

/// What to measure (the flags of `mdrec speed`).
#[derive(Debug, Clone)]
pub struct SpeedOptions {
    /// `engine`, `dataset`, `zoo` or `domains`.
    pub workload: String,
    /// Model for the `dataset` workload (default mmoe).
    pub model: Option<String>,
    /// Models for the `zoo` and `domains` workloads (empty: the workload's default).
    pub models: Vec<String>,
    /// Domain counts for the `domains` workload.
    pub domains: Vec<usize>,
    /// Dataset for the `dataset` and `zoo` workloads.
    pub dataset: String,
    /// Data folder for the `dataset` and `zoo` workloads.
    pub data_dir: Option<PathBuf>,
    /// Batch size.
    pub batch_size: usize,
    /// Timed training steps.
    pub steps: usize,
    /// Untimed warm-up steps.
    pub warmup: usize,
    /// Config assignments (`model.num_experts=8`).
    pub set: Vec<String>,
}

impl Default for SpeedOptions {
    fn default() -> Self {
        SpeedOptions {
            workload: "engine".into(),
            model: None,
            models: Vec::new(),
            domains: vec![3, 18, 100],
            dataset: "movielens-1m".into(),
            data_dir: None,
            batch_size: 1024,
            steps: 60,
            warmup: 5,
            set: Vec::new(),
        }
    }
}

fn engine_data(n: usize, fields: usize, vocab: u32, seed: u64) -> EncodedData {
    let mut rng = Rng::new(seed);
    EncodedData {
        n_rows: n,
        cat: (0..fields)
            .map(|_| (0..n).map(|_| rng.below(vocab as u64) as u32).collect())
            .collect(),
        multi: vec![],
        num: vec![],
        domain: (0..n).map(|_| rng.below(3) as u32).collect(),
        labels: vec![(0..n)
            .map(|_| (rng.next_f32() < 0.3) as u8 as f32)
            .collect()],
        group: vec![0; n].into(),
        ..Default::default()
    }
}

/// Heap allocations and bytes allocated so far by the whole process, if the binary counts
/// them (the `mdrec` binary's allocator does; see [`count_allocations_with`]).
pub type AllocationCounter = fn() -> (u64, u64);

static ALLOCATIONS: std::sync::OnceLock<AllocationCounter> = std::sync::OnceLock::new();

/// Let the speed table report heap allocations per training step, read from `counter`.
pub fn count_allocations_with(counter: AllocationCounter) {
    let _ = ALLOCATIONS.set(counter);
}

/// What one workload measures.
#[derive(Clone, Copy)]
struct Rates {
    /// Training samples/s.
    train: f64,
    /// Cores busy while training: process CPU time (user + sys, all threads) / wall time.
    train_cores: f64,
    /// Inference samples/s.
    infer: f64,
    /// Data-path rows/s (batch gather + embedding lookup, no tensors): says whether the data
    /// path could ever be the bottleneck.
    data_rate: f64,
    /// Heap allocations and MiB allocated per timed training step (whole process), when the
    /// binary counts them.
    allocs: Option<(f64, f64)>,
}

/// Times training steps, inference and the data path of `engine` on `data` (no data path
/// when `train_only`: replicas other than 0, which take part in the collective inference).
fn time_engine(
    engine: &mut Engine,
    data: &EncodedData,
    bs: usize,
    warmup: usize,
    steps: usize,
    train_only: bool,
) -> Result<Rates, TrainError> {
    let order = epoch_order(data.len(), true, 1, 1);
    let batches: Vec<&[u32]> = order.chunks(bs).filter(|c| c.len() == bs).collect();
    if batches.is_empty() {
        return Err(TrainError::Config(format!(
            "not enough rows for one batch of {bs}"
        )));
    }
    for i in 0..warmup {
        engine.train_step(data, batches[i % batches.len()])?;
    }
    let count = || ALLOCATIONS.get().map(|f| f());
    let (t0, cpu0, a0) = (Instant::now(), cpu_time::ProcessTime::now(), count());
    for i in 0..steps {
        engine.train_step(data, batches[(warmup + i) % batches.len()])?;
    }
    let wall = t0.elapsed().as_secs_f64();
    let allocs = a0.zip(count()).map(|((n0, b0), (n1, b1))| {
        let per_step = steps.max(1) as f64;
        (
            (n1 - n0) as f64 / per_step,
            (b1 - b0) as f64 / per_step / (1 << 20) as f64,
        )
    });
    let train = (steps * bs) as f64 / wall;
    let train_cores = cpu0.elapsed().as_secs_f64() / wall;
    let snap = engine.snapshot();
    let n_inf = data.len().min(200_000);
    let sub = data.subset(&(0..n_inf as u32).collect::<Vec<_>>());
    let t1 = Instant::now();
    snap.predict(
        &sub,
        8192,
        &DeviceKind::Cpu.device().map_err(TrainError::Config)?,
    )?;
    let infer = n_inf as f64 / t1.elapsed().as_secs_f64();
    if train_only {
        return Ok(Rates {
            train,
            train_cores,
            infer,
            data_rate: 0.0,
            allocs,
        });
    }
    let mut batch = mdrec_data::Batch::default();
    let mut buf = Vec::new();
    let t2 = Instant::now();
    let mut rows = 0;
    for b in &batches {
        data.fill_batch(b, &mut batch);
        snap.store
            .lookup(&batch, &mut buf)
            .map_err(|e| TrainError::Tensor(e.to_string()))?;
        rows += b.len();
    }
    let data_rate = rows as f64 / t2.elapsed().as_secs_f64();
    Ok(Rates {
        train,
        train_cores,
        infer,
        data_rate,
        allocs,
    })
}

/// One table row: the [`Rates`] of `cfg`'s model on `data`.
fn measure(
    cfg: &RunConfig,
    ctx: &ModelContext,
    data: &EncodedData,
    a: &SpeedOptions,
) -> Result<Rates, TrainError> {
    let device = DeviceKind::Cpu.device().map_err(TrainError::Config)?;
    let factory = mdrec_models::find(cfg.model_name())?;
    let model_cfg = factory.resolve(&cfg.model_overrides())?;
    let timed = |train: &mdrec_train::TrainConfig, train_only: bool| {
        let mut engine = Engine::new(
            factory,
            &model_cfg,
            ctx.clone(),
            train,
            cfg.train.seed,
            &device,
        )?;
        time_engine(
            &mut engine,
            data,
            a.batch_size,
            a.warmup,
            a.steps,
            train_only,
        )
    };
    match cfg.train.replicas {
        0 | 1 => timed(&cfg.train, false),
        n => {
            // Every replica trains the same global batches (each computes its share) and scores
            // its share of the inference rows; the figures are replica 0's. The tables stay
            // whole on every replica (the same training bits as row sharding), so the data
            // path is replica 0's own lookups.
            let mut train = cfg.train.clone();
            train.embedding.sharding = mdrec_nn::embedding::Sharding::Replicated;
            mdrec_train::dist::replicated(n, &mut Silent, |_| {
                timed(&train, mdrec_train::dist::rank() != 0)
            })
        }
    }
}

/// The `domains` workload's rows for model `name`: `(domain count, training samples/s)` in
/// measured order, each with its epoch time relative to the first count (the first count's
/// rate over its own: same rows, so time is inversely proportional to the rate).
fn relative_time_rows(name: &str, rates: &[(usize, f64)]) -> String {
    let Some(&(_, first)) = rates.first() else {
        return String::new();
    };
    rates
        .iter()
        .map(|&(d, rate)| format!("| {name} | {d} | {rate:.0} | {:.2}× |\n", first / rate))
        .collect()
}

fn engine_workload(cfg: &mut RunConfig) -> (String, ModelContext, EncodedData) {
    cfg.set_model_name("mmoe");
    cfg.model.insert("num_experts".into(), 6.into());
    cfg.model
        .insert("expert_dims".into(), serde_json::json!([256, 128]));
    cfg.model
        .insert("heads".into(), serde_json::json!({"tower_dims": [64]}));
    (
        "engine (MMoE, 20×10k×16, 6 experts 320→256→128, 3 towers 128→64→1)".to_string(),
        ModelContext::uniform(20, 10_000, 16, 0, 3, 1),
        engine_data(65_536, 20, 10_000, 7),
    )
}

/// Run the workload of `a`; every table row is passed to `on_row` as soon as it is measured
/// (progress), and the whole Markdown table is returned.
pub fn run_speed(a: &SpeedOptions, on_row: &mut dyn FnMut(&str)) -> Result<String, TrainError> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mut base = RunConfig::default();
    for s in &a.set {
        base.set(s)?;
    }
    base.train.batch_size = a.batch_size;
    let mut table = String::from(
        "| workload | batch | threads | train samples/s | train cores busy | inference samples/s | data path rows/s | allocations / step | MiB allocated / step |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let mut row = |name: &str, r: Rates| {
        let (n, mib) = match r.allocs {
            Some((n, mib)) => (format!("{n:.0}"), format!("{mib:.1}")),
            None => ("—".to_string(), "—".to_string()),
        };
        let name = match base.train.replicas {
            0 | 1 => name.to_string(),
            n => format!("{name}, {n} replicas"),
        };
        let line = format!(
            "| {name} | {} | {threads} | {:.0} | {:.2} | {:.0} | {:.0} | {n} | {mib} |\n",
            a.batch_size, r.train, r.train_cores, r.infer, r.data_rate
        );
        on_row(&line);
        table.push_str(&line);
    };
    let prepared =
        |cfg: &mut RunConfig| -> Result<(ModelContext, EncodedData, String), TrainError> {
            cfg.dataset.name = a.dataset.parse()?;
            cfg.dataset.data_dir = a.data_dir.clone();
            let p = prepare_dataset(cfg)?;
            let ctx = context_from_schema(&p.schema, cfg.train.embedding.dim);
            Ok((ctx, p.train, p.source))
        };
    match a.workload.as_str() {
        "engine" => {
            let mut cfg = base.clone();
            let (name, ctx, data) = engine_workload(&mut cfg);
            row(&name, measure(&cfg, &ctx, &data, a)?);
        }
        "dataset" => {
            let mut cfg = base.clone();
            cfg.set_model_name(a.model.as_deref().unwrap_or("mmoe"));
            let (ctx, data, source) = prepared(&mut cfg)?;
            row(
                &format!("{} on {source}", cfg.model_name()),
                measure(&cfg, &ctx, &data, a)?,
            );
        }
        "zoo" => {
            let names: Vec<String> = if a.models.is_empty() {
                mdrec_models::MODELS
                    .iter()
                    .map(|f| f.name().to_string())
                    .collect()
            } else {
                a.models.clone()
            };
            for n in &names {
                mdrec_models::find(n)?;
            }
            let mut cfg = base.clone();
            let (name, ctx, data) = engine_workload(&mut cfg);
            row(&name, measure(&cfg, &ctx, &data, a)?);
            let mut cfg = base.clone();
            let (ctx, data, source) = prepared(&mut cfg)?;
            for n in &names {
                let mut cfg = base.clone();
                cfg.set_model_name(n);
                row(&format!("{n} on {source}"), measure(&cfg, &ctx, &data, a)?);
            }
        }
        "domains" => {
            let names: Vec<String> = if a.models.is_empty() {
                vec!["mmoe".into(), "star".into()]
            } else {
                a.models.clone()
            };
            if a.domains.is_empty() || a.domains.iter().any(|&d| d < 1) {
                return Err(TrainError::Config(
                    "--domains needs at least one count ≥ 1".into(),
                ));
            }
            let mut ratios = String::from(
                "\n| model | domains | train samples/s | epoch time relative to the first count |\n|---|---:|---:|---:|\n",
            );
            for n in &names {
                mdrec_models::find(n)?;
                let mut rates = Vec::new();
                for &d in &a.domains {
                    let mut cfg = base.clone();
                    cfg.dataset.name = mdrec_data::DatasetName::Synthetic;
                    cfg.dataset.synthetic_domains = Some(d);
                    let p = prepare_dataset(&cfg)?;
                    let ctx = context_from_schema(&p.schema, cfg.train.embedding.dim);
                    cfg.set_model_name(n);
                    let m = measure(&cfg, &ctx, &p.train, a)?;
                    row(&format!("{n} on {}", p.source), m);
                    rates.push((d, m.train));
                }
                ratios.push_str(&relative_time_rows(n, &rates));
            }
            table.push_str(&ratios);
        }
        other => {
            return Err(TrainError::Config(format!(
                "unknown workload `{other}`; expected `engine`, `dataset`, `zoo` or `domains`"
            )))
        }
    }
    Ok(table)
}

/// Write `table` (from [`run_speed`] with options `a`) to the Markdown file `path`, with how it
/// was measured and the environment card.
pub fn write_speed_file(path: &Path, a: &SpeedOptions, table: &str) -> Result<(), TrainError> {
    let text = format!(
        "# Speed: `mdrec speed --workload {}`\n\n{table}\nTraining: {} timed steps after {} warm-up steps; inference: up to 200,000 rows at batch 8192.\n\n{}",
        a.workload,
        a.steps,
        a.warmup,
        crate::bench::environment_card()
    );
    std::fs::write(path, text).map_err(|e| TrainError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_time_is_the_first_counts_rate_over_each_rate() {
        let rows = relative_time_rows("star", &[(3, 1000.0), (18, 400.0), (100, 125.0)]);
        assert_eq!(
            rows,
            "| star | 3 | 1000 | 1.00× |\n| star | 18 | 400 | 2.50× |\n| star | 100 | 125 | 8.00× |\n"
        );
        assert_eq!(relative_time_rows("star", &[]), "");
    }
}
