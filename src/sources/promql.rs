//! Namespace isolation of a PredictiveScaler's PromQL, as prom-label-proxy does it: every vector
//! selector of the query gets a matcher `<label>="<namespace>"`, so the query can only read series
//! of the scaler's own namespace. A selector that already matches that label with anything else
//! (another namespace, a regex, a negation) is refused rather than rewritten, so that a query never
//! silently reads less, or more, than it says.
//!
//! The query is parsed and printed again with `promql-parser`, never edited as a string. Pure.

use promql_parser::{
    label::{MatchOp, Matcher, Matchers},
    parser::{self, Expr, VectorSelector},
};

/// Why a query cannot run under namespace isolation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The query does not parse as PromQL.
    #[error("not valid PromQL: {0}")]
    Syntax(String),
    /// A selector matches the enforced label with something else than the scaler's namespace.
    #[error(
        "the query matches the label {label:?} with {matcher}: queries of namespace {namespace:?} may only read \
         its own series (the source enforces {label}=\"{namespace}\"; leave the matcher out or set it to that)"
    )]
    OtherNamespace {
        label: String,
        namespace: String,
        matcher: String,
    },
}

/// `query` with `label="namespace"` on every vector selector (matrix selectors and subqueries
/// included), printed as PromQL.
pub fn enforce_label(query: &str, label: &str, namespace: &str) -> Result<String, Refused> {
    let mut expr = parser::parse(query).map_err(|e| Refused::Syntax(super::one_line(&e)))?;
    enforce_expr(&mut expr, label, namespace)?;
    Ok(expr.to_string())
}

fn enforce_expr(expr: &mut Expr, label: &str, ns: &str) -> Result<(), Refused> {
    match expr {
        Expr::VectorSelector(vs) => enforce_selector(vs, label, ns),
        Expr::MatrixSelector(ms) => enforce_selector(&mut ms.vs, label, ns),
        Expr::Aggregate(a) => {
            enforce_expr(&mut a.expr, label, ns)?;
            match a.param.as_deref_mut() {
                Some(p) => enforce_expr(p, label, ns),
                None => Ok(()),
            }
        }
        Expr::Unary(u) => enforce_expr(&mut u.expr, label, ns),
        Expr::Binary(b) => {
            enforce_expr(&mut b.lhs, label, ns)?;
            enforce_expr(&mut b.rhs, label, ns)
        }
        Expr::Paren(p) => enforce_expr(&mut p.expr, label, ns),
        Expr::Subquery(s) => enforce_expr(&mut s.expr, label, ns),
        Expr::Call(c) => c
            .args
            .args
            .iter_mut()
            .try_for_each(|a| enforce_expr(a, label, ns)),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) => Ok(()),
        // the parser never produces extensions; refuse rather than pass one through unchecked
        Expr::Extension(_) => Err(Refused::Syntax("unsupported expression".into())),
    }
}

/// Adds `label="ns"` to each group of matchers (a selector with `or` has several), or checks
/// that the group already has exactly that matcher and no other on the label.
fn enforce_selector(vs: &mut VectorSelector, label: &str, ns: &str) -> Result<(), Refused> {
    let Matchers {
        matchers,
        or_matchers,
    } = &mut vs.matchers;
    if or_matchers.is_empty() {
        enforce_group(matchers, label, ns)
    } else {
        // printed as the `or` groups alone: the plain list must not carry anything else
        enforce_group(matchers, label, ns)?;
        or_matchers
            .iter_mut()
            .try_for_each(|g| enforce_group(g, label, ns))
    }
}

fn enforce_group(group: &mut Vec<Matcher>, label: &str, ns: &str) -> Result<(), Refused> {
    let mut has = false;
    for m in group.iter().filter(|m| m.name == label) {
        if matches!(m.op, MatchOp::Equal) && m.value == ns {
            has = true;
        } else {
            return Err(Refused::OtherNamespace {
                label: label.to_string(),
                namespace: ns.to_string(),
                matcher: m.to_string(),
            });
        }
    }
    if !has {
        group.push(Matcher::new(MatchOp::Equal, label, ns));
    }
    Ok(())
}

/// One label matcher of a selector, e.g. `namespace="team-a"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelMatcher {
    pub label: String,
    /// `=`, `!=`, `=~` or `!~`.
    pub op: String,
    pub value: String,
}

