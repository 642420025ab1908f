//! Feature-interaction blocks shared by the single-domain backbones ([`crate::backbone::deepfm`],
//! [`crate::backbone::dcn`], [`crate::backbone::dcnv2`], [`crate::backbone::autoint`], [`crate::backbone::xdeepfm`]) and by any model
//! that uses them as experts (e.g. on its own embedding set).
//!
//! Every block is a burn [`Module`] with a `forward` on per-field embeddings `[B, F, k]` or on a
//! flat input `[B, D]`, and an `out_dim()`. None of them reads a [`ModelInput`] or knows about
//! domains and tasks: the caller chooses the input (the base embeddings, an embedding set, the
//! numeric inputs) with [`stack_fields`] / [`ModelInput::flat`] and owns the heads.
//!
//! | block | input | output | formula |
//! |---|---|---|---|
//! | [`Fm`] | `[B, F, k]` | `[B, 1]` or `[B, k]` | `½ Σ_k [(Σ_f e_fk)² − Σ_f e_fk²]` = Σ_{i<j} ⟨e_i, e_j⟩ |
//! | [`CrossNet`] (DCN v1) | `[B, D]` | `[B, D]` | `x_{l+1} = x_0 (w_lᵀ x_l) + b_l + x_l` |
//! | [`CrossNetV2`] (full rank) | `[B, D]` | `[B, D]` | `x_{l+1} = x_0 ⊙ (W_l x_l + b_l) + x_l` |
//! | [`CrossNetMix`] (low-rank mixture) | `[B, D]` | `[B, D]` | `x_{l+1} = Σ_e g_e(x_l) · x_0 ⊙ (U_e tanh(C_e tanh(V_eᵀ x_l)) + b_l) + x_l` |
//! | [`Cin`] (xDeepFM) | `[B, m, k]` | `[B, Σ H'_l]` | `X^l_h = Σ_{i,j} W^{l,h}_{ij} (X^{l−1}_i ⊙ X^0_j)`, sum-pooled over `k` |
//! | [`InteractingLayer`] (AutoInt) | `[B, F, d]` | `[B, F, H·d']` | multi-head self-attention over fields + residual, ReLU |
//! | [`FieldProjection`] | `[B, Σ d_f]` | `[B, F, d]` | one `Linear(d_f → d)` per field (unequal widths) |
//!
//! [`ModelInput`]: mdrec_nn::ModelInput
//! [`ModelInput::flat`]: mdrec_nn::ModelInput::flat

use burn::module::{Module, Param};
use burn::nn::{Dropout, DropoutConfig, Linear};
use burn::tensor::activation::{relu, sigmoid, softmax};
use burn::tensor::{Device, Tensor};
use mdrec_data::rng::Rng;
use mdrec_nn::init::{self, WeightInit};
use mdrec_nn::{Activation, FieldInfo};

/// A `Linear(fan_in → fan_out)` with PyTorch's default weight init (U(±1/√fan_in)) and a zero
/// bias (`bias = true`) or none — the form of the cross and attention weights in the references.
pub fn dense(fan_in: usize, fan_out: usize, bias: bool, rng: &mut Rng, device: &Device) -> Linear {
    let w = init::weight(rng, fan_in, fan_out, WeightInit::TorchDefault);
    Linear {
        weight: init::param(w, [fan_in, fan_out], device),
        bias: bias.then(|| init::param(vec![0.0; fan_out], [fan_out], device)),
    }
}

/// The embedding width shared by every field of `fields`, or an error naming the fields whose
/// width differs (`what` names the block that needs equal widths, e.g. "FM").
pub fn common_dim(fields: &[FieldInfo], what: &str) -> Result<usize, String> {
    let first = fields
        .first()
        .ok_or_else(|| format!("{what} needs at least one embedded field"))?;
    let odd: Vec<String> = fields
        .iter()
        .filter(|f| f.dim != first.dim)
        .map(|f| format!("`{}` ({})", f.name, f.dim))
        .collect();
    if odd.is_empty() {
        Ok(first.dim)
    } else {
        Err(format!(
            "{what} needs every field at the same embedding width, but `{}` has {} and {} differ; \
             give these fields one `dim` in the schema",
            first.name,
            first.dim,
            odd.join(", ")
        ))
    }
}

/// Per-field embeddings `[B, F, k]` from a flat embedding tensor and its fields (the base
/// `ModelInput::emb` with `ModelContext::fields`, or a set `ModelInput::sets[s]` with
/// `ModelContext::sets[s].fields`). Every field must have width `k` (check with
/// [`common_dim`] when building).
///
/// # Shapes
/// - emb: `[B, W]` (W ≥ Σ dim_f) → `[B, F, k]`
pub fn stack_fields(emb: Tensor<2>, fields: &[FieldInfo]) -> Tensor<3> {
    let [b, w] = emb.dims();
    let n = fields.len();
    let k = fields[0].dim;
    debug_assert!(fields.iter().all(|f| f.dim == k), "fields of unequal width");
    let contiguous = fields
        .iter()
        .enumerate()
        .all(|(i, f)| f.offset == fields[0].offset + i * k);
    if contiguous {
        let x = if fields[0].offset == 0 && w == n * k {
            emb
        } else {
            emb.narrow(1, fields[0].offset, n * k)
        };
        x.reshape([b, n, k])
    } else {
        let parts = fields
            .iter()
            .map(|f| emb.clone().narrow(1, f.offset, k).reshape([b, 1, k]))
            .collect();
        Tensor::cat(parts, 1)
    }
}

