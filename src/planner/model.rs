//! Which model to fit ([`ModelKind`]) and which model a forecast came from ([`FittedModel`]).
//!
//! The planner's own vocabulary: the CRD's `forecast.model` is read into a [`ModelKind`] at the
//! edge (`crate::api::validate`), and a [`FittedModel`] is written to status as its
//! [`Display`](std::fmt::Display) string (`MSTL(1d,7d)+AutoETS`).

use std::fmt;

use super::series::format_duration;

/// The model a scaler asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ModelKind {
    /// Choose per series ([`super::select_model`]).
    #[default]
    Auto,
    /// MSTL decomposition with an AutoETS trend.
    Mstl,
    /// Exponential smoothing without seasonality.
    Ets,
    /// The value one season ago.
    SeasonalNaive,
}

impl ModelKind {
    /// The spec's spelling: `Auto`, `MSTL`, `ETS`, `SeasonalNaive`.
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Auto => "Auto",
            ModelKind::Mstl => "MSTL",
            ModelKind::Ets => "ETS",
            ModelKind::SeasonalNaive => "SeasonalNaive",
        }
    }
}

/// The model a forecast came from. Its `Display` is what status, logs and `simulate` show:
/// `MSTL(1d,7d)+AutoETS`, `ETS`, `SeasonalNaive(1d)`, `Constant`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FittedModel {
    /// MSTL over these seasonal periods (seconds), with an AutoETS trend.
    Mstl {
        periods: Vec<i64>,
    },
    Ets,
    /// The value one `period` (seconds) ago.
    SeasonalNaive {
        period: i64,
    },
    /// The series was constant; so is its forecast (no model was fitted).
    Constant,
}

impl FittedModel {
    /// The kind of model this is; `None` for [`FittedModel::Constant`], which no spec asks for.
    pub fn kind(&self) -> Option<ModelKind> {
        match self {
            FittedModel::Mstl { .. } => Some(ModelKind::Mstl),
            FittedModel::Ets => Some(ModelKind::Ets),
            FittedModel::SeasonalNaive { .. } => Some(ModelKind::SeasonalNaive),
            FittedModel::Constant => None,
        }
    }

    /// The model's family without its periods (`MSTL`, `ETS`, `SeasonalNaive`, `Constant`): a
    /// bounded label for metrics.
    pub fn family(&self) -> &'static str {
        self.kind().map_or("Constant", ModelKind::name)
    }
}

impl fmt::Display for FittedModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = |p: i64| format_duration(std::time::Duration::from_secs(p.max(0) as u64));
        match self {
            FittedModel::Mstl { periods } => {
                let periods: Vec<String> = periods.iter().map(|&p| secs(p)).collect();
                write!(f, "MSTL({})+AutoETS", periods.join(","))
            }
            FittedModel::Ets => f.write_str("ETS"),
            FittedModel::SeasonalNaive { period } => write!(f, "SeasonalNaive({})", secs(*period)),
            FittedModel::Constant => f.write_str("Constant"),
        }
    }
}

impl FittedModel {
    /// The kind of model a [`FittedModel`]'s `Display` string names (`MSTL(1d,7d)+AutoETS` ->
    /// `Mstl`): how a model remembered as text (status) is read back. `None` for `Constant`
    /// and strings no fit gives.
    pub fn kind_of_name(name: &str) -> Option<ModelKind> {
        [ModelKind::Mstl, ModelKind::SeasonalNaive, ModelKind::Ets]
            .into_iter()
            .find(|k| name.starts_with(k.name()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_read_back_to_their_kind() {
        let models = [
            FittedModel::Mstl {
                periods: vec![86_400, 604_800],
            },
            FittedModel::Ets,
            FittedModel::SeasonalNaive { period: 86_400 },
            FittedModel::Constant,
        ];
        let names: Vec<String> = models.iter().map(ToString::to_string).collect();
        assert_eq!(
            names,
            [
                "MSTL(1d,7d)+AutoETS",
                "ETS",
                "SeasonalNaive(1d)",
                "Constant"
            ]
        );
        for (m, name) in models.iter().zip(&names) {
            assert_eq!(FittedModel::kind_of_name(name), m.kind(), "{name}");
        }
        assert_eq!(FittedModel::kind_of_name("other"), None);
    }
}
