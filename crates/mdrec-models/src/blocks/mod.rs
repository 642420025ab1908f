//! Blocks the model files share: output heads and their nested config ([`heads`]), the expert
//! bank ([`experts`]), the domain embedding ([`domain`]) and the feature-interaction layers of
//! the backbones ([`interaction`]). Generic layers (MLP, gates, linear) live in `mdrec-nn`.

pub mod domain;
pub mod experts;
pub mod heads;
pub mod interaction;
