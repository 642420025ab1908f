//! Crocodile — Xu et al., "Crocodile: Cross Experts Covariance for Disentangled Learning in
//! Multi-Domain Recommendation", and the multi-embedding MMoE it extends
//! (ME-MMoE; registered as `me_mmoe`, the same code with other defaults).
//!
//! Reference implementation: none exists for Crocodile; ME-MMoE follows Crocodile's description
//! (§4.1, §4.4) and the multi-embedding paradigm of Guo et al. / Pan et al. (Pan et al., KDD 2024, §4.2).
//!
//! # Structure
//! - **Multi-embedding**: `num_tables` (M) embedding tables per field, served by the embedding
//!   store as extra embedding sets (`<table>@me1`, …; table 0 is the schema's own), so sparse
//!   row-wise updates apply to every table.
//! - **Experts**: `experts_per_table` MLPs per table (ReLU after every layer, so outputs are
//!   ≥ 0 as in Eq. 4); expert `k` reads table `k / experts_per_table` plus the numeric inputs.
//!   `num_tables = 1, experts_per_table = K` is the single-embedding (SE) MMoE of Table 5.
//! - **Gates**, one per head (per (domain, task) with the default heads — the paper's per-domain
//!   gates, one per task when there are several tasks):
//!   - `gate_input = "prior"` (PG, Eq. 9): the gate reads the prior embeddings — a separate
//!     embedding set of the fields with roles `prior_roles` (default user/item ids with role
//!     `prior`, and the `domain` field), plus a learned domain table when the schema has no
//!     `domain` field;
//!   - `gate_input = "embedding"` (ME-MMoE, "e^s"): the gate of domain `s` reads table
//!     `s mod M` (its own table when M = S, as in Crocodile §4.4).
//!   - `elementwise = true` (EG, Eq. 10): `W_g ∈ R^{l × K·d}`, softmax over the K experts for each
//!     of the d dimensions, `t = Σ_p g_p ⊙ O_p` (the sum over experts is \[INFERRED\]);
//!     `false`: one scalar weight per expert.
//! - **Loss**: the run's per-(domain, task) mean BCE summed over cells (Eq. 7 generalised) plus
//!   `alpha · L` where `L` is the expert-separation loss `disentangle` (Eq. 6 CovLoss by
//!   default; Table 4's alternatives in [`mdrec_nn::disentangle`]) on the first `sample_rows`
//!   rows of the (shuffled) training batch. Training only.
//!
//! Table 5's ablation is a config sweep of this one model: SE (`num_tables = 1`,
//! `experts_per_table = K`, embedding gate, no loss) → ME (`me_mmoe`) → +PG → +PEG → +CovLoss
//! (`crocodile`), see `benches/specs/crocodile_table5.toml`.
//!
//! Deviations from reference: none to deviate from; the \[INFERRED\] choices are options
//! (`cov_normalize`, `sample_rows`, `gate_input`, `prior_roles`, per-head gates).
//!
//! Probes: `expert/<k>` (`[B, d]`), `gate/<domain>/<task>` (`[n_d, K]` or `[n_d, K·d]`,
//! expert-major).

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor};
use mdrec_data::rng::Rng;
use mdrec_data::FieldRole;
use mdrec_nn::disentangle::{
    expert_loss, importance_loss, transformation_loss, transformation_maps, CovNormalize,
    DisentangleKind,
};
use mdrec_nn::init::WeightInit;
use mdrec_nn::layers::{linear, mix};
use mdrec_nn::{EmbeddingSetSpec, Gate, GateKind, Mlp, MlpConfig, ModelContext, ModelInput};
use serde::{Deserialize, Serialize};

use crate::blocks::domain::DomainEmbedding;
use crate::blocks::experts::stack_experts;
use crate::blocks::heads::{HeadLayout, Heads, HeadsConfig};
use crate::model::{
    model_config, zoo_variant, Built, Invalid, ModelOutput, Probes, RecModel, ZooModel,
};

