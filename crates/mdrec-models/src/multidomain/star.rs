//! STAR — Sheng et al., "One Model to Serve All: Star Topology Adaptive Recommender for
//! Multi-Domain CTR Prediction", CIKM 2021. Paper form:
//!
//! 1. **Partitioned Normalization** on the flat input:
//!    `z = (γ ⊙ γ_d) ⊙ (x − μ_d)/√(σ²_d + ε) + (β + β_d)`, where in training μ_d, σ²_d are the
//!    statistics of the rows of domain `d` *in the current batch* and at inference per-domain
//!    moving averages (momentum 0.1, unbiased variance, as PyTorch's BatchNorm).
//! 2. **Star-topology FCN**: layer `i` of domain `d` uses `W = W_shared ⊙ W_d`,
//!    `b = b_shared + b_d`, ReLU between hidden layers; the output layer (one unit per task) is
//!    star-topology too and has no activation.
//! 3. **Auxiliary network**: an MLP (`aux_dims`) on the domain-indicator embedding (the schema
//!    field with role `domain`, or a learned per-domain embedding of width `domain_emb_dim` when
//!    the schema has none) with `T` outputs added to the main logits (`σ(s_m + s_a)`).
//!
//! Every per-domain computation (PN statistics, FCN, auxiliary network) runs on the domain's
//! rows only ([`ModelInput::route`]), so a row's output in training does not depend on the rows
//! of other domains in its batch.
//!
//! Reference implementation: Scenario-Wise-Rec `models/multi_domain/star.py`, SATrans
//! `models/star.py`.
//! Deviations from reference: PN uses per-domain batch statistics in training and per-domain
//! moving averages at inference (Scenario-Wise-Rec normalises with whole-batch statistics, also
//! in eval — docs/models.md — SATrans does as the paper); no BN or ReLU after the star
//! layers and none on the final logit (Scenario-Wise-Rec applies BN + ReLU to every layer
//! including the logit); biases start at zero (not U(0, 1)) and `W_shared` is Xavier-uniform
//! with `W_d = 1` (SWR: Kaiming-uniform for both); the auxiliary network reads only the domain
//! embedding by default (SWR: all features; the paper: the domain indicator "and other
//! features"; `aux_features = true` adds the flat input); one output per task from one shared
//! FCN trunk (the paper and the references are single-task). There is no
//! Scenario-Wise-Rec compatibility mode.
//! Defaults: `fcn_dims = [256, 128, 64]` [INFERRED: a 3-layer star FCN as in the paper; SWR
//! MovieLens uses `[128, 64, 32]`], `aux_dims = [32]` (SWR).

use burn::module::{Module, Param, RunningState};
use burn::nn::Linear;
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use mdrec_data::rng::Rng;
use mdrec_data::FieldRole;
use mdrec_nn::init::{self, WeightInit};
use mdrec_nn::layers::linear;
use mdrec_nn::{Mlp, MlpConfig, ModelContext, ModelInput};

use crate::blocks::domain::domain_table;
use crate::model::{model_config, Built, Invalid, ModelOutput, Probes, RecModel, ZooModel};

model_config! {
    /// Config of [`Star`].
    pub struct Config {
        /// Hidden widths of the star-topology FCN (before the one-unit-per-task output layer).
        fcn_dims: Vec<usize> = vec![256, 128, 64] => vec![16, 8],
        /// Hidden widths of the auxiliary network (before its `T` outputs).
        aux_dims: Vec<usize> = vec![32] => vec![4],
        /// Hidden-layer options of the auxiliary network.
        aux_mlp: MlpConfig = MlpConfig::default(),
        /// Also feed the flat input (not normalised) to the auxiliary network.
        aux_features: bool = false,
        /// Width of the learned per-domain embedding used when the schema has no `domain` field.
        domain_emb_dim: usize = 8,
        /// Momentum of the per-domain moving averages of partitioned normalization.
        pn_momentum: f64 = 0.1,
        /// ε of partitioned normalization.
        pn_epsilon: f64 = 1e-5,
    }
}

