//! AME (Asymmetric Multi-Embedding) — Pan et al., "Ads Recommendation in a Collapsed and
//! Entangled World", KDD 2024, §5.1.
//!
//! Reference implementation: none from the authors; QunBB `recsys/multitask/stem.py::stem` is a
//! third-party port. This file follows our reading of the paper \[INFERRED, see docs/models.md\]:
//! a fixed number of embedding tables of **different widths** (the deployment uses 16/32/64),
//! decoupled from the number of tasks; `experts_per_table` experts on each table, all with the
//! same output width so they can be mixed; one MMoE-style gate per head over every expert, so a
//! small task can learn to rely on the small table.
//!
//! Tables: table 0 is the schema's own (its fields' widths, `train.embedding.dim` by default);
//! `extra_table_dims` adds one table per entry, every field at that width (embedding sets
//! `ame1`, `ame2`, … of the embedding store). Default 16 (schema) + 32 + 64.
//!
//! Task groups (`task_groups`, paper §5.1: "we group conversion types into groups and treat each
//! group as a task", ~30 towers for >100 conversion types): the tasks of one group share one
//! gate and one tower per row group (domain, or all rows with `heads.layout = "task"`). The
//! paper does not say how a group's tower predicts its several tasks; we give the shared tower
//! one output unit per task of the group \[INFERRED\] (hidden layers shared, `Linear(h, |q|)`
//! output), so every task keeps its own logit and loss. The embedding tables stay decoupled from
//! the groups (the paper's point: a fixed number of tables whatever the number of groups), so a
//! group has no table of its own; the gate routes it between the tables. Empty (default): every
//! task is its own group — the earlier behaviour, with the same parameters drawn in the same
//! order.
//!
//! Deviations from reference: per-head (domain, task) gates and towers instead of per task;
//! numeric inputs are appended to every table's expert input; QunBB's duplicated shared expert
//! does not arise (no shared table).
//!
//! Probes: `expert/<table>/<j>` (`[B, H]`), `gate/<domain>/<task>` (`[n_d, K]`).

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use mdrec_data::rng::Rng;
use mdrec_nn::{EmbeddingSetSpec, Gate, GateKind, Mlp, MlpConfig, ModelContext, ModelInput};
use serde::{Deserialize, Serialize};

use crate::blocks::heads::{HeadLayout, Heads, HeadsConfig};
use crate::model::{model_config, Built, Invalid, ModelOutput, Probes, RecModel, ZooModel};

/// What the gates read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AmeGateInput {
    /// Every table side by side (the default).
    All,
    /// The widest table only.
    Largest,
}

model_config! {
    /// Config of [`Ame`].
    pub struct Config {
        /// Widths of the tables after the schema's own.
        extra_table_dims: Vec<usize> = vec![32, 64] => vec![6],
        /// Experts on each table.
        experts_per_table: usize = 1,
        /// Expert MLP widths (the last is the common output width).
        expert_dims: Vec<usize> = vec![128, 64] => vec![8],
        /// Gate input.
        gate_input: AmeGateInput = AmeGateInput::All,
        /// Gate form.
        gate: GateKind = GateKind::Linear,
        /// Task groups by task name; the tasks of a group share a gate and a tower (empty: one
        /// group per task).
        task_groups: Vec<Vec<String>> = vec![],
        /// Output heads: tower layout and tower hidden widths.
        heads: HeadsConfig = HeadsConfig::new(HeadLayout::DomainTask, vec![32]) => HeadsConfig::new(HeadLayout::DomainTask, vec![4]),
        /// Hidden-layer options for experts and towers.
        mlp: MlpConfig = MlpConfig::default(),
    }
}

/// Asymmetric multi-embedding.
#[derive(Module, Debug)]
pub struct Ame {
    experts: Vec<Mlp>,
    gates: Vec<Gate>,
    heads: Heads,
    /// Set index of tables 1.. (table 0 is the base).
    #[module(skip)]
    table_sets: Vec<usize>,
    #[module(skip)]
    experts_per_table: usize,
    #[module(skip)]
    gate_input: AmeGateInput,
    /// Index of the widest table.
    #[module(skip)]
    largest: usize,
}

const SET_PREFIX: &str = "ame";

