//! The crate's error type: one variant per failure site, each with a fixed CamelCase
//! [`Error::reason`] for conditions and metric labels (never the error text).

/// What went wrong in a reconcile or at start-up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("resolving the scale target kind: {0}")]
    ResolveTarget(#[source] kube::Error),
    #[error("reading the target's /scale: {0}")]
    GetScale(#[source] kube::Error),
    #[error("updating the target's /scale: {0}")]
    UpdateScale(#[source] kube::Error),
    #[error("restoring the floor or updating the finalizer: {0}")]
    Floor(#[source] kube::Error),
    #[error("patching the PredictiveScaler status: {0}")]
    PatchStatus(#[source] kube::Error),
    #[error("the forecasting task failed: {0}")]
    ForecastTask(String),
    #[error("the PredictiveScaler has no namespace")]
    NoNamespace,
}

impl Error {
    /// A bounded, CamelCase label for this error.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::ResolveTarget(_) => "ResolveTargetFailed",
            Error::GetScale(_) => "FailedGetScale",
            Error::UpdateScale(_) => "FailedUpdateScale",
            Error::Floor(_) => "FailedRestoreFloor",
            Error::PatchStatus(_) => "FailedPatchStatus",
            Error::ForecastTask(_) => "ForecastTaskFailed",
            Error::NoNamespace => "NoNamespace",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
