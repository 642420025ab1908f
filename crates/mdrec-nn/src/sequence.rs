//! Behaviour-sequence encoders of the input layer: every zoo model gets them without code of
//! its own.
//!
//! A sequence field (`kind = "sequence"` in the schema) reaches the embedding store as
//! categorical slot fields ([`crate::input::SequenceInfo`]): `max_len` behaviour ids that read
//! the item's table (behaviours and the target item share one embedding table, so a movie has
//! one vector whether it is rated or in a history), and for TIM as many recency-rank ids
//! (table `<name>.pos`) and time-interval-bucket ids (table `<name>.dt`, buckets of
//! `mdrec_data::interval_bucket`). [`SequenceEncoders`] turns each sequence's slots into one
//! field of the sequence's width, in the place of its first slot, so the model's
//! `ModelInput::emb` holds the other fields and the encoded sequences side by side (the output
//! is concatenated with the rest of the model's input, as §3.1 of Pan et al. (KDD 2024)
//! concatenates TIM with the feature-interaction module's input). The model is built for the
//! context [`SequenceEncoders::inner_context`] gives.
//!
//! With `e_i` the i-th behaviour's embedding, `v_t` the target item's embedding and `m_i` the
//! slot mask (0 for padding):
//!
//! - `mean`: `Σ m_i e_i / max(1, Σ m_i)`, what mean pooling of a multi-hot field gives.
//! - `din` (Zhou et al., "Deep Interest Network for Click-Through Rate Prediction", KDD 2018):
//!   `Σ m_i a_i e_i` with `a_i = MLP([e_i, v_t, e_i − v_t, e_i ⊙ v_t])`, the attention unit an
//!   MLP of widths 80 and 40 with sigmoid activations and a linear output (the widths and
//!   activations of the attention function in the authors' `DeepInterestNetwork`,
//!   `din/model.py`), its weights not normalised: the paper drops the softmax to keep the
//!   intensity of interests; the authors' code scales the masked scores by `1/√d` and
//!   softmax-normalises them. We follow the paper.
//! - `tim` (Eq. 1 of Pan et al., "Ads Recommendation in a Collapsed and Entangled World",
//!   KDD 2024; Zhou et al., "Temporal Interest Network for User Response Prediction", WWW 2024):
//!   `ẽ_i = e_i + p_pos(i) + p_dt(i)` (semantic embedding plus both target-aware temporal
//!   encodings, as the paper deploys them), `ṽ_t = v_t`, and
//!   `u = Σ α_i (ẽ_i ⊙ ṽ_t)` with the target-aware attention
//!   `α = softmax over the non-padded i of ẽ_i · ṽ_t / √d` (0 for an empty history). Eq. 1
//!   leaves α's form to the TIN paper; the scaled dot product is our choice (see
//!   `docs/tencent-ads.md`). The temporal embeddings live in the embedding store, so they get the
//!   same sparse updates as every other table.
//!
//! An extra embedding set (multi-embedding models) that copies a sequence's slots and its
//! target gets the sequence encoded the same way from its own tables, with a DIN unit of its
//! own.
//!
//! Padding never reaches the output: its weight is multiplied by the mask (so neither its id
//! nor its embedding changes the output or receives a gradient).

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::activation::{sigmoid, softmax};
use burn::tensor::{Device, Tensor};
use mdrec_data::rng::Rng;
use mdrec_data::SeqEncoder;

use crate::init::WeightInit;
use crate::input::{FieldInfo, ModelContext, ModelInput, SequenceInfo};
use crate::layers::linear;

/// Widths of DIN's attention MLP (the authors' code).
pub const DIN_HIDDEN: [usize; 2] = [80, 40];

/// DIN's attention unit.
#[derive(Module, Debug)]
pub struct DinAttention {
    hidden: Vec<Linear>,
    out: Linear,
}

impl DinAttention {
    fn new(dim: usize, rng: &mut Rng, device: &Device) -> Self {
        let mut fan_in = 4 * dim;
        let mut hidden = Vec::new();
        for &h in &DIN_HIDDEN {
            hidden.push(linear(fan_in, h, WeightInit::TorchDefault, rng, device));
            fan_in = h;
        }
        DinAttention {
            hidden,
            out: linear(fan_in, 1, WeightInit::TorchDefault, rng, device),
        }
    }

