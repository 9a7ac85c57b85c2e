//! The user-facing API: the `PredictiveScaler` resource, its condition vocabulary, and the
//! parsing of its strings (durations, quantities) into a validated [`ScalerConfig`].

pub mod builder;
pub mod conditions;
pub mod duration;
pub mod quantity;
pub mod v1alpha1;
pub mod validate;

pub use builder::ScalerFixture;
pub use v1alpha1::*;
pub use validate::{
    DrainAwareConfig, GroupConfig, GuardConfig, Limits, MetricConfig, ScalerConfig, UpstreamConfig,
    validate, validate_with,
};

/// The field manager prescale writes with.
pub const FIELD_MANAGER: &str = "prescale";
