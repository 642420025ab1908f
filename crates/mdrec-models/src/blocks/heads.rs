//! Output heads shared by the zoo: one tower per (domain, task) or one per task.
//!
//! A model may also group its tasks ([`Heads::new_grouped`]): the tasks of a group share one
//! tower (its hidden layers) with one output unit per task, and a head is then a (row group,
//! task group) pair. With every task in a group of its own this is the plain layout, built with
//! the same parameters in the same order.

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::{Device, Tensor};
use mdrec_data::rng::Rng;
use mdrec_nn::init::WeightInit;
use mdrec_nn::layers::linear;
use mdrec_nn::layers::mix;
use mdrec_nn::{Gate, Mlp, MlpConfig, ModelContext, ModelInput};

use crate::model::Probes;
use serde::{Deserialize, Serialize};

/// Which towers a model has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum HeadLayout {
    /// A tower per (domain, task), each trained on its domain's rows (M3oE's MDMT form).
    #[default]
    DomainTask,
    /// A tower per task shared by every domain (PEPNet's "SharedTop").
    Task,
}

/// The output heads of a model (config key `heads`): the tower layout and the towers' hidden
/// widths. Every model with [`Heads`] nests this config, so `heads.layout` and
/// `heads.tower_dims` mean the same thing in every model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HeadsConfig {
    /// A tower per (domain, task) or one per task.
    pub layout: HeadLayout,
    /// Hidden widths of each tower before its `Linear(·, 1)` output (empty: the output only).
    pub tower_dims: Vec<usize>,
}

impl Default for HeadsConfig {
    fn default() -> Self {
        HeadsConfig::new(HeadLayout::DomainTask, vec![])
    }
}

impl HeadsConfig {
    /// Towers of `tower_dims` hidden widths in `layout`.
    pub fn new(layout: HeadLayout, tower_dims: Vec<usize>) -> Self {
        HeadsConfig { layout, tower_dims }
    }

    /// Number of row groups the towers are split into: the domains for
    /// [`HeadLayout::DomainTask`], 1 for [`HeadLayout::Task`].
    pub fn n_groups(&self, ctx: &ModelContext) -> usize {
        match self.layout {
            HeadLayout::DomainTask => ctx.n_domains(),
            HeadLayout::Task => 1,
        }
    }
}

/// A hidden MLP followed by a `Linear(h, 1)` output.
#[derive(Module, Debug)]
pub struct Tower {
    mlp: Mlp,
    out: Linear,
}

impl Tower {
    /// A tower on `in_dim` inputs with hidden widths `dims`.
    pub fn new(
        in_dim: usize,
        dims: &[usize],
        cfg: &MlpConfig,
        rng: &mut Rng,
        device: &Device,
    ) -> Self {
        Self::with_outputs(in_dim, dims, 1, cfg, rng, device)
    }

    /// A tower with `n_out` output units (one per task of a task group).
    pub fn with_outputs(
        in_dim: usize,
        dims: &[usize],
        n_out: usize,
        cfg: &MlpConfig,
        rng: &mut Rng,
        device: &Device,
    ) -> Self {
        let mlp = Mlp::new(in_dim, dims, cfg, rng, device);
        let out = linear(mlp.out_dim(), n_out, WeightInit::TorchDefault, rng, device);
        Tower { mlp, out }
    }

    /// # Shapes
    /// - x: `[N, in_dim]` → `[N, n_out]`
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.out.forward(self.mlp.forward(x))
    }

    /// The output and the last hidden layer (the input of the `Linear(h, n_out)` output).
    ///
    /// # Shapes
    /// - x: `[N, in_dim]` → (`[N, n_out]`, `[N, h]`)
    pub fn forward_with_hidden(&self, x: Tensor<2>) -> (Tensor<2>, Tensor<2>) {
        let h = self.mlp.forward(x);
        (self.out.forward(h.clone()), h)
    }
}

