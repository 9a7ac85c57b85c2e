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
