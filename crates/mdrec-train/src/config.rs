//! The run configuration: what the user asks for, validated once.
//!
//! Humans write TOML (`--config FILE`), flags override it, and the resolved result is written to
//! the run directory as `config.resolved.json`. Unknown keys anywhere are errors that name the key
//! and the accepted ones.

use std::path::Path;

use mdrec_models::{ModelFactory, Setting};
use mdrec_nn::device::DeviceKind;
use mdrec_nn::embedding::EmbeddingConfig;
use mdrec_nn::loss::Reduction;
use serde::{Deserialize, Serialize};

use crate::TrainError;

/// The `[dataset]` section: typed, validated and resolved against the dataset table by
/// `mdrec-data` (see `mdrec_data::config`).
pub use mdrec_data::DatasetConfig;

/// Optimisation and schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// The one seed behind every random number of the run.
    pub seed: u64,
    /// Maximum number of epochs.
    pub epochs: usize,
    /// Training batch size.
    pub batch_size: usize,
    /// Evaluation batch size.
    pub eval_batch_size: usize,
    /// Dense-network learning rate (Adam).
    pub lr: f64,
    /// Dense-network L2 penalty (PyTorch Adam `weight_decay`).
    pub weight_decay: f64,
    /// Adam ε for the dense network.
    pub adam_eps: f64,
    /// Embedding tables and their row-wise optimizer.
    pub embedding: EmbeddingConfig,
    /// Loss reduction over (row, task) elements.
    pub loss: Reduction,
    /// Validation metric for early stopping and best-weights restore (see
    /// `mdrec_metrics::EvalReport::metric`).
    pub monitor: String,
    /// Epochs without improvement before stopping.
    pub patience: usize,
    /// Which weights the test metrics and the saved model use: `best` (default: the epoch with
    /// the best `monitor` value on validation) or `last` (the weights training ended with: the
    /// official M3oE run, 10 epochs with a patience that never fires, keeps epoch 10).
    pub keep: Keep,
    /// Training setting; `None` = the model's default.
    pub setting: Option<Setting>,
    /// Stop an epoch after this many steps (smoke tests, benchmarks).
    pub max_steps_per_epoch: Option<usize>,
    /// `cpu` or `cuda`.
    pub device: DeviceName,
    /// Data-parallel replicas on threads of this process (default 1). Each replica computes
    /// its contiguous share of every batch, as a rank of `mpirun` does (same scheme, same
    /// numbers as that many processes), so N replicas keep up to N cores busy where one
    /// replica's step leaves cores idle. The value is part of the run's numerics (the sums
    /// of the shares), not a machine setting: it is never derived from the core count.
    pub replicas: usize,
    /// Learning rate of the outer (bi-level) Adam step on a model's outer parameters (M3oE
    /// `automl = "bilevel"`; official `learning_rate_darts`). Its weight decay is `weight_decay`.
    pub automl_lr: f64,
    /// Split the outer step's batch is drawn from: `valid` (the paper) or `train` (the official
    /// M3oE code).
    pub automl_batch_source: AutomlBatchSource,
    /// AREAD's popularity-based counterfactual augmentation (the AREAD paper's section of that
    /// name): when set, the augmented training rows are built once per run (popularity on the training split unless
    /// `popularity_scope = "all_splits"`) and used only to train HEMP's candidate masks. Only
    /// models with a HEMP schedule (`aread`) accept it. Example:
    /// `[train.augment]` `ratio = 0.1`, `cold = { max_count = 4 }`.
    pub augment: Option<mdrec_data::AugmentConfig>,
    /// How training rows form batches: `mixed` (default: shuffled rows of every domain) or
    /// `domain` (AREAD's sampler: every batch holds rows of one domain, the order of the
    /// domain batches shuffled per epoch). HEMP always uses `domain`.
    pub batching: Batching,
    /// `epoch` (default: epochs over a fixed split with early stopping) or `stream` (the whole
    /// dataset in time order, cut into windows, each scored before it is trained on; see
    /// [`crate::stream`]).
    pub mode: TrainMode,
    /// Stream training's windows, tables and publishing (`train.mode = "stream"`).
    pub stream: StreamConfig,
    /// Write a checkpoint (`RUN/checkpoints/`) every this many training steps, from which
    /// `mdrec train --resume RUN` continues a killed run with the result it would have had;
    /// stream training checkpoints at the end of the first window after that many steps.
    /// One-model settings (`mdmt`) without AREAD's HEMP schedule.
    pub checkpoint_every_steps: Option<usize>,
    /// An auxiliary in-batch ranking loss added to BCE (`[train.ranking]` `weight = 0.5`,
    /// `form = "pairwise"` or `"listwise"`; see [`mdrec_nn::ranking`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ranking: Option<mdrec_nn::ranking::RankingLoss>,
    /// Repetitive Exposure Weight: loss weights on repeated negative impressions, and the
    /// repeat-exposure rate of top-k test recommendations in the report (`[train.rew]`; see
    /// [`crate::rew`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rew: Option<crate::rew::RewConfig>,
}