/// `tanh(x) = 1 − 2 / (e^{2x} + 1)`: the same function as `Tensor::tanh` to ≈1e-7 absolute
/// (±1 at ±∞ without overflow), built from ops whose flex kernels are fast. burn's flex `tanh`
/// forward + backward took ≈5× as long as this on `[2048, 128]` (21 ms vs 4 ms), most of a
/// DCN-Mix step.
fn tanh<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    x.mul_scalar(2.0)
        .exp()
        .add_scalar(1.0)
        .recip()
        .mul_scalar(-2.0)
        .add_scalar(1.0)
}

fn activate<const D: usize>(a: Activation, x: Tensor<D>) -> Tensor<D> {
    match a {
        Activation::Relu => relu(x),
        Activation::Sigmoid => sigmoid(x),
        Activation::None => x,
    }
}

// ---------------------------------------------------------------------------------------------
// FM
// ---------------------------------------------------------------------------------------------

/// Factorization-machine second-order term (Rendle 2010; DeepFM's FM component):
/// `Σ_{i<j} ⟨e_i, e_j⟩ = ½ Σ_k [(Σ_f e_fk)² − Σ_f e_fk²]`. No parameters: it reads the field
/// embeddings it is given.
///
/// With `reduce_sum = false` it returns the `k`-vector before the final sum (the
/// bi-interaction pooling of NFM), e.g. to feed an MLP.
#[derive(Module, Debug)]
pub struct Fm {
    #[module(skip)]
    reduce_sum: bool,
    #[module(skip)]
    dim: usize,
}

impl Fm {
    /// An FM term over fields of width `dim`.
    pub fn new(dim: usize, reduce_sum: bool) -> Self {
        Fm { reduce_sum, dim }
    }

    /// `1` when reduced, `k` otherwise.
    pub fn out_dim(&self) -> usize {
        if self.reduce_sum {
            1
        } else {
            self.dim
        }
    }

