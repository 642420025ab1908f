//! STEM-Net — Su et al., "STEM: Unleashing the Power of Embeddings for Multi-task
//! Recommendation", AAAI 2024, with its two relatives built from the same
//! code: ME-PLE and STEM-AL (Pan et al., KDD 2024, §5.2).
//!
//! Reference implementation: `LiangcaiSu/STEM` `models/STEM.py` (STEM, and `models/PLE.py` fed
//! with STEM's embedding split for ME-PLE); STEM-AL has no code (Pan et al., KDD 2024, §5.2; QunBB's
//! `stem(auxiliary_task_group=…)` port is equivalent).
//!
//! # Structure
//! - **Units**: the paper's "tasks" that own an embedding table. `units = "task"` (STEM), or
//!   `"domain"` / `"domain_task"`, so that in a multi-domain setting a domain (or a (domain,
//!   task) cell) owns a table, as Crocodile uses STEM. Head (d, t) reads the output of its unit.
//! - **Tables**: unit `u` owns an embedding set `u<u>` (a full copy of every field); the schema's
//!   own table is the **shared** table (STEM's extra chunk).
//! - **Experts**: `specific_experts` MLPs per unit on its table, `shared_experts` on the shared
//!   table, all on the whole batch.
//! - **Gates** (one per unit, `softmax(GateMLP(·))`):
//!   - `stem` (All-Forward Task-specific Backward): over every expert — own specific, the other
//!     units' specific experts **with stopped gradient**, shared — reading `x_u + x_sh`
//!     (element-wise sum of the unit's and the shared table, as in the code);
//!   - `me_ple` (a PLE CGC layer on the split): over own specific + shared experts, reading
//!     `x_u`, no stop-gradient;
//!   - `stem_al`: only the `main_tasks` own tables; a main unit's gate covers its specific and
//!     the shared experts, an auxiliary task uses the shared experts only (its gate reads
//!     `x_sh`), so the main table is trained by the main task alone. The auxiliary towers are
//!     still computed (the contract is logits for every task), but are meant to be dropped at
//!     inference: evaluate the main tasks.
//!
//! # STEM-AL: the paper and the deployed form
//! Paper (§5.2, Figure 4): one main task A and auxiliary tasks B. Two embedding tables and two
//! interaction experts. The *main table* is used only by task A's tower: it is forwarded to and
//! optimised by task A alone. The *shared table* is forwarded to and optimised by the towers of
//! both tasks. The auxiliary tower is removed at inference. No stop-gradient is named: the
//! separation is structural (no auxiliary tower reads the main table).
//!
//! Deployment Details (§5.2): STEM-AL improves the pCTR of one scenario with samples from other
//! domains: Applet pCTR is the main task and Moments pCTR (later Moments and Channel pCTR) the
//! auxiliary task(s). So in the deployed form the *domains* are the auxiliary tasks. Config:
//! - `main_domains = []` (default): the multi-task form above, as before. Head (d, t) of a main
//!   task reads task t's mixture in every domain.
//! - `main_domains = ["…"]`: the deployed form. The main units are the (main domain, main task)
//!   cells (`main_tasks`, default the first task). Each owns a table and specific experts. Every
//!   other (domain, task) cell is an auxiliary task that reads only the shared table. Each head is
//!   trained on the rows of its own domain, so the auxiliary towers learn from the other domains'
//!   samples and the main table is trained only by the target domain's main-task loss.
//!
//! Our choices where the paper is silent:
//! - \[INFERRED\] Several main domains or main tasks give one main table per main cell. The paper
//!   has a single main task; with several, sharing one main table between them would entangle
//!   them again, which is what STEM-AL exists to prevent.
//! - \[INFERRED\] Each auxiliary cell has its own gate over the shared experts (the paper's
//!   "interaction expert" of the shared table) and its own tower. The paper gives every task its
//!   own tower and does not say whether Moments and Channel share anything beyond the shared table.
//! - \[INFERRED\] The auxiliary cells have no embedding tables of their own: the paper has two tables,
//!   main and shared, even with two auxiliary domains. (QunBB's port gives each auxiliary group
//!   its own table. That table then plays the shared role.)
//! - \[INFERRED\] How the main tower combines the main and the shared experts is not given. We use
//!   the same gate as the multi-task form: a gate reading the main table, over the main cell's
//!   specific experts and the shared experts.
//! - \[INFERRED\] The loss weights the auxiliary cells like any other head (the paper gives no
//!   auxiliary loss weight). Dropping the auxiliary towers at inference is the evaluator's job:
//!   read the target domain's metrics (per-domain AUC).
//! - \[INFERRED\] `units` stays `"task"`; `main_domains` alone switches to per-cell units, and it
//!   needs `heads = "domain_task"` (a cell's tower sees only its own domain's rows).
//!
//! Deviations from reference: one extraction layer (STEM's default `num_layers = 1`); the per-task
//! towers become per-head towers ([`Heads`]); numeric inputs are appended to every table's
//! input; the FuxiCTR embedding regulariser is the run's `train.embedding.weight_decay`.
//!
//! Probes: `expert/<u>/<j>`, `expert/shared/<j>` (`[B, H]`), `gate/<unit>` (`[B, n_experts]`).

