//! The model zoo.
//!
//! Every model is one file plus one line in [`registry::MODELS`]. A model implements
//! [`ZooModel`] (name, paper, typed config with defaults, a tiny config for tests, a builder)
//! and [`RecModel`] (forward: logits for every task of every row, an optional auxiliary loss and
//! named probes). The registry erases the types so the trainer, the evaluator and the CLI handle
//! every model the same way; `tests/zoo.rs` runs the conformance test over the whole registry.
//!
//! Models never read files, see vocabularies or compute metrics. Models return logits.
//!
//! Models are laid out by family, one file each:
//!
//! | folder | models |
//! |---|---|
//! | [`backbone`] | `mlp` (single-domain, trained per (domain, task)), `deepfm`, `dcn`, `dcnv2`, `autoint`, `xdeepfm` |
//! | [`multitask`] | `shared_bottom`, `mmoe`, `ple`, `adatt` (`adatt`, `adatt_sp`) |
//! | [`multidomain`] | `m3oe`, `star`, `pepnet` (`epnet`, `ppnet`, `pepnet`, `epnet_s`), `hinet`, `adasparse`, `m2m`, `aread` (HEMP schedule in `mdrec-train`) |
//! | [`multiembedding`] | `crocodile` (`crocodile`, `me_mmoe`), `stem` (`stem`, `me_ple`, `stem_al`), `ame`, `hmoe` |
//! | [`blocks`] | shared blocks: heads and their nested config, the expert bank, the domain embedding, feature interactions |
//!
//! A new model is one file in its family folder (its `pub mod` line in the folder's `mod.rs`)
//! and one line in [`registry::MODELS`]. The file holds the config (`model_config!`:
//! fields, defaults and tiny values together), the module, `ZooModel::build` (config checks
//! return [`Invalid`]; the registry names the model) and `RecModel::forward`. Template:
//! [`multitask::mmoe`] (an expert bank shared by all rows, per-(domain, task) gates and towers
//! computed on the domain's rows through [`mdrec_nn::ModelInput::route`]). Reference choices
//! and quirks per model are in `docs/models.md`.

#![warn(missing_docs)]

pub mod model;
pub mod registry;
#[cfg(test)]
pub(crate) mod testing;

pub mod backbone;
pub mod blocks;
pub mod multidomain;
pub mod multiembedding;
pub mod multitask;

pub use model::{
    ensure, Built, DynModel, Invalid, ModelConfig, ModelError, ModelOutput, ModelState, ProbeKey,
    Probes, RecModel, Setting, TrainOutput, ZooModel,
};
pub use registry::{find, ModelFactory, MODELS};