/// Partitioned normalization: shared and per-domain affine parameters, per-domain statistics.
#[derive(Module, Debug)]
pub struct PartitionedNorm {
    gamma: Param<Tensor<1>>,
    beta: Param<Tensor<1>>,
    gamma_d: Vec<Param<Tensor<1>>>,
    beta_d: Vec<Param<Tensor<1>>>,
    /// Per-domain moving mean `[S, D]` (a buffer: saved, never trained).
    running_mean: RunningState<Tensor<2>>,
    /// Per-domain moving (unbiased) variance `[S, D]`.
    running_var: RunningState<Tensor<2>>,
    #[module(skip)]
    momentum: f64,
    #[module(skip)]
    epsilon: f64,
}

impl PartitionedNorm {
    fn new(dim: usize, n_domains: usize, momentum: f64, epsilon: f64, device: &Device) -> Self {
        let ones = || init::param(vec![1.0; dim], [dim], device);
        let zeros = || init::param(vec![0.0; dim], [dim], device);
        PartitionedNorm {
            gamma: ones(),
            beta: zeros(),
            gamma_d: (0..n_domains).map(|_| ones()).collect(),
            beta_d: (0..n_domains).map(|_| zeros()).collect(),
            running_mean: RunningState::new(init::tensor(
                vec![0.0; n_domains * dim],
                [n_domains, dim],
                device,
            )),
            running_var: RunningState::new(init::tensor(
                vec![1.0; n_domains * dim],
                [n_domains, dim],
                device,
            )),
            momentum,
            epsilon,
        }
    }

    /// Normalise the rows `x` of domain `d`. In training, also returns the batch statistics
    /// (mean, unbiased variance) for the moving averages.
    ///
    /// # Shapes
    /// - x: `[n_d, D]` → `[n_d, D]`; statistics `[1, D]`
    fn forward(
        &self,
        x: Tensor<2>,
        d: usize,
        training: bool,
    ) -> (Tensor<2>, Option<(Tensor<2>, Tensor<2>)>) {
        let [n, dim] = x.dims();
        let (mean, var, stats) = if training {
            let mean = x.clone().mean_dim(0);
            let var = (x.clone() - mean.clone()).square().mean_dim(0);
            let unbiased = if n > 1 {
                var.clone().detach().mul_scalar(n as f64 / (n - 1) as f64)
            } else {
                var.clone().detach()
            };
            let stats = (mean.clone().detach(), unbiased);
            (mean, var, Some(stats))
        } else {
            let device = x.device();
            (
                self.running_mean.value().to_device(&device).narrow(0, d, 1),
                self.running_var.value().to_device(&device).narrow(0, d, 1),
                None,
            )
        };
        let scale = (self.gamma.val() * self.gamma_d[d].val()).reshape([1, dim]);
        let shift = (self.beta.val() + self.beta_d[d].val()).reshape([1, dim]);
        let z = (x - mean) / var.add_scalar(self.epsilon).sqrt() * scale + shift;
        (z, stats)
    }

    /// Move the averages of the domains that had rows towards their batch statistics.
    fn update(&self, stats: Vec<Option<(Tensor<2>, Tensor<2>)>>) {
        let m = self.momentum;
        for (state, which) in [(&self.running_mean, 0), (&self.running_var, 1)] {
            let old = state.value_sync();
            let rows: Vec<Tensor<2>> = stats
                .iter()
                .enumerate()
                .map(|(d, s)| {
                    let row = old.clone().narrow(0, d, 1);
                    match s {
                        Some((mean, var)) => {
                            let new = if which == 0 { mean } else { var };
                            row.mul_scalar(1.0 - m)
                                + new.clone().to_device(&old.device()).mul_scalar(m)
                        }
                        None => row,
                    }
                })
                .collect();
            state.update(Tensor::cat(rows, 0).detach());
        }
    }
}

