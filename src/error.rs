//! The crate's error type: one variant per failure site, each with a fixed CamelCase
//! [`Error::reason`] for conditions and metric labels (never the error text).

/// What went wrong in a reconcile or at start-up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    // the API error in plain words (`plain`), and not as a `source`: kube's own `Display`
    // carries a `Debug` dump of the API server's Status, which an error chain would print
    #[error("resolving the scale target kind: {}", plain(.0))]
    ResolveTarget(kube::Error),
    #[error("reading the target's /scale: {}", plain(.0))]
    GetScale(kube::Error),
    #[error("updating the target's /scale: {}", plain(.0))]
    UpdateScale(kube::Error),
    #[error("restoring the floor or updating the finalizer: {}", plain(.0))]
    Floor(kube::Error),
    #[error("patching the PredictiveScaler status: {}", plain(.0))]
    PatchStatus(kube::Error),
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

/// Any API error in plain words: the API server's message, never a `Debug` dump (kube's own
/// `Display` of an API error appends one of the whole Status object). Every API error that
/// reaches a condition, an event, a log line or a CLI error goes through it.
pub fn plain(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) if !s.message.trim().is_empty() => s.message.trim().to_string(),
        kube::Error::Api(s) => format!("the API server answered {} {}", s.code, s.reason),
        // the transport's own words, without kube's "ServiceError: " prefix
        kube::Error::Service(e) => e.to_string(),
        other => other.to_string(),
    }
}

/// An error chain (anyhow's `{:#}`: each cause's words, joined by ": ") with every API error in
/// it in [`plain`] words.
pub fn chain(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        if let Some(k) = cause.downcast_ref::<kube::Error>() {
            parts.push(plain(k));
            break;
        }
        parts.push(cause.to_string());
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forbidden() -> kube::Error {
        kube::Error::Api(Box::new(
            kube::core::Status::failure(
                "deployments.apps \"llm-proxy\" is forbidden: User \"system:serviceaccount:prescale:prescale\" cannot patch resource \"deployments/scale\" in API group \"apps\" in the namespace \"ai-gateway\"",
                "Forbidden",
            )
            .with_code(403),
        ))
    }

    /// kube's own words for an API error carry a `Debug` dump of the Status; ours never do.
    #[test]
    fn api_errors_reach_users_in_words_never_as_a_debug_dump() {
        let kube_words = forbidden().to_string();
        assert!(
            kube_words.contains("Status {"),
            "kube changed: {kube_words}"
        );
        let ours = [
            Error::UpdateScale(forbidden()).to_string(),
            Error::GetScale(forbidden()).to_string(),
            Error::PatchStatus(forbidden()).to_string(),
            chain(
                &anyhow::Error::new(forbidden())
                    .context("reading PredictiveScaler ai-gateway/llm-proxy"),
            ),
            chain(&anyhow::Error::new(Error::UpdateScale(forbidden())).context("scaling")),
        ];
        for text in ours {
            assert!(
                !text.contains("Status {") && !text.contains("Some(") && !text.contains("ApiError"),
                "{text}"
            );
            assert!(
                text.contains("cannot patch resource \"deployments/scale\""),
                "{text}"
            );
        }
        assert_eq!(
            chain(
                &anyhow::Error::new(forbidden())
                    .context("reading PredictiveScaler ai-gateway/llm-proxy")
            ),
            format!(
                "reading PredictiveScaler ai-gateway/llm-proxy: {}",
                plain(&forbidden())
            )
        );
        let bare = kube::Error::Api(Box::new(
            kube::core::Status::failure("", "NotFound").with_code(404),
        ));
        assert_eq!(plain(&bare), "the API server answered 404 NotFound");
    }
}