fn set_name(p: usize) -> String {
    format!("{SET_PREFIX}{p}")
}

impl Ame {
    fn table(&self, input: &ModelInput, p: usize) -> Tensor<2> {
        match p {
            0 => input.flat(),
            _ => input.set_flat(self.table_sets[p - 1]),
        }
    }
}

/// Task indices of each task group (one group per task when `task_groups` is empty).
fn task_groups(cfg: &Config, ctx: &ModelContext) -> Result<Vec<Vec<usize>>, Invalid> {
    if cfg.task_groups.is_empty() {
        return Ok((0..ctx.n_tasks()).map(|t| vec![t]).collect());
    }
    let groups = cfg
        .task_groups
        .iter()
        .map(|g| {
            g.iter()
                .map(|name| {
                    ctx.tasks.iter().position(|t| t == name).ok_or_else(|| {
                        Invalid(format!(
                            "task_groups names `{name}`, which is not a task (tasks: {})",
                            ctx.tasks.join(", ")
                        ))
                    })
                })
                .collect::<Result<Vec<usize>, Invalid>>()
        })
        .collect::<Result<Vec<_>, Invalid>>()?;
    if let Some(t) = (0..ctx.n_tasks()).find(|t| !groups.iter().flatten().any(|x| x == t)) {
        return Err(Invalid(format!(
            "task_groups has no group for task `{}`",
            ctx.tasks[t]
        )));
    }
    Ok(groups)
}

impl ZooModel for Ame {
    const NAME: &'static str = "ame";
    const PAPER: &'static str =
        "Pan et al., Ads Recommendation in a Collapsed and Entangled World, KDD 2024 (§5.1 AME)";
    type Config = Config;

    fn embedding_sets(cfg: &Config, _ctx: &ModelContext) -> Result<Vec<EmbeddingSetSpec>, Invalid> {
        Ok(EmbeddingSetSpec::tables(SET_PREFIX, &cfg.extra_table_dims))
    }

    fn validate(cfg: &Config) -> Result<(), Invalid> {
        if cfg.extra_table_dims.is_empty()
            || cfg.experts_per_table == 0
            || cfg.expert_dims.is_empty()
        {
            return Err(Invalid("AME needs ≥ 1 extra table (extra_table_dims), experts_per_table ≥ 1 and non-empty expert_dims".into()));
        }
        let mut seen = std::collections::BTreeSet::new();
        for g in &cfg.task_groups {
            if g.is_empty() {
                return Err(Invalid("task_groups has an empty group".into()));
            }
            if let Some(t) = g.iter().find(|t| !seen.insert(t.as_str())) {
                return Err(Invalid(format!(
                    "task_groups names task `{t}` more than once"
                )));
            }
        }
        Ok(())
    }

    fn build(cfg: &Config, ctx: &ModelContext, rng: &mut Rng, device: &Device) -> Built<Self> {
        let table_sets: Vec<usize> = (1..=cfg.extra_table_dims.len())
            .map(|p| {
                ctx.set_index(&set_name(p))
                    .expect("context carries the model's embedding sets")
            })
            .collect();
        let widths: Vec<usize> = std::iter::once(ctx.input_dim())
            .chain(
                table_sets
                    .iter()
                    .map(|&k| ctx.sets[k].width() + ctx.n_numeric),
            )
            .collect();
        let largest = (0..widths.len())
            .max_by_key(|&p| (widths[p], usize::MAX - p))
            .expect("at least one table");
        let experts: Vec<Mlp> = (0..widths.len() * cfg.experts_per_table)
            .map(|k| {
                Mlp::new(
                    widths[k / cfg.experts_per_table],
                    &cfg.expert_dims,
                    &cfg.mlp,
                    rng,
                    device,
                )
            })
            .collect();
        let h = experts[0].out_dim();
        let task_groups = task_groups(cfg, ctx)?;
        let heads = Heads::new_grouped(&cfg.heads, ctx, &task_groups, h, &cfg.mlp, rng, device);
        let gate_in = match cfg.gate_input {
            AmeGateInput::All => widths.iter().sum::<usize>() - ctx.n_numeric * (widths.len() - 1),
            AmeGateInput::Largest => widths[largest],
        };
        let gates = (0..heads.n_groups() * heads.n_task_groups())
            .map(|_| Gate::new(gate_in, experts.len(), cfg.gate, rng, device))
            .collect();
        Ok(Ame {
            experts,
            gates,
            heads,
            table_sets,
            experts_per_table: cfg.experts_per_table,
            gate_input: cfg.gate_input,
            largest,
        })
    }
}