    /// Attention weights `[B, L]` of behaviours `e: [B, L, d]` for targets `v: [B, 1, d]`.
    pub fn weights(&self, e: Tensor<3>, v: Tensor<3>) -> Tensor<2> {
        let [b, l, d] = e.dims();
        let v = v.expand([b, l, d]);
        let x = Tensor::cat(vec![e.clone(), v.clone(), e.clone() - v.clone(), e * v], 2)
            .reshape([b * l, 4 * d]);
        let mut h = x;
        for lin in &self.hidden {
            h = sigmoid(lin.forward(h));
        }
        self.out.forward(h).reshape([b, l])
    }
}

/// One piece of a model row: a run of the looked-up row's columns, or a sequence.
#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Keep { offset: usize, width: usize },
    Sequence(usize),
}

/// The sequences of one embedding tensor (the base `emb`, or an extra embedding set) and how
/// the model's tensor is assembled from it.
#[derive(Debug, Clone, PartialEq)]
struct View {
    /// The tensor's fields as looked up (slots included).
    fields: Vec<FieldInfo>,
    /// Its sequences (indices into `fields`), each with the index of its base sequence (whose
    /// mask it uses) and its DIN unit.
    seqs: Vec<(SequenceInfo, usize, Option<usize>)>,
    pieces: Vec<Piece>,
}

/// The sequence encoders of a context: one per sequence and embedding set (DIN's attention
/// units are the only parameters: TIM's temporal embeddings are store tables).
#[derive(Module, Debug)]
pub struct SequenceEncoders {
    din: Vec<DinAttention>,
    /// The base tensor, then each extra embedding set.
    #[module(skip)]
    views: Vec<View>,
    /// The context the model is built for.
    #[module(skip)]
    inner: ModelContext,
}

impl SequenceEncoders {
    /// The encoders of `ctx`'s sequences, parameters drawn from `rng` (base first, then each
    /// set). Errors name a sequence whose slots do not line up (a hand-made context) or whose
    /// encoder needs a target it lacks.
    pub fn new(ctx: &ModelContext, rng: &mut Rng, device: &Device) -> Result<Self, String> {
        let mut din = Vec::new();
        let mut views = Vec::new();
        let mut inner = ctx.clone();
        inner.sequences.clear();
        let tensors = std::iter::once(&ctx.fields).chain(ctx.sets.iter().map(|s| &s.fields));
        for (v, fields) in tensors.enumerate() {
            let mut seqs = Vec::new();
            for (k, base) in ctx.sequences.iter().enumerate() {
                // the set's copy of the sequence, by field name (`with_sets` keeps a sequence
                // whole or leaves it out)
                let at = |i: usize| fields.iter().position(|f| f.name == ctx.fields[i].name);
                let map = |ix: &[usize]| ix.iter().map(|&i| at(i)).collect::<Option<Vec<_>>>();
                let (Some(items), Some(positions), Some(intervals)) =
                    (map(&base.items), map(&base.positions), map(&base.intervals))
                else {
                    continue;
                };
                let s = SequenceInfo {
                    items,
                    positions,
                    intervals,
                    target: base.target.and_then(at),
                    ..base.clone()
                };
                let dim = check(&s, fields)?;
                let unit = (s.encoder == SeqEncoder::Din).then(|| {
                    din.push(DinAttention::new(dim, rng, device));
                    din.len() - 1
                });
                seqs.push((s, k, unit));
            }
            let (pieces, model_fields) = plan(fields, &seqs);
            match v {
                0 => inner.fields = model_fields,
                _ => inner.sets[v - 1].fields = model_fields,
            }
            views.push(View {
                fields: fields.clone(),
                seqs,
                pieces,
            });
        }
        Ok(SequenceEncoders { din, views, inner })
    }

    /// The context the model is built for and receives.
    pub fn inner_context(&self) -> &ModelContext {
        &self.inner
    }

    /// The model's input: `input` (looked up for the store's context) with every sequence
    /// encoded in place of its slots, in `emb` and in every extra embedding set.
    pub fn encode(&self, input: &ModelInput) -> ModelInput {
        let tensors = std::iter::once(&input.emb).chain(&input.sets);
        let mut out: Vec<Tensor<2>> = self
            .views
            .iter()
            .zip(tensors)
            .map(|(v, x)| self.encode_view(v, x, input))
            .collect();
        let sets = out.split_off(1);
        ModelInput {
            batch_size: input.batch_size,
            emb: out.pop().expect("the base view"),
            dense: input.dense.clone(),
            domain: input.domain.clone(),
            routing: input.routing.clone(),
            sets,
            seq_masks: vec![],
        }
    }

