//! Test inputs shared by the models' unit tests.

use burn::tensor::Device;
use mdrec_data::rng::Rng;
use mdrec_nn::init;
use mdrec_nn::{ModelContext, ModelInput};

/// A batch of `domain.len()` rows for `ctx` with N(0, 1) values drawn from `seed`: the
/// embeddings `[B, Σ dim_f]`, then the numeric features `[B, n_numeric]` (none when the context
/// has none), then each embedding set `[B, width]` in order. On an autodiff device the
/// embeddings require gradients, so tests can check which inputs a model trains.
pub fn random_input(ctx: &ModelContext, domain: &[u32], seed: u64, device: &Device) -> ModelInput {
    let b = domain.len();
    let mut rng = Rng::new(seed);
    let mut values = |w: usize| init::tensor(init::normal(&mut rng, b * w, 1.0), [b, w], device);
    let mut emb = values(ctx.emb_dim());
    if device.is_autodiff() {
        emb = emb.require_grad();
    }
    let dense = (ctx.n_numeric > 0).then(|| values(ctx.n_numeric));
    let mut input = ModelInput::new(emb, dense, domain.to_vec(), ctx.n_domains());
    input.sets = ctx.sets.iter().map(|s| values(s.width())).collect();
    input
}
