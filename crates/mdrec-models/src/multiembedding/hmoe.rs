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
//!   - `gwpfm` (Eq. 4, see [GwPFM](#gwpfm) below) → a `k`-vector;
//!   - `proj` (Eq. 5, the collapse-resilient interaction): `(e_i M_{ij}) ⊙ e_j` for every field
//!     pair with a learned `k × k` projection per pair, concatenated.
//!
//! - **Combination** (`combine`): `gate` (default: per head `softmax(Linear(all tables))` over
//!   the experts, MMoE-style), `weights` (one learned scalar per expert, shared by all heads) or
//!   `sum`.
//! - Towers per head ([`Heads`]).
//!
//! # GwPFM
//! Pan et al. §4.3, Eq. 4:
//!
//! ```text
//! Φ = ⊕_{i<j} x_i x_j · e_{i,P(j)} ⊙ e_{j,P(i)} · r_{G(i),G(j)}
//! ```
//!
//! `⊕` is the element-wise sum over feature pairs, so `Φ` is a `k`-vector (it feeds the expert's
//! MLP); `P(i)` is the field *part* and `G(i)` the field *group* of feature `i`, and `r` is a
//! learned weight per ordered group pair (`[G, G]`, init 1; entry `(G(i), G(j))` for `i < j` in
//! field order). Parts and groups are independent: every feature has `P` embeddings, each of the
//! full width `k` of the expert's table, and `G` may be larger or smaller than `P` (config
//! `gwpfm`: `parts`, `field_parts`, `field_groups`, `numeric`).
//!
//! Inferred choices (the paper gives the equation and the deployment, not these details):
//! - **Storage of the parts.** Part 0 of a field is its embedding in the expert's table (so
//!   an expert that shares the table, e.g. the flat DNN of the Moments deployment, reads part 0);
//!   parts 1..P are extra embedding sets `hm<table>gw<e>p<p>` of the same widths, used by this
//!   expert only.
//! - **Default parts** (`field_parts` empty): the deployment's two parts — fields with roles
//!   `item`/`author` (the ad side) in part 1, all others (user and context) in part 0; with
//!   `parts = 1` every field is in part 0 (a field-group-weighted FM). Other `parts` need
//!   `field_parts`.
//! - **Default groups** (`field_groups` empty): the deployment puts every ad-side field in one
//!   group and splits the user/context fields into groups "by expert knowledge". Lacking that,
//!   every user/context field is its own group and the ad-side fields share one (the finest
//!   split that rule allows).
//! - **Feature values `x_i`.** Categorical fields have `x_i = 1`; a pooled multi-hot field
//!   enters as its pooled embedding with `x_i = 1`. The model's inputs carry each numeric field's
//!   value as a column of `dense` but no embedding for it, so with `numeric = true` (default)
//!   each numeric column `n` gets `P` learned embeddings `e_{n,p}` (init N(0, 1e-4²), like the
//!   embedding store) and enters `Φ` as `x_n e_{n,P(·)}`, after the embedded fields in field
//!   order; numeric columns are in part 0 and each in a group of its own after the fields'
//!   groups (the context carries no names for numeric columns, so they cannot be named in
//!   `field_parts`/`field_groups`).
//!
//! This replaces the earlier `P = G` simplification of QunBB's port (one embedding of width `k`
//! cut into `G` slices of width `k/G`, output width `k/G`), which is not a special case of Eq. 4
//! with full-width parts.
//!
//! Deviations from reference: per-(domain, task) heads; numeric inputs go to `dnn`, `dcnv2` and
//! (as above) `gwpfm` only.
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
    /// GwPFM options (parts, groups, numeric features).
    pub gwpfm: GwpfmConfig,
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
            gwpfm: GwpfmConfig::default(),
            combine: Combine::Gate,
            heads: HeadsConfig::new(HeadLayout::DomainTask, vec![32]),
            mlp: MlpConfig::default(),
        }
    }
}

