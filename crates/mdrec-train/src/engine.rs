//! One model being trained: the dense network (burn, autodiff) plus its embedding store, and
//! the hot loop of a training step.
//!
//! A step allocates only what burn needs for its tensors: the host buffers (batch, embedding
//! gather, loss weights) are reused across steps.
//!
//! Bi-level models (those with [outer parameters](mdrec_models::RecModel::outer_params), e.g.
//! M3oE `automl = "bilevel"`) have two optimizers: the main one ([`Engine::train_step`]) never
//! sees the outer parameters; a second Adam ([`Engine::outer_step`], `train.automl_lr`) updates
//! only them. Both steps compute the objective with the same code (`loss_and_grads`).

use burn::optim::decay::WeightDecayConfig;
use burn::optim::{AdamConfig, ModuleOptimizer};
use burn::tensor::{Device, Gradients, Tensor, TensorData};
use mdrec_data::rng::Rng;
use mdrec_data::{Batch, EncodedData};
use mdrec_models::{DynModel, ModelFactory, ModelState, Probes};
use mdrec_nn::input;
use mdrec_nn::loss::{bce_with_logits, element_weights};
use mdrec_nn::ranking::ranking_loss;
use mdrec_nn::{EmbeddingStore, ModelContext, ModelInput};

use crate::config::TrainConfig;
use crate::dist;
use crate::TrainError;

/// A model, its embeddings, its optimizer and reusable buffers.
pub struct Engine {
    /// Shapes the model was built for.
    pub ctx: ModelContext,
    /// The dense network (on the autodiff device).
    pub model: Box<dyn DynModel>,
    /// Embedding tables.
    pub store: EmbeddingStore,
    optim: ModuleOptimizer,
    outer_optim: ModuleOptimizer,
    device: Device,
    cfg: TrainConfig,
    batch: Batch,
    /// This process's share of `batch` in data-parallel training ([`crate::dist`]).
    local: Batch,
    emb_buf: Vec<f32>,
    w_buf: Vec<f32>,
    /// Labels and loss scales (`[B, T]`) for the next step only ([`Engine::train_step_adjusted`]).
    adjust: Option<(Vec<f32>, Vec<f32>)>,
    /// Per-(row, task) loss weights of the training data (`[n, T]`, REW), applied by
    /// [`Engine::train_step`] only.
    row_weights: Option<Vec<f32>>,
    /// Whether the step being computed is a main training step (row weights apply).
    weighted_step: bool,
    seed: u64,
    /// Training forward passes so far: each reseeds the device's RNG (dropout) from
    /// `(seed, passes)`, so a resumed run draws what the uninterrupted one drew.
    passes: u64,
}

/// Everything an [`Engine`] needs to continue exactly where it was: the dense tensors with
/// their parameter ids, both optimizers' states (burnpack bytes), the embedding store's full
/// state and the pass counter.
#[derive(Clone)]
pub struct EngineCheckpoint {
    /// `(dotted name, shape, values)` of every float parameter and buffer.
    pub model: Vec<(String, Vec<usize>, Vec<f32>)>,
    /// `(dotted name, burn parameter id)`.
    pub param_ids: Vec<(String, u64)>,
    /// The main dense optimizer's record.
    pub optim: Vec<u8>,
    /// The outer (bi-level) optimizer's record.
    pub outer_optim: Vec<u8>,
    /// The embedding store.
    pub store: mdrec_nn::StoreState,
    /// Training forward passes so far.
    pub passes: u64,
}

fn tensor2(values: Vec<f32>, rows: usize, cols: usize, device: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(values, [rows, cols]), device)
}

/// [`mdrec_nn::input::make_input`] with the trainer's error type.
pub fn make_input(
    ctx: &ModelContext,
    store: &EmbeddingStore,
    batch: &Batch,
    emb_buf: &mut Vec<f32>,
    device: &Device,
) -> Result<ModelInput, TrainError> {
    input::make_input(ctx, store, batch, emb_buf, device)
        .map_err(|e| TrainError::Tensor(e.to_string()))
}

/// [`mdrec_nn::input::make_input_leaf`] with the trainer's error type.
pub fn make_input_leaf(
    ctx: &ModelContext,
    store: &EmbeddingStore,
    batch: &Batch,
    emb_buf: &mut Vec<f32>,
    device: &Device,
) -> Result<(ModelInput, Tensor<2>), TrainError> {
    input::make_input_leaf(ctx, store, batch, emb_buf, device)
        .map_err(|e| TrainError::Tensor(e.to_string()))
}