impl LabelMatcher {
    pub fn new(label: &str, op: &str, value: &str) -> Self {
        Self {
            label: label.into(),
            op: op.into(),
            value: value.into(),
        }
    }
}

/// The matchers of one selector (or one `or` group of it).
pub type MatcherGroup = Vec<LabelMatcher>;

/// Every group of matchers of every selector in `query` (for tests and checks), in the order
/// they appear; a metric name counts as `__name__="..."`.
pub fn selector_groups(query: &str) -> Result<Vec<MatcherGroup>, String> {
    fn walk(e: &Expr, out: &mut Vec<MatcherGroup>) {
        let mut sel = |vs: &VectorSelector| {
            let groups: Vec<&Vec<Matcher>> = if vs.matchers.or_matchers.is_empty() {
                vec![&vs.matchers.matchers]
            } else {
                vs.matchers.or_matchers.iter().collect()
            };
            for g in groups {
                let mut v: MatcherGroup = g
                    .iter()
                    .map(|m| LabelMatcher::new(&m.name, &m.op.to_string(), &m.value))
                    .collect();
                if let Some(name) = &vs.name {
                    v.push(LabelMatcher::new("__name__", "=", name));
                }
                out.push(v);
            }
        };
        match e {
            Expr::VectorSelector(vs) => sel(vs),
            Expr::MatrixSelector(ms) => sel(&ms.vs),
            Expr::Aggregate(a) => {
                walk(&a.expr, out);
                if let Some(p) = &a.param {
                    walk(p, out);
                }
            }
            Expr::Unary(u) => walk(&u.expr, out),
            Expr::Binary(b) => {
                walk(&b.lhs, out);
                walk(&b.rhs, out);
            }
            Expr::Paren(p) => walk(&p.expr, out),
            Expr::Subquery(s) => walk(&s.expr, out),
            Expr::Call(c) => c.args.args.iter().for_each(|a| walk(a, out)),
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
        }
    }
    let expr = parser::parse(query)?;
    let mut out = Vec::new();
    walk(&expr, &mut out);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(q: &str) -> String {
        enforce_label(q, "namespace", "team-a").unwrap_or_else(|e| panic!("{q}: {e}"))
    }

    #[test]
    fn every_selector_gets_the_namespace() {
        for (q, want) in [
            ("proxy_rps", r#"proxy_rps{namespace="team-a"}"#),
            (
                r#"sum(rate(http_requests_total{job="proxy"}[5m]))"#,
                r#"sum(rate(http_requests_total{job="proxy",namespace="team-a"}[5m]))"#,
            ),
            (
                r#"sum(rate(a[5m])) / sum(rate(b{namespace="team-a"}[5m]))"#,
                r#"sum(rate(a{namespace="team-a"}[5m])) / sum(rate(b{namespace="team-a"}[5m]))"#,
            ),
            (
                "max_over_time(rate(x[1m])[10m:1m])",
                r#"max_over_time(rate(x{namespace="team-a"}[1m])[10m:1m])"#,
            ),
            (
                r#"{__name__=~"proxy_.*"}"#,
                r#"{__name__=~"proxy_.*",namespace="team-a"}"#,
            ),
        ] {
            assert_eq!(ok(q), want, "{q}");
        }
    }

    #[test]
    fn another_namespace_or_a_pattern_is_refused() {
        for q in [
            r#"proxy_rps{namespace="team-b"}"#,
            r#"sum(proxy_rps{namespace=~"team-.*"})"#,
            r#"proxy_rps{namespace!="team-a"}"#,
            r#"a{namespace="team-a"} + on() b{namespace="team-b"}"#,
            r#"proxy_rps{namespace="team-a",namespace="team-b"}"#,
        ] {
            let e = enforce_label(q, "namespace", "team-a").unwrap_err();
            assert!(matches!(e, Refused::OtherNamespace { .. }), "{q}: {e}");
            assert!(
                e.to_string().contains("may only read its own series"),
                "{e}"
            );
        }
        assert!(matches!(
            enforce_label("sum(rate(x[5m])", "namespace", "a"),
            Err(Refused::Syntax(_))
        ));
    }

    #[test]
    fn a_label_value_is_escaped() {
        let q = enforce_label("x", "tenant", "a\"b\\c").unwrap();
        assert_eq!(q, r#"x{tenant="a\"b\\c"}"#);
        let groups = selector_groups(&q).unwrap();
        assert!(groups[0].contains(&LabelMatcher::new("tenant", "=", "a\"b\\c")));
    }
}
