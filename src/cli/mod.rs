//! Subcommands besides `run`: `simulate` and `bench` (no cluster), `forecast`.

pub mod bench;
pub mod fleet;
pub mod forecast;
pub mod simulate;