use burn::module::Module;
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor};
use mdrec_data::rng::Rng;
use mdrec_nn::init::WeightInit;
use mdrec_nn::layers::{linear, mix};
use mdrec_nn::{EmbeddingSetSpec, Mlp, MlpConfig, ModelContext, ModelInput};
use serde::{Deserialize, Serialize};

use crate::blocks::heads::{HeadLayout, Heads, HeadsConfig};
use crate::model::{
    model_config, zoo_variant, Built, Invalid, ModelOutput, Probes, RecModel, ZooModel,
};

/// Which rows' "task" owns a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Units {
    /// One unit per task (STEM, multi-task).
    Task,
    /// One unit per domain (STEM for multi-domain learning, as in Crocodile).
    Domain,
    /// One unit per (domain, task) cell.
    DomainTask,
}

/// The three relatives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Variant {
    /// All-forward task-specific-backward gates over every expert.
    Stem,
    /// PLE on the split tables: own specific + shared experts, no stop-gradient.
    MePle,
    /// Main tasks own tables; auxiliary tasks read only the shared table.
    StemAl,
}

model_config! {
    /// Config of [`StemNet`] (and of `stem`, `me_ple`, `stem_al`).
    pub struct Config {
        /// Gate structure.
        variant: Variant = Variant::Stem,
        /// What owns a table.
        units: Units = Units::Task,
        /// Tasks that own a table with `variant = "stem_al"` (default: the first task).
        main_tasks: Vec<String> = vec![],
        /// `variant = "stem_al"` only: the target domains of the deployed form (Pan et al.
        /// §5.2, "Deployment Details"). Empty (default): every domain's `main_tasks` heads read
        /// the main table. Otherwise only the cells (main domain, main task) own tables, and
        /// every other (domain, task) cell is an auxiliary task of its own (needs
        /// `heads = "domain_task"`).
        main_domains: Vec<String> = vec![],
        /// Specific experts per unit.
        specific_experts: usize = 1,
        /// Shared experts.
        shared_experts: usize = 2,
        /// Expert MLP widths.
        expert_dims: Vec<usize> = vec![128, 64] => vec![8],
        /// Gate MLP hidden widths (then a linear layer to the number of experts).
        gate_dims: Vec<usize> = vec![],
        /// Output heads: tower layout and tower hidden widths.
        heads: HeadsConfig = HeadsConfig::new(HeadLayout::DomainTask, vec![32]) => HeadsConfig::new(HeadLayout::DomainTask, vec![4]),
        /// Hidden-layer options for experts, gates and towers.
        mlp: MlpConfig = MlpConfig::default(),
    }
}

/// A gate: optional hidden MLP, then `Linear → softmax`.
#[derive(Module, Debug)]
pub struct UnitGate {
    hidden: Option<Mlp>,
    out: burn::nn::Linear,
}

