//! A demo AI gateway workload and a load generator for prescale's end-to-end demo.
//!
//! [`server`] is `prescale-demo-gateway`: it stands in for an LLM API proxy pod (a warm-up before
//! it is ready, a fixed capacity in requests/s, 429 above it, Prometheus metrics). [`loadgen`] is
//! `prescale-loadgen`: it replays a recorded trace ([`trace`]) against the gateway's pods. The
//! binaries in `src/bin/` only parse flags and call these modules.

pub mod duration;
pub mod loadgen;
pub mod metrics;
pub mod server;
pub mod trace;