mdrec_data::string_enum! {
    /// How a run trains (`train.mode`).
    #[derive(Default)]
    pub enum TrainMode: "train.mode" {
        /// Epochs over the training split, early stopping on validation.
        #[default]
        Epoch = "epoch",
        /// One test-then-train pass over time-ordered windows.
        Stream = "stream",
    }
}

/// Stream training (`[train.stream]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamConfig {
    /// Integer column that orders the stream (MovieLens-1M and the synthetic data:
    /// `timestamp`, Unix seconds).
    pub time_column: String,
    /// Windows of this many rows. Exactly one of `window_rows` and `window_seconds` may be
    /// set; with neither, windows are one day (`window_seconds = 86400`).
    pub window_rows: Option<usize>,
    /// Windows of this duration on the schema's `time` column (empty windows are skipped).
    pub window_seconds: Option<i64>,
    /// Stop after this many windows (smoke tests).
    pub max_windows: Option<usize>,
    /// Admission, capacity and eviction of the embedding tables.
    pub tables: mdrec_nn::TablePolicy,
    /// A serving model repository (`mdrec serve --repository`): after every
    /// `publish_every_windows` windows and at the end, the current model is published there as
    /// a new version, which a running server loads without a restart.
    pub publish_to: Option<std::path::PathBuf>,
    /// Windows between publications (with `publish_to`).
    pub publish_every_windows: usize,
    /// Delayed feedback: a task whose positives are known only at its schema `label_time`.
    pub delayed: Option<DelayedFeedback>,
}

mdrec_data::string_enum! {
    /// How rows trained as negatives before their positive arrived are corrected
    /// (`train.stream.delayed.correction`).
    #[derive(Default)]
    pub enum Correction: "train.stream.delayed.correction" {
        /// Late positives are re-inserted with label 1, no weights.
        #[default]
        None = "none",
        /// Fake negative weighted (Ktena et al., RecSys 2019): importance weights `1 + f` on
        /// positive and `(1 − f)(1 + f)` on negative examples of the task, `f` the model's
        /// current prediction.
        Fnw = "fnw",
    }
}

/// Delayed feedback in stream training (`[train.stream.delayed]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DelayedFeedback {
    /// The task whose labels arrive late (its schema names a `label_time` column).
    pub task: String,
    /// When a row is released for training: `"none"`, `{ fixed = { seconds = 3600 } }` or
    /// `{ dynamic = { ... } }` (Tencent's variance-based waiting window; see
    /// `mdrec_data::delayed`).
    pub wait: mdrec_data::delayed::WaitPolicy,
    /// The correction of late positives.
    pub correction: Correction,
}

impl Default for DelayedFeedback {
    fn default() -> Self {
        DelayedFeedback {
            task: "conversion".into(),
            wait: mdrec_data::delayed::WaitPolicy::None,
            correction: Correction::None,
        }
    }
}

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            time_column: "timestamp".into(),
            window_rows: None,
            window_seconds: None,
            max_windows: None,
            tables: mdrec_nn::TablePolicy::default(),
            publish_to: None,
            publish_every_windows: 1,
            delayed: None,
        }
    }
}

/// Seconds of the default stream window (one day).
pub const DEFAULT_WINDOW_SECONDS: i64 = 86_400;