/// One tower's evaluation recorded by [`capture_towers`].
#[derive(Debug, Clone)]
pub struct TowerCall {
    /// Index of the tower in its [`Heads`] (row group · task groups + task group).
    pub tower: usize,
    /// The rows the tower ran on: `Some(domain)` (the domain's rows in batch order) or `None`
    /// (every row).
    pub domain: Option<usize>,
    /// The task of each output column.
    pub tasks: Vec<usize>,
    /// The tower's last hidden layer, `[n_rows, h]`.
    pub hidden: Tensor<2>,
    /// The tower's logits, `[n_rows, tasks.len()]`.
    pub logits: Tensor<2>,
}

thread_local! {
    static CAPTURE: std::cell::RefCell<Option<Vec<TowerCall>>> =
        const { std::cell::RefCell::new(None) };
}

/// Runs `f` (a model's forward pass on this thread) and returns, with its result, every
/// tower evaluation of every [`Heads`] it made, in order. This is how a post-hoc method reads
/// the last hidden layer of the towers (the last-layer Laplace approximation of
/// `mdrec uncertainty`) without a change to any model's `forward`. Calls do not nest: an inner
/// capture takes the tower calls made inside it.
pub fn capture_towers<R>(f: impl FnOnce() -> R) -> (R, Vec<TowerCall>) {
    let outer = CAPTURE.with(|c| c.borrow_mut().replace(Vec::new()));
    let r = f();
    let calls = CAPTURE.with(|c| std::mem::replace(&mut *c.borrow_mut(), outer));
    (r, calls.unwrap_or_default())
}

fn capturing() -> bool {
    CAPTURE.with(|c| c.borrow().is_some())
}

/// The towers of a model and the routing of rows to them.
#[derive(Module, Debug)]
pub struct Heads {
    towers: Vec<Tower>,
    #[module(skip)]
    layout: HeadLayout,
    #[module(skip)]
    n_tasks: usize,
    /// Tasks of each task group (one tower per row group and task group).
    #[module(skip)]
    task_groups: Vec<Vec<usize>>,
}

impl Heads {
    /// Towers on `in_dim` inputs for the `n_domains × n_tasks` heads of `ctx` (or `n_tasks`
    /// with [`HeadLayout::Task`]), built head by head in (group, task) order.
    pub fn new(
        cfg: &HeadsConfig,
        ctx: &ModelContext,
        in_dim: usize,
        mlp: &MlpConfig,
        rng: &mut Rng,
        device: &Device,
    ) -> Self {
        let singles: Vec<Vec<usize>> = (0..ctx.n_tasks()).map(|t| vec![t]).collect();
        Self::new_grouped(cfg, ctx, &singles, in_dim, mlp, rng, device)
    }

    /// Towers for task groups: `task_groups[q]` lists the tasks (indices into `ctx.tasks`)
    /// that share tower `q` of each row group; every task must be in exactly one group
    /// (checked by the caller). Built in (row group, task group) order.
    pub fn new_grouped(
        cfg: &HeadsConfig,
        ctx: &ModelContext,
        task_groups: &[Vec<usize>],
        in_dim: usize,
        mlp: &MlpConfig,
        rng: &mut Rng,
        device: &Device,
    ) -> Self {
        let n_tasks = ctx.n_tasks();
        debug_assert_eq!(task_groups.iter().map(Vec::len).sum::<usize>(), n_tasks);
        let towers = (0..cfg.n_groups(ctx))
            .flat_map(|_| task_groups.iter())
            .map(|q| Tower::with_outputs(in_dim, &cfg.tower_dims, q.len(), mlp, rng, device))
            .collect();
        Heads {
            towers,
            layout: cfg.layout,
            n_tasks,
            task_groups: task_groups.to_vec(),
        }
    }

    /// Number of row groups: domains for [`HeadLayout::DomainTask`], 1 otherwise.
    pub fn n_groups(&self) -> usize {
        self.towers.len() / self.task_groups.len()
    }

    /// Number of task groups (the number of tasks unless the heads were built grouped); a
    /// gated model needs `n_groups() · n_task_groups()` gates.
    pub fn n_task_groups(&self) -> usize {
        self.task_groups.len()
    }

