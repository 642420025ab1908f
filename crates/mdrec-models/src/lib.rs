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
//! | group | models |
//! |---|---|
//! | single-domain / isolated | [`mlp`] |
//! | multi-task and multi-domain | [`shared_bottom`], [`mmoe`], [`ple`], [`m3oe`] |
//! | multi-domain (star topology) | [`star`] |
//! | personalized gating (Gate NU) | [`pepnet`] (`epnet`, `ppnet`, `pepnet`, `epnet_s`) |
//! | multi-domain experts / pruning / meta | [`hinet`], [`adasparse`], [`m2m`] |
//! | dozens of domains (hierarchical experts, per-domain masks) | [`aread`] (HEMP schedule in `mdrec-train`) |
//! | task-to-task fusion | [`adatt`] (`adatt`, `adatt_sp`) |
//! | single-domain backbones (blocks in [`interaction`]) | [`deepfm`], [`dcn`], [`dcnv2`], [`autoint`], [`xdeepfm`] |
//! | multi-embedding | [`crocodile`] (`crocodile`, `me_mmoe`), [`stem`] (`stem`, `me_ple`, `stem_al`), [`ame`], [`hmoe`] |
//!
//! Template for a new model: [`mmoe`] (experts shared by all rows, per-(domain, task) gates and
//! towers computed on the domain's rows through [`mdrec_nn::ModelInput::route`]).

#![warn(missing_docs)]

pub mod domain;
pub mod experts;
pub mod heads;
pub mod interaction;
pub mod model;
pub mod registry;
#[cfg(test)]
pub(crate) mod testing;

pub mod adasparse;
pub mod adatt;
pub mod ame;
pub mod aread;
pub mod autoint;
pub mod crocodile;
pub mod dcn;
pub mod dcnv2;
pub mod deepfm;
pub mod hinet;
pub mod hmoe;
pub mod m2m;
pub mod m3oe;
pub mod mlp;
pub mod mmoe;
pub mod pepnet;
pub mod ple;
pub mod shared_bottom;
pub mod star;
pub mod stem;
pub mod xdeepfm;

pub use model::{
    ensure, Built, DynModel, Invalid, ModelConfig, ModelError, ModelOutput, ModelState, Probes,
    RecModel, Setting, TrainOutput, ZooModel,
};
pub use registry::{find, ModelFactory, MODELS};