impl Engine {
    /// Build model and embeddings from the run seed. `ctx` is the schema's context; the engine
    /// keeps it with the embedding sets the model asks for ([`ModelFactory::context`]).
    pub fn new(
        factory: &dyn ModelFactory,
        model_cfg: &serde_json::Value,
        ctx: ModelContext,
        cfg: &TrainConfig,
        seed: u64,
        device: &Device,
    ) -> Result<Self, TrainError> {
        let device = device.clone().autodiff();
        let mut rng_model = Rng::for_stream(seed, &format!("init/model/{}", factory.name()));
        let mut rng_emb = Rng::for_stream(seed, "init/embedding");
        let ctx = factory.context(model_cfg, &ctx)?;
        let model = factory.build(model_cfg, &ctx, &mut rng_model, &device)?;
        let store = EmbeddingStore::new(&ctx.store_fields(), &cfg.embedding, &mut rng_emb);
        let wd = (cfg.weight_decay > 0.0).then(|| WeightDecayConfig::new(cfg.weight_decay as f32));
        let adam = AdamConfig::new()
            .with_epsilon(cfg.adam_eps as f32)
            .with_weight_decay(wd);
        let optim = adam.init();
        let outer_optim = adam.init();
        Ok(Engine {
            ctx,
            model,
            store,
            optim,
            outer_optim,
            device,
            cfg: cfg.clone(),
            batch: Batch::default(),
            local: Batch::default(),
            emb_buf: Vec::new(),
            w_buf: Vec::new(),
            adjust: None,
            row_weights: None,
            weighted_step: false,
            seed,
            passes: 0,
        })
    }

    /// The training objective on `rows` of `data` (the run's loss reduction plus the model's
    /// auxiliary loss) and its gradients; also returns the embedding leaf of the batch.
    ///
    /// The per-element loss is `BCE(logits, labels)`, or the model's own
    /// [`TrainOutput::element_loss`](mdrec_models::TrainOutput) when it supplies one (AREAD's
    /// bagging loss); the reduction weights apply to either.
    fn loss_and_grads(
        &mut self,
        data: &EncodedData,
        rows: &[u32],
        probes: &mut Probes,
    ) -> Result<(f64, Gradients, Tensor<2>), TrainError> {
        // In data-parallel training a main step computes this process's share of the rows
        // (other steps, e.g. the bi-level outer step, run whole and identically on every rank).
        let group = dist::group().filter(|_| self.weighted_step);
        let split_rank = group.as_ref().map_or(0, |g| g.rank() as u64);
        // Dropout draws are a function of (seed, pass, share): exact resume needs no RNG state.
        let pass_seed = self.seed
            ^ self
                .passes
                .wrapping_add(1)
                .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ split_rank.wrapping_mul(0xD1B5_4A32_D192_ED03);
        // Every pass (the outer bi-level step included) draws from its own stream, not from
        // burn's generator, which threads of one process share.
        mdrec_nn::layers::seed_dropout(pass_seed);
        self.passes += 1;
        if group.is_some() && !self.store.is_dynamic() {
            // The batch's loss weights need its domains and labels; this process reads the
            // features of its own share only (below).
            data.fill_targets(rows, &mut self.batch);
        } else {
            data.fill_batch(rows, &mut self.batch);
        }
        // Stream training's tables give rows to the batch's new ids first (no-op otherwise).
        self.store.admit(&self.batch);
        let adjust = self.adjust.take();
        if let Some((labels, _)) = &adjust {
            self.batch.labels.copy_from_slice(labels);
        }
        let t = self.ctx.n_tasks();
        element_weights(
            &self.batch.domain,
            self.ctx.n_domains(),
            t,
            self.cfg.loss,
            &mut self.w_buf,
        );
        if let Some((_, scale)) = &adjust {
            self.w_buf.iter_mut().zip(scale).for_each(|(w, s)| *w *= s);
        }
        if let (Some(rw), true) = (&self.row_weights, self.weighted_step) {
            if rw.len() != data.len() * t {
                return Err(TrainError::Tensor(format!(
                    "row weights: {} weights for {} rows × {t} tasks",
                    rw.len(),
                    data.len()
                )));
            }
            for (k, &r) in rows.iter().enumerate() {
                let src = &rw[r as usize * t..(r as usize + 1) * t];
                for (w, s) in self.w_buf[k * t..(k + 1) * t].iter_mut().zip(src) {
                    *w *= s;
                }
            }
        }
        // Loss weights are the global batch's; a share's losses add up to the batch's.
        let share = match &group {
            Some(g) => dist::share(self.batch.len, g.rank(), g.size()),
            None => 0..self.batch.len,
        };
        let b = share.len();
        let elems = share.start * t..share.end * t;
        let batch = if group.is_some() {
            data.fill_batch(&rows[share.clone()], &mut self.local);
            self.local
                .labels
                .copy_from_slice(&self.batch.labels[elems.clone()]);
            &self.local
        } else {
            &self.batch
        };
        let (input, leaf) = make_input_leaf(
            &self.ctx,
            &self.store,
            batch,
            &mut self.emb_buf,
            &self.device,
        )?;
        let labels = tensor2(batch.labels.clone(), b, t, &self.device);
        let out = self.model.forward_train(&self.ctx, &input, &labels, probes);
        let rank = self.cfg.ranking.filter(|r| r.weight > 0.0).and_then(|r| {
            ranking_loss(
                out.output.logits.clone(),
                &batch.labels,
                &batch.domain,
                self.ctx.n_domains(),
                r.form,
                &self.device,
            )
            .map(|l| l * r.weight as f32)
        });
        let weights = tensor2(self.w_buf[elems].to_vec(), b, t, &self.device);
        let element = match out.element_loss {
            Some(l) => l,
            None => bce_with_logits(out.output.logits, labels),
        };
        let mut loss: Tensor<1> = (element * weights).sum();
        if let Some(aux) = out.output.aux_loss {
            // Each process adds its share's auxiliary loss; their mean stands for the batch's.
            loss = loss + aux / group.map_or(1, |g| g.size()) as f32;
        }
        if let Some(rank) = rank {
            loss = loss + rank;
        }
        let grads = loss.backward();
        let loss_value = loss.into_scalar::<f32>() as f64;
        if !loss_value.is_finite() {
            return Err(TrainError::Diverged(format!(
                "loss is {loss_value} at a training step"
            )));
        }
        Ok((loss_value, grads, leaf))
    }

