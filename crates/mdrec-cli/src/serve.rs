//! `mdrec serve` and `mdrec loadgen`: a trained run behind `mdrec-serve`'s Open Inference
//! Protocol server. This module is the adapter: [`ServedRun`] implements the server's
//! [`Scorer`] with a [`RunScorer`] (the same encoding and models as `mdrec predict`), and
//! [`RunLoader`] loads run directories as versions.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};
use mdrec_data::{ColumnBuilder, ColumnType, DataError, RawTable, RecordChunks};
use mdrec_serve::{
    Datatype, InputSpec, Loader, LoadgenConfig, LoadgenReport, ModelMeta, ModelSource, RawBatch,
    Scorer, Scores, ServeConfig, Server,
};
use mdrec_train::{RunScorer, TrainError};

/// A run as a served model. The models are not `Sync`, so scoring threads take turns through a
/// mutex (one scoring thread per version by default, so it is uncontended).
pub struct ServedRun {
    scorer: Mutex<RunScorer>,
    meta: ModelMeta,
    /// The run's fitted uncertainty (`uncertainty.safetensors`), when it has one: the
    /// outputs then add `<task>_var`, the logit variance of each task.
    posterior: Option<mdrec_train::uncertainty::Posterior>,
    /// `--thompson SEED`: the outputs then also add `<task>_ts`, a Thompson sample σ(f̂),
    /// f̂ ~ N(logit, variance). Rows are numbered in the order this version scores them (from 0,
    /// counted in `rows_scored`), and row `r` draws from the stream `predict --thompson SEED`
    /// gives row `r` of a file: a sequential client sees `predict`'s samples.
    thompson: Option<u64>,
    rows_scored: AtomicUsize,
}

impl ServedRun {
    /// Loads a run directory; `thompson` adds Thompson-sample outputs (an error when the run has
    /// no fitted uncertainty).
    pub fn load(dir: &Path, thompson: Option<u64>) -> Result<Self, TrainError> {
        let scorer = RunScorer::load(dir)?;
        let inputs = scorer
            .format()
            .columns
            .iter()
            .map(|c| InputSpec {
                name: c.name.clone(),
                datatype: match c.ty {
                    ColumnType::Text => Datatype::Bytes,
                    ColumnType::Int => Datatype::Int64,
                    ColumnType::Float => Datatype::Fp32,
                },
                optional: c.optional,
            })
            .collect();
        let posterior = if dir.join(mdrec_train::uncertainty::FILE).exists() {
            Some(scorer.posterior(dir)?)
        } else if thompson.is_some() {
            return Err(TrainError::Config(format!(
                "{}: --thompson needs the run's fitted uncertainty ({}); run `mdrec uncertainty --run {}` first",
                dir.display(),
                mdrec_train::uncertainty::FILE,
                dir.display()
            )));
        } else {
            None
        };
        let tasks = &scorer.schema().tasks;
        let mut outputs = tasks.clone();
        if posterior.is_some() {
            outputs.extend(tasks.iter().map(|t| format!("{t}_var")));
        }
        if thompson.is_some() {
            outputs.extend(tasks.iter().map(|t| format!("{t}_ts")));
        }
        let meta = ModelMeta {
            inputs,
            outputs,
            domains: scorer.schema().domains.clone(),
            platform: format!("mdrec-{}", scorer.trained().cfg.model_name()),
        };
        Ok(ServedRun {
            scorer: Mutex::new(scorer),
            meta,
            posterior,
            thompson,
            rows_scored: AtomicUsize::new(0),
        })
    }
}

/// A scoring error as the server reports it: a record error names the request's row (0-based)
/// and column.
fn request_error(e: TrainError) -> String {
    match e {
        TrainError::Data(DataError::Parse {
            line, field, msg, ..
        }) => format!("row {}, `{field}`: {msg}", line.saturating_sub(1)),
        other => other.to_string(),
    }
}

impl Scorer for ServedRun {
    fn meta(&self) -> &ModelMeta {
        &self.meta
    }

    fn score(&self, batch: &RawBatch) -> Result<Scores, String> {
        let n = batch.n_rows;
        let mut t = RawTable {
            columns: Vec::with_capacity(batch.columns.len()),
            files: vec!["request".into()],
            row_file: vec![0; n],
            row_line: (1..=n as u32).collect(),
        };
        for (spec, col) in self.meta.inputs.iter().zip(&batch.columns) {
            if let Some(values) = col {
                let mut b = ColumnBuilder::new(&spec.name);
                for v in values {
                    b.push(v);
                }
                t.columns.push(b.finish());
            }
        }
        // Scoring reads the run and mutates nothing, so a panic in an earlier request (answered
        // with 500 by the server) leaves nothing half-changed: keep serving.
        let scorer = self
            .scorer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Rows are numbered while the scorer is held, so they follow the scoring order.
        let first_row = match self.thompson {
            Some(_) => self.rows_scored.fetch_add(n, Ordering::Relaxed),
            None => 0,
        };
        let scored = match &self.posterior {
            Some(p) => scorer.score_explore(&mut t, "request", p, true, self.thompson, first_row),
            None => scorer.score(&mut t, "request"),
        }
        .map_err(request_error)?;
        let n_t = scorer.schema().n_tasks();
        let column = |v: &[f32], k: usize| v.iter().skip(k).step_by(n_t).copied().collect();
        let mut tasks: Vec<Vec<f32>> = (0..n_t).map(|k| column(&scored.probs, k)).collect();
        for extra in [&scored.var, &scored.ts].into_iter().flatten() {
            tasks.extend((0..n_t).map(|k| column(extra, k)));
        }
        Ok(Scores { tasks })
    }
}