    /// # Shapes
    /// - e: `[B, F, k]` → `[B, 1]` (reduce_sum) or `[B, k]`
    pub fn forward(&self, e: Tensor<3>) -> Tensor<2> {
        let [b, _f, k] = e.dims();
        let sum = e.clone().sum_dim(1); // [B, 1, k]
        let square_of_sum = sum.clone() * sum;
        let sum_of_square = (e.clone() * e).sum_dim(1);
        let v: Tensor<2> = (square_of_sum - sum_of_square)
            .mul_scalar(0.5)
            .reshape([b, k]);
        if self.reduce_sum {
            v.sum_dim(1)
        } else {
            v
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Cross networks
// ---------------------------------------------------------------------------------------------

/// DCN (v1) cross network (Wang et al., ADKDD 2017, Eq. 3):
/// `x_{l+1} = x_0 (w_lᵀ x_l) + b_l + x_l`, `w_l, b_l ∈ R^D`. `w_l` ~ U(±1/√D) (torch-rechub's
/// `Linear(D, 1, bias=False)`), `b_l = 0`.
#[derive(Module, Debug)]
pub struct CrossNet {
    w: Vec<Param<Tensor<2>>>,
    b: Vec<Param<Tensor<1>>>,
    #[module(skip)]
    dim: usize,
}

impl CrossNet {
    /// `layers` cross layers on inputs of width `dim`.
    pub fn new(dim: usize, layers: usize, rng: &mut Rng, device: &Device) -> Self {
        let mut w = Vec::with_capacity(layers);
        let mut b = Vec::with_capacity(layers);
        for _ in 0..layers {
            let v = init::weight(rng, dim, 1, WeightInit::TorchDefault);
            w.push(init::param(v, [dim, 1], device));
            b.push(init::param(vec![0.0; dim], [dim], device));
        }
        CrossNet { w, b, dim }
    }

    /// `D`.
    pub fn out_dim(&self) -> usize {
        self.dim
    }

    /// # Shapes
    /// - x0: `[B, D]`; per layer `w_lᵀ x_l`: `[B, 1]` → `[B, D]`
    pub fn forward(&self, x0: Tensor<2>) -> Tensor<2> {
        let mut x = x0.clone();
        for (w, b) in self.w.iter().zip(&self.b) {
            let s = x.clone().matmul(w.val()); // [B, 1]
            x = x0.clone() * s + b.val().unsqueeze::<2>() + x;
        }
        x
    }
}

/// DCN-V2 full-rank cross network (Wang et al., WWW 2021, Eq. 1):
/// `x_{l+1} = x_0 ⊙ (W_l x_l + b_l) + x_l` — the bias inside the Hadamard product as in the
/// paper (torch-rechub/AREAD put it outside, docs/models.md). `W_l` ~ U(±1/√D),
/// `b_l = 0`.
#[derive(Module, Debug)]
pub struct CrossNetV2 {
    layers: Vec<Linear>,
    #[module(skip)]
    dim: usize,
}

impl CrossNetV2 {
    /// `layers` full-rank cross layers on inputs of width `dim`.
    pub fn new(dim: usize, layers: usize, rng: &mut Rng, device: &Device) -> Self {
        let layers = (0..layers)
            .map(|_| dense(dim, dim, true, rng, device))
            .collect();
        CrossNetV2 { layers, dim }
    }

    /// `D`.
    pub fn out_dim(&self) -> usize {
        self.dim
    }

    /// # Shapes
    /// - x0: `[B, D]` → `[B, D]`
    pub fn forward(&self, x0: Tensor<2>) -> Tensor<2> {
        let mut x = x0.clone();
        for l in &self.layers {
            x = x0.clone() * l.forward(x.clone()) + x;
        }
        x
    }
}

/// DCN-V2 low-rank mixture of cross experts ("DCN-Mix", Wang et al., WWW 2021, §5.2; the
/// `CrossNetMix` of DeepCTR-Torch / torch-rechub):
///
/// `x_{l+1} = Σ_e softmax_e(G_e(x_l)) · [x_0 ⊙ (U_{l,e} tanh(C_{l,e} tanh(V_{l,e}ᵀ x_l)) + b_l)] + x_l`
///
/// with `U, V ∈ R^{D×r}`, `C ∈ R^{r×r}` per layer and expert, `b_l ∈ R^D` per layer (zero init)
/// and gates `G_e = Linear(D, 1, no bias)` shared by all layers (as the reference). `U, V, C`
/// are stored per layer as `[E, D, r]` / `[E, r, r]` tensors and drawn with PyTorch's
/// `xavier_normal_` on those 3-D tensors (fan_in = D·r, fan_out = E·r for `U, V`; r·r and E·r
/// for `C`), as the reference does.
#[derive(Module, Debug)]
pub struct CrossNetMix {
    u: Vec<Param<Tensor<3>>>,
    v: Vec<Param<Tensor<3>>>,
    c: Vec<Param<Tensor<3>>>,
    bias: Vec<Param<Tensor<1>>>,
    gate: Linear,
    #[module(skip)]
    dim: usize,
}

impl CrossNetMix {
    /// `layers` mixture layers of `experts` experts of rank `rank` on inputs of width `dim`.
    /// Errors when a count is zero.
    pub fn new(
        dim: usize,
        layers: usize,
        rank: usize,
        experts: usize,
        rng: &mut Rng,
        device: &Device,
    ) -> Result<Self, String> {
        if rank == 0 || experts == 0 {
            return Err(format!(
                "the low-rank cross mixture needs low_rank ≥ 1 and num_experts ≥ 1 (got {rank} and {experts})"
            ));
        }
        let (d, r, e) = (dim, rank, experts);
        let std_uv = (2.0 / (d * r + e * r) as f32).sqrt();
        let std_c = (2.0 / (r * r + e * r) as f32).sqrt();
        let (mut u, mut v, mut c, mut bias) = (vec![], vec![], vec![], vec![]);
        for _ in 0..layers {
            u.push(init::param(
                init::normal(rng, e * d * r, std_uv),
                [e, d, r],
                device,
            ));
            v.push(init::param(
                init::normal(rng, e * d * r, std_uv),
                [e, d, r],
                device,
            ));
            c.push(init::param(
                init::normal(rng, e * r * r, std_c),
                [e, r, r],
                device,
            ));
            bias.push(init::param(vec![0.0; d], [d], device));
        }
        let gate = dense(d, e, false, rng, device);
        Ok(CrossNetMix {
            u,
            v,
            c,
            bias,
            gate,
            dim,
        })
    }

    /// `D`.
    pub fn out_dim(&self) -> usize {
        self.dim
    }

    /// # Shapes
    /// - x0: `[B, D]` → `[B, D]`
    pub fn forward(&self, x0: Tensor<2>) -> Tensor<2> {
        self.forward_with_gates(x0).0
    }

    /// The output and each layer's gate weights.
    ///
    /// Computed with plain matrix products over all experts at once: because the gate weights
    /// sum to 1, `Σ_e g_e [x_0 ⊙ (U_e h_e + b)] = x_0 ⊙ ([g_1 h_1, …, g_E h_E] U_all + b)` with
    /// `U_all = [U_1ᵀ; …; U_Eᵀ]`, and the `C_e` act as one block-diagonal `[E·r, E·r]` matrix.
    ///
    /// # Shapes
    /// - x0: `[B, D]`; per layer: `V_eᵀ x_l` for all experts `[B, E·r]`; after `C` `[B, E·r]`;
    ///   gates `[B, E]`; gated `[B, E·r]` → `[B, D]`
    /// - result: `[B, D]`, gates `L × [B, E]`
    pub fn forward_with_gates(&self, x0: Tensor<2>) -> (Tensor<2>, Vec<Tensor<2>>) {
        let [b, d] = x0.dims();
        let device = x0.device();
        let mut x = x0.clone();
        let mut gates = Vec::with_capacity(self.u.len());
        let mut mask: Option<Tensor<4>> = None;
        for l in 0..self.u.len() {
            let [e, _, r] = self.v[l].dims();
            let mask = mask
                .get_or_insert_with(|| {
                    let m = (0..e * e)
                        .map(|i| if i / e == i % e { 1.0 } else { 0.0 })
                        .collect();
                    init::tensor(m, [e, 1, e, 1], &device)
                })
                .clone();
            // V_all[i, e·r + j] = V[e, i, j]
            let v_all: Tensor<2> = self.v[l].val().swap_dims(0, 1).reshape([d, e * r]);
            // C_bd[e·r + j, e·r + i] = C[e, i, j] (row form of h ↦ C_e h), zero off the blocks
            let c_t: Tensor<4> = self.c[l].val().swap_dims(1, 2).reshape([e, r, 1, r]);
            let c_bd: Tensor<2> = (c_t * mask).reshape([e * r, e * r]);
            // U_all[e·r + j, i] = U[e, i, j]
            let u_all: Tensor<2> = self.u[l].val().swap_dims(1, 2).reshape([e * r, d]);
            let h = tanh(tanh(x.clone().matmul(v_all)).matmul(c_bd)); // [B, E·r]
            let g = softmax(self.gate.forward(x.clone()), 1); // [B, E]
            let gated: Tensor<2> =
                (h.reshape([b, e, r]) * g.clone().reshape([b, e, 1])).reshape([b, e * r]);
            let bias: Tensor<2> = self.bias[l].val().unsqueeze();
            x = x0.clone() * (gated.matmul(u_all) + bias) + x;
            gates.push(g);
        }
        (x, gates)
    }
}

// ---------------------------------------------------------------------------------------------
// CIN
// ---------------------------------------------------------------------------------------------

/// Compressed Interaction Network (xDeepFM, Lian et al., KDD 2018, §3.2, Eq. 6):
///
/// `X^l_{h,*} = act(Σ_{i=1}^{H_{l−1}} Σ_{j=1}^{m} W^{l,h}_{ij} (X^{l−1}_{i,*} ⊙ X^0_{j,*}) + b^l_h)`
///
/// then sum pooling over the embedding dimension, `p^l_h = Σ_k X^l_{h,k}`, and
/// `p⁺ = [p^1, …, p^L]`. With `split_half` (the authors' code) every layer but the last sends
/// its first `H_l/2` feature maps to the next layer and the other `H_l/2` to the output. The
/// weight of layer `l` is stored as `[H_{l−1}·m, H_l]` with row `i·m + j` (a 1×1 convolution
/// over the `H_{l−1}·m` outer-product channels); weights ~ U(±1/√(H_{l−1}·m)) (PyTorch
/// `Conv1d`), bias zero.
#[derive(Module, Debug)]
pub struct Cin {
    layers: Vec<Linear>,
    #[module(skip)]
    sizes: Vec<usize>,
    #[module(skip)]
    split_half: bool,
    #[module(skip)]
    activation: Activation,
    #[module(skip)]
    out_dim: usize,
}

impl Cin {
    /// A CIN over `n_fields` fields with feature-map counts `sizes`. Errors when `sizes` is
    /// empty or has a zero, or with `split_half` when a layer but the last is odd.
    pub fn new(
        n_fields: usize,
        sizes: &[usize],
        split_half: bool,
        bias: bool,
        activation: Activation,
        rng: &mut Rng,
        device: &Device,
    ) -> Result<Self, String> {
        if n_fields == 0 {
            return Err("CIN needs at least one embedded field".into());
        }
        if sizes.is_empty() || sizes.contains(&0) {
            return Err(format!(
                "CIN layer sizes must be non-empty and positive, got {sizes:?}"
            ));
        }
        let last = sizes.len() - 1;
        if split_half && sizes[..last].iter().any(|s| s % 2 == 1) {
            return Err(format!(
                "CIN with split_half needs even sizes for every layer but the last, got {sizes:?}"
            ));
        }
        let mut layers = Vec::with_capacity(sizes.len());
        let mut h_prev = n_fields;
        let mut out_dim = 0;
        for (l, &h) in sizes.iter().enumerate() {
            layers.push(dense(h_prev * n_fields, h, bias, rng, device));
            let (next, direct) = if split_half && l < last {
                (h / 2, h / 2)
            } else {
                (h, h)
            };
            h_prev = next;
            out_dim += direct;
        }
        Ok(Cin {
            layers,
            sizes: sizes.to_vec(),
            split_half,
            activation,
            out_dim,
        })
    }

    /// `Σ_l H'_l` (half of each layer but the last with `split_half`).
    pub fn out_dim(&self) -> usize {
        self.out_dim
    }

    /// The layers' feature maps before pooling (what goes to the output and what goes on).
    ///
    /// # Shapes
    /// - x0: `[B, m, k]`; per layer: outer products `[B, k, H_{l−1}, m]` → `[B·k, H_{l−1}·m]`
    ///   → `[B, k, H_l]`
    /// - result: per layer the maps sent to the output, `[B, k, H'_l]`
    pub fn feature_maps(&self, x0: Tensor<3>) -> Vec<Tensor<3>> {
        let [b, m, k] = x0.dims();
        // The flattening round trips make the swapped / narrowed views contiguous: the broadcast
        // product below was ≈1.5× slower on strided inputs (flex).
        let x0t: Tensor<3> = x0.swap_dims(1, 2).reshape([b * k * m]).reshape([b, k, m]); // [B, k, m]
        let x0e: Tensor<4> = x0t.clone().unsqueeze_dim(2); // [B, k, 1, m]
        let mut h = x0t; // [B, k, H]
        let last = self.layers.len() - 1;
        let mut outs = Vec::with_capacity(self.layers.len());
        for (l, layer) in self.layers.iter().enumerate() {
            let hp = h.dims()[2];
            let z: Tensor<4> = h.unsqueeze_dim::<4>(3) * x0e.clone(); // [B, k, H, m]
            let z: Tensor<2> = z.reshape([b * k, hp * m]);
            let size = self.sizes[l];
            let y: Tensor<3> = activate(self.activation, layer.forward(z)).reshape([b, k, size]);
            if self.split_half && l < last {
                let half = size / 2;
                outs.push(y.clone().narrow(2, half, half));
                h = y
                    .narrow(2, 0, half)
                    .reshape([b * k * half])
                    .reshape([b, k, half]);
            } else {
                outs.push(y.clone());
                h = y;
            }
        }
        outs
    }

    /// # Shapes
    /// - x0: `[B, m, k]` → `p⁺`: `[B, out_dim]`
    pub fn forward(&self, x0: Tensor<3>) -> Tensor<2> {
        let b = x0.dims()[0];
        let maps = Tensor::cat(self.feature_maps(x0), 2); // [B, k, out_dim]
        maps.sum_dim(1).reshape([b, self.out_dim])
    }
}

// ---------------------------------------------------------------------------------------------
// Self-attention over fields (AutoInt)
// ---------------------------------------------------------------------------------------------

/// One AutoInt interacting layer (Song et al., CIKM 2019, Eq. 5–8): multi-head self-attention
/// over the fields of each row, then a residual projection and ReLU:
///
/// `α^h_{m,j} = softmax_j(⟨W^h_Q e_m, W^h_K e_j⟩ [/ √d'])`, `ẽ^h_m = Σ_j α^h_{m,j} W^h_V e_j`,
/// `e^Res_m = ReLU(ẽ^1_m ⊕ … ⊕ ẽ^H_m + W_Res e_m)`.
///
/// The paper's score is the plain inner product (`scaled = false`); `scaled` divides by √d'.
/// `W_Q, W_K, W_V, W_Res` have no bias, weights ~ U(±1/√d_in). Attention never mixes rows:
/// each row attends over its own fields only. Dropout (training only) acts on the attention
/// weights.
#[derive(Module, Debug)]
pub struct InteractingLayer {
    wq: Linear,
    wk: Linear,
    wv: Linear,
    wres: Option<Linear>,
    dropout: Dropout,
    #[module(skip)]
    heads: usize,
    #[module(skip)]
    head_dim: usize,
    #[module(skip)]
    scaled: bool,
}

impl InteractingLayer {
    /// A layer from fields of width `in_dim` to `heads · head_dim`. Errors when a count is zero
    /// or the dropout is outside `[0, 1)`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        in_dim: usize,
        heads: usize,
        head_dim: usize,
        residual: bool,
        scaled: bool,
        dropout: f64,
        rng: &mut Rng,
        device: &Device,
    ) -> Result<Self, String> {
        if in_dim == 0 || heads == 0 || head_dim == 0 {
            return Err(format!(
                "attention needs positive widths and heads (in {in_dim}, heads {heads}, head_dim {head_dim})"
            ));
        }
        if !(0.0..1.0).contains(&dropout) {
            return Err(format!(
                "attention dropout must be in [0, 1), got {dropout}"
            ));
        }
        let out = heads * head_dim;
        Ok(InteractingLayer {
            wq: dense(in_dim, out, false, rng, device),
            wk: dense(in_dim, out, false, rng, device),
            wv: dense(in_dim, out, false, rng, device),
            wres: residual.then(|| dense(in_dim, out, false, rng, device)),
            dropout: DropoutConfig::new(dropout).init(),
            heads,
            head_dim,
            scaled,
        })
    }

    /// `H · d'`.
    pub fn out_dim(&self) -> usize {
        self.heads * self.head_dim
    }

    /// # Shapes
    /// - x: `[B, F, d_in]` → `[B, F, H·d']`
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        self.forward_with_weights(x).0
    }

    /// The output and the attention weights.
    ///
    /// # Shapes
    /// - x: `[B, F, d_in]`; Q, K, V `[B, H, F, d']`; weights `[B, H, F, F]` (rows sum to 1)
    /// - result: `[B, F, H·d']`
    pub fn forward_with_weights(&self, x: Tensor<3>) -> (Tensor<3>, Tensor<4>) {
        let [b, f, din] = x.dims();
        let (h, dh) = (self.heads, self.head_dim);
        let flat: Tensor<2> = x.reshape([b * f, din]);
        let split = |t: Tensor<2>| -> Tensor<4> { t.reshape([b, f, h, dh]).swap_dims(1, 2) };
        let q = split(self.wq.forward(flat.clone()));
        let k = split(self.wk.forward(flat.clone()));
        let v = split(self.wv.forward(flat.clone()));
        let mut scores = q.matmul(k.swap_dims(2, 3)); // [B, H, F, F]
        if self.scaled {
            scores = scores.div_scalar((dh as f32).sqrt());
        }
        let weights = softmax(scores, 3);
        let attended = mdrec_nn::layers::dropout(&self.dropout, weights.clone()).matmul(v); // [B, H, F, d']
        let mut out: Tensor<3> = attended.swap_dims(1, 2).reshape([b, f, h * dh]);
        if let Some(r) = &self.wres {
            out = out + r.forward(flat).reshape([b, f, h * dh]);
        }
        (relu(out), weights)
    }
}

/// One `Linear(d_f → d, no bias)` per field: fields of unequal widths to a common width `d`
/// (e.g. before [`InteractingLayer`]). Weights ~ U(±1/√d_f).
#[derive(Module, Debug)]
pub struct FieldProjection {
    proj: Vec<Linear>,
    #[module(skip)]
    spans: Vec<(usize, usize)>,
    #[module(skip)]
    dim: usize,
}

impl FieldProjection {
    /// Projections of `fields` to width `dim`.
    pub fn new(fields: &[FieldInfo], dim: usize, rng: &mut Rng, device: &Device) -> Self {
        FieldProjection {
            proj: fields
                .iter()
                .map(|f| dense(f.dim, dim, false, rng, device))
                .collect(),
            spans: fields.iter().map(|f| (f.offset, f.dim)).collect(),
            dim,
        }
    }

