//! Heterogeneous mixture of experts on multiple embedding tables (HMoE) — Pan et al., "Ads
//! Recommendation in a Collapsed and Entangled World", KDD 2024, §2, §4.2–4.3, Eq. 4–5
//! (GwPFM, HMoE, collapse-resilient interaction).
//!
//! Reference implementation: none from the authors; QunBB `recsys/rank/hmoe.py`,
//! `recsys/layers/interaction.py::GwPFM` (third-party port) for the structure.
//!
//! # Structure
//! - **Tables**: table 0 is the schema's own; `extra_table_dims` adds full copies of every
//!   field at the given widths (embedding sets `hm1`, `hm2`, …).
//! - **Experts** (`experts`, each `{kind, table}`), every one followed by its own MLP
//!   (`expert_dims`, common output width):
//!   - `dnn`: the flat table (+ numeric inputs);
//!   - `ipnn`: the flat table and the inner products `⟨e_i, e_j⟩` of every field pair;
//!   - `dcnv2`: a full-rank DCN-V2 cross network on the flat table (+ numeric);
//!   - `gwpfm` (Eq. 4): every field's embedding is split into `G` parts (`G` = number of field
//!     groups, the QunBB simplification P = G); `Σ_{i<j} v_{i,G(j)} ⊙ v_{j,G(i)} · r_{G(i),G(j)}`
//!     with a learned group-pair weight `r` (init 1) → a `k/G`-vector;
//!   - `proj` (Eq. 5, the collapse-resilient interaction): `(e_i M_{ij}) ⊙ e_j` for every field
//!     pair with a learned `k × k` projection per pair, concatenated.
//!
//!   Field groups (`gwpfm`): fields with roles `item`/`author` form the item group, the others
//!   the user/context group (the paper's deployment: user+context | ad), unless `field_groups`
//!   names a group for each field.
//! - **Combination** (`combine`): `gate` (default: per head `softmax(Linear(all tables))` over
//!   the experts, MMoE-style), `weights` (one learned scalar per expert, shared by all heads) or
//!   `sum`.
//! - Towers per head ([`Heads`]).
//!
//! Deviations from reference: per-(domain, task) heads; GwPFM uses P = G parts (QunBB), not the
//! paper's two parts with dozens of groups; numeric inputs go to `dnn` and `dcnv2` only.
//!
//! Probes: `expert/<e>` (`[B, H]`), `gate/<domain>/<task>` (`[n_d, E]`).

use std::collections::BTreeMap;

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::tensor::{Device, Tensor};
use mdrec_data::rng::Rng;
use mdrec_data::FieldRole;
use mdrec_nn::{
    EmbeddingSetSpec, FieldInfo, Gate, GateKind, Mlp, MlpConfig, ModelContext, ModelInput,
};
use serde::{Deserialize, Serialize};

use crate::blocks::experts::stack_experts;
use crate::blocks::heads::{HeadLayout, Heads, HeadsConfig};
use crate::blocks::interaction::{common_dim, dense, stack_fields, CrossNetV2};
use crate::model::{Built, Invalid, ModelConfig, ModelOutput, Probes, RecModel, ZooModel};

/// The interaction of one expert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExpertKind {
    /// Flat embeddings.
    Dnn,
    /// Flat embeddings + pairwise inner products.
    Ipnn,
    /// DCN-V2 cross network.
    Dcnv2,
    /// Group-weighted part-aware FM.
    Gwpfm,
    /// Field-pair projection `(e_i M) ⊙ e_j`.
    Proj,
}

/// One expert: its interaction and the table it reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpertSpec {
    /// Interaction.
    pub kind: ExpertKind,
    /// Table index (0 = the schema's own).
    pub table: usize,
}

/// How expert outputs are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Combine {
    /// Per-head softmax gate over experts.
    Gate,
    /// One learned weight per expert.
    Weights,
    /// Plain sum.
    Sum,
}

