//! A namespace label selector for a source's `allowedNamespaceSelector`, with the semantics of a
//! Kubernetes `LabelSelector` (`matchLabels` and `matchExpressions` with `In`, `NotIn`, `Exists`,
//! `DoesNotExist`; all must hold), and [`SourceAccess`], which namespaces may use a source (by
//! name or by that selector). Pure.

use std::collections::BTreeMap;

use serde::Deserialize;

/// `{matchLabels: {k: v}, matchExpressions: [{key, operator, values}]}`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NamespaceSelector {
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub match_expressions: Vec<Requirement>,
}

/// One `matchExpressions` entry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
    #[serde(default)]
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Operator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

impl NamespaceSelector {
    /// A selector that selects nothing is a mistake: an empty one would select every namespace.
    pub fn check(&self) -> Result<(), String> {
        if self.match_labels.is_empty() && self.match_expressions.is_empty() {
            return Err(
                "an empty selector would select every namespace; use allowedNamespaces: [\"*\"] for that"
                    .into(),
            );
        }
        for r in &self.match_expressions {
            let needs_values = matches!(r.operator, Operator::In | Operator::NotIn);
            if needs_values == r.values.is_empty() {
                return Err(format!(
                    "matchExpressions key {:?}: {:?} {} values",
                    r.key,
                    r.operator,
                    if needs_values { "needs" } else { "takes no" }
                ));
            }
        }
        Ok(())
    }

    /// Whether a namespace with `labels` is selected.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|r| {
                let value = labels.get(&r.key);
                match r.operator {
                    Operator::In => value.is_some_and(|v| r.values.contains(v)),
                    Operator::NotIn => !value.is_some_and(|v| r.values.contains(v)),
                    Operator::Exists => value.is_some(),
                    Operator::DoesNotExist => value.is_none(),
                }
            })
    }
}

/// A scaler namespace's labels, as far as a source that admits namespaces by label
/// (`allowedNamespaceSelector`) needs them.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum NamespaceLabels {
    /// Not read: no source in use selects namespaces by label.
    #[default]
    NotNeeded,
    /// As the API server has them.
    Read(BTreeMap<String, String>),
    /// The read failed; why, in words.
    Unreadable(String),
}

impl NamespaceLabels {
    /// The labels, when they were read.
    pub fn get(&self) -> Option<&BTreeMap<String, String>> {
        match self {
            Self::Read(labels) => Some(labels),
            Self::NotNeeded | Self::Unreadable(_) => None,
        }
    }
}

/// Which namespaces may use a source, and whether their queries are confined to their own
/// series. Configured per source by the cluster admin (the sources file).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SourceAccess {
    /// Every namespace may use the source.
    pub all_namespaces: bool,
    /// These namespaces may use it.
    pub namespaces: Vec<String>,
    /// And the namespaces whose labels match this selector.
    pub selector: Option<NamespaceSelector>,
    /// Every vector selector of a query gets `<label>="<the scaler's namespace>"`.
    pub enforce_namespace_label: Option<String>,
}

impl SourceAccess {
    /// Open to every namespace, no isolation (a source built in code, or `default` when the
    /// admin configured nothing).
    pub fn open() -> Self {
        Self {
            all_namespaces: true,
            ..Default::default()
        }
    }

    /// Whether a namespace's labels are needed to decide.
    pub fn needs_labels(&self) -> bool {
        !self.all_namespaces && self.selector.is_some()
    }

    /// May `namespace` (with `labels`, when [`SourceAccess::needs_labels`]) use the source?
    pub fn allows(&self, namespace: &str, labels: Option<&BTreeMap<String, String>>) -> bool {
        self.all_namespaces
            || self.namespaces.iter().any(|n| n == namespace)
            || self
                .selector
                .as_ref()
                .zip(labels)
                .is_some_and(|(s, l)| s.matches(l))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn labels_and_expressions_all_must_hold() {
        let s: NamespaceSelector = serde_yaml::from_str(
            "matchLabels: {tenant: a}\nmatchExpressions:\n- {key: env, operator: In, values: [prod, staging]}\n- {key: quarantine, operator: DoesNotExist}\n",
        )
        .unwrap();
        s.check().unwrap();
        assert!(s.matches(&labels(&[("tenant", "a"), ("env", "prod")])));
        assert!(!s.matches(&labels(&[("tenant", "b"), ("env", "prod")])));
        assert!(!s.matches(&labels(&[("tenant", "a"), ("env", "dev")])));
        assert!(!s.matches(&labels(&[
            ("tenant", "a"),
            ("env", "prod"),
            ("quarantine", "")
        ])));
        assert!(!s.matches(&labels(&[])));
        let not_in: NamespaceSelector = serde_yaml::from_str(
            "matchExpressions: [{key: tier, operator: NotIn, values: [free]}]",
        )
        .unwrap();
        assert!(not_in.matches(&labels(&[])));
        assert!(!not_in.matches(&labels(&[("tier", "free")])));
    }

    #[test]
    fn an_empty_or_malformed_selector_is_refused() {
        assert!(NamespaceSelector::default().check().is_err());
        let s: NamespaceSelector =
            serde_yaml::from_str("matchExpressions: [{key: a, operator: In}]").unwrap();
        assert!(s.check().unwrap_err().contains("needs values"));
        assert!(serde_yaml::from_str::<NamespaceSelector>("matchLabel: {a: b}").is_err());
    }
}