    /// `d`.
    pub fn out_dim(&self) -> usize {
        self.dim
    }

    /// # Shapes
    /// - emb: `[B, W]` (the tensor the fields' offsets refer to) → `[B, F, d]`
    pub fn forward(&self, emb: Tensor<2>) -> Tensor<3> {
        let b = emb.dims()[0];
        let parts = self
            .proj
            .iter()
            .zip(&self.spans)
            .map(|(p, &(off, w))| {
                p.forward(emb.clone().narrow(1, off, w))
                    .reshape([b, 1, self.dim])
            })
            .collect();
        Tensor::cat(parts, 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mdrec_nn::device::cpu;
    use mdrec_nn::ModelContext;

    fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().unwrap()
    }

    fn close(a: &[f32], b: &[f32], tol: f32) {
        assert_eq!(a.len(), b.len());
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() <= tol * (1.0 + y.abs()),
                "index {i}: {x} vs {y}"
            );
        }
    }

    fn param_values<const D: usize>(p: &Param<Tensor<D>>) -> Vec<f32> {
        host(p.val())
    }

    #[test]
    fn fm_equals_sum_of_pairwise_inner_products() {
        let dev = cpu();
        let mut rng = Rng::new(1);
        let (b, f, k) = (5, 6, 4);
        let e = init::normal(&mut rng, b * f * k, 1.0);
        let t = init::tensor(e.clone(), [b, f, k], &dev);
        let got = host(Fm::new(k, true).forward(t.clone()));
        let vec = host(Fm::new(k, false).forward(t));
        let at = |r: usize, i: usize, d: usize| e[(r * f + i) * k + d];
        for r in 0..b {
            let mut want = 0.0f32;
            let mut want_vec = vec![0.0f32; k];
            for i in 0..f {
                for j in i + 1..f {
                    for (d, w) in want_vec.iter_mut().enumerate() {
                        *w += at(r, i, d) * at(r, j, d);
                    }
                    want += (0..k).map(|d| at(r, i, d) * at(r, j, d)).sum::<f32>();
                }
            }
            close(&got[r..r + 1], &[want], 1e-4);
            close(&vec[r * k..(r + 1) * k], &want_vec, 1e-4);
        }
    }