/// Config of [`Hmoe`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Widths of the tables after the schema's own.
    pub extra_table_dims: Vec<usize>,
    /// The experts.
    pub experts: Vec<ExpertSpec>,
    /// MLP after every expert's interaction (the last width is the common output width).
    pub expert_dims: Vec<usize>,
    /// DCN-V2 cross layers.
    pub cross_layers: usize,
    /// GwPFM field groups by field name (empty: item/author fields vs the rest).
    pub field_groups: BTreeMap<String, usize>,
    /// Combination of expert outputs.
    pub combine: Combine,
    /// Output heads: tower layout and tower hidden widths.
    pub heads: HeadsConfig,
    /// Hidden-layer options for MLPs.
    pub mlp: MlpConfig,
}

impl Default for Config {
    fn default() -> Self {
        let e = |kind, table| ExpertSpec { kind, table };
        Config {
            extra_table_dims: vec![16],
            // The Moments pCTR deployment (Pan et al., KDD 2024, §4.2): GwPFM and a flat DNN share table 0,
            // IPNN reads table 1; plus DCN-V2 on table 1.
            experts: vec![
                e(ExpertKind::Gwpfm, 0),
                e(ExpertKind::Dnn, 0),
                e(ExpertKind::Ipnn, 1),
                e(ExpertKind::Dcnv2, 1),
            ],
            expert_dims: vec![64],
            cross_layers: 2,
            field_groups: BTreeMap::new(),
            combine: Combine::Gate,
            heads: HeadsConfig::new(HeadLayout::DomainTask, vec![32]),
            mlp: MlpConfig::default(),
        }
    }
}

/// The parameters of an expert's interaction (which are present depends on the kind).
#[derive(Module, Debug)]
pub struct Interaction {
    /// DCN-V2 cross network.
    cross: Option<CrossNetV2>,
    /// GwPFM group-pair weights `r: [G, G]`.
    gw: Option<Param<Tensor<2>>>,
    /// One `k × k` projection per field pair, stacked `[P, k, k]`.
    proj: Option<Param<Tensor<3>>>,
    #[module(skip)]
    kind: ExpertKind,
}

impl Interaction {
    fn of(kind: ExpertKind) -> Self {
        Interaction {
            cross: None,
            gw: None,
            proj: None,
            kind,
        }
    }
}

/// One expert.
#[derive(Module, Debug)]
pub struct Expert {
    interaction: Interaction,
    mlp: Mlp,
    #[module(skip)]
    table: usize,
}

/// Heterogeneous experts on multiple tables.
#[derive(Module, Debug)]
pub struct Hmoe {
    experts: Vec<Expert>,
    gates: Vec<Gate>,
    weights: Option<Linear>,
    heads: Heads,
    /// Set index of tables 1...
    #[module(skip)]
    table_sets: Vec<usize>,
    /// Fields of each table (offsets within the table's tensor).
    #[module(skip)]
    table_fields: Vec<Vec<FieldInfo>>,
    /// GwPFM group of each field.
    #[module(skip)]
    groups: Vec<usize>,
    #[module(skip)]
    n_groups: usize,
    #[module(skip)]
    combine: Combine,
}

const SET_PREFIX: &str = "hm";

fn set_name(p: usize) -> String {
    format!("{SET_PREFIX}{p}")
}

fn pairs(f: usize) -> Vec<(usize, usize)> {
    (0..f)
        .flat_map(|i| (i + 1..f).map(move |j| (i, j)))
        .collect()
}

impl Hmoe {
    fn table_emb(&self, input: &ModelInput, t: usize) -> Tensor<2> {
        match t {
            0 => input.emb.clone(),
            _ => input.sets[self.table_sets[t - 1]].clone(),
        }
    }

    fn with_dense(input: &ModelInput, x: Tensor<2>) -> Tensor<2> {
        match &input.dense {
            Some(d) => Tensor::cat(vec![x, d.clone()], 1),
            None => x,
        }
    }