    /// One optimisation step on `rows` of `data`: embeddings and every dense parameter except
    /// the model's outer parameters; returns the batch loss.
    pub fn train_step(&mut self, data: &EncodedData, rows: &[u32]) -> Result<f64, TrainError> {
        self.train_step_probed(data, rows, &mut Probes::new(false))
    }

    /// [`train_step`](Self::train_step) with the labels of the step given (`labels`, `[B, T]`
    /// row-major, replacing the data's) and every element's loss weight multiplied by
    /// `scale` (`[B, T]`): delayed feedback trains a row with the label known at its release
    /// and importance weights.
    pub fn train_step_adjusted(
        &mut self,
        data: &EncodedData,
        rows: &[u32],
        labels: Vec<f32>,
        scale: Vec<f32>,
    ) -> Result<f64, TrainError> {
        let n = rows.len() * self.ctx.n_tasks();
        if labels.len() != n || scale.len() != n {
            return Err(TrainError::Tensor(format!(
                "adjusted step: {} labels and {} scales for {n} elements",
                labels.len(),
                scale.len()
            )));
        }
        self.adjust = Some((labels, scale));
        self.train_step(data, rows)
    }

    /// [`train_step`](Self::train_step), recording the model's probes of the training forward
    /// into `probes` (AREAD's gate values for HEMP).
    pub fn train_step_probed(
        &mut self,
        data: &EncodedData,
        rows: &[u32],
        probes: &mut Probes,
    ) -> Result<f64, TrainError> {
        let emb_lr = self.cfg.embedding.lr.unwrap_or(self.cfg.lr);
        let emb_wd = self
            .cfg
            .embedding
            .weight_decay
            .unwrap_or(self.cfg.weight_decay);
        self.weighted_step = true;
        let r = self.grads_and_embedding_step(data, rows, emb_lr, emb_wd, probes);
        self.weighted_step = false;
        let (loss_value, mut grads) = r?;
        self.model.step(&mut self.optim, self.cfg.lr, &mut grads);
        Ok(loss_value)
    }

    /// Per-(row, task) loss weights (`[n, T]` row-major) of the training data that
    /// [`train_step`](Self::train_step) multiplies into every element's loss weight (the
    /// schema's sample weights, REW);
    /// `None` removes them.
    pub fn set_row_weights(&mut self, weights: Option<Vec<f32>>) {
        self.row_weights = weights;
    }

    /// One step with another dense optimizer (`optim`, learning rate `lr`) and embedding
    /// learning rate / weight decay: HEMP's candidate training with its fresh fast Adam. The
    /// main optimizer's state is not touched. Data-parallel like a main step (each rank its
    /// share of `rows`; `probes` then hold this rank's share's values).
    #[allow(clippy::too_many_arguments)]
    pub fn step_with(
        &mut self,
        data: &EncodedData,
        rows: &[u32],
        optim: &mut ModuleOptimizer,
        lr: f64,
        emb_lr: f64,
        emb_wd: f64,
        probes: &mut Probes,
    ) -> Result<f64, TrainError> {
        self.weighted_step = true;
        let r = self.grads_and_embedding_step(data, rows, emb_lr, emb_wd, probes);
        self.weighted_step = false;
        let (loss_value, mut grads) = r?;
        self.model.step(optim, lr, &mut grads);
        Ok(loss_value)
    }

    /// Forward, backward and the sparse embedding update; returns the loss and the dense
    /// gradients.
    fn grads_and_embedding_step(
        &mut self,
        data: &EncodedData,
        rows: &[u32],
        emb_lr: f64,
        emb_wd: f64,
        probes: &mut Probes,
    ) -> Result<(f64, Gradients), TrainError> {
        let (mut loss_value, mut grads, emb) = self.loss_and_grads(data, rows, probes)?;
        let g = emb
            .grad_remove(&mut grads)
            .ok_or_else(|| TrainError::Tensor("embedding leaf received no gradient".into()))?;
        let g = g
            .into_data()
            .try_to_vec::<f32>()
            .map_err(|e| TrainError::Tensor(format!("{e:?}")))?;
        if let Some(group) = dist::group().filter(|_| self.weighted_step) {
            // Every process applies the summed dense gradients and the whole batch's
            // embedding gradients for the rows it holds, so the replicas stay identical.
            let mut loss = [loss_value as f32];
            let model = &self.model;
            self.store
                .apply_gradient_routed(&self.local, &g, emb_lr, emb_wd)
                .map_err(TrainError::Tensor)?;
            dist::exchange(group.as_ref(), |sum| {
                model.sum_grads(&mut grads, &mut loss, sum)
            });
            loss_value = loss[0] as f64;
        } else {
            self.store.apply_gradient(&self.batch, &g, emb_lr, emb_wd);
        }
        Ok((loss_value, grads))
    }