    #[test]
    fn tanh_matches_the_tensor_tanh() {
        let dev = cpu();
        let xs: Vec<f32> = (-400..=400)
            .map(|i| i as f32 * 0.05)
            .chain([1e-6, -1e-5, 1e3, -1e3])
            .collect();
        let n = xs.len();
        let got = host(tanh(init::tensor(xs.clone(), [n], &dev)));
        for (x, g) in xs.iter().zip(&got) {
            assert!((g - x.tanh()).abs() < 2e-7, "tanh({x}) = {g}");
        }
    }

    #[test]
    fn stack_fields_follows_offsets() {
        let dev = cpu();
        let ctx = ModelContext::uniform(3, 10, 2, 0, 1, 1);
        // Contiguous: a plain reshape.
        let emb = init::tensor((0..12).map(|v| v as f32).collect(), [2, 6], &dev);
        let s = host(stack_fields(emb.clone(), &ctx.fields));
        assert_eq!(s, (0..12).map(|v| v as f32).collect::<Vec<_>>());
        // Fields out of order: gathered by offset.
        let mut fields = ctx.fields.clone();
        fields.swap(0, 2);
        let s = host(stack_fields(emb, &fields));
        assert_eq!(s, [4., 5., 2., 3., 0., 1., 10., 11., 8., 9., 6., 7.]);
        // Unequal widths are an error naming the fields.
        fields[1].dim = 3;
        let err = common_dim(&fields, "FM").unwrap_err();
        assert!(err.contains("`f1` (3)") && err.contains("`f2`"), "{err}");
    }