impl StreamConfig {
    /// Checks the values; errors name the key.
    pub fn validate(&self) -> Result<(), TrainError> {
        match (self.window_rows, self.window_seconds) {
            (Some(_), Some(_)) => {
                return Err(TrainError::Config(
                    "train.stream: set window_rows or window_seconds, not both".into(),
                ))
            }
            (Some(0), _) => {
                return Err(TrainError::Config(
                    "train.stream.window_rows must be at least 1".into(),
                ))
            }
            (_, Some(s)) if s <= 0 => {
                return Err(TrainError::Config(format!(
                    "train.stream.window_seconds must be positive, got {s}"
                )))
            }
            _ => {}
        }
        if self.max_windows == Some(0) {
            return Err(TrainError::Config(
                "train.stream.max_windows must be at least 1".into(),
            ));
        }
        check_positive_count(
            "train.stream.publish_every_windows",
            self.publish_every_windows,
        )?;
        if self.time_column.trim().is_empty() {
            return Err(TrainError::Config(
                "train.stream.time_column must name a column".into(),
            ));
        }
        if let Some(d) = &self.delayed {
            d.wait
                .validate()
                .map_err(|e| TrainError::Config(format!("train.stream.delayed.wait: {e}")))?;
        }
        self.tables.validate().map_err(TrainError::Config)
    }
}

mdrec_data::string_enum! {
    /// Which weights the test metrics and the saved model use (`train.keep`).
    #[derive(Default)]
    pub enum Keep: "train.keep" {
        /// The epoch with the best `train.monitor` value on validation.
        #[default]
        Best = "best",
        /// The weights training ended with.
        Last = "last",
    }
}

mdrec_data::string_enum! {
    /// How training rows form batches (`train.batching`).
    #[derive(Default)]
    pub enum Batching: "train.batching" {
        /// Shuffled rows of every domain.
        #[default]
        Mixed = "mixed",
        /// Every batch holds rows of one domain (AREAD's sampler).
        Domain = "domain",
    }
}

mdrec_data::string_enum! {
    /// The split the outer (bi-level) step draws its batch from (`train.automl_batch_source`).
    #[derive(Default)]
    pub enum AutomlBatchSource: "train.automl_batch_source" {
        /// The validation split (the M3oE paper).
        #[default]
        Valid = "valid",
        /// The training split (the official M3oE code).
        Train = "train",
    }
}

mdrec_data::string_enum! {
    /// The compute device (`train.device`).
    #[derive(Default)]
    pub enum DeviceName: "train.device" {
        /// burn's `flex` CPU backend.
        #[default]
        Cpu = "cpu",
        /// CUDA device 0 (a build with the `cuda` feature).
        Cuda = "cuda",
    }
}

impl DeviceName {
    /// The device kind of `mdrec-nn`.
    pub fn kind(self) -> DeviceKind {
        match self {
            DeviceName::Cpu => DeviceKind::Cpu,
            DeviceName::Cuda => DeviceKind::Cuda,
        }
    }

    /// The plain (inference) device; an error when this build cannot use it.
    pub fn device(self) -> Result<burn::tensor::Device, TrainError> {
        self.kind()
            .device()
            .map_err(|e| TrainError::Config(format!("train.device: {e}")))
    }
}

/// `Err(config error naming key)` unless `v` is finite and `> 0` (`positive`) or `>= 0`.
fn check_number(key: &str, v: f64, positive: bool) -> Result<(), TrainError> {
    let ok = v.is_finite() && if positive { v > 0.0 } else { v >= 0.0 };
    if ok {
        Ok(())
    } else {
        Err(TrainError::Config(format!(
            "{key} must be a {} finite number, got {v}",
            if positive { "positive" } else { "non-negative" }
        )))
    }
}

/// `Err(config error naming key)` when `v` is zero.
fn check_positive_count(key: &str, v: usize) -> Result<(), TrainError> {
    if v == 0 {
        return Err(TrainError::Config(format!(
            "{key} must be at least 1, got 0"
        )));
    }
    Ok(())
}