    /// In a process group with `train.embedding.sharding = "row"`, keep only this process's
    /// rows of every table of at least `train.embedding.shard_min_rows` rows (ids, for stream
    /// training's dynamic tables; the others stay whole on every rank); returns the sharded
    /// tables' names. A no-op in one process.
    pub fn shard_tables(&mut self) -> Result<Vec<String>, TrainError> {
        match dist::group() {
            Some(g) if self.cfg.embedding.sharding == mdrec_nn::embedding::Sharding::Row => self
                .store
                .shard(g.rank(), g.size(), self.cfg.embedding.shard_min_rows)
                .map_err(TrainError::Config),
            _ => Ok(Vec::new()),
        }
    }

    /// A frozen copy with whole tables on rank 0 (the shards joined there: a collective when
    /// tables are sharded, which the other ranks leave with a copy of their shard), for
    /// saving or publishing the model.
    pub fn whole_snapshot(&self) -> Result<Snapshot, TrainError> {
        Ok(Snapshot {
            ctx: self.ctx.clone(),
            model: self.model.valid(),
            store: self.store.joined().map_err(TrainError::Tensor)?,
        })
    }

    /// In a data-parallel group, make the model's buffers (BatchNorm running statistics, STAR's
    /// partitioned-normalisation statistics, AdaSparse's annealed α) equal on every rank: an
    /// element the ranks hold with the same bits keeps them, any other becomes the mean over
    /// the ranks, summed in rank order. Each rank normalises its share with the share's own
    /// batch statistics (as PyTorch DDP without SyncBatchNorm), so the running statistics drift
    /// apart between syncs; they update linearly, so averaging them before they are read
    /// (evaluation, checkpoints, the replica check) gives what averaging at every step would.
    /// A no-op in one process or for a model without buffers.
    pub fn sync_buffers(&mut self) -> Result<(), TrainError> {
        let Some(group) = dist::group() else {
            return Ok(());
        };
        let params: std::collections::BTreeSet<String> =
            self.model.param_ids().into_iter().map(|(n, _)| n).collect();
        let mut tensors = self.model.named_tensors();
        let buffers: Vec<usize> = (0..tensors.len())
            .filter(|&i| !params.contains(&tensors[i].0))
            .collect();
        if buffers.is_empty() {
            return Ok(());
        }
        let local: Vec<f32> = buffers
            .iter()
            .flat_map(|&i| tensors[i].2.iter().copied())
            .collect();
        let all = group.gather(&local);
        let n = group.size();
        if all.len() != local.len() * n {
            return Err(TrainError::Tensor(format!(
                "distributed training: buffer sync received {} values from {n} ranks, expected {}",
                all.len(),
                local.len() * n
            )));
        }
        let mut at = 0;
        for &i in &buffers {
            for v in tensors[i].2.iter_mut() {
                let first = all[at];
                if (1..n).any(|r| all[r * local.len() + at].to_bits() != first.to_bits()) {
                    let sum = (0..n).fold(0.0f32, |s, r| s + all[r * local.len() + at]);
                    *v = sum / n as f32;
                } else {
                    *v = first;
                }
                at += 1;
            }
        }
        let ids: std::collections::BTreeMap<String, u64> =
            self.model.param_ids().into_iter().collect();
        let named: std::collections::BTreeMap<String, (Vec<usize>, Vec<f32>)> = tensors
            .into_iter()
            .map(|(n, shape, v)| (n, (shape, v)))
            .collect();
        self.model
            .load_named(&named)
            .map_err(|e| TrainError::Checkpoint(e.to_string()))?;
        // Loading may draw new parameter ids; the optimizer state is keyed by the old ones.
        self.model.set_param_ids(&ids);
        Ok(())
    }

    /// Whether the model has outer parameters (a bi-level schedule applies).
    pub fn has_outer_params(&self) -> bool {
        !self.model.outer_params().is_empty()
    }

    /// One outer (bi-level) step on `rows` of `data`: the same objective as
    /// [`train_step`](Self::train_step), but only the model's outer parameters are updated, by
    /// their own Adam with `train.automl_lr`; embeddings and all other parameters are left as
    /// they are. Returns the batch loss (before the update).
    pub fn outer_step(&mut self, data: &EncodedData, rows: &[u32]) -> Result<f64, TrainError> {
        let (loss_value, mut grads, _emb) =
            self.loss_and_grads(data, rows, &mut Probes::new(false))?;
        self.model
            .outer_step(&mut self.outer_optim, self.cfg.automl_lr, &mut grads);
        Ok(loss_value)
    }

