//! OpenMetrics text, the input of `promtool tsdb create-blocks-from openmetrics`: how a test
//! writes the history a [`Prometheus`](super::Prometheus) is backfilled with.

use std::fmt::Write as _;

/// OpenMetrics text for one gauge family with one series: `f(t)` at `start_unix, start_unix + step_s, ...,
/// <= end_unix` (ascending timestamps, in seconds), ending with `# EOF`. Input for `promtool tsdb
/// create-blocks-from openmetrics`.
pub fn openmetrics_gauge(
    name: &str,
    labels: &[(&str, &str)],
    start_unix: i64,
    end_unix: i64,
    step_s: i64,
    f: impl Fn(i64) -> f64,
) -> String {
    assert!(step_s > 0, "step_s must be > 0");
    assert!(end_unix >= start_unix, "end_unix before start_unix");
    let labels = labels
        .iter()
        .map(|(k, v)| {
            format!(
                "{k}=\"{}\"",
                v.replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n")
            )
        })
        .collect::<Vec<_>>()
        .join(",");
    let series = if labels.is_empty() {
        name.to_string()
    } else {
        format!("{name}{{{labels}}}")
    };
    let n = ((end_unix - start_unix) / step_s + 1) as usize;
    let mut out = String::with_capacity(n * (series.len() + 24) + 64);
    let _ = writeln!(out, "# TYPE {name} gauge");
    let mut t = start_unix;
    while t <= end_unix {
        let v = f(t);
        let v = if v.is_nan() {
            "NaN".to_string()
        } else if v.is_infinite() {
            if v > 0.0 { "+Inf" } else { "-Inf" }.to_string()
        } else {
            v.to_string()
        };
        let _ = writeln!(out, "{series} {v} {t}");
        t += step_s;
    }
    out.push_str("# EOF\n");
    out
}

/// Joins OpenMetrics texts (each ending with `# EOF`, as [`openmetrics_gauge`] writes them) into one backfill input.
/// Each part must be a different metric family.
pub fn join_openmetrics(parts: &[String]) -> String {
    let mut out = String::new();
    for p in parts {
        out.push_str(p.trim_end().strip_suffix("# EOF").unwrap_or(p).trim_end());
        out.push('\n');
    }
    out.push_str("# EOF\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openmetrics_shape() {
        let text = openmetrics_gauge("m", &[("a", "x\"y")], 60, 180, 60, |t| t as f64 / 60.0);
        assert_eq!(
            text,
            "# TYPE m gauge\nm{a=\"x\\\"y\"} 1 60\nm{a=\"x\\\"y\"} 2 120\nm{a=\"x\\\"y\"} 3 180\n# EOF\n"
        );
    }
}
