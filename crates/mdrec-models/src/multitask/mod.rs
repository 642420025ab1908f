//! Multi-task models in their multi-domain multi-task form: a shared bottom, mixtures of
//! experts (MMoE, PLE) and task-to-task fusion (AdaTT), with heads per (domain, task) or per
//! task.

pub mod adatt;
pub mod mmoe;
pub mod ple;
pub mod shared_bottom;