/// What a gate reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GateInput {
    /// The prior embeddings (user, item, domain): Crocodile's PG.
    Prior,
    /// The embedding table of the row's domain (`domain mod M`): ME-MMoE.
    Embedding,
}

model_config! {
    /// Config of [`Crocodile`] (and of `me_mmoe`).
    pub struct Config {
        /// Number of embedding tables M.
        num_tables: usize = 5 => 2,
        /// Experts reading each table.
        experts_per_table: usize = 1,
        /// Expert MLP widths; the last is the expert output width d.
        expert_dims: Vec<usize> = vec![128, 64] => vec![8],
        /// Output heads: tower layout and tower hidden widths.
        heads: HeadsConfig = HeadsConfig::new(HeadLayout::DomainTask, vec![32]) => HeadsConfig::new(HeadLayout::DomainTask, vec![4]),
        /// Gate input.
        gate_input: GateInput = GateInput::Prior,
        /// Element-wise gating (EG): one weight per expert and output dimension.
        elementwise: bool = true,
        /// Roles of the fields whose prior embeddings the gates read (`gate_input = "prior"`).
        prior_roles: Vec<FieldRole> = vec![FieldRole::Prior, FieldRole::Domain],
        /// Width of the prior embeddings; 0 keeps each field's schema width.
        prior_dim: usize = 0,
        /// Width of the learned domain embedding used when the schema has no `domain` field.
        domain_emb_dim: usize = 16 => 4,
        /// Expert-separation loss.
        disentangle: DisentangleKind = DisentangleKind::Cov,
        /// Its weight α.
        alpha: f64 = 1e-3,
        /// Normalisation of the covariance losses.
        cov_normalize: CovNormalize = CovNormalize::None,
        /// Rows of the batch the loss is computed on (the first ones; batches are shuffled);
        /// 0 = all rows.
        sample_rows: usize = 32 => 16,
        /// Hidden-layer options for experts and towers.
        mlp: MlpConfig = MlpConfig::default(),
    }
}

/// A gate of one head: scalar per expert (PG / ME-MMoE) or element-wise (EG). A model holds a
/// handful, so the size difference of the variants does not matter.
#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant)]
pub enum HeadGate {
    /// `softmax(Linear(r))` over K experts.
    Scalar(Gate),
    /// `softmax_K(reshape(Linear(r), [K, d]))`.
    Elementwise(Linear),
}

/// Crocodile / ME-MMoE.
#[derive(Module, Debug)]
pub struct Crocodile {
    experts: Vec<Mlp>,
    gates: Vec<HeadGate>,
    heads: Heads,
    /// The domain part of the prior when the prior set lacks the `domain` field.
    domain_emb: Option<DomainEmbedding>,
    /// The learned maps between expert pairs of `disentangle = "trans"` (empty otherwise).
    trans_maps: Vec<Param<Tensor<2>>>,
    #[module(skip)]
    table_sets: Vec<Option<usize>>,
    #[module(skip)]
    prior_set: Option<usize>,
    #[module(skip)]
    experts_per_table: usize,
    #[module(skip)]
    expert_dim: usize,
    #[module(skip)]
    n_tasks: usize,
    #[module(skip)]
    gate_input: GateInput,
    #[module(skip)]
    disentangle: DisentangleKind,
    #[module(skip)]
    alpha: f32,
    #[module(skip)]
    cov_normalize: CovNormalize,
    #[module(skip)]
    sample_rows: usize,
}

fn table_set_name(p: usize) -> String {
    format!("me{p}")
}

const PRIOR_SET: &str = "prior";

fn has_prior_fields(cfg: &Config, ctx: &ModelContext) -> bool {
    ctx.fields
        .iter()
        .any(|f| f.roles.iter().any(|r| cfg.prior_roles.contains(r)))
}

fn sets(cfg: &Config, ctx: &ModelContext) -> Vec<EmbeddingSetSpec> {
    let mut out: Vec<EmbeddingSetSpec> = (1..cfg.num_tables)
        .map(|p| EmbeddingSetSpec::copy(table_set_name(p)))
        .collect();
    if cfg.gate_input == GateInput::Prior && has_prior_fields(cfg, ctx) {
        out.push(EmbeddingSetSpec {
            name: PRIOR_SET.into(),
            dim: (cfg.prior_dim > 0).then_some(cfg.prior_dim),
            roles: cfg.prior_roles.clone(),
        });
    }
    out
}