    fn encode_view(&self, v: &View, x: &Tensor<2>, input: &ModelInput) -> Tensor<2> {
        if v.seqs.is_empty() {
            return x.clone();
        }
        let parts: Vec<Tensor<2>> = v
            .pieces
            .iter()
            .map(|p| match *p {
                Piece::Keep { offset, width } => x.clone().narrow(1, offset, width),
                Piece::Sequence(j) => {
                    let (s, k, unit) = &v.seqs[j];
                    let din = unit.map(|u| &self.din[u]);
                    encode_one(s, &v.fields, x, &input.seq_masks[*k], din)
                }
            })
            .collect();
        Tensor::cat(parts, 1)
    }
}

/// The width of sequence `s` over `fields`; an error when its slots are not contiguous and
/// equally wide, or its encoder lacks what it reads.
fn check(s: &SequenceInfo, fields: &[FieldInfo]) -> Result<usize, String> {
    let first = *s
        .items
        .first()
        .ok_or_else(|| format!("sequence `{}` has no slots", s.name))?;
    let dim = fields[first].dim;
    for (k, i) in s.slots().enumerate() {
        let f = &fields[i];
        if i != first + k || f.dim != dim {
            return Err(format!(
                "sequence `{}`: slot field `{}` is not contiguous or has another width",
                s.name, f.name
            ));
        }
    }
    match s.target {
        Some(t) if fields[t].dim != dim => {
            return Err(format!(
                "sequence `{}`: target `{}` has width {}, the behaviours {dim}",
                s.name, fields[t].name, fields[t].dim
            ))
        }
        None if s.encoder != SeqEncoder::Mean => {
            return Err(format!(
                "sequence `{}`: encoder {:?} needs a target item field",
                s.name, s.encoder
            ))
        }
        _ => {}
    }
    let l = s.items.len();
    if s.encoder == SeqEncoder::Tim && (s.positions.len() != l || s.intervals.len() != l) {
        return Err(format!(
            "sequence `{}`: TIM needs position and interval slots",
            s.name
        ));
    }
    Ok(dim)
}

/// The pieces of the model's row and the model's fields: the fields that are not slots keep
/// their order, each sequence becomes one field (named after it, reading the item table,
/// `multi_hot` since it pools several ids) at the place of its first slot.
fn plan(
    fields: &[FieldInfo],
    seqs: &[(SequenceInfo, usize, Option<usize>)],
) -> (Vec<Piece>, Vec<FieldInfo>) {
    let mut pieces: Vec<Piece> = Vec::new();
    let mut out: Vec<FieldInfo> = Vec::new();
    let mut offset = 0;
    for (i, f) in fields.iter().enumerate() {
        if let Some(j) = seqs
            .iter()
            .position(|(s, _, _)| s.items.first() == Some(&i))
        {
            let s = &seqs[j].0;
            out.push(FieldInfo {
                name: s.name.clone(),
                offset,
                multi_hot: true,
                roles: s.roles.clone(),
                ..f.clone()
            });
            pieces.push(Piece::Sequence(j));
            offset += f.dim;
            continue;
        }
        if seqs.iter().any(|(s, _, _)| s.slots().any(|x| x == i)) {
            continue;
        }
        out.push(FieldInfo {
            offset,
            ..f.clone()
        });
        offset += f.dim;
        match pieces.last_mut() {
            Some(Piece::Keep {
                offset: o,
                width: w,
            }) if *o + *w == f.offset => *w += f.dim,
            _ => pieces.push(Piece::Keep {
                offset: f.offset,
                width: f.dim,
            }),
        }
    }
    (pieces, out)
}

