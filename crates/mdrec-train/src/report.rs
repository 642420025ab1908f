//! `report.json` (machine-readable, stable field names) and `report.md` (for people).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use mdrec_metrics::EvalReport;
use mdrec_models::Setting;
use serde::{Deserialize, Serialize};

use crate::TrainError;

/// Parameter counts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Params {
    /// Dense-network parameters (summed over cells in the isolated setting).
    pub dense: usize,
    /// Embedding parameters.
    pub embedding: usize,
}

/// Speed figures.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Timing {
    /// Training rows per second of training time (evaluation excluded).
    pub train_samples_per_s: f64,
    /// Seconds spent in training steps.
    pub train_seconds: f64,
    /// Seconds of the final evaluation.
    pub eval_seconds: f64,
    /// Wall-clock seconds of the whole run (data already prepared).
    pub total_seconds: f64,
    /// Threads available.
    pub threads: usize,
}

/// Everything a run reports. Field names are stable; new fields may be added.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunReport {
    /// Model registry name.
    pub model: String,
    /// Paper reference of the model.
    pub paper: String,
    /// Dataset name.
    pub dataset: String,
    /// Split name.
    pub split: String,
    /// Human description of the data source.
    pub source: String,
    /// Run seed.
    pub seed: u64,
    /// Training setting.
    pub setting: Setting,
    /// Epochs trained (max over cells in the isolated setting).
    pub epochs_run: usize,
    /// Epoch whose weights were kept, per cell (`all` for one model).
    pub best_epoch: BTreeMap<String, usize>,
    /// Early-stopping metric.
    pub monitor: String,
    /// Hash of the fitted schema.
    pub schema_hash: String,
    /// Rows of train, valid, test.
    pub rows: [usize; 3],
    /// Parameter counts.
    pub params: Params,
    /// Learned values the model reports (e.g. M3oE fusion weights); per cell in the isolated
    /// setting; `null` when the model has none.
    pub model_report: serde_json::Value,
    /// The resolved run config.
    pub config: serde_json::Value,
    /// Test metrics with the kept weights (`train.keep`: best validation epoch or last).
    pub test: EvalReport,
    /// Validation metrics with the kept weights.
    pub valid: EvalReport,
    /// Speed.
    pub timing: Timing,
    /// mdrec version.
    pub version: String,
    /// Stream training's summary (`train.mode = "stream"`; then `test` is progressive
    /// validation over every row and `valid` over the last 10 % of them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<crate::stream::StreamSummary>,
}

fn pct(v: Option<f64>) -> String {
    v.map(|x| format!("{:.2}", x * 100.0))
        .unwrap_or_else(|| "—".into())
}

fn num(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.5}")).unwrap_or_else(|| "—".into())
}

/// The Markdown report.
pub fn markdown(r: &RunReport) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# {} on {} ({} split), seed {}\n",
        r.model, r.dataset, r.split, r.seed
    );
    let _ = writeln!(s, "- paper: {}", r.paper);
    let _ = writeln!(
        s,
        "- setting: {:?}; epochs run: {}; best epoch: {:?}; monitor: {}",
        r.setting, r.epochs_run, r.best_epoch, r.monitor
    );
    let _ = writeln!(
        s,
        "- rows train/valid/test: {} / {} / {}; schema {}",
        r.rows[0], r.rows[1], r.rows[2], r.schema_hash
    );
    let _ = writeln!(
        s,
        "- parameters: {} dense, {} embedding",
        r.params.dense, r.params.embedding
    );
    let _ = writeln!(
        s,
        "- training: {:.0} samples/s, {:.1} s ({} threads)\n",
        r.timing.train_samples_per_s, r.timing.train_seconds, r.timing.threads
    );
    let _ = writeln!(s, "## Test, per domain × task (AUC and gAUC in %)\n");
    let _ = writeln!(
        s,
        "| domain | task | n | positives | AUC | gAUC | LogLoss | PCOC | bias |"
    );
    let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---:|---:|---:|");
    for c in &r.test.cells {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            c.domain,
            c.task,
            c.n,
            c.positives,
            pct(c.auc),
            pct(c.gauc),
            num(c.logloss),
            num(c.pcoc),
            num(c.bias)
        );
    }
    let o = &r.test.overall;
    let _ = writeln!(s, "\n## Test, overall\n");
    let _ = writeln!(s, "| metric | value |\n|---|---:|");
    let _ = writeln!(s, "| AUC, mean over cells | {} |", pct(o.auc_mean_cells));
    let _ = writeln!(
        s,
        "| AUC, mean over tasks of task-pooled AUC (M3oE \"overall\") | {} |",
        pct(o.auc_task_pooled_mean)
    );
    let _ = writeln!(s, "| gAUC, mean over tasks | {} |", pct(o.gauc_task_mean));
    let _ = writeln!(s, "| DomainAUC | {} |", pct(o.domain_auc));
    let _ = writeln!(
        s,
        "| LogLoss (mean BCE over rows × tasks) | {} |",
        num(o.logloss)
    );
    let _ = writeln!(
        s,
        "| PCOC (Σ predicted / Σ label over rows × tasks) | {} |",
        num(o.pcoc)
    );
    for (k, v) in &r.test.extra {
        let _ = writeln!(s, "| {k} | {v:.4} |");
    }
    let _ = writeln!(
        s,
        "\n## Test, per task\n\n| task | n | AUC | gAUC | LogLoss | PCOC |\n|---|---:|---:|---:|---:|---:|"
    );
    for t in &r.test.tasks {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} |",
            t.name,
            t.n,
            pct(t.auc),
            pct(t.gauc),
            num(t.logloss),
            num(t.pcoc)
        );
    }
    if !r.test.undefined.is_empty() {
        let _ = writeln!(s, "\n## Undefined metrics ({})\n", r.test.undefined.len());
        for u in &r.test.undefined {
            let _ = writeln!(s, "- {u}");
        }
    }
    s
}

/// Write `report.json` and `report.md` into `dir`.
pub fn write_reports(dir: &Path, r: &RunReport) -> Result<(), TrainError> {
    let json = serde_json::to_string_pretty(r).expect("report serialises");
    let p = dir.join("report.json");
    std::fs::write(&p, json + "\n").map_err(|e| TrainError::io(&p, e))?;
    let p = dir.join("report.md");
    std::fs::write(&p, markdown(r)).map_err(|e| TrainError::io(&p, e))?;
    Ok(())
}
