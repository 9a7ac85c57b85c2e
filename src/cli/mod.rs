//! Subcommands that run without a cluster: `simulate` and `bench`.

pub mod bench;
pub mod simulate;
