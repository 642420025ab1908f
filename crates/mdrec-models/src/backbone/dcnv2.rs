//! DCN-V2 — Wang et al., "DCN V2: Improved Deep & Cross Network and Practical Lessons for
//! Web-scale Learning to Rank Systems", WWW 2021.
//!
//! `x_0 = [emb ; dense]`. Cross network (`cross`):
//! - `mix` (default, as torch-rechub's `use_low_rank_mixture = True`): the mixture of low-rank
//!   experts ([`CrossNetMix`], rank `low_rank`, `num_experts` experts);
//! - `full`: the full-rank `x_{l+1} = x_0 ⊙ (W_l x_l + b_l) + x_l` ([`CrossNetV2`]).
//!
//! Structure (`structure`): `parallel` (default) `[cross(x_0) ; DNN(x_0)]`, `stacked`
//! `DNN(cross(x_0))`, `crossnet_only` `cross(x_0)`. The result feeds [`Heads`]: with the default
//! empty `tower_dims` each head is the paper's `Linear(·, 1)` output. One head per task by
//! default (`heads = "domain_task"` gives one per (domain, task)).
//!
//! Reference implementation: torch-rechub `models/ranking/dcn_v2.py` with `basic/layers.py::
//! CrossNetV2 / CrossNetMix`; thuml `torchfm/model/dcnv2.py` (paper form of the bias).
//! Deviations from reference: the full-rank layer keeps the bias inside the Hadamard product as
//! the paper (torch-rechub/AREAD: `x_0 ⊙ W x_l + b + x_l`, docs/models.md; no compat
//! option); several tasks share the cross network and the DNN and have their own heads; outputs
//! are logits. Defaults: 3 cross layers, rank 32, 4 experts (torch-rechub), DNN `[256, 128]`,
//! BatchNorm, dropout 0.2.
//!
//! Probes: `cross` (`[B, D]`) and, for `mix`, `cross_gate/<l>` (`[B, E]`).
//!
//! # Shapes
//! - x_0: `[B, D]` (D = Σ dim_f + n_numeric); cross `[B, D]`; DNN `[B, h]`
//! - parallel `[B, D + h]`, stacked `[B, h]`, crossnet_only `[B, D]` → logits `[B, T]`

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use mdrec_data::rng::Rng;
use mdrec_nn::{Mlp, MlpConfig, ModelContext, ModelInput};
use serde::{Deserialize, Serialize};

use crate::backbone::deepfm::reference_mlp;
use crate::blocks::heads::{HeadLayout, Heads, HeadsConfig};
use crate::blocks::interaction::{CrossNetMix, CrossNetV2};
use crate::model::{model_config, Built, Invalid, ModelOutput, Probes, RecModel, ZooModel};

/// Which cross network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CrossKind {
    /// Mixture of low-rank cross experts ("DCN-Mix").
    #[default]
    Mix,
    /// Full-rank cross layers.
    Full,
}

/// How the cross network and the DNN are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Structure {
    /// `[cross(x) ; DNN(x)]`.
    #[default]
    Parallel,
    /// `DNN(cross(x))`.
    Stacked,
    /// `cross(x)`.
    CrossnetOnly,
}

model_config! {
    /// Config of [`Dcnv2`].
    pub struct Config {
        /// Number of cross layers.
        cross_layers: usize = 3 => 2,
        /// Full-rank or low-rank mixture.
        cross: CrossKind = CrossKind::Mix,
        /// Rank `r` of each expert (`mix`).
        low_rank: usize = 32 => 4,
        /// Number of experts (`mix`).
        num_experts: usize = 4 => 2,
        /// Combination of cross network and DNN.
        structure: Structure = Structure::Parallel,
        /// DNN hidden widths (unused with `crossnet_only`).
        dnn_dims: Vec<usize> = vec![256, 128] => vec![16],
        /// Output heads: tower layout and tower hidden widths.
        heads: HeadsConfig = HeadsConfig::new(HeadLayout::Task, vec![]),
        /// Hidden-layer options of the DNN and the heads.
        mlp: MlpConfig = reference_mlp(),
    }
}