    #[test]
    fn cross_v1_layer_matches_hand_computation() {
        let dev = cpu();
        let mut rng = Rng::new(2);
        let (b, d) = (3, 5);
        let net = CrossNet::new(d, 2, &mut rng, &dev);
        // Non-zero biases so that they are checked too.
        let net = CrossNet {
            b: (0..2)
                .map(|_| init::param(init::normal(&mut rng, d, 1.0), [d], &dev))
                .collect(),
            ..net
        };
        let x0 = init::normal(&mut rng, b * d, 1.0);
        let got = host(net.forward(init::tensor(x0.clone(), [b, d], &dev)));
        let ws: Vec<Vec<f32>> = net.w.iter().map(param_values).collect();
        let bs: Vec<Vec<f32>> = net.b.iter().map(param_values).collect();
        for r in 0..b {
            let x0r = &x0[r * d..(r + 1) * d];
            let mut x = x0r.to_vec();
            for (w, bb) in ws.iter().zip(&bs) {
                let s: f32 = x.iter().zip(w).map(|(a, c)| a * c).sum();
                x = (0..d).map(|i| x0r[i] * s + bb[i] + x[i]).collect();
            }
            close(&got[r * d..(r + 1) * d], &x, 1e-5);
        }
    }

    #[test]
    fn cross_v2_full_rank_layer_has_the_bias_inside_the_product() {
        let dev = cpu();
        let mut rng = Rng::new(3);
        let (b, d) = (4, 6);
        let mut net = CrossNetV2::new(d, 1, &mut rng, &dev);
        net.layers[0].bias = Some(init::param(init::normal(&mut rng, d, 1.0), [d], &dev));
        let x0 = init::normal(&mut rng, b * d, 1.0);
        let got = host(net.forward(init::tensor(x0.clone(), [b, d], &dev)));
        let w = param_values(&net.layers[0].weight); // [D_in, D_out]
        let bias = param_values(net.layers[0].bias.as_ref().unwrap());
        for r in 0..b {
            let x = &x0[r * d..(r + 1) * d];
            let want: Vec<f32> = (0..d)
                .map(|o| {
                    let wx: f32 = (0..d).map(|i| x[i] * w[i * d + o]).sum();
                    x[o] * (wx + bias[o]) + x[o]
                })
                .collect();
            close(&got[r * d..(r + 1) * d], &want, 1e-5);
        }
    }