    /// The expert's interaction output, `[B, width]`.
    fn interact(&self, e: &Expert, input: &ModelInput) -> Tensor<2> {
        let emb = self.table_emb(input, e.table);
        let fields = &self.table_fields[e.table];
        let it = &e.interaction;
        match it.kind {
            ExpertKind::Dnn => Self::with_dense(input, emb),
            ExpertKind::Dcnv2 => it
                .cross
                .as_ref()
                .expect("built with a cross network")
                .forward(Self::with_dense(input, emb)),
            ExpertKind::Ipnn => {
                let x = stack_fields(emb.clone(), fields); // [B, F, k]
                let [b, f, _] = x.dims();
                let gram = x.clone().matmul(x.swap_dims(1, 2)); // [B, F, F]
                let inner: Vec<Tensor<2>> = pairs(f)
                    .into_iter()
                    .map(|(i, j)| gram.clone().narrow(1, i, 1).narrow(2, j, 1).reshape([b, 1]))
                    .collect();
                Tensor::cat(vec![emb, Tensor::cat(inner, 1)], 1)
            }
            ExpertKind::Gwpfm => {
                let r = it.gw.as_ref().expect("built with group weights");
                let x = stack_fields(emb, fields); // [B, F, G·k']
                let [b, f, w] = x.dims();
                let g = self.n_groups;
                let kp = w / g;
                let x = x.reshape([b, f, g, kp]);
                let r = r.val();
                let mut acc: Option<Tensor<2>> = None;
                for (i, j) in pairs(f) {
                    let (gi, gj) = (self.groups[i], self.groups[j]);
                    let vi = x.clone().narrow(1, i, 1).narrow(2, gj, 1).reshape([b, kp]);
                    let vj = x.clone().narrow(1, j, 1).narrow(2, gi, 1).reshape([b, kp]);
                    let w_ij = r.clone().narrow(0, gi, 1).narrow(1, gj, 1).reshape([1, 1]);
                    let term = vi * vj * w_ij;
                    acc = Some(match acc {
                        Some(a) => a + term,
                        None => term,
                    });
                }
                acc.expect("GwPFM needs ≥ 2 fields (checked when building)")
            }
            ExpertKind::Proj => {
                let m = it.proj.as_ref().expect("built with projections");
                let x = stack_fields(emb, fields); // [B, F, k]
                let [b, f, k] = x.dims();
                let m = m.val(); // [P, k, k]
                let outs: Vec<Tensor<2>> = pairs(f)
                    .into_iter()
                    .enumerate()
                    .map(|(p, (i, j))| {
                        let ei = x.clone().narrow(1, i, 1).reshape([b, k]);
                        let ej = x.clone().narrow(1, j, 1).reshape([b, k]);
                        ei.matmul(m.clone().narrow(0, p, 1).reshape([k, k])) * ej
                    })
                    .collect();
                Tensor::cat(outs, 1)
            }
        }
    }
}

impl ModelConfig for Config {
    fn tiny() -> Config {
        Config {
            extra_table_dims: vec![4],
            expert_dims: vec![6],
            heads: HeadsConfig::new(HeadLayout::DomainTask, vec![4]),
            cross_layers: 1,
            ..Config::default()
        }
    }
}

impl ZooModel for Hmoe {
    const NAME: &'static str = "hmoe";
    const PAPER: &'static str = "Pan et al., Ads Recommendation in a Collapsed and Entangled World, KDD 2024 (§4 heterogeneous experts with multi-embedding, GwPFM)";
    type Config = Config;

    fn embedding_sets(cfg: &Config, _ctx: &ModelContext) -> Result<Vec<EmbeddingSetSpec>, Invalid> {
        Ok(EmbeddingSetSpec::tables(SET_PREFIX, &cfg.extra_table_dims))
    }