/// Sequence `s` of `x` (whose fields are `fields`) encoded: `[B, d]`.
fn encode_one(
    s: &SequenceInfo,
    fields: &[FieldInfo],
    x: &Tensor<2>,
    mask: &Tensor<2>,
    din: Option<&DinAttention>,
) -> Tensor<2> {
    let [b, _] = x.dims();
    let l = s.items.len();
    let d = fields[s.items[0]].dim;
    let block = |first: usize| -> Tensor<3> {
        x.clone()
            .narrow(1, fields[first].offset, l * d)
            .reshape([b, l, d])
    };
    let e = block(s.items[0]);
    let mask = mask.clone();
    let target = || -> Tensor<3> {
        let t = &fields[s.target.expect("checked when built")];
        x.clone().narrow(1, t.offset, d).reshape([b, 1, d])
    };
    match s.encoder {
        SeqEncoder::Mean => {
            let n = mask.clone().sum_dim(1).clamp_min(1.0); // [B, 1]
            let sum = (e * mask.unsqueeze_dim::<3>(2)).sum_dim(1).reshape([b, d]);
            sum / n
        }
        SeqEncoder::Din => {
            let w = din
                .expect("a DIN sequence has a unit")
                .weights(e.clone(), target())
                * mask;
            (e * w.unsqueeze_dim::<3>(2)).sum_dim(1).reshape([b, d])
        }
        SeqEncoder::Tim => {
            let e = e + block(s.positions[0]) + block(s.intervals[0]);
            let rep = e * target().expand([b, l, d]); // ẽ_i ⊙ ṽ_t
            let score = rep.clone().sum_dim(2).reshape([b, l]) / (d as f64).sqrt();
            // padding gets -1e9 before the softmax and weight 0 after it
            let alpha = softmax(score + (mask.clone() - 1.0) * 1e9, 1) * mask;
            (rep * alpha.unsqueeze_dim::<3>(2))
                .sum_dim(1)
                .reshape([b, d])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::cpu;
    use crate::input::seq_masks;
    use burn::tensor::TensorData;
    use mdrec_data::Batch;

    const D: usize = 3;
    const B: usize = 2;

    /// f0 = target, f1..f3 = behaviours, f4..f6 = positions, f7..f9 = intervals, f10 = other.
    fn ctx(encoder: SeqEncoder) -> ModelContext {
        let mut c = ModelContext::uniform(11, 50, D, 0, 1, 1);
        c.sequences = vec![SequenceInfo {
            name: "hist".into(),
            encoder,
            items: vec![1, 2, 3],
            positions: vec![4, 5, 6],
            intervals: vec![7, 8, 9],
            target: Some(0),
            roles: vec![],
        }];
        c
    }

    /// Row 0 has two behaviours (slot 2 is padding), row 1 none.
    fn batch(pad_id_row0: u32) -> Batch {
        let mut cat = vec![7, 3, 4, pad_id_row0, 2, 3, 0, 5, 6, 0, 9];
        cat.extend([8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9]);
        Batch {
            len: B,
            cat,
            domain: vec![0; B],
            ..Batch::default()
        }
    }

    fn values(seed: u64) -> Vec<f32> {
        let mut rng = Rng::new(seed);
        (0..B * 11 * D)
            .map(|_| rng.next_f32() * 2.0 - 1.0)
            .collect()
    }

    fn input(c: &ModelContext, emb: Vec<f32>, device: &Device) -> ModelInput {
        let mut x = ModelInput::new(
            Tensor::from_data(TensorData::new(emb, [B, 11 * D]), device),
            None,
            vec![0; B],
            1,
        );
        // the PAD id of the masked slot is 0, as the data path writes it
        x.seq_masks = seq_masks(c, &batch(0), device);
        x
    }

    fn out(enc: &SequenceEncoders, c: &ModelContext, emb: Vec<f32>) -> Vec<f32> {
        let x = enc.encode(&input(c, emb, &cpu()));
        assert_eq!(x.emb.dims(), [B, 3 * D]);
        x.emb.into_data().try_to_vec::<f32>().unwrap()
    }

    #[test]
    fn the_model_sees_one_field_per_sequence_in_place_of_its_slots() {
        let c = ctx(SeqEncoder::Tim);
        let enc = SequenceEncoders::new(&c, &mut Rng::new(1), &cpu()).unwrap();
        let inner = enc.inner_context();
        let names: Vec<(&str, usize, bool)> = inner
            .fields
            .iter()
            .map(|f| (f.name.as_str(), f.offset, f.multi_hot))
            .collect();
        assert_eq!(
            names,
            [("f0", 0, false), ("hist", D, true), ("f10", 2 * D, false)]
        );
        assert!(inner.sequences.is_empty());
        // the other fields pass through unchanged
        let v = values(3);
        let o = out(&enc, &c, v.clone());
        for r in 0..B {
            assert_eq!(o[r * 3 * D..r * 3 * D + D], v[r * 11 * D..r * 11 * D + D]);
            assert_eq!(
                o[r * 3 * D + 2 * D..(r + 1) * 3 * D],
                v[r * 11 * D + 10 * D..(r + 1) * 11 * D]
            );
        }
    }

    #[test]
    fn mean_is_the_masked_mean_and_an_empty_history_is_zero() {
        let c = ctx(SeqEncoder::Mean);
        let enc = SequenceEncoders::new(&c, &mut Rng::new(1), &cpu()).unwrap();
        let v = values(4);
        let o = out(&enc, &c, v.clone());
        for k in 0..D {
            let want = (v[D + k] + v[2 * D + k]) / 2.0;
            assert!((o[D + k] - want).abs() < 1e-6);
            assert_eq!(o[3 * D + D + k], 0.0);
        }
    }

    #[test]
    fn padding_does_not_change_the_output() {
        for e in [SeqEncoder::Mean, SeqEncoder::Din, SeqEncoder::Tim] {
            let c = ctx(e);
            let enc = SequenceEncoders::new(&c, &mut Rng::new(2), &cpu()).unwrap();
            let v = values(5);
            let base = out(&enc, &c, v.clone());
            // another id in padded slot 2 of row 0 (its behaviour, position and interval
            // embeddings) and anything in row 1's slots
            let mut w = v.clone();
            for f in [3, 6, 9] {
                for k in 0..D {
                    w[f * D + k] += 0.75;
                }
            }
            for f in 1..10 {
                for k in 0..D {
                    w[11 * D + f * D + k] -= 0.5;
                }
            }
            assert_eq!(out(&enc, &c, w), base, "{e:?}");
            // a real behaviour does change it
            let mut w = v.clone();
            w[D] += 0.75;
            assert_ne!(out(&enc, &c, w), base, "{e:?}");
        }
    }

    #[test]
    fn attention_gradients_match_finite_differences() {
        for e in [SeqEncoder::Din, SeqEncoder::Tim] {
            let c = ctx(e);
            let ad = cpu().autodiff();
            let enc = SequenceEncoders::new(&c, &mut Rng::new(6), &ad).unwrap();
            let plain = enc.clone().valid();
            let weights: Vec<f32> = values(8)[..B * 3 * D].to_vec();
            let loss = |enc: &SequenceEncoders, v: Vec<f32>, dev: &Device| -> Tensor<1> {
                let x = enc.encode(&input(&c, v, dev));
                let w = Tensor::<2>::from_data(TensorData::new(weights.clone(), [B, 3 * D]), dev);
                (x.emb * w).sum()
            };
            let v = values(7);
            let leaf =
                Tensor::<2>::from_data(TensorData::new(v.clone(), [B, 11 * D]), &ad).require_grad();
            let mut x = input(&c, v.clone(), &ad);
            x.emb = leaf.clone();
            let w = Tensor::<2>::from_data(TensorData::new(weights.clone(), [B, 3 * D]), &ad);
            let grads = (enc.encode(&x).emb * w).sum().backward();
            let g = leaf
                .grad(&grads)
                .unwrap()
                .into_data()
                .try_to_vec::<f32>()
                .unwrap();
            let eps = 1e-2f32;
            let mut nontrivial = 0;
            // every column of row 0: target, behaviours (two real, one padded), positions,
            // intervals
            for i in 0..10 * D {
                let at = |d: f32| {
                    let mut p = v.clone();
                    p[i] += d;
                    loss(&plain, p, &cpu()).into_scalar::<f32>()
                };
                let fd = (at(eps) - at(-eps)) / (2.0 * eps);
                assert!(
                    (fd - g[i]).abs() <= 2e-3 + 2e-2 * fd.abs(),
                    "{e:?} column {i}: analytic {} vs finite difference {fd}",
                    g[i]
                );
                nontrivial += usize::from(fd.abs() > 1e-2);
            }
            // the target and both real behaviours (and for TIM their temporal encodings)
            assert!(
                nontrivial >= 3 * D,
                "{e:?}: {nontrivial} non-zero gradients"
            );
            // padded slot 2 of row 0 gets no gradient at all
            for f in [3, 6, 9] {
                assert!(g[f * D..(f + 1) * D].iter().all(|&x| x == 0.0), "{e:?}");
            }
        }
    }
}