impl RecModel for Ame {
    /// # Shapes
    /// - table p `[B, F·k_p + n_numeric]`; experts `[B, H]` stacked `[B, K, H]`
    /// - gate input `[B, Σ_p F·k_p + n_numeric]` (all) or the widest table; gate `[n_d, K]`;
    ///   logits `[B, T]`
    fn forward(&self, ctx: &ModelContext, input: &ModelInput, probes: &mut Probes) -> ModelOutput {
        let n_tables = self.table_sets.len() + 1;
        let tables: Vec<Tensor<2>> = (0..n_tables).map(|p| self.table(input, p)).collect();
        let outs: Vec<Tensor<2>> = self
            .experts
            .iter()
            .enumerate()
            .map(|(k, e)| e.forward(tables[k / self.experts_per_table].clone()))
            .collect();
        for (k, o) in outs.iter().enumerate() {
            let (p, j) = (k / self.experts_per_table, k % self.experts_per_table);
            probes.record(
                || crate::ProbeKey::GroupExpert {
                    group: p.to_string(),
                    index: j,
                },
                || o.clone(),
            );
        }
        let stacked: Tensor<3> = Tensor::stack(outs, 1);
        let gate_in = match self.gate_input {
            AmeGateInput::All => input.flat_all(),
            AmeGateInput::Largest => tables[self.largest].clone(),
        };
        let logits = self
            .heads
            .forward_gated(ctx, input, &self.gates, &gate_in, &stacked, probes);
        ModelOutput::from(logits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::find;
    use mdrec_nn::device::cpu;
    use mdrec_nn::init::tensor;

    #[test]
    fn tables_have_their_own_widths_and_gates_cover_every_expert() {
        let base = ModelContext::uniform(3, 10, 4, 1, 2, 2);
        let f = find("ame").unwrap();
        let v = f
            .resolve(&serde_json::json!({"extra_table_dims": [8, 2], "experts_per_table": 2, "expert_dims": [5]}))
            .unwrap();
        let ctx = f.context(&v, &base).unwrap();
        let widths: Vec<usize> = ctx.sets.iter().map(|s| s.width()).collect();
        assert_eq!(widths, [24, 6]);
        // Tables of the same field are distinct store tables.
        assert_eq!(ctx.store_fields().len(), 9);
        let cfg: Config = serde_json::from_value(v).unwrap();
        let dev = cpu();
        let m = Ame::build(&cfg, &ctx, &mut Rng::new(3), &dev).unwrap();
        let mut rng = Rng::new(4);
        let mut t = |w: usize| {
            tensor(
                (0..5 * w).map(|_| rng.normal() as f32).collect(),
                [5, w],
                &dev,
            )
        };
        let mut x = ModelInput::new(t(12), Some(t(1)), vec![0, 1, 0, 1, 1], 2);
        x.sets = vec![t(24), t(6)];
        let mut p = Probes::new(true);
        let out = m.forward(&ctx, &x, &mut p);
        assert_eq!(out.logits.dims(), [5, 2]);
        // 3 tables × 2 experts, one gate weight each, summing to 1.
        let g = p.values()["gate/d1/t0"].clone();
        assert_eq!(g.dims(), [3, 6]);
        let s = g.sum_dim(1).into_data().try_to_vec::<f32>().unwrap();
        assert!(s.iter().all(|v| (v - 1.0).abs() < 1e-5));
        // The smallest table's experts read only that table: changing it moves only them.
        let mut y = x.clone();
        y.sets[1] = y.sets[1].clone() + 1.0;
        let mut q = Probes::new(true);
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
        assert!(same("expert/0/0") && same("expert/1/1"));
        assert!(!same("expert/2/0") && !same("expert/2/1"));
    }

    #[test]
    fn task_groups_share_a_gate_and_a_tower() {
        let base = ModelContext::uniform(3, 10, 4, 1, 2, 3);
        let f = find("ame").unwrap();
        let dev = cpu();
        let build = |over: serde_json::Value| {
            let v = f.resolve(&over).unwrap();
            let ctx = f.context(&v, &base).unwrap();
            let cfg: Config = serde_json::from_value(v).unwrap();
            (Ame::build(&cfg, &ctx, &mut Rng::new(3), &dev), ctx)
        };
        let tiny = f.tiny_config();
        let with = |groups: serde_json::Value| {
            let mut v = tiny.clone();
            v["task_groups"] = groups;
            v
        };
        let (single, ctx) = build(tiny.clone());
        let single = single.unwrap();
        // The default (one group per task) is the explicit singleton grouping, parameter for
        // parameter.
        let (explicit, _) = build(with(serde_json::json!([["t0"], ["t1"], ["t2"]])));
        let explicit = explicit.unwrap();
        let mut x = ModelInput::new(
            tensor(
                (0..5 * 12).map(|v| (v as f32 * 0.37).sin()).collect(),
                [5, 12],
                &dev,
            ),
            Some(tensor(vec![0.3, -0.2, 0.1, 0.0, 0.5], [5, 1], &dev)),
            vec![0, 1, 0, 1, 1],
            2,
        );
        x.sets = ctx
            .sets
            .iter()
            .map(|s| tensor(vec![0.05; 5 * s.width()], [5, s.width()], &dev))
            .collect();
        let host = |t: Tensor<2>| t.into_data().try_to_vec::<f32>().unwrap();
        let run = |m: &Ame, p: &mut Probes| host(m.forward(&ctx, &x, p).logits);
        let (mut p0, mut p1) = (Probes::new(false), Probes::new(false));
        assert_eq!(run(&single, &mut p0), run(&explicit, &mut p1));
        // Tasks t0 and t2 in one group: one gate and one tower with 2 outputs per domain.
        let (grouped, _) = build(with(serde_json::json!([["t0", "t2"], ["t1"]])));
        let grouped = grouped.unwrap();
        assert_eq!(single.gates.len(), 2 * 3);
        assert_eq!(grouped.gates.len(), 2 * 2);
        assert_eq!(grouped.heads.n_task_groups(), 2);
        // Per domain, grouping removes one tower's hidden layers (the output units are kept:
        // 2 + 1 outputs instead of 3 × 1) and one gate.
        let cfg: Config = serde_json::from_value(tiny.clone()).unwrap();
        let h = *cfg.expert_dims.last().unwrap();
        let hidden = Mlp::new(h, &cfg.heads.tower_dims, &cfg.mlp, &mut Rng::new(1), &dev);
        assert_eq!(
            single.heads.num_params() - grouped.heads.num_params(),
            2 * hidden.num_params()
        );
        assert_eq!(
            single.gates.iter().map(|g| g.num_params()).sum::<usize>()
                - grouped.gates.iter().map(|g| g.num_params()).sum::<usize>(),
            2 * single.gates[0].num_params()
        );
        let mut p = Probes::new(true);
        let logits = grouped.forward(&ctx, &x, &mut p).logits;
        assert_eq!(logits.dims(), [5, 3]);
        let g = |k: &str| host(p.values()[k].clone());
        assert_eq!(g("gate/d0/t0"), g("gate/d0/t2"));
        assert_ne!(g("gate/d0/t0"), g("gate/d0/t1"));
        // Bad groupings are errors.
        for (groups, want) in [
            (serde_json::json!([["t0", "t9"], ["t1", "t2"]]), "`t9`"),
            (
                serde_json::json!([["t0"], ["t1"]]),
                "no group for task `t2`",
            ),
        ] {
            let e = build(with(groups)).0.err().unwrap().to_string();
            assert!(e.contains(want), "{e}");
        }
        for (groups, want) in [
            (
                serde_json::json!([["t0", "t1"], ["t1", "t2"]]),
                "more than once",
            ),
            (serde_json::json!([[], ["t0", "t1", "t2"]]), "empty group"),
        ] {
            let e = f.resolve(&with(groups)).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        }
    }

    #[test]
    fn no_extra_table_is_an_error() {
        let f = find("ame").unwrap();
        let e = f
            .resolve(&serde_json::json!({"extra_table_dims": []}))
            .expect_err("no extra table")
            .to_string();
        assert!(e.contains("extra table"), "{e}");
    }
}