impl Crocodile {
    fn new(cfg: &Config, ctx: &ModelContext, rng: &mut Rng, device: &Device) -> Built<Self> {
        if cfg.num_tables == 0 || cfg.experts_per_table == 0 || cfg.expert_dims.is_empty() {
            return Err(Invalid::new(
                "num_tables and experts_per_table must be ≥ 1 and expert_dims non-empty",
            ));
        }
        if !cfg.alpha.is_finite() || cfg.alpha < 0.0 {
            return Err(Invalid::new(format!(
                "alpha must be ≥ 0, got {}",
                cfg.alpha
            )));
        }
        if cfg.disentangle != DisentangleKind::None && cfg.sample_rows == 1 {
            return Err(Invalid::new(
                "sample_rows = 1 leaves nothing to correlate; use ≥ 2 or 0 (all rows)",
            ));
        }
        let table_sets: Vec<Option<usize>> = (0..cfg.num_tables)
            .map(|p| {
                (p > 0).then(|| {
                    ctx.set_index(&table_set_name(p))
                        .expect("context carries the model's embedding sets")
                })
            })
            .collect();
        let prior_set = ctx.set_index(PRIOR_SET);
        let table_width = |p: usize| match table_sets[p] {
            None => ctx.input_dim(),
            Some(k) => ctx.sets[k].width() + ctx.n_numeric,
        };
        let k_total = cfg.num_tables * cfg.experts_per_table;
        let experts: Vec<Mlp> = (0..k_total)
            .map(|k| {
                Mlp::new(
                    table_width(k / cfg.experts_per_table),
                    &cfg.expert_dims,
                    &cfg.mlp,
                    rng,
                    device,
                )
            })
            .collect();
        let d = experts[0].out_dim();
        let heads = Heads::new(&cfg.heads, ctx, d, &cfg.mlp, rng, device);
        // The domain part of the prior comes from the prior set when it holds the `domain`
        // field; otherwise from the schema's domain field or, without one, a learned table.
        let domain_in_prior = prior_set.is_some_and(|k| {
            ctx.sets[k]
                .fields
                .iter()
                .any(|f| f.has_role(FieldRole::Domain))
        });
        let domain_emb = (cfg.gate_input == GateInput::Prior && !domain_in_prior)
            .then(|| {
                DomainEmbedding::new(ctx, &[FieldRole::Domain], cfg.domain_emb_dim, rng, device)
            })
            .transpose()?;
        let n_groups = heads.n_groups();
        let gate_width = |g: usize| -> usize {
            match cfg.gate_input {
                GateInput::Prior => {
                    prior_set.map_or(0, |k| ctx.sets[k].width())
                        + domain_emb.as_ref().map_or(0, DomainEmbedding::dim)
                }
                GateInput::Embedding => table_width(g % cfg.num_tables),
            }
        };
        let gates = (0..n_groups * ctx.n_tasks())
            .map(|h| {
                let l = gate_width(h / ctx.n_tasks());
                if cfg.elementwise {
                    HeadGate::Elementwise(linear(
                        l,
                        k_total * d,
                        WeightInit::TorchDefault,
                        rng,
                        device,
                    ))
                } else {
                    HeadGate::Scalar(Gate::new(l, k_total, GateKind::Linear, rng, device))
                }
            })
            .collect();
        let trans_maps = if cfg.disentangle == DisentangleKind::Trans {
            transformation_maps(k_total, d, rng, device)
        } else {
            Vec::new()
        };
        Ok(Crocodile {
            experts,
            gates,
            heads,
            domain_emb,
            trans_maps,
            table_sets,
            prior_set,
            experts_per_table: cfg.experts_per_table,
            expert_dim: d,
            n_tasks: ctx.n_tasks(),
            gate_input: cfg.gate_input,
            disentangle: cfg.disentangle,
            alpha: cfg.alpha as f32,
            cov_normalize: cfg.cov_normalize,
            sample_rows: cfg.sample_rows,
        })
    }