impl UnitGate {
    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let h = match &self.hidden {
            Some(m) => m.forward(x),
            None => x,
        };
        softmax(self.out.forward(h), 1)
    }
}

/// STEM / ME-PLE / STEM-AL.
#[derive(Module, Debug)]
pub struct StemNet {
    /// `specific[u][j]`.
    specific: Vec<Vec<Mlp>>,
    shared: Vec<Mlp>,
    /// One gate per unit; with STEM-AL also one per auxiliary task (after the units).
    gates: Vec<UnitGate>,
    heads: Heads,
    #[module(skip)]
    variant: Variant,
    #[module(skip)]
    units: Units,
    /// Set index of each unit's table.
    #[module(skip)]
    unit_sets: Vec<usize>,
    /// STEM-AL: index into the mixtures (units, then auxiliary gates) read by head (d, t),
    /// at `d · n_tasks + t` (empty for the other variants).
    #[module(skip)]
    head_mix: Vec<usize>,
    #[module(skip)]
    n_tasks: usize,
}

/// What owns a table and, for STEM-AL, which mixture each head reads.
struct Plan {
    /// Units owning a table.
    n_units: usize,
    /// STEM-AL: auxiliary gates (after the units' gates).
    n_aux: usize,
    /// STEM-AL: mixture of head (d, t) at `d · T + t` (see [`StemNet::head_mix`]).
    head_mix: Vec<usize>,
}