    /// Logits of one row group from its task-group towers, in task order.
    fn group_logits(&self, g: usize, mut x: impl FnMut(usize) -> Tensor<2>) -> Tensor<2> {
        let n_q = self.task_groups.len();
        let outs: Vec<Tensor<2>> = (0..n_q)
            .map(|q| {
                let tower = &self.towers[g * n_q + q];
                if !capturing() {
                    return tower.forward(x(q));
                }
                let (logits, hidden) = tower.forward_with_hidden(x(q));
                let call = TowerCall {
                    tower: g * n_q + q,
                    domain: (self.layout == HeadLayout::DomainTask).then_some(g),
                    tasks: self.task_groups[q].clone(),
                    hidden,
                    logits: logits.clone(),
                };
                CAPTURE.with(|c| {
                    if let Some(calls) = c.borrow_mut().as_mut() {
                        calls.push(call);
                    }
                });
                logits
            })
            .collect();
        if n_q == self.n_tasks {
            // One task per group: groups are in task order unless the caller permuted them.
            if self
                .task_groups
                .iter()
                .enumerate()
                .all(|(q, ts)| ts[0] == q)
            {
                return Tensor::cat(outs, 1);
            }
        }
        let mut cols: Vec<Option<Tensor<2>>> = vec![None; self.n_tasks];
        for (q, o) in outs.into_iter().enumerate() {
            for (c, &t) in self.task_groups[q].iter().enumerate() {
                cols[t] = Some(o.clone().narrow(1, c, 1));
            }
        }
        Tensor::cat(
            cols.into_iter()
                .map(|c| c.expect("every task is in a group"))
                .collect(),
            1,
        )
    }

    /// The layout.
    pub fn layout(&self) -> HeadLayout {
        self.layout
    }

    /// Logits of every row and task.
    ///
    /// `x(group, task)` returns the tower input for the rows of `group` — `Some(domain)` (the
    /// domain's rows, in batch order) or `None` (all rows) — and the given task (the task group
    /// for heads built with [`new_grouped`](Self::new_grouped)).
    ///
    /// # Shapes
    /// - `x(..)`: `[n_group, in_dim]` → result `[B, T]`
    pub fn forward(
        &self,
        input: &ModelInput,
        mut x: impl FnMut(Option<usize>, usize) -> Tensor<2>,
    ) -> Tensor<2> {
        match self.layout {
            HeadLayout::DomainTask => input.route(|d| self.group_logits(d, |q| x(Some(d), q))),
            HeadLayout::Task => self.group_logits(0, |q| x(None, q)),
        }
    }

    /// Logits when every tower reads the same representation `x`: each head's tower runs on
    /// its group's rows of `x`.
    ///
    /// # Shapes
    /// - x: `[B, in_dim]` → `[B, T]`
    pub fn forward_shared(&self, input: &ModelInput, x: &Tensor<2>) -> Tensor<2> {
        self.forward(input, |group, _t| match group {
            Some(d) => input.rows_of(x.clone(), d),
            None => x.clone(),
        })
    }

    /// MMoE-style heads: head (group `g`, task `t`) mixes `experts` with the softmax gate
    /// `gates[g · T + t]` applied to `gate_in`, both on the group's rows, and feeds the mixture
    /// to its tower. Records `gate/<domain>/<task>` (`gate/all/<task>` for task heads). With
    /// task groups, `t` is the task group (`T` their number) and the gate is recorded under
    /// each task of the group.
    ///
    /// # Shapes
    /// - gate_in `[B, G_in]`, experts `[B, E, H]` → logits `[B, T]`
    pub fn forward_gated(
        &self,
        ctx: &ModelContext,
        input: &ModelInput,
        gates: &[Gate],
        gate_in: &Tensor<2>,
        experts: &Tensor<3>,
        probes: &mut Probes,
    ) -> Tensor<2> {
        let t_n = self.task_groups.len();
        self.forward(input, |group, t| {
            let (x, es, g) = match group {
                Some(d) => (
                    input.rows_of(gate_in.clone(), d),
                    input.rows_of(experts.clone(), d),
                    d,
                ),
                None => (gate_in.clone(), experts.clone(), 0),
            };
            let gate = gates[g * t_n + t].forward(x);
            for &task in &self.task_groups[t] {
                probes.record(
                    || {
                        crate::ProbeKey::head_gate(
                            group.map(|d| ctx.domains[d].as_str()),
                            &ctx.tasks[task],
                        )
                    },
                    || gate.clone(),
                );
            }
            mix(es, gate)
        })
    }
}
