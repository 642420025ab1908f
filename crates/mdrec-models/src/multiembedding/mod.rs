//! Multi-embedding models: several embedding tables (embedding sets of the store) read by
//! experts, gates or task units.

pub mod ame;
pub mod crocodile;
pub mod hmoe;
pub mod stem;