/// Resolves the names in `wanted` (default: the first of `all`) to indices.
fn pick(wanted: &[String], all: &[String], what: &str) -> Result<Vec<usize>, Invalid> {
    if wanted.is_empty() {
        return Ok(if all.is_empty() { vec![] } else { vec![0] });
    }
    let mut idx = wanted
        .iter()
        .map(|w| {
            all.iter().position(|a| a == w).ok_or_else(|| {
                Invalid::new(format!(
                    "main {what} `{w}` is not a {what} of the data ({what}s: {})",
                    all.join(", ")
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    idx.sort_unstable();
    idx.dedup();
    Ok(idx)
}

/// STEM-AL: main units are the main tasks (every domain's head of a main task reads its table)
/// or, with `main_domains`, the (main domain, main task) cells; every other task (cell) gets an
/// auxiliary gate over the shared experts.
fn stem_al_plan(cfg: &Config, ctx: &ModelContext) -> Result<Plan, Invalid> {
    let (s, t) = (ctx.n_domains(), ctx.n_tasks());
    if cfg.units != Units::Task {
        return Err(Invalid::new("stem_al needs units = \"task\""));
    }
    let main_t = pick(&cfg.main_tasks, &ctx.tasks, "task")?;
    let mut head_mix = vec![0; s * t];
    if cfg.main_domains.is_empty() {
        if main_t.len() == t {
            return Err(Invalid::new(
                "stem_al needs at least one auxiliary task: every task is in main_tasks",
            ));
        }
        // Units in task order, then one auxiliary gate per other task, in task order.
        let (mut unit, mut aux) = (0, main_t.len());
        for task in 0..t {
            let m = if main_t.contains(&task) {
                unit += 1;
                unit - 1
            } else {
                aux += 1;
                aux - 1
            };
            for d in 0..s {
                head_mix[d * t + task] = m;
            }
        }
        return Ok(Plan {
            n_units: main_t.len(),
            n_aux: t - main_t.len(),
            head_mix,
        });
    }
    if cfg.heads.layout != HeadLayout::DomainTask {
        return Err(Invalid::new(
            "stem_al with main_domains needs heads = \"domain_task\"",
        ));
    }
    let main_d = pick(&cfg.main_domains, &ctx.domains, "domain")?;
    let n_units = main_d.len() * main_t.len();
    if n_units == s * t {
        return Err(Invalid::new(
            "stem_al needs at least one auxiliary (domain, task) cell: every domain is in \
             main_domains and every task in main_tasks",
        ));
    }
    // Main cells first, then the auxiliary cells, both in (domain, task) order.
    let (mut unit, mut aux) = (0, n_units);
    for d in 0..s {
        for task in 0..t {
            head_mix[d * t + task] = if main_d.contains(&d) && main_t.contains(&task) {
                unit += 1;
                unit - 1
            } else {
                aux += 1;
                aux - 1
            };
        }
    }
    Ok(Plan {
        n_units,
        n_aux: s * t - n_units,
        head_mix,
    })
}

fn unit_plan(cfg: &Config, ctx: &ModelContext) -> Result<Plan, Invalid> {
    let (s, t) = (ctx.n_domains(), ctx.n_tasks());
    if cfg.variant == Variant::StemAl {
        return stem_al_plan(cfg, ctx);
    }
    if !cfg.main_tasks.is_empty() || !cfg.main_domains.is_empty() {
        return Err(Invalid::new(
            "main_tasks and main_domains apply only to variant = \"stem_al\"",
        ));
    }
    let n = match (cfg.units, cfg.heads.layout) {
        (Units::Task, _) => t,
        (Units::Domain | Units::DomainTask, HeadLayout::Task) => {
            return Err(Invalid::new(
                "units = \"domain\" / \"domain_task\" needs heads = \"domain_task\"",
            ))
        }
        (Units::Domain, HeadLayout::DomainTask) => s,
        (Units::DomainTask, HeadLayout::DomainTask) => s * t,
    };
    Ok(Plan {
        n_units: n,
        n_aux: 0,
        head_mix: vec![],
    })
}

fn unit_set_name(u: usize) -> String {
    format!("u{u}")
}

fn embedding_sets_of(cfg: &Config, ctx: &ModelContext) -> Result<Vec<EmbeddingSetSpec>, Invalid> {
    let n = unit_plan(cfg, ctx)?.n_units;
    Ok((0..n)
        .map(|u| EmbeddingSetSpec::copy(unit_set_name(u)))
        .collect())
}

impl StemNet {
    fn new(cfg: &Config, ctx: &ModelContext, rng: &mut Rng, device: &Device) -> Built<Self> {
        if cfg.expert_dims.is_empty() || cfg.specific_experts == 0 {
            return Err(Invalid::new(
                "expert_dims must be non-empty and specific_experts ≥ 1",
            ));
        }
        if cfg.variant != Variant::Stem && cfg.shared_experts == 0 {
            return Err(Invalid::new(
                "me_ple and stem_al need shared_experts ≥ 1 (the shared table feeds them)",
            ));
        }
        let Plan {
            n_units,
            n_aux,
            head_mix,
        } = unit_plan(cfg, ctx)?;
        if cfg.variant == Variant::MePle && n_units < 2 {
            return Err(Invalid::new(
                "me_ple needs at least two units (a single head has nothing to separate)",
            ));
        }
        let unit_sets: Vec<usize> = (0..n_units)
            .map(|u| {
                ctx.set_index(&unit_set_name(u))
                    .expect("context carries the model's embedding sets")
            })
            .collect();
        let d_in = ctx.input_dim();
        let expert = |rng: &mut Rng| Mlp::new(d_in, &cfg.expert_dims, &cfg.mlp, rng, device);
        let specific: Vec<Vec<Mlp>> = (0..n_units)
            .map(|_| (0..cfg.specific_experts).map(|_| expert(rng)).collect())
            .collect();
        let shared: Vec<Mlp> = (0..cfg.shared_experts).map(|_| expert(rng)).collect();
        let h = match specific[0].first() {
            Some(e) => e.out_dim(),
            None => shared[0].out_dim(),
        };
        let n_gate_experts = match cfg.variant {
            Variant::Stem => n_units * cfg.specific_experts + cfg.shared_experts,
            Variant::MePle | Variant::StemAl => cfg.specific_experts + cfg.shared_experts,
        };
        let gate = |n_out: usize, rng: &mut Rng| {
            let hidden = (!cfg.gate_dims.is_empty())
                .then(|| Mlp::new(d_in, &cfg.gate_dims, &cfg.mlp, rng, device));
            let w = hidden.as_ref().map_or(d_in, Mlp::out_dim);
            UnitGate {
                hidden,
                out: linear(w, n_out, WeightInit::TorchDefault, rng, device),
            }
        };
        let mut gates: Vec<UnitGate> = (0..n_units).map(|_| gate(n_gate_experts, rng)).collect();
        gates.extend((0..n_aux).map(|_| gate(cfg.shared_experts, rng)));
        let heads = Heads::new(&cfg.heads, ctx, h, &cfg.mlp, rng, device);
        Ok(StemNet {
            specific,
            shared,
            gates,
            heads,
            variant: cfg.variant,
            units: cfg.units,
            unit_sets,
            head_mix,
            n_tasks: ctx.n_tasks(),
        })
    }

    fn unit_of(&self, group: Option<usize>, t: usize) -> usize {
        match self.units {
            Units::Task => t,
            Units::Domain => group.unwrap_or(0),
            Units::DomainTask => group.unwrap_or(0) * self.n_tasks + t,
        }
    }
}

impl RecModel for StemNet {
    /// # Shapes
    /// - unit table `x_u`, shared table `x_sh`: `[B, F·k + n_numeric]`
    /// - experts `[B, H]`; gate of a unit `[B, n_experts]`; mixture `[B, H]`, on a head's rows
    ///   `[n_d, H]`; logits `[B, T]`
    fn forward(&self, _ctx: &ModelContext, input: &ModelInput, probes: &mut Probes) -> ModelOutput {
        let x_sh = input.flat();
        let shared: Vec<Tensor<2>> = self
            .shared
            .iter()
            .map(|e| e.forward(x_sh.clone()))
            .collect();
        for (j, o) in shared.iter().enumerate() {
            probes.record(
                || crate::ProbeKey::GroupExpert {
                    group: "shared".into(),
                    index: j,
                },
                || o.clone(),
            );
        }
        let tables: Vec<Tensor<2>> = self.unit_sets.iter().map(|&k| input.set_flat(k)).collect();
        let specific: Vec<Vec<Tensor<2>>> = self
            .specific
            .iter()
            .zip(&tables)
            .map(|(es, x)| es.iter().map(|e| e.forward(x.clone())).collect())
            .collect();
        for (u, os) in specific.iter().enumerate() {
            for (j, o) in os.iter().enumerate() {
                probes.record(
                    || crate::ProbeKey::GroupExpert {
                        group: u.to_string(),
                        index: j,
                    },
                    || o.clone(),
                );
            }
        }
        // Mixture of every unit (and, for STEM-AL, of every auxiliary task) on the whole batch.
        let mut mixtures: Vec<Tensor<2>> = Vec::with_capacity(self.gates.len());
        for (u, x_u) in tables.iter().enumerate() {
            let (experts, gate_in): (Vec<Tensor<2>>, Tensor<2>) = match self.variant {
                Variant::Stem => {
                    let mut all = Vec::new();
                    for (v, os) in specific.iter().enumerate() {
                        for o in os {
                            all.push(if v == u {
                                o.clone()
                            } else {
                                o.clone().detach()
                            });
                        }
                    }
                    all.extend(shared.iter().cloned());
                    (all, x_u.clone() + x_sh.clone())
                }
                Variant::MePle | Variant::StemAl => {
                    let mut all = specific[u].clone();
                    all.extend(shared.iter().cloned());
                    (all, x_u.clone())
                }
            };
            let gate = self.gates[u].forward(gate_in);
            probes.record(|| crate::ProbeKey::Gate(u.to_string()), || gate.clone());
            mixtures.push(mix(Tensor::stack(experts, 1), gate));
        }
        for (a, gate) in self.gates[tables.len()..].iter().enumerate() {
            let g = gate.forward(x_sh.clone());
            probes.record(|| crate::ProbeKey::Gate(format!("aux{a}")), || g.clone());
            mixtures.push(mix(Tensor::stack(shared.clone(), 1), g));
        }
        let logits = self.heads.forward(input, |group, t| {
            let m = match self.variant {
                Variant::StemAl => self.head_mix[group.unwrap_or(0) * self.n_tasks + t],
                _ => self.unit_of(group, t),
            };
            match group {
                Some(d) => input.rows_of(mixtures[m].clone(), d),
                None => mixtures[m].clone(),
            }
        });
        ModelOutput::from(logits)
    }
}

impl ZooModel for StemNet {
    const NAME: &'static str = "stem";
    const PAPER: &'static str = "Su et al., STEM: Unleashing the Power of Embeddings for Multi-task Recommendation, AAAI 2024";
    type Config = Config;

    fn embedding_sets(cfg: &Config, ctx: &ModelContext) -> Result<Vec<EmbeddingSetSpec>, Invalid> {
        embedding_sets_of(cfg, ctx)
    }

    fn build(cfg: &Config, ctx: &ModelContext, rng: &mut Rng, device: &Device) -> Built<Self> {
        StemNet::new(cfg, ctx, rng, device)
    }
}

zoo_variant! {
    /// ME-PLE: [`StemNet`] with PLE gates on the split tables.
    MePle(StemNet),
    /// Config of [`MePle`].
    MePleConfig(Config),
    name = "me_ple",
    paper = "Multi-embedding PLE as in Su et al., STEM, AAAI 2024 (PLE baseline on the STEM embedding split) and Xu et al., Crocodile, 2025",
    default = Config { variant: Variant::MePle, ..Config::default() },
    tiny = Config { variant: Variant::MePle, expert_dims: vec![8], heads: HeadsConfig::new(HeadLayout::DomainTask, vec![4]), ..Config::default() },
    build = StemNet::new,
    sets = embedding_sets_of,
}

zoo_variant! {
    /// STEM-AL: [`StemNet`] with a main-task table and a shared table for auxiliary learning.
    StemAl(StemNet),
    /// Config of [`StemAl`].
    StemAlConfig(Config),
    name = "stem_al",
    paper = "Pan et al., Ads Recommendation in a Collapsed and Entangled World, KDD 2024 (§5.2 STEM-AL)",
    default = Config { variant: Variant::StemAl, ..Config::default() },
    tiny = Config { variant: Variant::StemAl, expert_dims: vec![8], heads: HeadsConfig::new(HeadLayout::DomainTask, vec![4]), ..Config::default() },
    build = StemNet::new,
    sets = embedding_sets_of,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::find;
    use mdrec_nn::device::cpu;
    use mdrec_nn::init::tensor;

    fn build(
        name: &str,
        over: serde_json::Value,
        ctx: &ModelContext,
        device: &Device,
    ) -> (StemNet, ModelContext) {
        let f = find(name).unwrap();
        let v = f.resolve(&over).unwrap();
        let ctx = f.context(&v, ctx).unwrap();
        let cfg: Config = serde_json::from_value(v).unwrap();
        (
            StemNet::new(&cfg, &ctx, &mut Rng::new(2), device).unwrap(),
            ctx,
        )
    }

    fn input(ctx: &ModelContext, domain: &[u32], device: &Device) -> (ModelInput, Vec<Tensor<2>>) {
        let mut rng = Rng::new(9);
        let b = domain.len();
        let mut v = |w: usize| {
            tensor(
                (0..b * w).map(|_| rng.normal() as f32).collect(),
                [b, w],
                device,
            )
            .require_grad()
        };
        let mut input = ModelInput::new(v(ctx.emb_dim()), None, domain.to_vec(), ctx.n_domains());
        input.sets = ctx.sets.iter().map(|s| v(s.width())).collect();
        let leaves = input.sets.clone();
        (input, leaves)
    }

    fn grad_norm(t: &Tensor<2>, g: &burn::tensor::Gradients) -> f32 {
        t.grad(g)
            .map_or(0.0, |g| g.abs().sum().into_scalar::<f32>())
    }

    #[test]
    fn aftb_gate_forwards_every_expert_but_backpropagates_only_to_its_own_table() {
        let ad = cpu().autodiff();
        let ctx = ModelContext::uniform(3, 10, 4, 0, 2, 2);
        let (m, ctx) = build(
            "stem",
            serde_json::json!({"heads": {"layout": "task"}}),
            &ctx,
            &ad,
        );
        let (x, leaves) = input(&ctx, &[0, 1, 0, 1], &ad);
        let mut p = Probes::new(true);
        let out = m.forward(&ctx, &x, &mut p);
        // The gate of task 0 covers every expert: 2 units × 1 specific + 2 shared.
        assert_eq!(p.values()["gate/0"].dims(), [4, 4]);
        // Task 0's loss reaches task 0's table (u0) and the shared table, never task 1's (u1).
        let g = out.logits.narrow(1, 0, 1).sum().backward();
        assert!(grad_norm(&leaves[0], &g) > 0.0);
        assert_eq!(grad_norm(&leaves[1], &g), 0.0);
        assert!(grad_norm(&x.emb, &g) > 0.0);
    }

    #[test]
    fn me_ple_gate_covers_own_and_shared_experts_only() {
        let ad = cpu().autodiff();
        let ctx = ModelContext::uniform(3, 10, 4, 0, 2, 2);
        let (m, ctx) = build("me_ple", serde_json::json!({"units": "domain"}), &ctx, &ad);
        let (x, leaves) = input(&ctx, &[0, 0, 0, 1], &ad);
        let mut p = Probes::new(true);
        let out = m.forward(&ctx, &x, &mut p);
        assert_eq!(p.values()["gate/0"].dims(), [4, 3]);
        // Rows of domain 0 read only domain 0's table (and the shared one).
        let g = out.logits.narrow(0, 0, 3).sum().backward();
        assert!(grad_norm(&leaves[0], &g) > 0.0);
        assert_eq!(grad_norm(&leaves[1], &g), 0.0);
    }

    #[test]
    fn stem_al_main_table_is_trained_by_the_main_task_only() {
        let ad = cpu().autodiff();
        let ctx = ModelContext::uniform(3, 10, 4, 0, 1, 2);
        let (m, ctx) = build("stem_al", serde_json::json!({}), &ctx, &ad);
        assert_eq!(ctx.sets.len(), 1, "one main table");
        let (x, leaves) = input(&ctx, &[0, 0, 0], &ad);
        let out = m.forward(&ctx, &x, &mut Probes::new(false));
        let aux = out.logits.narrow(1, 1, 1).sum().backward();
        assert_eq!(grad_norm(&leaves[0], &aux), 0.0);
        assert!(grad_norm(&x.emb, &aux) > 0.0);
        let out = m.forward(&ctx, &x, &mut Probes::new(false));
        let main = out.logits.narrow(1, 0, 1).sum().backward();
        assert!(grad_norm(&leaves[0], &main) > 0.0);
    }

    #[test]
    fn stem_al_main_domains_gives_each_auxiliary_cell_a_gate_and_keeps_one_main_table() {
        let ad = cpu().autodiff();
        let ctx = ModelContext::uniform(3, 10, 4, 0, 2, 2);
        let (plain, plain_ctx) = build("stem_al", serde_json::json!({}), &ctx, &ad);
        let (m, ctx) = build(
            "stem_al",
            serde_json::json!({"main_domains": ["d1"]}),
            &ctx,
            &ad,
        );
        // One main table either way: task t0 (all domains), or the cell (d1, t0).
        assert_eq!(plain_ctx.sets.len(), 1);
        assert_eq!(ctx.sets.len(), 1);
        // Auxiliary gates: one per other task (1) vs one per other cell (3), each a
        // `Linear(F·k → shared_experts)` = (12 + 1) · 2 parameters; nothing else differs.
        assert_eq!(m.gates.len(), 4);
        assert_eq!(plain.gates.len(), 2);
        assert_eq!(m.num_params() - plain.num_params(), 2 * (12 + 1) * 2);
        assert_eq!(m.head_mix, vec![1, 2, 0, 3]);
        let (x, _) = input(&ctx, &[0, 0, 1, 1], &ad);
        let mut p = Probes::new(true);
        let out = m.forward(&ctx, &x, &mut p);
        assert_eq!(out.logits.dims(), [4, 2]);
        let v = p.values();
        assert_eq!(
            v["gate/0"].dims(),
            [4, 3],
            "main cell: own specific + 2 shared"
        );
        for a in 0..3 {
            assert_eq!(
                v[&format!("gate/aux{a}")].dims(),
                [4, 2],
                "shared experts only"
            );
        }
        assert!(!v.contains_key("gate/aux3"));
    }

    #[test]
    fn stem_al_main_domains_main_table_is_trained_by_the_target_cell_only() {
        let ad = cpu().autodiff();
        let ctx = ModelContext::uniform(3, 10, 4, 0, 2, 2);
        let (m, ctx) = build(
            "stem_al",
            serde_json::json!({"main_domains": ["d1"]}),
            &ctx,
            &ad,
        );
        let (x, leaves) = input(&ctx, &[0, 0, 1, 1], &ad);
        // (rows, task) of each head → whether its loss reaches the main table.
        for (rows, task, main) in [(2, 0, true), (2, 1, false), (0, 0, false), (0, 1, false)] {
            let out = m.forward(&ctx, &x, &mut Probes::new(false));
            let g = out
                .logits
                .narrow(0, rows, 2)
                .narrow(1, task, 1)
                .sum()
                .backward();
            let to_main = grad_norm(&leaves[0], &g);
            assert_eq!(to_main > 0.0, main, "head (d{}, t{task})", rows / 2);
            // Every head trains the shared table.
            assert!(grad_norm(&x.emb, &g) > 0.0, "head (d{}, t{task})", rows / 2);
        }
    }

    #[test]
    fn bad_unit_plans_are_errors() {
        let ctx = ModelContext::uniform(3, 10, 4, 0, 2, 2);
        let f = find("stem_al").unwrap();
        let v = f
            .resolve(&serde_json::json!({"main_tasks": ["t0", "t1"]}))
            .unwrap();
        let e = f.context(&v, &ctx).unwrap_err().to_string();
        assert!(e.contains("auxiliary"), "{e}");
        let v = f
            .resolve(&serde_json::json!({"main_tasks": ["nope"]}))
            .unwrap();
        assert!(f
            .context(&v, &ctx)
            .unwrap_err()
            .to_string()
            .contains("`nope`"));
        let v = f
            .resolve(&serde_json::json!({"main_domains": ["nope"]}))
            .unwrap();
        let e = f.context(&v, &ctx).unwrap_err().to_string();
        assert!(e.contains("main domain `nope`"), "{e}");
        let v = f
            .resolve(&serde_json::json!({"main_domains": ["d0", "d1"], "main_tasks": ["t0", "t1"]}))
            .unwrap();
        let e = f.context(&v, &ctx).unwrap_err().to_string();
        assert!(e.contains("auxiliary (domain, task) cell"), "{e}");
        let v = f
            .resolve(&serde_json::json!({"main_domains": ["d0"], "heads": {"layout": "task"}}))
            .unwrap();
        let e = f.context(&v, &ctx).unwrap_err().to_string();
        assert!(e.contains("needs heads = \"domain_task\""), "{e}");
        let f = find("stem").unwrap();
        let v = f
            .resolve(&serde_json::json!({"main_domains": ["d0"]}))
            .unwrap();
        let e = f.context(&v, &ctx).unwrap_err().to_string();
        assert!(e.contains("only to variant = \"stem_al\""), "{e}");
        let v = f
            .resolve(&serde_json::json!({"units": "domain", "heads": {"layout": "task"}}))
            .unwrap();
        let e = f.context(&v, &ctx).unwrap_err().to_string();
        assert!(
            e.contains("units = \"domain\" / \"domain_task\" needs heads = \"domain_task\""),
            "{e}"
        );
    }
}
