//! `mdrec speed`: training and inference samples/s, printed as a table (never pass/fail).
//!
//! Workloads:
//! - `engine`: the foundation measurement — MMoE, batch 1024, 20 categorical fields × 10k
//!   vocabulary, dim 16, 6 experts 320→256→128, 3 domain towers 128→64→1, one task, random ids.
//! - `dataset`: any model on a prepared dataset (e.g. MovieLens-1M), first N batches of an epoch.

use std::time::Instant;

use anyhow::Result;
use clap::Args;
use mdrec_data::rng::Rng;
use mdrec_data::{epoch_order, EncodedData};
use mdrec_nn::device::DeviceKind;
use mdrec_nn::ModelContext;
use mdrec_train::engine::Engine;
use mdrec_train::{context_from_schema, prepare_dataset, RunConfig};

#[derive(Args)]
pub struct SpeedArgs {
    /// `engine` or `dataset`.
    #[arg(long, default_value = "engine")]
    workload: String,
    /// Model for the `dataset` workload (default mmoe).
    #[arg(long)]
    model: Option<String>,
    /// Dataset for the `dataset` workload.
    #[arg(long, default_value = "movielens-1m")]
    dataset: String,
    /// Data folder for the `dataset` workload.
    #[arg(long)]
    data_dir: Option<std::path::PathBuf>,
    /// Batch size.
    #[arg(long, default_value_t = 1024)]
    batch_size: usize,
    /// Timed training steps.
    #[arg(long, default_value_t = 60)]
    steps: usize,
    /// Untimed warm-up steps.
    #[arg(long, default_value_t = 5)]
    warmup: usize,
    /// Any config value (`--set model.num_experts=8`).
    #[arg(long = "set")]
    set: Vec<String>,
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
        group: vec![0; n],
    }
}

/// Train samples/s, inference samples/s, and data-path rows/s (batch gather + embedding lookup,
/// no tensors): the last says whether the data path could ever be the bottleneck.
fn time_engine(
    engine: &mut Engine,
    data: &EncodedData,
    bs: usize,
    warmup: usize,
    steps: usize,
) -> Result<(f64, f64, f64)> {
    let order = epoch_order(data.len(), true, 1, 1);
    let batches: Vec<&[u32]> = order.chunks(bs).filter(|c| c.len() == bs).collect();
    anyhow::ensure!(!batches.is_empty(), "not enough rows for one batch of {bs}");
    for i in 0..warmup {
        engine.train_step(data, batches[i % batches.len()])?;
    }
    let t0 = Instant::now();
    for i in 0..steps {
        engine.train_step(data, batches[(warmup + i) % batches.len()])?;
    }
    let train = (steps * bs) as f64 / t0.elapsed().as_secs_f64();
    let snap = engine.snapshot();
    let n_inf = data.len().min(200_000);
    let sub = data.subset(&(0..n_inf as u32).collect::<Vec<_>>());
    let t1 = Instant::now();
    snap.predict(
        &sub,
        8192,
        &DeviceKind::Cpu.device().map_err(anyhow::Error::msg)?,
    )?;
    let infer = n_inf as f64 / t1.elapsed().as_secs_f64();
    let mut batch = mdrec_data::Batch::default();
    let mut buf = Vec::new();
    let t2 = Instant::now();
    let mut rows = 0;
    for b in &batches {
        data.fill_batch(b, &mut batch);
        snap.store.lookup(&batch, &mut buf)?;
        rows += b.len();
    }
    let data_rate = rows as f64 / t2.elapsed().as_secs_f64();
    Ok((train, infer, data_rate))
}

pub fn run(a: SpeedArgs) -> Result<()> {
    let device = DeviceKind::Cpu.device().map_err(anyhow::Error::msg)?;
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mut cfg = RunConfig::default();
    for s in &a.set {
        cfg.set(s)?;
    }
    cfg.train.batch_size = a.batch_size;
    let (name, ctx, data) = match a.workload.as_str() {
        "engine" => {
            cfg.set_model_name("mmoe");
            cfg.model.insert("num_experts".into(), 6.into());
            cfg.model
                .insert("expert_dims".into(), serde_json::json!([256, 128]));
            cfg.model
                .insert("tower_dims".into(), serde_json::json!([64]));
            let ctx = ModelContext::uniform(20, 10_000, 16, 0, 3, 1);
            (
                "engine (MMoE, 20×10k×16, 6 experts 320→256→128, 3 towers 128→64→1)".to_string(),
                ctx,
                engine_data(65_536, 20, 10_000, 7),
            )
        }
        "dataset" => {
            cfg.set_model_name(a.model.as_deref().unwrap_or("mmoe"));
            cfg.dataset.name = a.dataset.clone();
            cfg.dataset.data_dir = a.data_dir.clone();
            let p = prepare_dataset(&cfg)?;
            let ctx = context_from_schema(&p.schema, cfg.train.embedding.dim);
            (
                format!("{} on {}", cfg.model_name(), p.source),
                ctx,
                p.train,
            )
        }
        other => anyhow::bail!("unknown workload `{other}`; expected `engine` or `dataset`"),
    };
    let factory = mdrec_models::find(cfg.model_name())?;
    let model_cfg = factory.resolve(&cfg.model_overrides())?;
    let mut engine = Engine::new(
        factory,
        &model_cfg,
        ctx.clone(),
        &cfg.train,
        cfg.train.seed,
        &device,
    )?;
    let (train, infer, data_rate) =
        time_engine(&mut engine, &data, a.batch_size, a.warmup, a.steps)?;
    println!(
        "| workload | batch | threads | train samples/s | inference samples/s | data path rows/s |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    println!(
        "| {name} | {} | {threads} | {train:.0} | {infer:.0} | {data_rate:.0} |",
        a.batch_size
    );
    Ok(())
}