    /// The training config the engine was built with.
    pub fn train_config(&self) -> &TrainConfig {
        &self.cfg
    }

    /// An exact copy of everything a step changes: the model (parameters with their ids,
    /// buffers), both dense optimizers' states and the embedding store (weights, moments, step
    /// counter). Tensors are immutable, so copies of them are exact and cheap; the store is
    /// copied.
    pub fn save_state(&self) -> EngineState {
        EngineState {
            model: self.model.save_state(),
            optim: self.optim.clone(),
            outer_optim: self.outer_optim.clone(),
            store: self.store.clone(),
        }
    }

    /// Restore a [`save_state`](Self::save_state) bit for bit; the dense parameters whose ids
    /// are in `keep` keep their current values (AREAD `hemp.snapshot = "code"`).
    pub fn restore_state(&mut self, state: &EngineState, keep: &[burn::module::ParamId]) {
        self.model.restore_state(&state.model, keep);
        self.optim = state.optim.clone();
        self.outer_optim = state.outer_optim.clone();
        self.store = state.store.clone();
    }

    /// The state to continue from ([`restore_checkpoint`](Self::restore_checkpoint)).
    pub fn checkpoint(&self) -> Result<EngineCheckpoint, TrainError> {
        let bytes = |o: &ModuleOptimizer| {
            o.into_bytes()
                .map(|b| b.to_vec())
                .map_err(|e| TrainError::Checkpoint(format!("optimizer state: {e:?}")))
        };
        Ok(EngineCheckpoint {
            model: self.model.named_tensors(),
            param_ids: self.model.param_ids(),
            optim: bytes(&self.optim)?,
            outer_optim: bytes(&self.outer_optim)?,
            store: self.store.export_state(),
            passes: self.passes,
        })
    }

    /// Continue from a [`checkpoint`](Self::checkpoint) of an engine built the same way (same
    /// model, config, context and, for stream training, dynamic tables).
    pub fn restore_checkpoint(&mut self, c: &EngineCheckpoint) -> Result<(), TrainError> {
        let tensors: std::collections::BTreeMap<String, (Vec<usize>, Vec<f32>)> = c
            .model
            .iter()
            .map(|(n, s, v)| (n.clone(), (s.clone(), v.clone())))
            .collect();
        self.model
            .load_named(&tensors)
            .map_err(|e| TrainError::Checkpoint(e.to_string()))?;
        self.model
            .set_param_ids(&c.param_ids.iter().cloned().collect());
        let load = |o: &ModuleOptimizer, b: &[u8]| {
            o.clone()
                .from_bytes(burn::tensor::Bytes::from_bytes_vec(b.to_vec()))
                .map_err(|e| TrainError::Checkpoint(format!("optimizer state: {e:?}")))
        };
        self.optim = load(&self.optim, &c.optim)?;
        self.outer_optim = load(&self.outer_optim, &c.outer_optim)?;
        self.store
            .import_state(&c.store)
            .map_err(TrainError::Checkpoint)?;
        self.passes = c.passes;
        Ok(())
    }

    /// The main dense optimizer (tests compare its state).
    pub fn optimizer(&self) -> &ModuleOptimizer {
        &self.optim
    }

    /// Mean over `batches` of the mean per-element BCE of the inference model's logits (no
    /// update, no dropout, BatchNorm running statistics): HEMP's candidate score.
    pub fn eval_loss(
        &mut self,
        data: &EncodedData,
        batches: &[Vec<u32>],
    ) -> Result<f64, TrainError> {
        let model = self.model.valid();
        let device = self.device.clone().without_autodiff();
        let t = self.ctx.n_tasks();
        let mut total = 0.0;
        for rows in batches {
            data.fill_batch(rows, &mut self.batch);
            let input = make_input(
                &self.ctx,
                &self.store,
                &self.batch,
                &mut self.emb_buf,
                &device,
            )?;
            let logits = model
                .forward(&self.ctx, &input, &mut Probes::new(false))
                .logits
                .into_data()
                .try_to_vec::<f32>()
                .map_err(|e| TrainError::Tensor(format!("{e:?}")))?;
            let mut s = 0.0f64;
            for (x, y) in logits.iter().zip(&self.batch.labels) {
                s += mdrec_metrics::bce(f64::from(*x), f64::from(*y));
            }
            total += s / (self.batch.len * t).max(1) as f64;
        }
        Ok(total / batches.len().max(1) as f64)
    }

    /// Logits `[rows.len(), T]` of the inference model on `rows` of `data`, reading the live
    /// tables (no copy): stream training's progressive validation.
    pub fn predict_rows(
        &self,
        data: &EncodedData,
        rows: &[u32],
        batch_size: usize,
    ) -> Result<Vec<f32>, TrainError> {
        let model = self.model.valid();
        predict_with(
            &self.ctx,
            model.as_ref(),
            &self.store,
            data,
            rows,
            batch_size,
            &self.device,
            0,
        )
    }