    /// A mixture with random (non-init-scale) weights and its output computed expert by
    /// expert from the formula on the host.
    fn cross_mix_by_hand(e: usize, seed: u64) -> (Vec<f32>, Vec<f32>, Vec<Vec<f32>>) {
        let dev = cpu();
        let mut rng = Rng::new(seed);
        let (b, d, r, layers) = (3, 5, 2, 2);
        let mut net = CrossNetMix::new(d, layers, r, e, &mut rng, &dev).unwrap();
        // Larger weights than the init so that tanh is not linear, and non-zero biases.
        for l in 0..layers {
            net.u[l] = init::param(init::normal(&mut rng, e * d * r, 1.0), [e, d, r], &dev);
            net.v[l] = init::param(init::normal(&mut rng, e * d * r, 1.0), [e, d, r], &dev);
            net.c[l] = init::param(init::normal(&mut rng, e * r * r, 1.0), [e, r, r], &dev);
            net.bias[l] = init::param(init::normal(&mut rng, d, 1.0), [d], &dev);
        }
        let x0 = init::normal(&mut rng, b * d, 1.0);
        let (out, gates) = net.forward_with_gates(init::tensor(x0.clone(), [b, d], &dev));
        let gw = param_values(&net.gate.weight); // [D, E]: column e is G_e
        let mut want = Vec::with_capacity(b * d);
        for row in 0..b {
            let x0r = &x0[row * d..(row + 1) * d];
            let mut x = x0r.to_vec();
            for l in 0..layers {
                let (u, v, c, bias) = (
                    param_values(&net.u[l]),
                    param_values(&net.v[l]),
                    param_values(&net.c[l]),
                    param_values(&net.bias[l]),
                );
                let logits: Vec<f32> = (0..e)
                    .map(|k| (0..d).map(|i| x[i] * gw[i * e + k]).sum())
                    .collect();
                let mx = logits.iter().cloned().fold(f32::MIN, f32::max);
                let z: f32 = logits.iter().map(|a| (a - mx).exp()).sum();
                let mut next = x.clone();
                for k in 0..e {
                    let g = (logits[k] - mx).exp() / z;
                    // Expert k: U, V are [D, r], C is [r, r]; (Vᵀ x)_j = Σ_i V[i, j] x_i.
                    let (uk, vk, ck) = (&u[k * d * r..], &v[k * d * r..], &c[k * r * r..]);
                    let vx: Vec<f32> = (0..r)
                        .map(|j| (0..d).map(|i| vk[i * r + j] * x[i]).sum::<f32>().tanh())
                        .collect();
                    let cv: Vec<f32> = (0..r)
                        .map(|i| (0..r).map(|j| ck[i * r + j] * vx[j]).sum::<f32>().tanh())
                        .collect();
                    for i in 0..d {
                        let uv: f32 = (0..r).map(|j| uk[i * r + j] * cv[j]).sum();
                        next[i] += g * x0r[i] * (uv + bias[i]);
                    }
                }
                x = next;
            }
            want.extend(x);
        }
        (host(out), want, gates.into_iter().map(host).collect())
    }

    #[test]
    fn cross_mix_with_one_expert_equals_its_formula() {
        // x_{l+1} = x_0 ⊙ (U tanh(C tanh(Vᵀ x_l)) + b_l) + x_l, gate ≡ 1.
        let (got, want, gates) = cross_mix_by_hand(1, 4);
        close(&got, &want, 1e-4);
        for g in gates {
            assert!(g.iter().all(|&v| (v - 1.0).abs() < 1e-6));
        }
    }

    #[test]
    fn cross_mix_with_several_experts_equals_the_gated_sum_of_experts() {
        let (got, want, _) = cross_mix_by_hand(3, 11);
        close(&got, &want, 1e-4);
    }

    #[test]
    fn cross_mix_gates_are_a_softmax_over_experts() {
        let dev = cpu();
        let mut rng = Rng::new(9);
        let net = CrossNetMix::new(6, 2, 3, 4, &mut rng, &dev).unwrap();
        let x = init::tensor(init::normal(&mut rng, 5 * 6, 1.0), [5, 6], &dev);
        let (out, gates) = net.forward_with_gates(x);
        assert_eq!(out.dims(), [5, 6]);
        assert_eq!(gates.len(), 2);
        for g in gates {
            assert_eq!(g.dims(), [5, 4]);
            let v = host(g);
            for row in v.chunks(4) {
                assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
            }
        }
        for (rank, experts) in [(0, 4), (2, 0)] {
            let err = CrossNetMix::new(6, 2, rank, experts, &mut rng, &dev).unwrap_err();
            assert!(
                err.contains("low_rank ≥ 1 and num_experts ≥ 1")
                    && err.contains(&format!("got {rank} and {experts}")),
                "{err}"
            );
        }
    }

