//! Property tests (proptest) for everything that parses user input: trace CSVs, durations and
//! quantities. No input may panic; what parses must make sense.

use proptest::prelude::*;

use prescale::{
    api::{
        duration::{format_duration, parse_duration},
        quantity::parse_quantity,
    },
    sim::trace::parse_trace,
};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn durations_never_panic(s in "\\PC{0,24}") {
        let _ = parse_duration(&s);
    }

    #[test]
    fn duration_like_strings_never_panic(s in "[0-9]{0,25}(\\.[0-9]{0,5})?(ns|us|ms|s|m|h|d|w|µs|)([0-9]{0,5}(s|m|h))?") {
        let _ = parse_duration(&s);
    }

    #[test]
    fn durations_round_trip(secs in 0u64..=400 * 86_400) {
        let d = std::time::Duration::from_secs(secs);
        prop_assert_eq!(parse_duration(&format_duration(d)).unwrap(), d);
    }

    #[test]
    fn quantities_never_panic(s in "\\PC{0,24}") {
        let _ = parse_quantity(&s);
    }

    #[test]
    fn quantity_like_strings_parse_to_finite_values(
        s in "[+-]?[0-9]{0,20}(\\.[0-9]{0,20})?([eE][+-]?[0-9]{1,4})?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei|n|u)?"
    ) {
        if let Ok(v) = parse_quantity(&s) {
            prop_assert!(v.is_finite(), "{} -> {}", s, v);
        }
    }

    #[test]
    fn traces_never_panic(s in "\\PC{0,400}") {
        let _ = parse_trace(&s, None);
    }

    #[test]
    fn trace_like_text_never_panics_and_what_parses_is_regular(
        header in prop_oneof![Just("timestamp,requests"), Just("timestamp,a,b"), Just(""), Just("time")],
        rows in proptest::collection::vec(
            (0i64..2_000_000_000, prop_oneof![
                Just("60".to_string()),
                (-5.0f64..1e6).prop_map(|v| v.to_string()),
                Just("NaN".to_string()),
                Just("".to_string()),
                Just("x".to_string()),
                Just("1e400".to_string()),
            ]),
            0..40,
        ),
        regular in any::<bool>(),
        column in prop_oneof![Just(None), Just(Some("requests")), Just(Some("b")), Just(Some("nope"))],
    ) {
        let mut text = format!("{header}\n");
        for (i, (t, v)) in rows.iter().enumerate() {
            let ts = if regular { 1_700_000_000 + 60 * i as i64 } else { *t };
            text.push_str(&format!("{ts},{v}\n"));
        }
        if let Ok(trace) = parse_trace(&text, column) {
            let s = &trace.series;
            prop_assert!(s.step > 0);
            prop_assert!(s.values.iter().all(|v| v.is_nan() || (v.is_finite() && *v >= 0.0)),
                "{:?}", s.values);
        }
    }
}

// --- namespace isolation: the PromQL rewrite (prescale::sources::promql) ---

/// A label matcher as PromQL text: a label among a few (the enforced `namespace` included), an
/// operator, a value among a few (the enforced `team-a` included, and characters that need escaping).
fn matcher() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec!["namespace", "job", "pod", "tenant"]),
        prop::sample::select(vec!["=", "!=", "=~", "!~"]),
        prop::sample::select(vec!["team-a", "team-b", "x", "a\\\"b", ".*", "team-.*"]),
    )
        .prop_map(|(l, op, v)| format!("{l}{op}\"{v}\""))
}

/// A selector: a metric name and/or matchers (a selector needs one that is not empty-matching).
fn selector() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec!["proxy_rps", "http_requests_total", ""]),
        prop::collection::vec(matcher(), 0..3),
    )
        .prop_map(|(name, ms)| {
            if name.is_empty() {
                format!(
                    "{{__name__=\"up\"{}}}",
                    ms.iter().map(|m| format!(",{m}")).collect::<String>()
                )
            } else if ms.is_empty() {
                name.to_string()
            } else {
                format!("{name}{{{}}}", ms.join(","))
            }
        })
}

/// Queries built of selectors in functions, aggregations, binary operations and subqueries.
fn query() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        selector(),
        selector().prop_map(|s| format!("rate({s}[5m])")),
        Just("1".to_string()),
    ];
    leaf.prop_recursive(3, 12, 2, |inner| {
        prop_oneof![
            inner.clone().prop_map(|q| format!("sum({q})")),
            inner.clone().prop_map(|q| format!("sum by (pod) ({q})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) + ({b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a} / on() group_left {b}")),
            selector().prop_map(|s| format!("max_over_time(rate({s}[1m])[10m:1m])")),
            inner.prop_map(|q| format!("clamp_min({q}, 0)")),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1500))]

    #[test]
    fn the_rewrite_never_panics(s in "\\PC{0,60}") {
        let _ = prescale::sources::promql::enforce_label(&s, "namespace", "team-a");
    }

    /// Every selector keeps every matcher it had (nothing dropped, nothing widened), and gains
    /// `namespace="team-a"`; a selector that matched `namespace` otherwise makes the query refused.
    #[test]
    fn the_rewrite_never_drops_a_selector_or_widens_a_match(q in query()) {
        use prescale::sources::promql::{enforce_label, selector_groups, LabelMatcher, Refused};
        let before = selector_groups(&q);
        // not every generated query type-checks (e.g. a number where a vector goes); proptest
        // fails if too many are thrown away
        prop_assume!(before.is_ok());
        let before = before.unwrap();
        let foreign = before.iter().flatten().any(|m| m.label == "namespace" && !(m.op == "=" && m.value == "team-a"));
        match enforce_label(&q, "namespace", "team-a") {
            Ok(rewritten) => {
                prop_assert!(!foreign, "{q} reads another namespace but was accepted as {rewritten}");
                let after = selector_groups(&rewritten).expect("the rewrite parses again");
                prop_assert_eq!(after.len(), before.len(), "selectors: {} -> {}", q, rewritten);
                let want = LabelMatcher::new("namespace", "=", "team-a");
                for (b, a) in before.iter().zip(&after) {
                    for m in b {
                        prop_assert!(a.contains(m), "{:?} lost from {} -> {}", m, q, rewritten);
                    }
                    prop_assert!(a.contains(&want), "no namespace matcher: {} -> {}", q, rewritten);
                    prop_assert!(a.iter().filter(|m| m.label == "namespace").all(|m| *m == want));
                    prop_assert!(a.iter().all(|m| b.contains(m) || *m == want), "added more than the matcher");
                }
                // applying it again changes nothing
                prop_assert_eq!(enforce_label(&rewritten, "namespace", "team-a").unwrap(), rewritten);
            }
            Err(Refused::OtherNamespace { .. }) => prop_assert!(foreign, "{} refused without reason", q),
            Err(e) => prop_assert!(false, "{}: {}", q, e),
        }
    }
}
