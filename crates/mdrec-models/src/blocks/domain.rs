//! The domain (scenario) embedding shared by the zoo: the schema's domain-side fields when
//! there are any, else a learned per-domain table.

use burn::module::{Module, Param};
use burn::tensor::{Device, Int, Tensor, TensorData};
use mdrec_data::rng::Rng;
use mdrec_nn::init;
use mdrec_nn::{ModelContext, ModelInput};

use crate::model::{Built, Invalid};
use mdrec_data::FieldRole;

/// A learned per-domain embedding table `[n_domains, k]`, N(0, 1/k): the stand-in for the
/// domain-indicator embedding when the schema has no field with role `domain` (also used by
/// [`crate::multidomain::pepnet`]).
pub(crate) fn domain_table(
    n_domains: usize,
    k: usize,
    rng: &mut Rng,
    device: &Device,
) -> Param<Tensor<2>> {
    let v = init::normal(rng, n_domains * k, 1.0 / (k as f32).sqrt());
    init::param(v, [n_domains, k], device)
}

/// The domain (scenario) embedding a model reads: the concatenated embeddings of the schema's
/// fields with one of the given roles (usually `domain`), or a learned per-domain table `[S, k]` (N(0, 1/k), see
/// `domain_table`) when the schema has none.
#[derive(Module, Debug)]
pub struct DomainEmbedding {
    table: Option<Param<Tensor<2>>>,
    #[module(skip)]
    fields: Vec<usize>,
    #[module(skip)]
    dim: usize,
}

impl DomainEmbedding {
    /// The schema's fields with one of `roles`, or a learned table of width `table_dim` (an error naming
    /// `model` when that is 0 and the schema has no such field).
    pub fn new(
        ctx: &ModelContext,
        roles: &[FieldRole],
        table_dim: usize,
        rng: &mut Rng,
        device: &Device,
    ) -> Built<Self> {
        let fields = ctx.fields_with_any_role(roles);
        if fields.is_empty() {
            if table_dim == 0 {
                return Err(Invalid(
                    "the schema has no field with role `domain` and domain_emb_dim is 0: \
                              the model would have no scenario embedding"
                        .into(),
                ));
            }
            Ok(DomainEmbedding {
                table: Some(domain_table(ctx.n_domains(), table_dim, rng, device)),
                fields,
                dim: table_dim,
            })
        } else {
            let dim = fields.iter().map(|&i| ctx.fields[i].dim).sum();
            Ok(DomainEmbedding {
                table: None,
                fields,
                dim,
            })
        }
    }

    /// Width `k` of the embedding.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The learned table `[S, k]`, when the schema has no such field.
    pub fn table(&self) -> Option<Tensor<2>> {
        self.table.as_ref().map(|t| t.val())
    }

    /// Whether the embedding comes from schema fields (`false`: the learned table).
    pub fn from_fields(&self) -> bool {
        self.table.is_none()
    }

    /// Indices of the schema fields read (empty with the learned table).
    pub fn fields(&self) -> &[usize] {
        &self.fields
    }

    /// # Shapes
    /// - result `[B, k]`
    pub fn forward(&self, ctx: &ModelContext, input: &ModelInput) -> Tensor<2> {
        match &self.table {
            None => {
                let parts: Vec<Tensor<2>> =
                    self.fields.iter().map(|&i| input.field(ctx, i)).collect();
                if parts.len() == 1 {
                    parts.into_iter().next().expect("one field")
                } else {
                    Tensor::cat(parts, 1)
                }
            }
            Some(table) => {
                let table = table.val();
                let ids: Vec<i64> = input.domain.iter().map(|&d| d as i64).collect();
                let ids = Tensor::<1, Int>::from_data(
                    TensorData::new(ids, [input.batch_size]),
                    &table.device(),
                );
                table.select(0, ids)
            }
        }
    }
}