/// Loads run directories as served versions (with Thompson-sample outputs under `thompson`).
pub struct RunLoader {
    pub thompson: Option<u64>,
}

impl Loader for RunLoader {
    fn load(&self, dir: &Path) -> Result<Arc<dyn Scorer>, String> {
        ServedRun::load(dir, self.thompson)
            .map(|r| Arc::new(r) as Arc<dyn Scorer>)
            .map_err(|e| format!("{e:#}"))
    }
}

/// `mdrec serve`: runs until SIGTERM or ctrl-c, then finishes the requests in flight.
pub fn cmd_serve(
    runs: Vec<PathBuf>,
    names: Vec<String>,
    repo: Option<PathBuf>,
    cfg: ServeConfig,
    thompson: Option<u64>,
) -> Result<()> {
    let source = match repo {
        Some(dir) => {
            if !runs.is_empty() || !names.is_empty() {
                bail!("--model-repo serves a repository; leave out --run and --name");
            }
            ModelSource::Repository(dir)
        }
        None => {
            if runs.is_empty() {
                bail!("nothing to serve: give --run RUN (repeatable) or --model-repo DIR");
            }
            if !names.is_empty() && names.len() != runs.len() {
                bail!(
                    "--name given {} times for {} --run directories; name every run or none",
                    names.len(),
                    runs.len()
                );
            }
            let mut named = Vec::with_capacity(runs.len());
            for (i, run) in runs.into_iter().enumerate() {
                let name = match names.get(i) {
                    Some(n) => n.clone(),
                    None => run
                        .canonicalize()
                        .ok()
                        .and_then(|p| p.file_name().map(|f| f.to_string_lossy().into_owned()))
                        .with_context(|| format!("{}: no such run directory", run.display()))?,
                };
                if named.iter().any(|(n, _)| *n == name) {
                    bail!("two runs are both named `{name}`; give each a --name");
                }
                named.push((name, run));
            }
            ModelSource::Runs(named)
        }
    };
    // Inference runs on the runtime's threads (its blocking pool): subnormals flushed there as
    // on every other compute thread.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_start(mdrec_train::denormals::flush)
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let server = Server::start(cfg, source, Arc::new(RunLoader { thompson }))
            .await
            .map_err(anyhow::Error::msg)?;
        eprintln!(
            "serving on http://{} (Open Inference Protocol v2; ctrl-c stops)",
            server.local_addr()
        );
        server.wait_for_signal().await;
        eprintln!("stopped");
        Ok(())
    })
}

/// The JSON datatype of a record column's values in a request body.
fn json_value(ty: Datatype, v: &str, column: &str) -> Result<serde_json::Value> {
    Ok(match ty {
        Datatype::Bytes => serde_json::Value::from(v),
        Datatype::Int64 => serde_json::Value::from(
            v.trim()
                .parse::<i64>()
                .with_context(|| format!("column `{column}`: `{v}` is not an integer"))?,
        ),
        Datatype::Fp32 => serde_json::Value::from(
            v.trim()
                .parse::<f64>()
                .with_context(|| format!("column `{column}`: `{v}` is not a number"))?,
        ),
    })
}

/// An infer request body with the first `rows` records of `input`, every input column the run
/// reads, typed as its metadata says.
pub fn request_body(run: &Path, input: &Path, rows: usize) -> Result<Vec<u8>> {
    let served = ServedRun::load(run, None)?;
    let mut chunks = RecordChunks::open(input, rows)?;
    let Some(t) = chunks.next_chunk()? else {
        bail!("{}: no records after the header", input.display());
    };
    let mut inputs = Vec::new();
    for spec in &served.meta.inputs {
        let Some(col) = t.column(&spec.name) else {
            if spec.optional {
                continue;
            }
            bail!("{}: no column `{}`", input.display(), spec.name);
        };
        let data = (0..t.n_rows())
            .map(|r| json_value(spec.datatype, col.get(r), &spec.name))
            .collect::<Result<Vec<_>>>()?;
        inputs.push(serde_json::json!({
            "name": spec.name,
            "shape": [t.n_rows()],
            "datatype": spec.datatype.as_str(),
            "data": data,
        }));
    }
    Ok(serde_json::to_vec(
        &serde_json::json!({ "id": "loadgen", "inputs": inputs }),
    )?)
}

/// `mdrec loadgen`: a closed loop at fixed concurrency against a running server.
pub fn cmd_loadgen(cfg: LoadgenConfig) -> Result<LoadgenReport> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(mdrec_serve::loadgen(cfg))
        .map_err(anyhow::Error::msg)
}
