//! Single-domain models: the per-(domain, task) MLP baseline and the CTR backbones (FM, cross
//! networks, field self-attention, CIN) with one head per task by default.

pub mod autoint;
pub mod dcn;
pub mod dcnv2;
pub mod deepfm;
pub mod mlp;
pub mod xdeepfm;