/// One star-topology fully connected layer.
#[derive(Module, Debug)]
pub struct StarLinear {
    w: Param<Tensor<2>>,
    b: Param<Tensor<1>>,
    w_d: Vec<Param<Tensor<2>>>,
    b_d: Vec<Param<Tensor<1>>>,
}

impl StarLinear {
    fn new(
        fan_in: usize,
        fan_out: usize,
        n_domains: usize,
        rng: &mut Rng,
        device: &Device,
    ) -> Self {
        let w = init::weight(rng, fan_in, fan_out, WeightInit::XavierUniform);
        StarLinear {
            w: init::param(w, [fan_in, fan_out], device),
            b: init::param(vec![0.0; fan_out], [fan_out], device),
            w_d: (0..n_domains)
                .map(|_| init::param(vec![1.0; fan_in * fan_out], [fan_in, fan_out], device))
                .collect(),
            b_d: (0..n_domains)
                .map(|_| init::param(vec![0.0; fan_out], [fan_out], device))
                .collect(),
        }
    }

    /// # Shapes
    /// - x: `[n_d, fan_in]` (rows of domain `d`) → `[n_d, fan_out]`
    fn forward(&self, x: Tensor<2>, d: usize) -> Tensor<2> {
        let w = self.w.val() * self.w_d[d].val();
        let b = self.b.val() + self.b_d[d].val();
        let out = b.dims()[0];
        x.matmul(w) + b.reshape([1, out])
    }
}

/// Star topology adaptive recommender.
#[derive(Module, Debug)]
pub struct Star {
    pn: PartitionedNorm,
    fcn: Vec<StarLinear>,
    aux: Mlp,
    aux_out: Linear,
    /// Learned per-domain embedding `[S, domain_emb_dim]` when the schema has no domain field.
    domain_emb: Option<Param<Tensor<2>>>,
    #[module(skip)]
    domain_field: Option<usize>,
    #[module(skip)]
    aux_features: bool,
}

impl ZooModel for Star {
    const NAME: &'static str = "star";
    const PAPER: &'static str = "Sheng et al., One Model to Serve All: Star Topology Adaptive Recommender for Multi-Domain CTR Prediction, CIKM 2021";
    type Config = Config;

    fn build(cfg: &Config, ctx: &ModelContext, rng: &mut Rng, device: &Device) -> Built<Self> {
        let invalid = |message: &str| Invalid(message.into());
        if !(0.0..=1.0).contains(&cfg.pn_momentum) {
            return Err(invalid("pn_momentum must be in [0, 1]"));
        }
        if cfg.pn_epsilon.is_nan() || cfg.pn_epsilon <= 0.0 {
            return Err(invalid("pn_epsilon must be > 0"));
        }
        let s = ctx.n_domains();
        let t = ctx.n_tasks();
        let d_in = ctx.input_dim();
        let pn = PartitionedNorm::new(d_in, s, cfg.pn_momentum, cfg.pn_epsilon, device);
        let mut fcn = Vec::with_capacity(cfg.fcn_dims.len() + 1);
        let mut fan_in = d_in;
        for &w in cfg.fcn_dims.iter().chain(std::iter::once(&t)) {
            fcn.push(StarLinear::new(fan_in, w, s, rng, device));
            fan_in = w;
        }
        let domain_field = ctx.fields_with_role(FieldRole::Domain).first().copied();
        let (domain_emb, dom_dim) = match domain_field {
            Some(i) => (None, ctx.fields[i].dim),
            None => {
                if cfg.domain_emb_dim == 0 {
                    return Err(invalid(
                        "the schema has no `domain` field and domain_emb_dim is 0: the auxiliary \
                         network would have no input",
                    ));
                }
                let k = cfg.domain_emb_dim;
                (Some(domain_table(s, k, rng, device)), k)
            }
        };
        let aux_in = dom_dim + if cfg.aux_features { d_in } else { 0 };
        let aux = Mlp::new(aux_in, &cfg.aux_dims, &cfg.aux_mlp, rng, device);
        let aux_out = linear(aux.out_dim(), t, WeightInit::TorchDefault, rng, device);
        Ok(Star {
            pn,
            fcn,
            aux,
            aux_out,
            domain_emb,
            domain_field,
            aux_features: cfg.aux_features,
        })
    }
}