    fn build(cfg: &Config, ctx: &ModelContext, rng: &mut Rng, device: &Device) -> Built<Self> {
        if cfg.experts.is_empty() || cfg.expert_dims.is_empty() {
            return Err(Invalid::new(
                "needs at least one expert and non-empty expert_dims",
            ));
        }
        let n_tables = cfg.extra_table_dims.len() + 1;
        let table_sets: Vec<usize> = (1..n_tables)
            .map(|p| {
                ctx.set_index(&set_name(p))
                    .expect("context carries the model's embedding sets")
            })
            .collect();
        let mut table_fields = vec![ctx.fields.clone()];
        table_fields.extend(table_sets.iter().map(|&k| ctx.sets[k].fields.clone()));
        let n_fields = ctx.fields.len();
        // GwPFM groups.
        let groups: Vec<usize> = if cfg.field_groups.is_empty() {
            ctx.fields
                .iter()
                .map(|f| (f.has_role(FieldRole::Item) || f.has_role(FieldRole::Author)) as usize)
                .collect()
        } else {
            if let Some(k) = cfg
                .field_groups
                .keys()
                .find(|k| !ctx.fields.iter().any(|f| &f.name == *k))
            {
                return Err(Invalid::new(format!(
                    "field_groups names `{k}`, which is not an embedded field"
                )));
            }
            ctx.fields
                .iter()
                .map(|f| {
                    cfg.field_groups.get(&f.name).copied().ok_or_else(|| {
                        Invalid::new(format!("field_groups has no group for field `{}`", f.name))
                    })
                })
                .collect::<Result<_, _>>()?
        };
        let n_groups = groups.iter().max().map_or(1, |g| g + 1);
        let mut experts = Vec::with_capacity(cfg.experts.len());
        for (e, spec) in cfg.experts.iter().enumerate() {
            if spec.table >= n_tables {
                return Err(Invalid::new(format!(
                    "expert {e} reads table {}, but there are {n_tables} tables (0 and extra_table_dims)",
                    spec.table
                )));
            }
            let fields = &table_fields[spec.table];
            let flat = fields.iter().map(|f| f.dim).sum::<usize>();
            let need_k = |what: &str| common_dim(fields, what).map_err(Invalid);
            let (interaction, width) = match spec.kind {
                ExpertKind::Dnn => (Interaction::of(spec.kind), flat + ctx.n_numeric),
                ExpertKind::Dcnv2 => {
                    let d = flat + ctx.n_numeric;
                    (
                        Interaction {
                            cross: Some(CrossNetV2::new(d, cfg.cross_layers, rng, device)),
                            ..Interaction::of(spec.kind)
                        },
                        d,
                    )
                }
                ExpertKind::Ipnn => {
                    need_k("IPNN")?;
                    (
                        Interaction::of(spec.kind),
                        flat + n_fields * (n_fields - 1) / 2,
                    )
                }
                ExpertKind::Gwpfm => {
                    let k = need_k("GwPFM")?;
                    if n_fields < 2 || k % n_groups != 0 {
                        return Err(Invalid::new(format!(
                            "GwPFM (expert {e}) needs ≥ 2 fields and a table width divisible by the {n_groups} field groups; table {} has width {k}",
                            spec.table
                        )));
                    }
                    let r = mdrec_nn::init::param(
                        vec![1.0; n_groups * n_groups],
                        [n_groups, n_groups],
                        device,
                    );
                    (
                        Interaction {
                            gw: Some(r),
                            ..Interaction::of(spec.kind)
                        },
                        k / n_groups,
                    )
                }
                ExpertKind::Proj => {
                    let k = need_k("the projection interaction")?;
                    let p = n_fields * (n_fields - 1) / 2;
                    if p == 0 {
                        return Err(Invalid::new("the projection interaction needs ≥ 2 fields"));
                    }
                    // Identity plus noise: starts as the plain Hadamard product e_i ⊙ e_j.
                    let mut v = mdrec_nn::init::normal(rng, p * k * k, 0.01);
                    for q in 0..p {
                        for i in 0..k {
                            v[q * k * k + i * k + i] += 1.0;
                        }
                    }
                    (
                        Interaction {
                            proj: Some(mdrec_nn::init::param(v, [p, k, k], device)),
                            ..Interaction::of(spec.kind)
                        },
                        p * k,
                    )
                }
            };
            experts.push(Expert {
                interaction,
                mlp: Mlp::new(width, &cfg.expert_dims, &cfg.mlp, rng, device),
                table: spec.table,
            });
        }
        let h = experts[0].mlp.out_dim();
        let heads = Heads::new(&cfg.heads, ctx, h, &cfg.mlp, rng, device);
        let gate_in: usize =
            table_fields.iter().flatten().map(|f| f.dim).sum::<usize>() + ctx.n_numeric;
        let gates = match cfg.combine {
            Combine::Gate => (0..heads.n_groups() * ctx.n_tasks())
                .map(|_| Gate::new(gate_in, experts.len(), GateKind::Linear, rng, device))
                .collect(),
            _ => vec![],
        };
        let weights = (cfg.combine == Combine::Weights).then(|| {
            let mut l = dense(experts.len(), 1, false, rng, device);
            l.weight = mdrec_nn::init::param(vec![1.0; experts.len()], [experts.len(), 1], device);
            l
        });
        Ok(Hmoe {
            experts,
            gates,
            weights,
            heads,
            table_sets,
            table_fields,
            groups,
            n_groups,
            combine: cfg.combine,
        })
    }
}