    /// A frozen copy for evaluation and best-weights restore.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            ctx: self.ctx.clone(),
            model: self.model.valid(),
            store: self.store.clone(),
        }
    }
}

/// A saved [`Engine`] state ([`Engine::save_state`]).
pub struct EngineState {
    model: ModelState,
    optim: ModuleOptimizer,
    outer_optim: ModuleOptimizer,
    store: EmbeddingStore,
}

/// The per-(row, task) loss weights (`[n, T]`) of `data`'s sample-weight column (the
/// schema's `weight`): each row's weight for every task; `None` without the column.
pub fn column_weights(data: &EncodedData, n_tasks: usize) -> Option<Vec<f32>> {
    (!data.weight.is_empty()).then(|| {
        data.weight
            .iter()
            .flat_map(|&w| std::iter::repeat_n(w, n_tasks))
            .collect()
    })
}

/// Frozen weights: an inference copy of the model and a copy of the tables.
pub struct Snapshot {
    /// The context the model was built for (with its embedding sets).
    pub ctx: ModelContext,
    /// Inference copy of the dense network.
    pub model: Box<dyn DynModel>,
    /// Embedding tables.
    pub store: EmbeddingStore,
}

impl Snapshot {
    /// Logits `[n, T]` (row-major) for every row of `data`, in row order, on every rank of a
    /// data-parallel group.
    pub fn predict(
        &self,
        data: &EncodedData,
        batch_size: usize,
        device: &Device,
    ) -> Result<Vec<f32>, TrainError> {
        let local = self.predict_share(data, batch_size, device)?;
        Ok(match dist::group() {
            Some(g) => g.gather(&local),
            None => local,
        })
    }

    /// [`predict`](Self::predict), with the logits on the writer (rank 0) alone: `None` on
    /// the other ranks of a group. Evaluation during training uses this, so one rank holds
    /// the logits and computes the metrics.
    pub fn predict_on_writer(
        &self,
        data: &EncodedData,
        batch_size: usize,
        device: &Device,
    ) -> Result<Option<Vec<f32>>, TrainError> {
        let local = self.predict_share(data, batch_size, device)?;
        Ok(dist::gather_on_writer(local))
    }

    /// This rank's logits: in data-parallel training each rank scores its share of the
    /// batches (the batches one process would score, so every logit is the same bits);
    /// without a group, every row on every core.
    fn predict_share(
        &self,
        data: &EncodedData,
        batch_size: usize,
        device: &Device,
    ) -> Result<Vec<f32>, TrainError> {
        let Some(g) = dist::group() else {
            let rows: Vec<u32> = (0..data.len() as u32).collect();
            return self.predict_threaded(data, &rows, batch_size, device);
        };
        let n = data.len();
        let batches = dist::share(n.div_ceil(batch_size.max(1)), g.rank(), g.size());
        let range = (batches.start * batch_size).min(n)..(batches.end * batch_size).min(n);
        let rows: Vec<u32> = (range.start as u32..range.end as u32).collect();
        // Sharded tables answer lookups collectively: every rank takes part in as many
        // lookups as the rank with the most batches.
        let rounds = if self.store.is_sharded() {
            n.div_ceil(batch_size.max(1)).div_ceil(g.size())
        } else {
            0
        };
        let logits = predict_with(
            &self.ctx,
            self.model.as_ref(),
            &self.store,
            data,
            &rows,
            batch_size,
            device,
            rounds,
        )?;
        // Evaluation's exchanges are not training traffic.
        let _ = mdrec_nn::collective::take_embedding();
        Ok(logits)
    }
}

impl Snapshot {
    /// [`predict`](Self::predict) outside a group: the batches are split into one contiguous
    /// run per core, each scored on its own thread by its own copy of the inference model (a
    /// model is not `Sync`; the tables are shared). One process's matrix products already use
    /// every core, but the rest of a forward pass (copies, elementwise ops) runs on one, so
    /// threads keep the cores busy. Every batch is scored exactly as on one thread, so the
    /// logits are the same bits whatever the thread count.
    fn predict_threaded(
        &self,
        data: &EncodedData,
        rows: &[u32],
        batch_size: usize,
        device: &Device,
    ) -> Result<Vec<f32>, TrainError> {
        let bs = batch_size.max(1);
        let batches = rows.len().div_ceil(bs);
        // One thread (no copy, nothing spawned) for a single batch or a single core.
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(batches)
            .max(1);
        let parts: Vec<&[u32]> = (0..threads)
            .map(|k| {
                let b = dist::share(batches, k, threads);
                &rows[(b.start * bs).min(rows.len())..(b.end * bs).min(rows.len())]
            })
            .collect();
        let models: Vec<Box<dyn DynModel>> = (1..threads).map(|_| self.model.valid()).collect();
        let (ctx, store) = (&self.ctx, &self.store);
        std::thread::scope(|scope| {
            let handles: Vec<_> = parts[1..]
                .iter()
                .zip(models)
                .map(|(part, model)| {
                    scope.spawn(move || {
                        mdrec_nn::denormals::flush();
                        predict_with(ctx, model.as_ref(), store, data, part, bs, device, 0)
                    })
                })
                .collect();
            let mut out = predict_with(
                &self.ctx,
                self.model.as_ref(),
                &self.store,
                data,
                parts[0],
                bs,
                device,
                0,
            )?;
            for h in handles {
                let part = h
                    .join()
                    .map_err(|_| TrainError::Tensor("an inference thread panicked".into()))??;
                out.extend_from_slice(&part);
            }
            Ok(out)
        })
    }
}