impl TrainConfig {
    /// Check every value serde cannot: positive batch sizes and epochs, finite non-negative
    /// rates, the embedding optimizer's numbers, the form of `monitor`, the augmentation section,
    /// and that this build can use `device`. Reads no data.
    pub fn validate(&self) -> Result<(), TrainError> {
        check_positive_count("train.epochs", self.epochs)?;
        if let Some(r) = &self.ranking {
            r.validate().map_err(TrainError::Config)?;
        }
        if let Some(r) = &self.rew {
            r.validate().map_err(TrainError::Config)?;
            if self.mode == TrainMode::Stream {
                return Err(TrainError::Config(
                    "train.rew applies to epoch training (train.mode = \"epoch\"), not to stream training".into(),
                ));
            }
        }
        check_positive_count("train.batch_size", self.batch_size)?;
        check_positive_count("train.eval_batch_size", self.eval_batch_size)?;
        check_positive_count("train.replicas", self.replicas)?;
        if self.replicas > 64 {
            return Err(TrainError::Config(format!(
                "train.replicas = {} is more replica threads than mdrec supports (64)",
                self.replicas
            )));
        }
        if self.checkpoint_every_steps == Some(0) {
            return Err(TrainError::Config(
                "train.checkpoint_every_steps must be at least 1 (leave it out for no checkpoints)"
                    .into(),
            ));
        }
        if self.max_steps_per_epoch == Some(0) {
            return Err(TrainError::Config(
                "train.max_steps_per_epoch must be at least 1 (leave it out for whole epochs)"
                    .into(),
            ));
        }
        check_number("train.lr", self.lr, true)?;
        check_number("train.weight_decay", self.weight_decay, false)?;
        check_number("train.adam_eps", self.adam_eps, true)?;
        check_number("train.automl_lr", self.automl_lr, true)?;
        let e = &self.embedding;
        check_positive_count("train.embedding.dim", e.dim)?;
        check_number("train.embedding.init_std", e.init_std as f64, false)?;
        if let Some(lr) = e.lr {
            check_number("train.embedding.lr", lr, true)?;
        }
        if let Some(wd) = e.weight_decay {
            check_number("train.embedding.weight_decay", wd, false)?;
        }
        for (key, b) in [
            ("train.embedding.beta1", e.beta1),
            ("train.embedding.beta2", e.beta2),
        ] {
            if !(b.is_finite() && (0.0..1.0).contains(&b)) {
                return Err(TrainError::Config(format!(
                    "{key} must lie in [0, 1), got {b}"
                )));
            }
        }
        check_number("train.embedding.eps", e.eps, true)?;
        mdrec_metrics::check_metric_name(&self.monitor)
            .map_err(|e| TrainError::Config(format!("train.monitor: {e}")))?;
        if let Some(a) = &self.augment {
            a.validate()
                .map_err(|e| TrainError::Config(format!("train.augment: {e}")))?;
        }
        self.device.device()?;
        if self.mode == TrainMode::Stream {
            self.stream.validate()?;
            if self.augment.is_some() {
                return Err(TrainError::Config(
                    "train.augment (AREAD's augmentation for HEMP) needs epoch training, not train.mode = \"stream\"".into(),
                ));
            }
            if self.batching == Batching::Domain {
                return Err(TrainError::Config(
                    "train.batching = \"domain\" needs epoch training; stream windows train on mixed batches".into(),
                ));
            }
            if self.embedding.optimizer == mdrec_nn::SparseOptimizer::AdamDense {
                return Err(TrainError::Config(
                    "train.embedding.optimizer = \"adam_dense\" updates every row at every step, which stream training's growing tables cannot do; use adam, adagrad or sgd".into(),
                ));
            }
        }
        Ok(())
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            seed: 2022,
            epochs: 10,
            batch_size: 2048,
            eval_batch_size: 16384,
            lr: 1e-3,
            weight_decay: 1e-5,
            adam_eps: 1e-8,
            embedding: EmbeddingConfig::default(),
            loss: Reduction::CellMeanSum,
            monitor: "auc_mean_cells".into(),
            patience: 2,
            keep: Keep::Best,
            setting: None,
            max_steps_per_epoch: None,
            device: DeviceName::Cpu,
            replicas: 1,
            automl_lr: 1e-3,
            automl_batch_source: AutomlBatchSource::Valid,
            augment: None,
            batching: Batching::Mixed,
            mode: TrainMode::Epoch,
            stream: StreamConfig::default(),
            checkpoint_every_steps: None,
            ranking: None,
            rew: None,
        }
    }
}