    #[test]
    fn cin_first_layer_equals_the_explicit_sum() {
        let dev = cpu();
        let mut rng = Rng::new(5);
        let (b, m, k, h1) = (2, 3, 4, 4);
        let mut cin = Cin::new(m, &[h1, 3], true, true, Activation::None, &mut rng, &dev).unwrap();
        assert_eq!(cin.out_dim(), h1 / 2 + 3);
        cin.layers[0].bias = Some(init::param(init::normal(&mut rng, h1, 1.0), [h1], &dev));
        let x0 = init::normal(&mut rng, b * m * k, 1.0);
        let maps = cin.feature_maps(init::tensor(x0.clone(), [b, m, k], &dev));
        // Layer 1 sends maps h1/2..h1 to the output: [B, k, h1/2].
        let got = host(maps[0].clone());
        let w = param_values(&cin.layers[0].weight); // [m·m, h1], row i·m + j
        let bias = param_values(cin.layers[0].bias.as_ref().unwrap());
        let x = |r: usize, i: usize, d: usize| x0[(r * m + i) * k + d];
        let x1 = |r: usize, h: usize, d: usize| -> f32 {
            let mut s = bias[h];
            for i in 0..m {
                for j in 0..m {
                    s += w[(i * m + j) * h1 + h] * x(r, i, d) * x(r, j, d);
                }
            }
            s
        };
        let half = h1 / 2;
        for r in 0..b {
            for d in 0..k {
                for hh in 0..half {
                    let g = got[(r * k + d) * half + hh];
                    let want = x1(r, half + hh, d);
                    assert!(
                        (g - want).abs() < 1e-4 * (1.0 + want.abs()),
                        "{g} vs {want}"
                    );
                }
            }
        }
        // Sum pooling: p⁺ is the sum over k of the maps sent to the output.
        let p = host(cin.forward(init::tensor(x0.clone(), [b, m, k], &dev)));
        for r in 0..b {
            for hh in 0..half {
                let want: f32 = (0..k).map(|d| x1(r, half + hh, d)).sum();
                let g = p[r * cin.out_dim() + hh];
                assert!(
                    (g - want).abs() < 1e-4 * (1.0 + want.abs()),
                    "{g} vs {want}"
                );
            }
        }
    }

    #[test]
    fn cin_rejects_odd_split_sizes() {
        let dev = cpu();
        let mut rng = Rng::new(6);
        let err = Cin::new(3, &[5, 4], true, true, Activation::None, &mut rng, &dev).unwrap_err();
        assert!(err.contains("even"), "{err}");
        assert!(Cin::new(3, &[5, 4], false, true, Activation::None, &mut rng, &dev).is_ok());
        for sizes in [&[][..], &[4, 0]] {
            let err =
                Cin::new(3, sizes, false, true, Activation::None, &mut rng, &dev).unwrap_err();
            assert!(
                err.contains("non-empty and positive") && err.contains(&format!("{sizes:?}")),
                "{err}"
            );
        }
        let err = Cin::new(0, &[4], false, true, Activation::None, &mut rng, &dev).unwrap_err();
        assert!(err.contains("at least one embedded field"), "{err}");
    }

    fn attention(rng: &mut Rng) -> InteractingLayer {
        let dev = cpu();
        InteractingLayer::new(4, 2, 3, true, false, 0.0, rng, &dev).unwrap()
    }

    #[test]
    fn attention_rows_do_not_see_each_other() {
        let dev = cpu();
        let mut rng = Rng::new(7);
        let layer = attention(&mut rng);
        let (b, f, k) = (4, 5, 4);
        let mut x = init::normal(&mut rng, b * f * k, 1.0);
        let out1 = host(layer.forward(init::tensor(x.clone(), [b, f, k], &dev)));
        // Change every row but row 0.
        for v in &mut x[f * k..] {
            *v = *v * 3.0 + 1.0;
        }
        let out2 = host(layer.forward(init::tensor(x, [b, f, k], &dev)));
        let w = f * layer.out_dim();
        assert_eq!(&out1[..w], &out2[..w]);
        assert_ne!(&out1[w..], &out2[w..]);
    }

    #[test]
    fn attention_is_permutation_equivariant_over_fields() {
        let dev = cpu();
        let mut rng = Rng::new(8);
        let layer = attention(&mut rng);
        let (b, f, k) = (3, 5, 4);
        let x = init::normal(&mut rng, b * f * k, 1.0);
        let perm = [3usize, 0, 4, 1, 2];
        let mut xp = vec![0.0; x.len()];
        for r in 0..b {
            for (i, &p) in perm.iter().enumerate() {
                for d in 0..k {
                    xp[(r * f + i) * k + d] = x[(r * f + p) * k + d];
                }
            }
        }
        let (o, wts) = layer.forward_with_weights(init::tensor(x, [b, f, k], &dev));
        let op = host(layer.forward(init::tensor(xp, [b, f, k], &dev)));
        let o = host(o);
        let h = layer.out_dim();
        for r in 0..b {
            for (i, &p) in perm.iter().enumerate() {
                let a = &op[(r * f + i) * h..(r * f + i + 1) * h];
                let want = &o[(r * f + p) * h..(r * f + p + 1) * h];
                close(a, want, 1e-5);
            }
        }
        // Attention weights: [B, H, F, F], rows sum to 1.
        assert_eq!(wts.dims(), [b, 2, f, f]);
        for row in host(wts).chunks(f) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        }
    }

    #[test]
    fn field_projection_handles_unequal_widths() {
        let dev = cpu();
        let mut rng = Rng::new(10);
        let mut ctx = ModelContext::uniform(3, 10, 2, 0, 1, 1);
        ctx.fields[1].dim = 5;
        ctx.fields[2].offset = 7;
        let p = FieldProjection::new(&ctx.fields, 4, &mut rng, &dev);
        let emb = init::tensor(init::normal(&mut rng, 2 * ctx.emb_dim(), 1.0), [2, 9], &dev);
        let out = p.forward(emb.clone());
        assert_eq!(out.dims(), [2, 3, 4]);
        // Field 1 is its own Linear applied to its slice.
        let want = host(p.proj[1].forward(emb.narrow(1, 2, 5)));
        let got = host(out.narrow(1, 1, 1).reshape([2, 4]));
        close(&got, &want, 1e-6);
    }
}