/// Logits `[rows.len(), T]` (row-major) of an inference `model` on `rows` of `data`. With
/// sharded tables, `rounds` is the number of lookups every rank of the group makes (rounds
/// past this rank's batches look up nothing but answer the others).
#[allow(clippy::too_many_arguments)]
fn predict_with(
    ctx: &ModelContext,
    model: &dyn DynModel,
    store: &EmbeddingStore,
    data: &EncodedData,
    rows: &[u32],
    batch_size: usize,
    device: &Device,
    rounds: usize,
) -> Result<Vec<f32>, TrainError> {
    let device = device.clone().without_autodiff();
    let mut out = Vec::with_capacity(rows.len() * ctx.n_tasks());
    let mut batch = Batch::default();
    let mut buf = Vec::new();
    let chunks = rows.chunks(batch_size.max(1)).len();
    for _ in chunks..rounds {
        store
            .lookup(&Batch::default(), &mut buf)
            .map_err(|e| TrainError::Tensor(e.to_string()))?;
    }
    for chunk in rows.chunks(batch_size.max(1)) {
        data.fill_batch(chunk, &mut batch);
        let input = make_input(ctx, store, &batch, &mut buf, &device)?;
        let mut probes = Probes::new(false);
        let logits = model.forward(ctx, &input, &mut probes).logits;
        let v = logits
            .into_data()
            .try_to_vec::<f32>()
            .map_err(|e| TrainError::Tensor(format!("{e:?}")))?;
        out.extend_from_slice(&v);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use mdrec_nn::device::cpu;
    use mdrec_nn::loss::Reduction;

    use super::*;

    /// 60 rows, 3 categorical columns (ids 2..10), one numeric column, 3 domains (domain 2
    /// holds fewer rows), 2 tasks with different positive rates.
    fn data() -> EncodedData {
        let n = 60;
        let mut rng = Rng::new(4);
        let cat = (0..3)
            .map(|_| (0..n).map(|_| 2 + rng.below(8) as u32).collect())
            .collect();
        let num = (0..n).map(|_| rng.next_f32()).collect();
        let domain = (0..n).map(|i| [0, 1, 0, 1, 2][i % 5]).collect();
        let labels = [0.3, 0.7]
            .iter()
            .map(|&p| (0..n).map(|_| (rng.next_f64() < p) as u8 as f32).collect())
            .collect();
        EncodedData {
            n_rows: n,
            cat,
            multi: vec![],
            num: vec![num],
            domain,
            labels,
            group: (0..n as u64).collect(),
            ..Default::default()
        }
    }

    /// MMoE (one tower per (domain, task), no dropout or batch statistics, so the training
    /// forward equals the inference forward).
    fn engine(loss: Reduction) -> Engine {
        let ctx = ModelContext::uniform(3, 10, 4, 1, 3, 2);
        let cfg = TrainConfig {
            lr: 0.01,
            weight_decay: 0.0,
            loss,
            ..TrainConfig::default()
        };
        let f = mdrec_models::find("mmoe").unwrap();
        let c = f.resolve(&f.tiny_config()).unwrap();
        Engine::new(f, &c, ctx, &cfg, 3, &cpu()).unwrap()
    }

    fn bce(x: f64, y: f64) -> f64 {
        -(y * (1.0 / (1.0 + (-x).exp())).ln() + (1.0 - y) * (1.0 / (1.0 + x.exp())).ln())
    }

    #[test]
    fn the_step_loss_is_the_reduction_of_the_bce_of_each_cell() {
        let d = data();
        let rows: Vec<u32> = (0..d.len() as u32).collect();
        for reduction in [
            Reduction::CellMeanSum,
            Reduction::Mean,
            Reduction::TaskMeanSum,
        ] {
            let mut e = engine(reduction);
            // the logits the step sees: the inference model before the update
            let logits = e.snapshot().predict(&d, 16, &cpu()).unwrap();
            // Σ over (domain, task) cells of the mean BCE of the cell's rows, by hand
            let mut cell = BTreeMap::<(u32, usize), (f64, usize)>::new();
            for i in 0..d.len() {
                for t in 0..2 {
                    let l = bce(logits[i * 2 + t] as f64, d.labels[t][i] as f64);
                    let c = cell.entry((d.domain[i], t)).or_default();
                    c.0 += l;
                    c.1 += 1;
                }
            }
            assert_eq!(cell.len(), 6);
            let total: f64 = cell.values().map(|c| c.0).sum();
            let want = match reduction {
                Reduction::CellMeanSum => cell.values().map(|(s, n)| s / *n as f64).sum(),
                Reduction::Mean => total / (d.len() * 2) as f64,
                Reduction::TaskMeanSum => total / d.len() as f64,
            };
            let got = e.train_step(&d, &rows).unwrap();
            assert!(
                (got - want).abs() < 1e-5 * want.max(1.0),
                "{reduction:?}: engine {got}, by hand {want}"
            );
        }
    }

    #[test]
    fn threaded_inference_gives_the_bits_of_one_thread() {
        let d = data();
        let mut e = engine(Reduction::CellMeanSum);
        let rows: Vec<u32> = (0..d.len() as u32).collect();
        e.train_step(&d, &rows).unwrap();
        let snap = e.snapshot();
        for bs in [7, 16, 60, 100] {
            let one = predict_with(
                &snap.ctx,
                snap.model.as_ref(),
                &snap.store,
                &d,
                &rows,
                bs,
                &cpu(),
                0,
            )
            .unwrap();
            let got = snap.predict(&d, bs, &cpu()).unwrap();
            assert_eq!(got.len(), d.len() * 2);
            assert_eq!(
                got.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                one.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                "batch size {bs}"
            );
        }
    }

    /// Towers `heads.towers.<d·T + t>`: which of them a step changed.
    fn moved_towers(before: &[(String, Vec<usize>, Vec<f32>)], e: &Engine) -> Vec<usize> {
        let after = e.model.named_tensors();
        let mut moved = std::collections::BTreeSet::new();
        for ((name, _, a), (_, _, b)) in before.iter().zip(&after) {
            if let Some(rest) = name.strip_prefix("heads.towers.") {
                if a != b {
                    moved.insert(rest.split('.').next().unwrap().parse::<usize>().unwrap());
                }
            }
        }
        moved.into_iter().collect()
    }

    #[test]
    fn a_task_label_trains_the_tower_of_its_task_in_its_domain() {
        let mut d = data();
        // only rows of domain 1
        let rows: Vec<u32> = (0..d.len() as u32)
            .filter(|&i| d.domain[i as usize] == 1)
            .collect();
        let n = rows.len();
        let labels = |d: &EncodedData| -> Vec<f32> {
            rows.iter()
                .flat_map(|&i| [d.labels[0][i as usize], d.labels[1][i as usize]])
                .collect()
        };
        // Task 1 unlabelled (zero loss weight): only tower (domain 1, task 0) = 1·2 + 0 learns.
        let only_task0: Vec<f32> = (0..n).flat_map(|_| [1.0, 0.0]).collect();
        let mut e = engine(Reduction::CellMeanSum);
        let before = e.model.named_tensors();
        e.train_step_adjusted(&d, &rows, labels(&d), only_task0.clone())
            .unwrap();
        assert_eq!(moved_towers(&before, &e), [2]);
        // The same labels in swapped task columns, task 0 unlabelled: tower (1, 1) = 3 learns.
        d.labels.swap(0, 1);
        let only_task1: Vec<f32> = (0..n).flat_map(|_| [0.0, 1.0]).collect();
        let mut e = engine(Reduction::CellMeanSum);
        let before = e.model.named_tensors();
        e.train_step_adjusted(&d, &rows, labels(&d), only_task1)
            .unwrap();
        assert_eq!(moved_towers(&before, &e), [3]);
        // Labels drive their own task's output: all-positive task 0 and all-negative task 1
        // push the two logits apart, and swapping the label columns swaps the directions.
        for swap in [false, true] {
            let mut d = data();
            d.labels = vec![vec![1.0; d.len()].into(), vec![0.0; d.len()].into()];
            if swap {
                d.labels.swap(0, 1);
            }
            let mut e = engine(Reduction::CellMeanSum);
            let mean = |e: &Engine, t: usize| -> f64 {
                let l = e.snapshot().predict(&d, 64, &cpu()).unwrap();
                l.iter().skip(t).step_by(2).map(|&x| x as f64).sum::<f64>() / d.len() as f64
            };
            let before = [mean(&e, 0), mean(&e, 1)];
            for _ in 0..5 {
                e.train_step(&d, &(0..d.len() as u32).collect::<Vec<_>>())
                    .unwrap();
            }
            let up = [mean(&e, 0) > before[0], mean(&e, 1) > before[1]];
            assert_eq!(
                up,
                if swap { [false, true] } else { [true, false] },
                "swap {swap}"
            );
        }
        // A plain step on every row trains all six towers.
        let all: Vec<u32> = (0..d.len() as u32).collect();
        let mut e = engine(Reduction::CellMeanSum);
        let before = e.model.named_tensors();
        e.train_step(&d, &all).unwrap();
        assert_eq!(moved_towers(&before, &e), [0, 1, 2, 3, 4, 5]);
    }
}