/// GwPFM options (config key `gwpfm` of [`Config`]); see the [module docs](self#gwpfm).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GwpfmConfig {
    /// Number of field parts `P`: every feature has `P` embeddings of the table's width.
    pub parts: usize,
    /// Part of each field by name (empty: item/author fields in part 1, the rest in part 0).
    pub field_parts: BTreeMap<String, usize>,
    /// Group of each field by name (empty: one group per non-item field, one for item/author).
    pub field_groups: BTreeMap<String, usize>,
    /// Numeric inputs enter the FM term as `x_n · e_{n,p}` with learned embeddings.
    pub numeric: bool,
}

impl Default for GwpfmConfig {
    fn default() -> Self {
        GwpfmConfig {
            parts: 2,
            field_parts: BTreeMap::new(),
            field_groups: BTreeMap::new(),
            numeric: true,
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
    /// GwPFM part embeddings of the numeric inputs, `[n_numeric, P, k]`.
    gw_num: Option<Param<Tensor<3>>>,
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
            gw_num: None,
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
    /// GwPFM: set index of parts 1..P.
    #[module(skip)]
    part_sets: Vec<usize>,
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
    /// GwPFM part of each field, then of each numeric input (when they take part).
    #[module(skip)]
    parts: Vec<usize>,
    /// GwPFM group of each field, then of each numeric input.
    #[module(skip)]
    groups: Vec<usize>,
    #[module(skip)]
    combine: Combine,
}

const SET_PREFIX: &str = "hm";

fn set_name(p: usize) -> String {
    format!("{SET_PREFIX}{p}")
}

/// The embedding set of part `p ≥ 1` of GwPFM expert `e` on table `t`.
fn part_set_name(t: usize, e: usize, p: usize) -> String {
    format!("{SET_PREFIX}{t}gw{e}p{p}")
}

/// Part and group of every embedded field, then of every numeric input when they enter the FM
/// term; the number of parts and groups.
fn gwpfm_layout(
    cfg: &GwpfmConfig,
    ctx: &ModelContext,
) -> Result<(Vec<usize>, Vec<usize>), Invalid> {
    let p_n = cfg.parts;
    if p_n == 0 {
        return Err(Invalid::new("gwpfm.parts must be ≥ 1"));
    }
    let ad_side = |f: &FieldInfo| f.has_role(FieldRole::Item) || f.has_role(FieldRole::Author);
    let by_name = |map: &BTreeMap<String, usize>, what: &str| -> Result<Vec<usize>, Invalid> {
        if let Some(k) = map
            .keys()
            .find(|k| !ctx.fields.iter().any(|f| &f.name == *k))
        {
            return Err(Invalid::new(format!(
                "gwpfm.{what} names `{k}`, which is not an embedded field"
            )));
        }
        ctx.fields
            .iter()
            .map(|f| {
                map.get(&f.name).copied().ok_or_else(|| {
                    Invalid::new(format!("gwpfm.{what} has no entry for field `{}`", f.name))
                })
            })
            .collect()
    };
    let mut parts: Vec<usize> = if !cfg.field_parts.is_empty() {
        by_name(&cfg.field_parts, "field_parts")?
    } else if p_n <= 2 {
        ctx.fields
            .iter()
            .map(|f| usize::from(p_n == 2 && ad_side(f)))
            .collect()
    } else {
        return Err(Invalid::new(format!(
            "gwpfm.parts = {p_n} needs gwpfm.field_parts (the default split has 2 parts)"
        )));
    };
    if let Some(&p) = parts.iter().find(|&&p| p >= p_n) {
        return Err(Invalid::new(format!(
            "gwpfm.field_parts uses part {p}, but gwpfm.parts = {p_n}"
        )));
    }
    let mut groups: Vec<usize> = if cfg.field_groups.is_empty() {
        let mut next = 0;
        let user: Vec<Option<usize>> = ctx
            .fields
            .iter()
            .map(|f| {
                (!ad_side(f)).then(|| {
                    next += 1;
                    next - 1
                })
            })
            .collect();
        user.into_iter().map(|g| g.unwrap_or(next)).collect()
    } else {
        by_name(&cfg.field_groups, "field_groups")?
    };
    if cfg.numeric {
        let g0 = groups.iter().max().map_or(0, |g| g + 1);
        parts.extend(std::iter::repeat_n(0, ctx.n_numeric));
        groups.extend(g0..g0 + ctx.n_numeric);
    }
    Ok((parts, groups))
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

    /// Every table (not the GwPFM part sets) and the numeric inputs, `[B, Σ_t F·k_t + n_numeric]`.
    fn gate_input(&self, input: &ModelInput) -> Tensor<2> {
        let mut xs: Vec<Tensor<2>> = (0..self.table_fields.len())
            .map(|t| self.table_emb(input, t))
            .collect();
        xs.extend(input.dense.iter().cloned());
        Tensor::cat(xs, 1)
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
                let r = it.gw.as_ref().expect("built with group weights").val();
                // [B, F, P, k]: part 0 is the expert's table, parts 1.. its own sets.
                let mut x = Tensor::stack(
                    std::iter::once(stack_fields(emb, fields))
                        .chain(
                            e.part_sets
                                .iter()
                                .map(|&s| stack_fields(input.sets[s].clone(), fields)),
                        )
                        .collect(),
                    2,
                );
                if let (Some(num), Some(d)) = (&it.gw_num, &input.dense) {
                    // x_n · e_{n,p}: [B, N, 1, 1] · [1, N, P, k].
                    let [n, p, k] = num.dims();
                    let xn = d.clone().reshape([input.batch_size, n, 1, 1])
                        * num.val().reshape([1, n, p, k]);
                    x = Tensor::cat(vec![x, xn], 1);
                }
                let [b, f, _, k] = x.dims();
                let mut acc: Option<Tensor<2>> = None;
                for (i, j) in pairs(f) {
                    let (gi, gj) = (self.groups[i], self.groups[j]);
                    let vi = x
                        .clone()
                        .narrow(1, i, 1)
                        .narrow(2, self.parts[j], 1)
                        .reshape([b, k]);
                    let vj = x
                        .clone()
                        .narrow(1, j, 1)
                        .narrow(2, self.parts[i], 1)
                        .reshape([b, k]);
                    let w_ij = r.clone().narrow(0, gi, 1).narrow(1, gj, 1).reshape([1, 1]);
                    let term = vi * vj * w_ij;
                    acc = Some(match acc {
                        Some(a) => a + term,
                        None => term,
                    });
                }
                acc.expect("GwPFM needs ≥ 2 features (checked when building)")
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
        let mut sets = EmbeddingSetSpec::tables(SET_PREFIX, &cfg.extra_table_dims);
        // GwPFM parts 1..P: copies of the expert's table (same widths).
        for (e, spec) in cfg.experts.iter().enumerate() {
            if spec.kind != ExpertKind::Gwpfm {
                continue;
            }
            let dim = match spec.table {
                0 => None,
                t => cfg.extra_table_dims.get(t - 1).copied(),
            };
            sets.extend((1..cfg.gwpfm.parts).map(|p| EmbeddingSetSpec {
                name: part_set_name(spec.table, e, p),
                dim,
                roles: vec![],
            }));
        }
        Ok(sets)
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
        let has_gwpfm = cfg.experts.iter().any(|e| e.kind == ExpertKind::Gwpfm);
        let (parts, groups) = if has_gwpfm {
            gwpfm_layout(&cfg.gwpfm, ctx)?
        } else {
            (vec![], vec![])
        };
        let n_groups = groups.iter().max().map_or(1, |g| g + 1);
        let n_num_fm = if cfg.gwpfm.numeric { ctx.n_numeric } else { 0 };
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
                    if n_fields + n_num_fm < 2 {
                        return Err(Invalid::new(format!(
                            "GwPFM (expert {e}) needs ≥ 2 features (embedded fields and numeric inputs)"
                        )));
                    }
                    let r = mdrec_nn::init::param(
                        vec![1.0; n_groups * n_groups],
                        [n_groups, n_groups],
                        device,
                    );
                    let p_n = cfg.gwpfm.parts;
                    let num = (n_num_fm > 0).then(|| {
                        mdrec_nn::init::param(
                            mdrec_nn::init::normal(rng, n_num_fm * p_n * k, 1e-4),
                            [n_num_fm, p_n, k],
                            device,
                        )
                    });
                    (
                        Interaction {
                            gw: Some(r),
                            gw_num: num,
                            ..Interaction::of(spec.kind)
                        },
                        k,
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
            let part_sets = match spec.kind {
                ExpertKind::Gwpfm => (1..cfg.gwpfm.parts)
                    .map(|p| {
                        ctx.set_index(&part_set_name(spec.table, e, p))
                            .expect("context carries the GwPFM part sets")
                    })
                    .collect(),
                _ => vec![],
            };
            experts.push(Expert {
                interaction,
                mlp: Mlp::new(width, &cfg.expert_dims, &cfg.mlp, rng, device),
                table: spec.table,
                part_sets,
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
            parts,
            groups,
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
                &self.gate_input(input),
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
    fn gwpfm_matches_a_hand_computed_value() {
        // Fields f0, f1 (user side) and f2 (item), k = 2, one numeric input; defaults: P = 2
        // (f0, f1, numeric in part 0; f2 in part 1), groups f0→0, f1→1, f2→2, numeric→3.
        let mut base = ModelContext::uniform(3, 10, 2, 1, 1, 1);
        base.fields[2].roles = vec![FieldRole::Item];
        let f = find("hmoe").unwrap();
        let v = f
            .resolve(&serde_json::json!({
                "extra_table_dims": [],
                "experts": [{"kind": "gwpfm", "table": 0}]
            }))
            .unwrap();
        let ctx = f.context(&v, &base).unwrap();
        let cfg: Config = serde_json::from_value(v).unwrap();
        let dev = cpu();
        let mut m = Hmoe::build(&cfg, &ctx, &mut Rng::new(3), &dev).unwrap();
        assert_eq!(m.parts, [0, 0, 1, 0]);
        assert_eq!(m.groups, [0, 1, 2, 3]);
        // r = 1 except r[0,1] = 2, r[0,2] = 0.5, r[1,2] = 3, r[0,3] = -1, r[2,3] = 2.
        let mut r = vec![1.0f32; 16];
        for (a, b, w) in [
            (0, 1, 2.0),
            (0, 2, 0.5),
            (1, 2, 3.0),
            (0, 3, -1.0),
            (2, 3, 2.0),
        ] {
            r[a * 4 + b] = w;
        }
        let it = &mut m.experts[0].interaction;
        it.gw = Some(mdrec_nn::init::param(r, [4, 4], &dev));
        // Numeric embeddings: part 0 [1, -1], part 1 [0, 4].
        it.gw_num = Some(mdrec_nn::init::param(
            vec![1.0, -1.0, 0.0, 4.0],
            [1, 2, 2],
            &dev,
        ));
        // Part 0 (table 0): e0 = [1, 2], e1 = [3, -1], e2 = [0.5, 2];
        // part 1 (own set): e0 = [2, 0], e1 = [1, 1], e2 = [-1, 3]; numeric x = 2.
        let mut x = ModelInput::new(
            tensor(vec![1.0, 2.0, 3.0, -1.0, 0.5, 2.0], [1, 6], &dev),
            Some(tensor(vec![2.0], [1, 1], &dev)),
            vec![0],
            1,
        );
        assert_eq!(ctx.sets.len(), 1);
        assert_eq!(ctx.sets[0].name, "hm0gw0p1");
        x.sets = vec![tensor(vec![2.0, 0.0, 1.0, 1.0, -1.0, 3.0], [1, 6], &dev)];
        let got = m
            .interact(&m.experts[0], &x)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        // By hand, x_i x_j · e_{i,P(j)} ⊙ e_{j,P(i)} · r[G(i),G(j)]:
        // (0,1) [1,2]⊙[3,-1]·2 = [6,-4]      (0,2) [2,0]⊙[0.5,2]·0.5 = [0.5,0]
        // (1,2) [1,1]⊙[0.5,2]·3 = [1.5,6]    (0,n) [1,2]⊙2[1,-1]·(-1) = [-2,4]
        // (1,n) [3,-1]⊙2[1,-1]·1 = [6,2]     (2,n) [0.5,2]⊙2[0,4]·2 = [0,32]
        // Σ = [12, 40].
        assert_eq!(got.len(), 2);
        assert!(
            (got[0] - 12.0).abs() < 1e-5 && (got[1] - 40.0).abs() < 1e-5,
            "{got:?}"
        );
    }

    #[test]
    fn gwpfm_parts_are_full_width_and_independent_of_groups() {
        // 4 fields of width 4, 2 numeric inputs; P = 3 parts and G = 2 groups by config.
        let base = ModelContext::uniform(4, 10, 4, 2, 2, 1);
        let f = find("hmoe").unwrap();
        let build = |gw: serde_json::Value| {
            let v = f
                .resolve(&serde_json::json!({
                    "extra_table_dims": [6],
                    "experts": [{"kind": "gwpfm", "table": 1}],
                    "expert_dims": [5],
                    "gwpfm": gw
                }))
                .unwrap();
            let ctx = f.context(&v, &base).unwrap();
            let cfg: Config = serde_json::from_value(v.clone()).unwrap();
            (Hmoe::build(&cfg, &ctx, &mut Rng::new(1), &cpu()), ctx)
        };
        let parts = serde_json::json!({"f0": 0, "f1": 1, "f2": 2, "f3": 2});
        let groups = serde_json::json!({"f0": 0, "f1": 0, "f2": 1, "f3": 1});
        let (m, ctx) = build(serde_json::json!({
            "parts": 3, "field_parts": parts, "field_groups": groups
        }));
        let m = m.unwrap();
        // Parts 1 and 2 are copies of table 1 at its full width 6 (4 fields × 6).
        let names: Vec<&str> = ctx.sets.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["hm1", "hm1gw0p1", "hm1gw0p2"]);
        assert!(ctx.sets.iter().all(|s| s.width() == 24));
        // Numeric inputs: part 0, a group each after the fields' 2.
        assert_eq!(m.parts, [0, 1, 2, 2, 0, 0]);
        assert_eq!(m.groups, [0, 0, 1, 1, 2, 3]);
        let it = &m.experts[0].interaction;
        assert_eq!(it.gw.as_ref().unwrap().dims(), [4, 4]);
        assert_eq!(it.gw_num.as_ref().unwrap().dims(), [2, 3, 6]);
        // Dense parameters: r (16) + numeric parts (2·3·6) + MLP 6→5 (35) + gate(s) + heads.
        let (plain, _) = build(serde_json::json!({
            "parts": 3, "field_parts": parts, "field_groups": groups, "numeric": false
        }));
        let plain = plain.unwrap();
        assert!(plain.experts[0].interaction.gw_num.is_none());
        assert_eq!(
            plain.experts[0].interaction.gw.as_ref().unwrap().dims(),
            [2, 2]
        );
        // Gates read tables 0 and 1 and the numeric inputs either way; the difference is GwPFM's.
        assert_eq!(m.num_params() - plain.num_params(), (16 - 4) + 2 * 3 * 6);
        // The interaction is a k-vector (the table's width, not k/G or k/P).
        let dev = cpu();
        let mut x = ModelInput::new(
            tensor(vec![0.1; 3 * 16], [3, 16], &dev),
            Some(tensor(vec![0.5; 6], [3, 2], &dev)),
            vec![0, 1, 0],
            2,
        );
        x.sets = ctx
            .sets
            .iter()
            .map(|s| tensor(vec![0.2; 3 * s.width()], [3, s.width()], &dev))
            .collect();
        assert_eq!(m.interact(&m.experts[0], &x).dims(), [3, 6]);
        let mut p = Probes::new(false);
        assert_eq!(m.forward(&ctx, &x, &mut p).logits.dims(), [3, 1]);
        // Bad part settings are errors.
        for (gw, want) in [
            (serde_json::json!({"parts": 3}), "needs gwpfm.field_parts"),
            (
                serde_json::json!({"parts": 2, "field_parts": parts}),
                "part 2",
            ),
            (serde_json::json!({"parts": 0}), "parts must be"),
        ] {
            let e = build(gw).0.err().unwrap().to_string();
            assert!(e.contains(want), "{e}");
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