impl RecModel for Star {
    /// # Shapes
    /// Per domain `d` on its `n_d` rows:
    /// - x: `[n_d, D_in]` → PN `[n_d, D_in]` → star FCN `[n_d, fcn_dims…]` → main `[n_d, T]`
    /// - domain embedding `[n_d, k]` (`[n_d, k + D_in]` with `aux_features`) → aux MLP → `[n_d, T]`
    /// - main + aux, routed back to batch order: logits `[B, T]`
    ///
    /// Probes: `pn/<domain>` (normalised input `[n_d, D_in]`).
    fn forward(&self, ctx: &ModelContext, input: &ModelInput, probes: &mut Probes) -> ModelOutput {
        let x = input.flat();
        let training = x.device().is_autodiff();
        let n_fcn = self.fcn.len();
        let mut stats: Vec<Option<(Tensor<2>, Tensor<2>)>> = vec![None; ctx.n_domains()];
        let logits = input.route(|d| {
            let xd = input.rows_of(x.clone(), d);
            let n = xd.dims()[0];
            let (z, st) = self.pn.forward(xd.clone(), d, training);
            stats[d] = st;
            probes.record(
                || crate::ProbeKey::other(format!("pn/{}", ctx.domains[d])),
                || z.clone(),
            );
            let mut h = z;
            for (i, layer) in self.fcn.iter().enumerate() {
                h = layer.forward(h, d);
                if i + 1 < n_fcn {
                    h = relu(h);
                }
            }
            let e = match (&self.domain_emb, self.domain_field) {
                (_, Some(f)) => input.rows_of(input.field(ctx, f), d),
                (Some(table), None) => {
                    let k = table.dims()[1];
                    table.val().narrow(0, d, 1).expand([n, k])
                }
                (None, None) => unreachable!("built with a domain embedding"),
            };
            let a_in = if self.aux_features {
                Tensor::cat(vec![e, xd], 1)
            } else {
                e
            };
            h + self.aux_out.forward(self.aux.forward(a_in))
        });
        if training {
            self.pn.update(stats);
        }
        ModelOutput::from(logits)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::model::{DynModel, Holder};
    use mdrec_nn::device::cpu;
    use mdrec_nn::input::Routing;

    fn rows(rng: &mut Rng, n: usize, width: usize) -> Vec<f32> {
        init::normal(rng, n * width, 1.0)
    }

    /// A batch from row-major values (embeddings only) and domains.
    fn input(values: Vec<f32>, domain: &[u32], ctx: &ModelContext, device: &Device) -> ModelInput {
        let b = domain.len();
        ModelInput {
            batch_size: b,
            emb: init::tensor(values, [b, ctx.emb_dim()], device),
            dense: None,
            domain: domain.to_vec(),
            routing: Routing::new(domain, ctx.n_domains(), device),
            sets: vec![],
            seq_masks: vec![],
        }
    }

    fn logits(m: &Star, ctx: &ModelContext, inp: &ModelInput) -> Vec<f32> {
        m.forward(ctx, inp, &mut Probes::new(false))
            .logits
            .into_data()
            .try_to_vec::<f32>()
            .unwrap()
    }

    #[test]
    fn training_output_of_a_domain_ignores_other_domains_in_the_batch() {
        let dev = cpu().autodiff();
        let ctx = ModelContext::uniform(3, 10, 4, 0, 3, 2);
        let w = ctx.emb_dim();
        let m = Star::build(&Star::tiny(), &ctx, &mut Rng::new(7), &dev).unwrap();
        let mut rng = Rng::new(1);
        let d0 = rows(&mut rng, 5, w);
        // Domain-0 rows at positions 0, 2, 3, 6, 8; other domains fill the rest.
        let domain = [0u32, 1, 0, 0, 2, 1, 0, 2, 0];
        let batch = |rng: &mut Rng| {
            let others = rows(rng, 4, w);
            let (mut i0, mut io) = (0, 0);
            let mut v = Vec::new();
            for &d in &domain {
                if d == 0 {
                    v.extend_from_slice(&d0[i0 * w..(i0 + 1) * w]);
                    i0 += 1;
                } else {
                    v.extend_from_slice(&others[io * w..(io + 1) * w]);
                    io += 1;
                }
            }
            input(v, &domain, &ctx, &dev)
        };
        let a = logits(&m, &ctx, &batch(&mut Rng::new(2)));
        let b = logits(&m, &ctx, &batch(&mut Rng::new(3)));
        let pick = |v: &[f32]| -> Vec<f32> {
            domain
                .iter()
                .enumerate()
                .filter(|(_, &d)| d == 0)
                .flat_map(|(i, _)| v[i * 2..i * 2 + 2].to_vec())
                .collect()
        };
        assert_eq!(pick(&a), pick(&b));
        // The other domains' rows did change (the batches really differ).
        assert_ne!(a, b);
        // With whole-batch statistics the domain-0 rows would have moved too; check that the
        // normalised input of domain 0 really has zero mean per column (per-domain statistics).
        let mut probes = Probes::new(true);
        m.forward(&ctx, &batch(&mut Rng::new(4)), &mut probes);
        let z = probes.values()["pn/d0"].clone().mean_dim(0);
        let z = z.into_data().try_to_vec::<f32>().unwrap();
        assert!(z.iter().all(|v| v.abs() < 1e-5), "{z:?}");
    }

    #[test]
    fn running_statistics_move_in_training_and_serve_inference() {
        let dev = cpu().autodiff();
        let ctx = ModelContext::uniform(2, 10, 3, 0, 2, 1);
        let w = ctx.emb_dim();
        let m = Star::build(&Star::tiny(), &ctx, &mut Rng::new(7), &dev).unwrap();
        let mut rng = Rng::new(9);
        let probe_batch = input(rows(&mut rng, 4, w), &[0, 1, 1, 0], &ctx, &cpu());
        let before = logits(&m.valid(), &ctx, &probe_batch);
        let mean0 = m.pn.running_mean.value();
        // Training forwards on domain-0 rows with mean 3: only domain 0's averages move.
        for _ in 0..5 {
            let v: Vec<f32> = rows(&mut rng, 6, w).iter().map(|x| x + 3.0).collect();
            m.forward(
                &ctx,
                &input(v, &[0; 6], &ctx, &dev),
                &mut Probes::new(false),
            );
        }
        let valid = m.valid();
        let mean = valid
            .pn
            .running_mean
            .value()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let mean0 = mean0.into_data().try_to_vec::<f32>().unwrap();
        assert!(mean[..w].iter().all(|&v| v > 1.0), "{mean:?}");
        assert_eq!(&mean[w..], &mean0[w..]);
        // Inference uses the averages: domain-0 outputs changed without any parameter update,
        // domain-1 outputs did not.
        let after = logits(&valid, &ctx, &probe_batch);
        assert_ne!(after[0], before[0]);
        assert_ne!(after[3], before[3]);
        assert_eq!(after[1..3], before[1..3]);
        // And inference of a row does not depend on its batch.
        let single = input(
            probe_batch
                .emb
                .clone()
                .narrow(0, 0, 1)
                .into_data()
                .try_to_vec::<f32>()
                .unwrap(),
            &[0],
            &ctx,
            &cpu(),
        );
        assert!((logits(&valid, &ctx, &single)[0] - after[0]).abs() < 1e-5);
    }

    #[test]
    fn running_statistics_survive_a_checkpoint_round_trip() {
        let dev = cpu().autodiff();
        let ctx = ModelContext::uniform(2, 10, 3, 0, 3, 2);
        let w = ctx.emb_dim();
        let m = Star::build(&Star::tiny(), &ctx, &mut Rng::new(7), &dev).unwrap();
        let mut rng = Rng::new(9);
        for _ in 0..3 {
            let v: Vec<f32> = rows(&mut rng, 8, w).iter().map(|x| 2.0 * x - 1.0).collect();
            m.forward(
                &ctx,
                &input(v, &[0, 1, 2, 0, 1, 2, 0, 1], &ctx, &dev),
                &mut Probes::new(false),
            );
        }
        let trained = Holder {
            model: Some(m.valid()),
        };
        let named = trained.named_tensors();
        let names: Vec<&str> = named.iter().map(|(n, _, _)| n.as_str()).collect();
        assert!(names.contains(&"pn.running_mean"), "{names:?}");
        assert!(names.contains(&"pn.running_var"), "{names:?}");
        let map: BTreeMap<String, (Vec<usize>, Vec<f32>)> =
            named.into_iter().map(|(n, s, v)| (n, (s, v))).collect();
        let mut fresh = Holder {
            model: Some(Star::build(&Star::tiny(), &ctx, &mut Rng::new(99), &dev).unwrap()),
        };
        fresh.load_named(&map).unwrap();
        let batch = input(rows(&mut rng, 5, w), &[2, 0, 1, 1, 0], &ctx, &cpu());
        let get = |m: &dyn DynModel| {
            m.forward(&ctx, &batch, &mut Probes::new(false))
                .logits
                .into_data()
                .try_to_vec::<f32>()
                .unwrap()
        };
        assert_eq!(get(&trained), get(fresh.valid().as_ref()));
        // The running variance was trained away from its initial 1.
        let var = &map["pn.running_var"].1;
        assert!(var.iter().any(|&v| (v - 1.0).abs() > 0.1));
    }

    /// Column mean and biased variance of a row-major `[n, w]` block, in f64.
    fn column_stats(v: &[f32], w: usize) -> (Vec<f64>, Vec<f64>) {
        let n = (v.len() / w) as f64;
        let mean: Vec<f64> = (0..w)
            .map(|c| v.iter().skip(c).step_by(w).map(|&x| x as f64).sum::<f64>() / n)
            .collect();
        let var = (0..w)
            .map(|c| {
                v.iter()
                    .skip(c)
                    .step_by(w)
                    .map(|&x| (x as f64 - mean[c]).powi(2))
                    .sum::<f64>()
                    / n
            })
            .collect();
        (mean, var)
    }

    #[test]
    fn partitioned_norm_uses_domain_statistics_composed_affine_and_exact_momentum() {
        let dev = cpu().autodiff();
        let ctx = ModelContext::uniform(2, 10, 3, 0, 2, 1);
        let w = ctx.emb_dim();
        let mut m = Star::build(&Star::tiny(), &ctx, &mut Rng::new(7), &dev).unwrap();
        // Domain 0 around 3 with spread 2, domain 1 around −1 with spread 0.5, interleaved.
        let domain = [0u32, 1, 0, 1, 0, 0, 1, 0];
        let mut rng = Rng::new(11);
        let mut values = Vec::new();
        for &d in &domain {
            let (mu, sd) = if d == 0 { (3.0, 2.0) } else { (-1.0, 0.5) };
            values.extend(rows(&mut rng, 1, w).iter().map(|x| mu + sd * x));
        }
        let own = |d: u32| -> Vec<f32> {
            domain
                .iter()
                .enumerate()
                .filter(|(_, &x)| x == d)
                .flat_map(|(i, _)| values[i * w..(i + 1) * w].to_vec())
                .collect()
        };
        let pn_out = |m: &Star, d: &str| {
            let mut probes = Probes::new(true);
            m.forward(
                &ctx,
                &input(values.clone(), &domain, &ctx, &dev),
                &mut probes,
            );
            let z = probes.values()[d].clone();
            z.into_data().try_to_vec::<f32>().unwrap()
        };

        // Fresh affine parameters (γ = γ_d = 1, β = β_d = 0): every domain's normalised rows
        // have zero mean and unit (biased) variance per column — σ²/(σ² + ε) with the domain's
        // own σ², which whole-batch statistics would not give.
        for d in 0..2u32 {
            let (mean, var) = column_stats(&pn_out(&m, &format!("pn/d{d}")), w);
            let (_, var_x) = column_stats(&own(d), w);
            assert!(mean.iter().all(|v| v.abs() < 1e-5), "{d}: {mean:?}");
            for (v, vx) in var.iter().zip(&var_x) {
                assert!(
                    (v - vx / (vx + 1e-5)).abs() < 1e-4,
                    "{d}: {var:?} vs {var_x:?}"
                );
            }
            assert!(var.iter().all(|v| (v - 1.0).abs() < 1e-2), "{d}: {var:?}");
        }

        // The running statistics after exactly one training forward from (0, 1): a fresh model,
        // so the two probing forwards above do not count.
        let fresh = Star::build(&Star::tiny(), &ctx, &mut Rng::new(7), &dev).unwrap();
        fresh.forward(
            &ctx,
            &input(values.clone(), &domain, &ctx, &dev),
            &mut Probes::new(false),
        );
        let running = |t: Tensor<2>| t.into_data().try_to_vec::<f32>().unwrap();
        // (burn keeps running-state updates per thread until a sync; `valid()` folds them)
        let synced = fresh.valid();
        let (rm, rv) = (
            running(synced.pn.running_mean.value()),
            running(synced.pn.running_var.value()),
        );
        for d in 0..2u32 {
            let x = own(d);
            let n = (x.len() / w) as f64;
            let (mean, var) = column_stats(&x, w);
            for c in 0..w {
                let i = d as usize * w + c;
                // momentum 0.1, unbiased variance (PyTorch BatchNorm)
                let want_m = 0.9 * 0.0 + 0.1 * mean[c];
                let want_v = 0.9 * 1.0 + 0.1 * var[c] * n / (n - 1.0);
                assert!((rm[i] as f64 - want_m).abs() < 1e-5, "mean {d}/{c}");
                assert!((rv[i] as f64 - want_v).abs() < 1e-5, "var {d}/{c}");
            }
        }

        // z = (γ ⊙ γ_d) ⊙ x̂ + (β + β_d) with x̂ the per-domain standardised input.
        let vec_param = |v: f32| init::param(vec![v; w], [w], &dev);
        m.pn.gamma = vec_param(2.0);
        m.pn.gamma_d[1] = vec_param(3.0);
        m.pn.beta = vec_param(0.5);
        m.pn.beta_d[1] = vec_param(-2.0);
        let z = pn_out(&m, "pn/d1");
        let x = own(1);
        let (mean, var) = column_stats(&x, w);
        for (i, (&zi, &xi)) in z.iter().zip(&x).enumerate() {
            let c = i % w;
            let hat = (xi as f64 - mean[c]) / (var[c] + 1e-5).sqrt();
            let want = 2.0 * 3.0 * hat + (0.5 - 2.0);
            assert!(
                (zi as f64 - want).abs() < 1e-4,
                "row {} col {c}: {zi} vs {want}",
                i / w
            );
        }
        // Domain 0 keeps its own (unit) parameters next to the shared ones: γ·1, β + 0.
        let z = pn_out(&m, "pn/d0");
        let x = own(0);
        let (mean, var) = column_stats(&x, w);
        for (i, (&zi, &xi)) in z.iter().zip(&x).enumerate() {
            let c = i % w;
            let want = 2.0 * (xi as f64 - mean[c]) / (var[c] + 1e-5).sqrt() + 0.5;
            assert!((zi as f64 - want).abs() < 1e-4, "{zi} vs {want}");
        }
    }
}