/// The model a run uses when its config names none.
pub const DEFAULT_MODEL: &str = "mmoe";

/// The `[model]` section: a registry name plus the model's own keys, which the model's typed
/// config checks ([`RunConfig::resolve`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSection {
    /// Registry name (`mdrec models`).
    #[serde(default = "default_model_name")]
    pub name: String,
    /// The model's own keys, checked by its config type (unknown keys are errors there).
    #[serde(flatten)]
    pub params: serde_json::Map<String, serde_json::Value>,
}

fn default_model_name() -> String {
    DEFAULT_MODEL.into()
}

impl Default for ModelSection {
    fn default() -> Self {
        ModelSection {
            name: default_model_name(),
            params: serde_json::Map::new(),
        }
    }
}

impl ModelSection {
    /// Set one key; `name` sets the model name (a non-string name is ignored by the check in
    /// [`RunConfig::resolve`], which reports it).
    pub fn insert(&mut self, key: String, value: serde_json::Value) {
        if key == "name" {
            if let serde_json::Value::String(n) = value {
                self.name = n;
                return;
            }
        }
        self.params.insert(key, value);
    }
}

/// A whole run.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    /// Data.
    pub dataset: DatasetConfig,
    /// Model name and its config overrides.
    pub model: ModelSection,
    /// Optimisation.
    pub train: TrainConfig,
}

/// A run config checked and completed by [`RunConfig::resolve`]: every default spelled out,
/// with the registry entry and the model's typed config it resolved to.
pub struct ResolvedRun {
    /// The config with every default written out (what `config.resolved.json` holds).
    pub cfg: RunConfig,
    /// The model's registry entry.
    pub factory: &'static dyn ModelFactory,
    /// The model's full config (its keys at their resolved values).
    pub model_cfg: serde_json::Value,
    /// The training setting (the config's, else the model's default).
    pub setting: Setting,
}

impl RunConfig {
    /// Parse a TOML config file.
    pub fn from_toml_file(path: &Path) -> Result<Self, TrainError> {
        let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
        Self::from_toml_str(&text, &path.display().to_string())
    }