    fn table(&self, input: &ModelInput, p: usize) -> Tensor<2> {
        match self.table_sets[p] {
            None => input.flat(),
            Some(k) => input.set_flat(k),
        }
    }

    /// The prior embedding `r` of every row, `[B, l]`.
    fn prior(&self, ctx: &ModelContext, input: &ModelInput) -> Tensor<2> {
        let mut parts = Vec::new();
        if let Some(k) = self.prior_set {
            parts.push(input.sets[k].clone());
        }
        if let Some(d) = &self.domain_emb {
            parts.push(d.forward(ctx, input));
        }
        Tensor::cat(parts, 1)
    }

    /// Gate weights of head `h` on gate input `r` (`[n, l]`) → `[n, K]` or `[n, K·d]`.
    fn gate(&self, h: usize, r: Tensor<2>) -> Tensor<2> {
        match &self.gates[h] {
            HeadGate::Scalar(g) => g.forward(r),
            HeadGate::Elementwise(l) => {
                let n = r.dims()[0];
                let k = self.experts.len();
                let z = l.forward(r).reshape([n, k, self.expert_dim]);
                softmax(z, 1).reshape([n, k * self.expert_dim])
            }
        }
    }
}

/// `Σ_p g_p ⊙ O_p` for element-wise gates `g: [n, K·d]` over experts `[n, K, d]`.
fn mix_elementwise(experts: Tensor<3>, gate: Tensor<2>) -> Tensor<2> {
    let [n, k, d] = experts.dims();
    (experts * gate.reshape([n, k, d]))
        .sum_dim(1)
        .reshape([n, d])
}

impl RecModel for Crocodile {
    /// # Shapes
    /// - table p: `[B, F·k + n_numeric]`; expert outputs `[B, d]` each, stacked `[B, K, d]`
    /// - gate input (prior) `[B, l]`; gate of a head on its domain's rows `[n_d, K]` or
    ///   `[n_d, K·d]`; mixture `[n_d, d]`; logits `[B, T]`
    fn forward(&self, ctx: &ModelContext, input: &ModelInput, probes: &mut Probes) -> ModelOutput {
        let tables: Vec<Tensor<2>> = (0..self.table_sets.len())
            .map(|p| self.table(input, p))
            .collect();
        let outs: Vec<Tensor<2>> = self
            .experts
            .iter()
            .enumerate()
            .map(|(k, e)| e.forward(tables[k / self.experts_per_table].clone()))
            .collect();
        let stacked = stack_experts(outs.clone(), probes);
        let prior = (self.gate_input == GateInput::Prior).then(|| self.prior(ctx, input));
        let training = input.emb.device().is_autodiff();
        let want_gates = training && self.disentangle == DisentangleKind::Importance;
        let mut gates_seen = Vec::new();
        let t_n = self.n_tasks;
        let n_tables = self.table_sets.len();
        let logits = self.heads.forward(input, |group, t| {
            let g = group.unwrap_or(0);
            let r = match &prior {
                Some(p) => p.clone(),
                None => tables[g % n_tables].clone(),
            };
            let (r, es) = match group {
                Some(d) => (input.rows_of(r, d), input.rows_of(stacked.clone(), d)),
                None => (r, stacked.clone()),
            };
            let gate = self.gate(g * t_n + t, r);
            probes.record(
                || {
                    crate::ProbeKey::head_gate(
                        group.map(|d| ctx.domains[d].as_str()),
                        &ctx.tasks[t],
                    )
                },
                || gate.clone(),
            );
            if want_gates {
                gates_seen.push(gate.clone());
            }
            match &self.gates[g * t_n + t] {
                HeadGate::Scalar(_) => mix(es, gate),
                HeadGate::Elementwise(_) => mix_elementwise(es, gate),
            }
        });
        let aux_loss = if !training || self.alpha == 0.0 {
            None
        } else if self.disentangle == DisentangleKind::Importance {
            importance_loss(&gates_seen, self.experts.len())
        } else {
            let n = input.batch_size;
            let rows = if self.sample_rows == 0 {
                n
            } else {
                self.sample_rows.min(n)
            };
            let sample: Vec<Tensor<2>> = if rows == n {
                outs
            } else {
                outs.into_iter().map(|o| o.narrow(0, 0, rows)).collect()
            };
            (rows >= 2)
                .then(|| match self.disentangle {
                    DisentangleKind::Trans => {
                        let maps: Vec<Tensor<2>> = self.trans_maps.iter().map(Param::val).collect();
                        transformation_loss(&sample, &maps)
                    }
                    kind => expert_loss(kind, &sample, self.cov_normalize),
                })
                .flatten()
        }
        .map(|l| l * self.alpha);
        ModelOutput { logits, aux_loss }
    }
}

