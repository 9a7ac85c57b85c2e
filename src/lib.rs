//! prescale: a Kubernetes operator that scales AI/LLM API proxies before their traffic
//! arrives.
//!
//! # Layout
//! - [`api`]: the `PredictiveScaler` resource, conditions, spec validation (no IO).
//! - [`planner`]: series, forecasting (augurs) and the replica decision: the pure core that
//!   both the controller and `prescale simulate` call. No IO, no clock.
//! - [`sources`]: load history from Prometheus, chunked and cached (IO).
//! - [`controller`]: the reconciler: `/scale`, status, events (IO).
//! - [`http`]: `/healthz`, `/readyz`, `/metrics`.

pub mod api;
pub mod cli;
pub mod controller;
pub mod error;
pub mod http;
pub mod metrics;
pub mod names;
pub mod planner;
pub mod sim;
pub mod sources;

pub use error::{Error, Result};
