//! Multi-domain models: domain-conditioned structure (star topology, personalised gates,
//! scenario extraction, neuron pruning, meta units, hierarchical experts with per-domain masks)
//! and M3oE's domain/task expert fusion.

pub mod adasparse;
pub mod aread;
pub mod hinet;
pub mod m2m;
pub mod m3oe;
pub mod pepnet;
pub mod star;