/// The cross network of a [`Dcnv2`]: one of the two kinds.
#[derive(Module, Debug)]
pub struct Cross {
    full: Option<CrossNetV2>,
    mix: Option<CrossNetMix>,
}

impl Cross {
    /// # Shapes
    /// - x0: `[B, D]` → `[B, D]`, gates `L × [B, E]` (empty for full rank)
    pub fn forward(&self, x0: Tensor<2>) -> (Tensor<2>, Vec<Tensor<2>>) {
        match (&self.full, &self.mix) {
            (Some(f), _) => (f.forward(x0), vec![]),
            (None, Some(m)) => m.forward_with_gates(x0),
            (None, None) => unreachable!("a cross network is built"),
        }
    }
}

/// DCN-V2.
#[derive(Module, Debug)]
pub struct Dcnv2 {
    cross: Cross,
    dnn: Option<Mlp>,
    heads: Heads,
    #[module(skip)]
    structure: Structure,
}

impl ZooModel for Dcnv2 {
    const NAME: &'static str = "dcnv2";
    const PAPER: &'static str = "Wang et al., DCN V2: Improved Deep & Cross Network and Practical Lessons for Web-scale Learning to Rank Systems, WWW 2021";
    type Config = Config;

    fn build(cfg: &Config, ctx: &ModelContext, rng: &mut Rng, device: &Device) -> Built<Self> {
        let invalid = Invalid;
        if cfg.cross_layers == 0 {
            return Err(invalid("cross_layers must be ≥ 1".into()));
        }
        if cfg.structure != Structure::CrossnetOnly && cfg.dnn_dims.is_empty() {
            return Err(invalid(format!(
                "structure {:?} needs non-empty dnn_dims (use structure = \"crossnet_only\" for no DNN)",
                cfg.structure
            )));
        }
        let d = ctx.input_dim();
        let cross = match cfg.cross {
            CrossKind::Full => Cross {
                full: Some(CrossNetV2::new(d, cfg.cross_layers, rng, device)),
                mix: None,
            },
            CrossKind::Mix => Cross {
                full: None,
                mix: Some(
                    CrossNetMix::new(
                        d,
                        cfg.cross_layers,
                        cfg.low_rank,
                        cfg.num_experts,
                        rng,
                        device,
                    )
                    .map_err(invalid)?,
                ),
            },
        };
        let dnn = (cfg.structure != Structure::CrossnetOnly)
            .then(|| Mlp::new(d, &cfg.dnn_dims, &cfg.mlp, rng, device));
        let rep = match (&dnn, cfg.structure) {
            (Some(m), Structure::Parallel) => d + m.out_dim(),
            (Some(m), Structure::Stacked) => m.out_dim(),
            _ => d,
        };
        let heads = Heads::new(&cfg.heads, ctx, rep, &cfg.mlp, rng, device);
        Ok(Dcnv2 {
            cross,
            dnn,
            heads,
            structure: cfg.structure,
        })
    }
}

