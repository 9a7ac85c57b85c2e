//! Subcommands that run without a cluster: `simulate` (and the shared settings plumbing).

pub mod simulate;
