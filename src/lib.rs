//! prescale: a Kubernetes operator that scales AI/LLM API proxies before their traffic
//! arrives.
//!
//! # Data flow
//! Prometheus -> [`sources`] (history, chunked and cached) -> [`planner`] forecast (model fit,
//! band, calibrated margin) -> [`planner`] plan (the replica decision) -> [`controller`] (the
//! target's `/scale`, the status, events). `prescale simulate` ([`sim`]) replays a trace through
//! the same forecast and plan.
//!
//! # Crate map
//! Pure means no IO and no clock (time is an argument); IO names what is read or written.
//! - [`api`]: the `PredictiveScaler` resource (its `///` docs are the CRD's `kubectl explain`
//!   text), condition vocabulary, durations, quantities, spec validation. Pure.
//! - [`planner`]: series, forecasting with augurs, the calibrated lead-window margin, the
//!   scheduled overrides active at an instant, the guards (health read now that raises and
//!   holds replicas), the upstream quota ceiling (`planner::upstream`), the learned lead time
//!   of `leadTime: Auto` (`planner::lead_time`), the pod deletion costs of drain-aware scale-in
//!   (`planner::drain`), the bottom-up forecast of a `groupBy` metric (`planner::group`) and the
//!   replica decision; `planner::choice` is
//!   the one rule for when `Auto` chooses its model, used by the controller, `simulate`,
//!   `forecast` and the fleet bench. Pure (CPU only).
//! - [`sources`]: where history comes from: the sources a cluster admin configures, the
//!   Prometheus HTTP client, the shared history cache, namespace rules for queries. IO: HTTP to
//!   the sources, and the sources file, secret and TLS files.
//! - [`controller`]: the reconciler over PredictiveScalers and leader election. IO: the
//!   Kubernetes API (`/scale`, status, events, Lease, HPAs, in floor mode an HPA's or KEDA
//!   ScaledObject's floor, namespaces, with `leadTime: Auto` the target's ready replicas, with
//!   `scaleDown.drainAware` the target's pods and their deletion-cost annotation) and the
//!   sources.
//! - [`http`]: `/healthz`, `/readyz`, `/metrics`. IO: a TCP listener.
//! - [`metrics`]: the operator's own Prometheus metrics (in memory; served by [`http`]).
//! - [`cli`]: the subcommands besides `run`: `forecast`, `simulate`, `bench`. IO: flags, files,
//!   Prometheus, the cluster (with `--scaler`), stdout.
//! - [`sim`]: the evaluation behind `simulate`: walk-forward replay, the reactive baseline, the
//!   oracle and the scores (`docs/evaluation.md`); trace reading and plots. CPU, except
//!   [`sim::trace`] (reads the trace) and [`sim::plot`] (writes the image).
//! - [`names`]: the name rules of Kubernetes and Prometheus (DNS-1123 labels, label names), used by
//!   validation, the sources file and `--namespaces`. Pure.
//! - [`error`]: the reconcile's error type, each with a fixed reason for conditions and
//!   metrics. Pure.

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
