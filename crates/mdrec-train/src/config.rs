//! The run configuration: what the user asks for, validated once.
//!
//! Humans write TOML (`--config FILE`), flags override it, and the resolved result is written to
//! the run directory as `config.resolved.json`. Unknown keys anywhere are errors that name the key
//! and the accepted ones.

use std::path::Path;

use mdrec_models::Setting;
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
    pub keep: String,
    /// Training setting; `None` = the model's default.
    pub setting: Option<Setting>,
    /// Stop an epoch after this many steps (smoke tests, benchmarks).
    pub max_steps_per_epoch: Option<usize>,
    /// `cpu` or `cuda`.
    pub device: String,
    /// Learning rate of the outer (bi-level) Adam step on a model's outer parameters (M3oE
    /// `automl = "bilevel"`; official `learning_rate_darts`). Its weight decay is `weight_decay`.
    pub automl_lr: f64,
    /// Split the outer step's batch is drawn from: `valid` (the paper) or `train` (the official
    /// M3oE code). See [`TrainConfig::validate`].
    pub automl_batch_source: String,
    /// AREAD's popularity-based counterfactual augmentation (model-spec §4.14.5): when set, the
    /// augmented training rows are built once per run (popularity on the training split unless
    /// `popularity_scope = "all_splits"`) and used only to train HEMP's candidate masks. Only
    /// models with a HEMP schedule (`aread`) accept it. Example:
    /// `[train.augment]` `ratio = 0.1`, `cold = { max_count = 4 }`.
    pub augment: Option<mdrec_data::AugmentConfig>,
    /// How training rows form batches: `mixed` (default: shuffled rows of every domain) or
    /// `domain` (AREAD's sampler: every batch holds rows of one domain, the order of the
    /// domain batches shuffled per epoch). HEMP always uses `domain`.
    pub batching: String,
}

/// Accepted values of `train.batching`.
pub const BATCHINGS: [&str; 2] = ["mixed", "domain"];

/// Accepted values of `train.keep`.
pub const KEEPS: [&str; 2] = ["best", "last"];

/// Accepted values of `train.automl_batch_source`.
pub const AUTOML_BATCH_SOURCES: [&str; 2] = ["valid", "train"];

impl TrainConfig {
    /// Check the values serde cannot: positive batch sizes, a known `automl_batch_source`, a
    /// positive finite `automl_lr`.
    pub fn validate(&self) -> Result<(), TrainError> {
        if self.batch_size == 0 || self.eval_batch_size == 0 {
            return Err(TrainError::Config(
                "train.batch_size and train.eval_batch_size must be positive".into(),
            ));
        }
        if !BATCHINGS.contains(&self.batching.as_str()) {
            return Err(TrainError::Config(format!(
                "train.batching: unknown value `{}`; expected one of: {}",
                self.batching,
                BATCHINGS.join(", ")
            )));
        }
        if !KEEPS.contains(&self.keep.as_str()) {
            return Err(TrainError::Config(format!(
                "train.keep: unknown value `{}`; expected one of: {}",
                self.keep,
                KEEPS.join(", ")
            )));
        }
        if !AUTOML_BATCH_SOURCES.contains(&self.automl_batch_source.as_str()) {
            return Err(TrainError::Config(format!(
                "train.automl_batch_source: unknown value `{}`; expected one of: {}",
                self.automl_batch_source,
                AUTOML_BATCH_SOURCES.join(", ")
            )));
        }
        if !(self.automl_lr.is_finite() && self.automl_lr > 0.0) {
            return Err(TrainError::Config(format!(
                "train.automl_lr must be a positive number, got {}",
                self.automl_lr
            )));
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
            keep: "best".into(),
            setting: None,
            max_steps_per_epoch: None,
            device: "cpu".into(),
            automl_lr: 1e-3,
            automl_batch_source: "valid".into(),
            augment: None,
            batching: "mixed".into(),
        }
    }
}

/// A whole run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    /// Data.
    pub dataset: DatasetConfig,
    /// Model name and its config overrides (`name` plus the model's own keys).
    pub model: serde_json::Map<String, serde_json::Value>,
    /// Optimisation.
    pub train: TrainConfig,
}

impl Default for RunConfig {
    fn default() -> Self {
        let mut model = serde_json::Map::new();
        model.insert("name".into(), serde_json::Value::String("mmoe".into()));
        RunConfig {
            dataset: DatasetConfig::default(),
            model,
            train: TrainConfig::default(),
        }
    }
}

impl RunConfig {
    /// Parse a TOML config file.
    pub fn from_toml_file(path: &Path) -> Result<Self, TrainError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            TrainError::Config(format!("cannot read config {}: {e}", path.display()))
        })?;
        Self::from_toml_str(&text, &path.display().to_string())
    }

    /// Parse TOML text; `origin` names the source in errors.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Self, TrainError> {
        toml::from_str(text).map_err(|e| TrainError::Config(format!("{origin}: {e}")))
    }

    /// The model name.
    pub fn model_name(&self) -> &str {
        self.model
            .get("name")
            .and_then(|v| v.as_str())
            .unwrap_or("mmoe")
    }

    /// Set the model name.
    pub fn set_model_name(&mut self, name: &str) {
        self.model
            .insert("name".into(), serde_json::Value::String(name.into()));
    }

    /// The model's own config keys (everything but `name`).
    pub fn model_overrides(&self) -> serde_json::Value {
        let mut m = self.model.clone();
        m.remove("name");
        serde_json::Value::Object(m)
    }

    /// Apply a `section.key=value` override (value parsed as TOML, falling back to a string).
    pub fn set(&mut self, assignment: &str) -> Result<(), TrainError> {
        let (key, value) = assignment.split_once('=').ok_or_else(|| {
            TrainError::Config(format!("--set `{assignment}`: expected section.key=value"))
        })?;
        let parsed: toml::Value = toml::from_str(&format!("v = {value}"))
            .map(|t: toml::Table| t["v"].clone())
            .unwrap_or_else(|_| toml::Value::String(value.to_string()));
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
    fn batching_is_validated() {
        let mut c = RunConfig::default();
        assert_eq!(c.train.batching, "mixed");
        c.set("train.batching=\"domain\"").unwrap();
        c.train.validate().unwrap();
        c.set("train.batching=\"domains\"").unwrap();
        let e = c.train.validate().unwrap_err().to_string();
        assert!(e.contains("domains") && e.contains("mixed, domain"), "{e}");
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
    fn automl_batch_source_is_validated() {
        let mut c = RunConfig::default();
        assert_eq!(c.train.automl_batch_source, "valid");
        assert_eq!(c.train.automl_lr, 1e-3);
        c.train.validate().unwrap();
        c.set("train.automl_batch_source=\"train\"").unwrap();
        c.train.validate().unwrap();
        c.set("train.automl_batch_source=\"test\"").unwrap();
        let err = c.train.validate().unwrap_err().to_string();
        assert!(err.contains("automl_batch_source"), "{err}");
        assert!(
            err.contains("`test`") && err.contains("valid, train"),
            "{err}"
        );
        c.train.automl_batch_source = "valid".into();
        c.train.automl_lr = 0.0;
        assert!(c
            .train
            .validate()
            .unwrap_err()
            .to_string()
            .contains("automl_lr"));
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