impl ZooModel for Crocodile {
    const NAME: &'static str = "crocodile";
    const PAPER: &'static str = "Xu et al., Crocodile: Cross Experts Covariance for Disentangled Learning in Multi-Domain Recommendation, 2025";
    type Config = Config;

    fn embedding_sets(cfg: &Config, ctx: &ModelContext) -> Result<Vec<EmbeddingSetSpec>, Invalid> {
        embedding_sets_of(cfg, ctx)
    }

    fn build(cfg: &Config, ctx: &ModelContext, rng: &mut Rng, device: &Device) -> Built<Self> {
        Crocodile::new(cfg, ctx, rng, device)
    }
}

fn embedding_sets_of(cfg: &Config, ctx: &ModelContext) -> Result<Vec<EmbeddingSetSpec>, Invalid> {
    Ok(sets(cfg, ctx))
}

zoo_variant! {
    /// ME-MMoE: [`Crocodile`]'s code with the multi-embedding MMoE defaults (each domain's gate
    /// reads its own table, scalar gates, no separation loss, M = 3 tables).
    MeMmoe(Crocodile),
    /// Config of [`MeMmoe`]: [`Config`] with ME-MMoE defaults.
    MeMmoeConfig(Config),
    name = "me_mmoe",
    paper = "Multi-embedding MMoE as described by Xu et al. (Crocodile, 2025, §4.1) after Guo et al., On the Embedding Collapse when Scaling up Recommendation Models, ICML 2024",
    default = Config {
        num_tables: 3,
        gate_input: GateInput::Embedding,
        elementwise: false,
        disentangle: DisentangleKind::None,
        ..Config::default()
    },
    tiny = Config {
        num_tables: 2,
        expert_dims: vec![8],
        heads: HeadsConfig::new(HeadLayout::DomainTask, vec![4]),
        ..MeMmoeConfig::default().0
    },
    build = Crocodile::new,
    sets = embedding_sets_of,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::find;
    use mdrec_nn::device::cpu;
    use mdrec_nn::init::tensor;

    fn ctx_with_roles() -> ModelContext {
        let mut ctx = ModelContext::uniform(4, 10, 4, 1, 3, 2);
        ctx.fields[0].roles = vec![FieldRole::Prior, FieldRole::User];
        ctx.fields[1].roles = vec![FieldRole::Prior, FieldRole::Item];
        ctx.fields[3].roles = vec![FieldRole::Domain];
        ctx
    }

    fn input(ctx: &ModelContext, domain: &[u32], seed: u64, device: &Device) -> ModelInput {
        let mut rng = Rng::new(seed);
        let b = domain.len();
        let mut v = |w: usize| {
            tensor(
                (0..b * w).map(|_| rng.normal() as f32).collect(),
                [b, w],
                device,
            )
        };
        let mut input = ModelInput::new(
            v(ctx.emb_dim()),
            Some(v(ctx.n_numeric)),
            domain.to_vec(),
            ctx.n_domains(),
        );
        input.sets = ctx.sets.iter().map(|s| v(s.width())).collect();
        input
    }

    fn build(
        name: &str,
        over: serde_json::Value,
        base: &ModelContext,
    ) -> (Crocodile, ModelContext) {
        let f = find(name).unwrap();
        let cfg = f.resolve(&over).unwrap();
        let ctx = f.context(&cfg, base).unwrap();
        let c: Config = match name {
            "me_mmoe" => serde_json::from_value::<MeMmoeConfig>(cfg).unwrap().0,
            _ => serde_json::from_value(cfg).unwrap(),
        };
        let m = Crocodile::new(&c, &ctx, &mut Rng::new(1), &cpu()).unwrap();
        (m, ctx)
    }

    #[test]
    fn asks_for_one_set_per_extra_table_and_one_prior_set() {
        let base = ctx_with_roles();
        let (_, ctx) = build("crocodile", serde_json::json!({"num_tables": 3}), &base);
        let names: Vec<&str> = ctx.sets.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["me1", "me2", "prior"]);
        // The prior set holds the two prior ids and the domain field, not the other field.
        let prior: Vec<&str> = ctx.sets[2].fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(prior, ["f0", "f1", "f3"]);
        // ME-MMoE's gates read tables: no prior set.
        let (_, ctx) = build("me_mmoe", serde_json::json!({}), &base);
        let names: Vec<&str> = ctx.sets.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["me1", "me2"]);
    }

    #[test]
    fn each_expert_reads_only_its_own_table() {
        let base = ctx_with_roles();
        let (m, ctx) = build(
            "crocodile",
            serde_json::json!({"num_tables": 3, "experts_per_table": 2}),
            &base,
        );
        let dev = cpu();
        let a = input(&ctx, &[0, 1, 2, 0], 3, &dev);
        let mut b = a.clone();
        // Change table 1 only (set me1): experts 2 and 3 change, the others do not.
        b.sets[0] = b.sets[0].clone() + 1.0;
        let mut pa = Probes::new(true);
        let mut pb = Probes::new(true);
        m.forward(&ctx, &a, &mut pa);
        m.forward(&ctx, &b, &mut pb);
        for k in 0..6 {
            let key = format!("expert/{k}");
            let da = pa.values()[&key]
                .clone()
                .into_data()
                .try_to_vec::<f32>()
                .unwrap();
            let db = pb.values()[&key]
                .clone()
                .into_data()
                .try_to_vec::<f32>()
                .unwrap();
            assert_eq!(da == db, !(k == 2 || k == 3), "expert {k}");
        }
    }

    #[test]
    fn elementwise_gates_sum_to_one_over_experts_per_dimension() {
        let base = ctx_with_roles();
        let (m, ctx) = build(
            "crocodile",
            serde_json::json!({"num_tables": 3, "expert_dims": [5]}),
            &base,
        );
        let dev = cpu();
        let x = input(&ctx, &[0, 1, 2, 2, 1], 4, &dev);
        let mut p = Probes::new(true);
        m.forward(&ctx, &x, &mut p);
        let g = p.values()["gate/d2/t1"].clone();
        assert_eq!(g.dims(), [2, 15]);
        let s = g
            .reshape([2, 3, 5])
            .sum_dim(1)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert!(s.iter().all(|v| (v - 1.0).abs() < 1e-5), "{s:?}");
        // Element-wise: weights differ across dimensions of the same expert.
        let v = p.values()["gate/d2/t1"]
            .clone()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert!((v[0] - v[1]).abs() > 1e-6);
    }

    #[test]
    fn prior_gate_depends_on_priors_not_on_other_fields() {
        let base = ctx_with_roles();
        let (m, ctx) = build("crocodile", serde_json::json!({}), &base);
        let dev = cpu();
        let a = input(&ctx, &[0, 1, 2], 5, &dev);
        let mut b = a.clone();
        // Perturb every ME table but not the prior set: the gates stay, the experts move.
        b.emb = b.emb.clone() * 2.0;
        for k in 0..ctx.sets.len() - 1 {
            b.sets[k] = b.sets[k].clone() * 2.0;
        }
        let (mut pa, mut pb) = (Probes::new(true), Probes::new(true));
        m.forward(&ctx, &a, &mut pa);
        m.forward(&ctx, &b, &mut pb);
        let v = |p: &Probes, k: &str| {
            p.values()[k]
                .clone()
                .into_data()
                .try_to_vec::<f32>()
                .unwrap()
        };
        assert_eq!(v(&pa, "gate/d1/t0"), v(&pb, "gate/d1/t0"));
        assert_ne!(v(&pa, "expert/0"), v(&pb, "expert/0"));
    }

    #[test]
    fn cov_loss_only_in_training_and_scaled_by_alpha() {
        let base = ctx_with_roles();
        let dev = cpu();
        let ad = dev.clone().autodiff();
        let (m, ctx) = build(
            "crocodile",
            serde_json::json!({"alpha": 0.5, "sample_rows": 0}),
            &base,
        );
        let x = input(&ctx, &[0, 1, 2, 0, 1, 2, 0, 1], 6, &dev);
        assert!(m
            .forward(&ctx, &x, &mut Probes::new(false))
            .aux_loss
            .is_none());
        let m_ad = m.clone().fork(&ad);
        let mut x_ad = input(&ctx, &[0, 1, 2, 0, 1, 2, 0, 1], 6, &ad);
        x_ad.routing = mdrec_nn::input::Routing::new(&x_ad.domain, 3, &ad);
        let mut p = Probes::new(true);
        let out = m_ad.forward(&ctx, &x_ad, &mut p);
        let aux = out
            .aux_loss
            .expect("training adds the loss")
            .into_scalar::<f32>();
        let outs: Vec<Tensor<2>> = (0..5)
            .map(|k| p.values()[&format!("expert/{k}")].clone())
            .collect();
        let direct = expert_loss(DisentangleKind::Cov, &outs, CovNormalize::None)
            .unwrap()
            .into_scalar::<f32>();
        assert!(
            (aux - 0.5 * direct).abs() < 1e-5 * direct.max(1.0),
            "{aux} vs {}",
            0.5 * direct
        );
    }

    #[test]
    fn trans_loss_learns_a_map_per_expert_pair() {
        let base = ctx_with_roles();
        let ad = cpu().autodiff();
        let over = serde_json::json!({"disentangle": "trans", "alpha": 0.5, "sample_rows": 0});
        let (m, ctx) = build("crocodile", over.clone(), &base);
        assert_eq!(
            m.trans_maps.len(),
            5 * 4 / 2,
            "one map per pair of the 5 experts"
        );
        let (plain, _) = build("crocodile", serde_json::json!({}), &base);
        assert!(plain.trans_maps.is_empty());
        // built on the autodiff device, so its parameters are tracked leaves
        let c: Config =
            serde_json::from_value(find("crocodile").unwrap().resolve(&over).unwrap()).unwrap();
        let m_ad = Crocodile::new(&c, &ctx, &mut Rng::new(1), &ad).unwrap();
        let mut x = input(&ctx, &[0, 1, 2, 0, 1, 2, 0, 1], 6, &ad);
        x.routing = mdrec_nn::input::Routing::new(&x.domain, 3, &ad);
        let mut p = Probes::new(true);
        let aux = m_ad
            .forward(&ctx, &x, &mut p)
            .aux_loss
            .expect("training adds the loss");
        let outs: Vec<Tensor<2>> = (0..5)
            .map(|k| p.values()[&format!("expert/{k}")].clone())
            .collect();
        let maps: Vec<Tensor<2>> = m_ad.trans_maps.iter().map(Param::val).collect();
        let direct = transformation_loss(&outs, &maps)
            .unwrap()
            .into_scalar::<f32>();
        let grads = aux.clone().backward();
        let got = aux.into_scalar::<f32>();
        assert!(
            (got - 0.5 * direct).abs() < 1e-5 * direct.max(1.0),
            "{got} vs {}",
            0.5 * direct
        );
        assert!(
            m_ad.trans_maps.iter().all(|w| w.grad(&grads).is_some()),
            "every map trains"
        );
    }
}