impl RecModel for Dcnv2 {
    /// # Shapes
    /// - x_0: `[B, D]` → representation `[B, D + h]` / `[B, h]` / `[B, D]` → logits `[B, T]`
    fn forward(&self, _ctx: &ModelContext, input: &ModelInput, probes: &mut Probes) -> ModelOutput {
        let x0 = input.flat();
        let (xc, gates) = self.cross.forward(x0.clone());
        probes.record(|| crate::ProbeKey::other("cross"), || xc.clone());
        for (l, g) in gates.into_iter().enumerate() {
            probes.record(|| crate::ProbeKey::other(format!("cross_gate/{l}")), || g);
        }
        let z = match (&self.dnn, self.structure) {
            (Some(m), Structure::Parallel) => Tensor::cat(vec![xc, m.forward(x0)], 1),
            (Some(m), Structure::Stacked) => m.forward(xc),
            _ => xc,
        };
        let logits = self.heads.forward_shared(input, &z);
        ModelOutput::from(logits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mdrec_nn::device::cpu;

    #[test]
    fn every_structure_and_cross_kind_builds_and_bad_configs_are_errors() {
        let dev = cpu();
        let ctx = ModelContext::uniform(3, 10, 4, 1, 2, 2);
        for structure in [
            Structure::Parallel,
            Structure::Stacked,
            Structure::CrossnetOnly,
        ] {
            for cross in [CrossKind::Mix, CrossKind::Full] {
                let cfg = Config {
                    structure,
                    cross,
                    ..Dcnv2::tiny()
                };
                let m = Dcnv2::build(&cfg, &ctx, &mut Rng::new(1), &dev).unwrap();
                assert_eq!(m.dnn.is_some(), structure != Structure::CrossnetOnly);
            }
        }
        let bad = [
            Config {
                low_rank: 0,
                ..Dcnv2::tiny()
            },
            Config {
                cross_layers: 0,
                ..Dcnv2::tiny()
            },
            Config {
                dnn_dims: vec![],
                ..Dcnv2::tiny()
            },
        ];
        let want = [
            "low_rank ≥ 1 and num_experts ≥ 1",
            "cross_layers must be ≥ 1",
            "needs non-empty dnn_dims",
        ];
        for (cfg, want) in bad.into_iter().zip(want) {
            let Err(Invalid(e)) = Dcnv2::build(&cfg, &ctx, &mut Rng::new(1), &dev) else {
                panic!("{want}: built");
            };
            assert!(e.contains(want), "{e}");
        }
    }

    /// Host values of a tensor.
    fn host(t: Tensor<2>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().unwrap()
    }

    #[test]
    fn forward_combines_cross_and_dnn_as_the_structure_says() {
        let dev = cpu();
        let ctx = ModelContext::uniform(3, 10, 4, 1, 2, 2);
        let domain = [0u32, 1, 1, 0, 1];
        let inp = crate::testing::random_input(&ctx, &domain, 3, &dev);
        let x0 = inp.flat();
        for structure in [
            Structure::Parallel,
            Structure::Stacked,
            Structure::CrossnetOnly,
        ] {
            for cross in [CrossKind::Mix, CrossKind::Full] {
                let cfg = Config {
                    structure,
                    cross,
                    ..Dcnv2::tiny()
                };
                let m = Dcnv2::build(&cfg, &ctx, &mut Rng::new(1), &dev).unwrap();
                let mut probes = Probes::new(true);
                let out = m.forward(&ctx, &inp, &mut probes).logits;
                assert_eq!(out.dims(), [domain.len(), 2]);
                // The representation the heads must see, built from the parts by hand.
                let (xc, gates) = m.cross.forward(x0.clone());
                assert_eq!(gates.len(), if cross == CrossKind::Mix { 2 } else { 0 });
                assert_eq!(host(probes.values()["cross"].clone()), host(xc.clone()));
                // The cross network is not the identity (x_0 would pass a broken one).
                assert_ne!(host(xc.clone()), host(x0.clone()));
                let z = match structure {
                    Structure::Parallel => {
                        let h = m.dnn.as_ref().unwrap().forward(x0.clone());
                        Tensor::cat(vec![xc, h], 1)
                    }
                    Structure::Stacked => m.dnn.as_ref().unwrap().forward(xc),
                    Structure::CrossnetOnly => xc,
                };
                let want = host(m.heads.forward_shared(&inp, &z));
                let got = host(out);
                for (g, w) in got.iter().zip(&want) {
                    assert!(
                        (g - w).abs() < 1e-5,
                        "{structure:?}/{cross:?}: {got:?} vs {want:?}"
                    );
                }
                assert!(got.iter().all(|v| v.is_finite()));
            }
        }
    }
}