impl RecModel for Hmoe {
    /// # Shapes
    /// - table t `[B, F·k_t]`; interaction outputs vary; expert outputs `[B, H]`, stacked
    ///   `[B, E, H]`; gate input `[B, Σ_t F·k_t + n_numeric]`; gate `[n_d, E]`; logits `[B, T]`
    fn forward(&self, ctx: &ModelContext, input: &ModelInput, probes: &mut Probes) -> ModelOutput {
        let outs: Vec<Tensor<2>> = self
            .experts
            .iter()
            .map(|e| e.mlp.forward(self.interact(e, input)))
            .collect();
        let n_e = outs.len();
        let stacked = stack_experts(outs, probes);
        let logits = match self.combine {
            Combine::Gate => self.heads.forward_gated(
                ctx,
                input,
                &self.gates,
                &input.flat_all(),
                &stacked,
                probes,
            ),
            Combine::Weights | Combine::Sum => {
                let [b, _, h] = stacked.dims();
                let combined = match &self.weights {
                    Some(w) => {
                        let wv = w.weight.val().reshape([1, n_e, 1]);
                        (stacked * wv).sum_dim(1).reshape([b, h])
                    }
                    None => stacked.sum_dim(1).reshape([b, h]),
                };
                self.heads.forward_shared(input, &combined)
            }
        };
        ModelOutput::from(logits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::find;
    use mdrec_nn::device::cpu;
    use mdrec_nn::init::tensor;

    fn setup(over: serde_json::Value) -> (Hmoe, ModelContext) {
        let mut base = ModelContext::uniform(3, 10, 4, 1, 2, 1);
        base.fields[2].roles = vec![FieldRole::Item];
        let f = find("hmoe").unwrap();
        let v = f.resolve(&over).unwrap();
        let ctx = f.context(&v, &base).unwrap();
        let cfg: Config = serde_json::from_value(v).unwrap();
        (
            Hmoe::build(&cfg, &ctx, &mut Rng::new(3), &cpu()).unwrap(),
            ctx,
        )
    }

    fn input(values: Vec<f32>, ctx: &ModelContext) -> ModelInput {
        let dev = cpu();
        let b = values.len() / ctx.emb_dim();
        let mut x = ModelInput::new(
            tensor(values, [b, ctx.emb_dim()], &dev),
            Some(tensor(vec![0.5; b], [b, 1], &dev)),
            vec![0; b],
            2,
        );
        x.sets = ctx
            .sets
            .iter()
            .map(|s| tensor(vec![0.1; b * s.width()], [b, s.width()], &dev))
            .collect();
        x
    }

    #[test]
    fn gwpfm_matches_the_formula() {
        // Fields f0, f1 in group 0 (user side), f2 in group 1 (item); k = 4 → 2 parts of 2.
        let (m, ctx) = setup(serde_json::json!({"experts": [{"kind": "gwpfm", "table": 0}]}));
        let e: Vec<f32> = (0..12).map(|i| (i as f32 - 5.0) * 0.3).collect();
        let x = input(e.clone(), &ctx);
        let got = m
            .interact(&m.experts[0], &x)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        // v_{i,g} = e_i[2g..2g+2]; r = 1. Σ_{i<j} v_{i,G(j)} ⊙ v_{j,G(i)}.
        let g = [0usize, 0, 1];
        let v = |i: usize, part: usize, c: usize| e[i * 4 + part * 2 + c];
        let mut want = [0.0f32; 2];
        for (i, j) in [(0, 1), (0, 2), (1, 2)] {
            for (c, w) in want.iter_mut().enumerate() {
                *w += v(i, g[j], c) * v(j, g[i], c);
            }
        }
        for c in 0..2 {
            assert!((got[c] - want[c]).abs() < 1e-5, "{got:?} vs {want:?}");
        }
    }

    #[test]
    fn ipnn_appends_every_pairwise_inner_product() {
        let (m, ctx) = setup(serde_json::json!({"experts": [{"kind": "ipnn", "table": 0}]}));
        let e: Vec<f32> = (0..12).map(|i| i as f32 * 0.1).collect();
        let x = input(e.clone(), &ctx);
        let got = m
            .interact(&m.experts[0], &x)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert_eq!(got.len(), 12 + 3);
        let dot = |i: usize, j: usize| (0..4).map(|c| e[i * 4 + c] * e[j * 4 + c]).sum::<f32>();
        for (p, (i, j)) in [(0, 1), (0, 2), (1, 2)].into_iter().enumerate() {
            assert!((got[12 + p] - dot(i, j)).abs() < 1e-5);
        }
    }

    #[test]
    fn experts_read_their_own_tables_and_bad_tables_are_errors() {
        let (m, ctx) = setup(serde_json::json!({}));
        assert_eq!(
            m.experts.iter().map(|e| e.table).collect::<Vec<_>>(),
            [0, 0, 1, 1]
        );
        let x = input(vec![0.2; 24], &ctx);
        let mut y = x.clone();
        y.sets[0] = y.sets[0].clone() + 1.0;
        let (mut p, mut q) = (Probes::new(true), Probes::new(true));
        m.forward(&ctx, &x, &mut p);
        m.forward(&ctx, &y, &mut q);
        let same = |k: &str| {
            p.values()[k]
                .clone()
                .into_data()
                .try_to_vec::<f32>()
                .unwrap()
                == q.values()[k]
                    .clone()
                    .into_data()
                    .try_to_vec::<f32>()
                    .unwrap()
        };
        assert!(same("expert/0") && same("expert/1"));
        assert!(!same("expert/2") && !same("expert/3"));
        let f = find("hmoe").unwrap();
        let v = f
            .resolve(&serde_json::json!({"experts": [{"kind": "dnn", "table": 5}]}))
            .unwrap();
        let base = ModelContext::uniform(3, 10, 4, 0, 2, 1);
        let ctx = f.context(&v, &base).unwrap();
        let e = f
            .build(&v, &ctx, &mut Rng::new(1), &cpu())
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("table 5"), "{e}");
    }
}