    /// Parse TOML text; `origin` names the source in errors.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Self, TrainError> {
        toml::from_str(text).map_err(|e| TrainError::Config(format!("{origin}: {e}")))
    }

    /// The model name.
    pub fn model_name(&self) -> &str {
        &self.model.name
    }

    /// Set the model name.
    pub fn set_model_name(&mut self, name: &str) {
        self.model.name = name.into();
    }

    /// The model's own config keys (everything but `name`).
    pub fn model_overrides(&self) -> serde_json::Value {
        serde_json::Value::Object(self.model.params.clone())
    }

    /// Check the whole config without reading any data: the dataset section, every training
    /// value, the model's name and its own config, and the device. Returns the config with
    /// every default spelled out, so two configs that train the same run resolve equal.
    pub fn resolve(&self) -> Result<ResolvedRun, TrainError> {
        self.dataset.validate()?;
        self.train.validate()?;
        let factory = mdrec_models::find(self.model_name())?;
        let model_cfg = factory.resolve(&self.model_overrides())?;
        // A stream trains one model; a model whose default is another setting (`mlp`:
        // isolated) trains as one model over every cell unless a setting is asked for.
        let setting = self.train.setting.unwrap_or_else(|| match self.train.mode {
            TrainMode::Stream => Setting::Mdmt,
            TrainMode::Epoch => factory.setting(),
        });
        if self.train.mode == TrainMode::Stream && setting != Setting::Mdmt {
            return Err(TrainError::Config(format!(
                "train.mode = \"stream\" trains one model over every domain and task (setting mdmt), not {setting:?}"
            )));
        }
        let mut cfg = self.clone();
        cfg.set_model_name(factory.name());
        if let serde_json::Value::Object(m) = &model_cfg {
            for (k, v) in m {
                cfg.model.params.insert(k.clone(), v.clone());
            }
        }
        cfg.train.setting = Some(setting);
        cfg.dataset = cfg.dataset.resolved();
        Ok(ResolvedRun {
            cfg,
            factory,
            model_cfg,
            setting,
        })
    }

    /// Apply a `section.key=value` override (value parsed as TOML, falling back to a string).
    pub fn set(&mut self, assignment: &str) -> Result<(), TrainError> {
        let (key, value) = assignment.split_once('=').ok_or_else(|| {
            TrainError::Config(format!("--set `{assignment}`: expected section.key=value"))
        })?;
        let parsed: toml::Value = toml::from_str(&format!("v = {value}"))
            .map(|t: toml::Table| t["v"].clone())
            .unwrap_or_else(|_| toml::Value::String(value.to_string()));
        if let toml::Value::Float(f) = parsed {
            if !f.is_finite() {
                return Err(TrainError::Config(format!(
                    "--set `{key}`: {f} is not a finite number"
                )));
            }
        }
        let mut doc = serde_json::to_value(&*self).expect("config serialises");
        let json_value = serde_json::to_value(parsed).expect("toml value serialises");
        let mut slot = &mut doc;
        let parts: Vec<&str> = key.trim().split('.').collect();
        for (i, p) in parts.iter().enumerate() {
            let obj = slot.as_object_mut().ok_or_else(|| {
                TrainError::Config(format!("--set `{key}`: `{p}` is not inside a section"))
            })?;
            if i + 1 == parts.len() {
                obj.insert(p.to_string(), json_value.clone());
                break;
            }
            slot = obj
                .entry(p.to_string())
                .or_insert_with(|| serde_json::Value::Object(Default::default()));
            // An optional section that is off (`null`, e.g. `train.augment`) is switched on with
            // its defaults by setting one of its keys.
            if slot.is_null() {
                *slot = serde_json::Value::Object(Default::default());
            }
        }
        *self = serde_json::from_value(doc)
            .map_err(|e| TrainError::Config(format!("--set `{key}`: {e}")))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enum_values_are_typed_and_unknown_ones_list_the_accepted() {
        let mut c = RunConfig::default();
        assert_eq!(c.train.batching, Batching::Mixed);
        c.set("train.batching=\"domain\"").unwrap();
        assert_eq!(c.train.batching, Batching::Domain);
        for (key, bad, accepted) in [
            (
                "train.batching",
                "domains",
                "expected one of: mixed, domain",
            ),
            ("train.keep", "first", "expected one of: best, last"),
            (
                "train.automl_batch_source",
                "test",
                "expected one of: valid, train",
            ),
            ("train.device", "tpu", "expected one of: cpu, cuda"),
        ] {
            let e = c.set(&format!("{key}=\"{bad}\"")).unwrap_err().to_string();
            assert!(
                e.contains(key) && e.contains(bad) && e.contains(accepted),
                "{e}"
            );
            let toml = format!(
                "[train]\n{} = \"{bad}\"\n",
                key.trim_start_matches("train.")
            );
            let e = RunConfig::from_toml_str(&toml, "x.toml")
                .unwrap_err()
                .to_string();
            assert!(e.contains("x.toml") && e.contains(accepted), "{e}");
        }
        assert_eq!(
            serde_json::to_value(&c.train).unwrap()["automl_batch_source"],
            "valid"
        );
    }

    #[test]
    fn resolve_rejects_every_bad_number_naming_the_key() {
        for bad in [f64::NAN, f64::INFINITY, -0.1, 0.0] {
            let mut c = RunConfig::default();
            c.train.lr = bad;
            let e = c.resolve().err().unwrap().to_string();
            assert!(e.contains("train.lr") && e.contains("positive"), "{e}");
        }
        let e = RunConfig::default()
            .set("train.lr=nan")
            .unwrap_err()
            .to_string();
        assert!(e.contains("train.lr") && e.contains("finite"), "{e}");
        for (set, key) in [
            ("train.lr=-0.1", "train.lr"),
            ("train.weight_decay=-1e-5", "train.weight_decay"),
            ("train.adam_eps=0", "train.adam_eps"),
            ("train.automl_lr=0.0", "train.automl_lr"),
            ("train.batch_size=0", "train.batch_size"),
            ("train.eval_batch_size=0", "train.eval_batch_size"),
            ("train.epochs=0", "train.epochs"),
            ("train.max_steps_per_epoch=0", "train.max_steps_per_epoch"),
            ("train.embedding.dim=0", "train.embedding.dim"),
            ("train.embedding.lr=-1.0", "train.embedding.lr"),
            ("train.embedding.beta2=1.0", "train.embedding.beta2"),
            ("train.embedding.eps=-1", "train.embedding.eps"),
            ("train.monitor=\"auc_mean_cell\"", "train.monitor"),
            ("train.augment.ratio=-1", "train.augment"),
        ] {
            let mut c = RunConfig::default();
            c.set(set).unwrap();
            let e = c.resolve().err().unwrap().to_string();
            assert!(e.contains(key), "{set}: {e}");
        }
        let mut c = RunConfig::default();
        c.set("model.num_expertz=3").unwrap();
        let e = c.resolve().err().unwrap().to_string();
        assert!(e.contains("num_expertz") && e.contains("mmoe"), "{e}");
        c = RunConfig::default();
        c.set_model_name("mmoee");
        let e = c.resolve().err().unwrap().to_string();
        assert!(e.contains("mmoee"), "{e}");
        RunConfig::default().resolve().unwrap();
    }

    #[test]
    fn resolve_spells_out_defaults_once() {
        let r = RunConfig::default().resolve().unwrap();
        assert_eq!(r.cfg.model.name, DEFAULT_MODEL);
        assert_eq!(r.cfg.train.setting, Some(r.setting));
        assert_eq!(r.cfg.model_overrides(), r.model_cfg);
        let again = r.cfg.resolve().unwrap();
        assert_eq!(again.cfg, r.cfg);
    }

    #[test]
    fn model_section_round_trips_through_toml_and_json() {
        let c = RunConfig::from_toml_str("[model]\nname = \"ple\"\nnum_levels = 2\n", "x.toml")
            .unwrap();
        assert_eq!(c.model_name(), "ple");
        assert_eq!(c.model_overrides()["num_levels"], 2);
        let json = serde_json::to_string(&c).unwrap();
        let back: RunConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, c);
        let unnamed = RunConfig::from_toml_str("[model]\nnum_experts = 2\n", "x.toml").unwrap();
        assert_eq!(unnamed.model_name(), DEFAULT_MODEL);
    }

    #[test]
    fn setting_a_key_of_an_optional_section_turns_it_on_with_defaults() {
        let mut c = RunConfig::default();
        assert!(c.train.augment.is_none());
        c.set("train.augment.ratio=0.25").unwrap();
        let a = c.train.augment.as_ref().unwrap();
        assert_eq!(a.ratio, 0.25);
        assert_eq!(
            a.small_share,
            mdrec_data::AugmentConfig::default().small_share
        );
        let e = c.set("train.augment.ratioo=1").unwrap_err().to_string();
        assert!(e.contains("ratioo"), "{e}");
    }

    #[test]
    fn unknown_key_names_key_and_accepted_ones() {
        let err = RunConfig::from_toml_str("[train]\nepoch = 3\n", "exp.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("exp.toml"), "{err}");
        assert!(err.contains("unknown field `epoch`"), "{err}");
        assert!(err.contains("epochs"), "{err}");
    }

    #[test]
    fn example_configs_parse_and_splits_resolve() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
        let mut n = 0;
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "toml") {
                let c = RunConfig::from_toml_file(&p)
                    .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                c.dataset.split_spec(1).unwrap();
                n += 1;
            }
        }
        assert!(n >= 1);
    }

    #[test]
    fn set_overrides_nested_values() {
        let mut c = RunConfig::default();
        c.set("train.lr=0.01").unwrap();
        c.set("train.embedding.optimizer=\"adagrad\"").unwrap();
        c.set("model.num_experts=8").unwrap();
        assert_eq!(c.train.lr, 0.01);
        assert_eq!(
            c.train.embedding.optimizer,
            mdrec_nn::SparseOptimizer::Adagrad
        );
        assert_eq!(c.model_overrides()["num_experts"], 8);
        assert!(c
            .set("train.nope=1")
            .unwrap_err()
            .to_string()
            .contains("nope"));
    }
}
