//! The name rules of Kubernetes and Prometheus, in one place: which strings may name a
//! namespace, a metric or a source, and which may be a Prometheus label name. Pure.

/// Whether `name` is a DNS-1123 label, as Kubernetes requires of namespace names: lower case
/// letters, digits and `-`, at most 63 characters, starting and ending with a letter or digit.
///
/// prescale asks the same of source names and metric names (the CRD puts this pattern on
/// `metrics[].name` and `metrics[].source`, so a URL can never be a source name).
pub fn is_dns_label(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// Whether `name` is a Prometheus label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn is_prometheus_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels() {
        for ok in ["default", "a", "mimir-team-a", "x1", "p1", &"a".repeat(63)] {
            assert!(is_dns_label(ok), "{ok}");
        }
        for bad in [
            "",
            "A",
            "a_b",
            "-a",
            "a-",
            "a.b",
            "http://x",
            &"a".repeat(64),
            "a\nb",
        ] {
            assert!(!is_dns_label(bad), "{bad}");
        }
    }

    #[test]
    fn prometheus_label_names() {
        for ok in ["namespace", "_x", "Tenant_1", "__name__"] {
            assert!(is_prometheus_label_name(ok), "{ok}");
        }
        for bad in ["", "1a", "name space", "a-b", "a.b", "ä"] {
            assert!(!is_prometheus_label_name(bad), "{bad}");
        }
    }
}
