//! Durations as people write them on a command line: `60s`, `2m`, `1h30m`, `50ms`, `0s`, or a bare
//! number of seconds (`1.5`).

use std::time::Duration;

/// Parses `60s`, `2m`, `1h30m`, `50ms`, `1d`, `0` or `1.5` (seconds). Each part is a non-negative
/// number and a unit: `ms`, `s`, `m`, `h` or `d`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty duration: write e.g. 60s, 2m or 1h30m".into());
    }
    if let Ok(secs) = s.parse::<f64>() {
        return seconds(secs, text);
    }
    let mut total = 0.0;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, tail) = rest.split_at(num_len);
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let n: f64 = num
            .parse()
            .map_err(|_| format!("{text:?} is not a duration: write e.g. 60s, 2m or 1h30m"))?;
        let scale = match unit {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            "" => {
                return Err(format!(
                    "{text:?} is not a duration: each number needs a unit (ms, s, m, h or d)"
                ));
            }
            u => {
                return Err(format!(
                    "{text:?} is not a duration: unknown unit {u:?} (use ms, s, m, h or d)"
                ));
            }
        };
        total += n * scale;
        rest = tail;
    }
    seconds(total, text)
}

fn seconds(secs: f64, text: &str) -> Result<Duration, String> {
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("{text:?} is not a duration: it must be 0 or more"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// An offset into a trace as `+6h03m` (with seconds, `+6h03m07s`, when `seconds` is set).
pub fn format_offset(offset: Duration, seconds: bool) -> String {
    let total = offset.as_secs();
    let (h, m, s) = (total / 3600, total / 60 % 60, total % 60);
    if seconds {
        format!("+{h}h{m:02}m{s:02}s")
    } else {
        format!("+{h}h{m:02}m")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_usual_forms() {
        let cases = [
            ("60s", 60.0),
            ("2m", 120.0),
            ("0s", 0.0),
            ("0", 0.0),
            ("50ms", 0.05),
            ("1h30m", 5400.0),
            ("6h", 21600.0),
            ("1.5", 1.5),
            ("1d", 86400.0),
        ];
        for (text, want) in cases {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_secs_f64(want)),
                "{text}"
            );
        }
    }

    #[test]
    fn rejects_what_is_not_a_duration() {
        for text in ["", "abc", "5x", "-1", "1h30", "s"] {
            let err = parse_duration(text).expect_err(text);
            assert!(err.contains("duration"), "{text}: {err}");
        }
    }

    #[test]
    fn formats_offsets() {
        assert_eq!(
            format_offset(Duration::from_secs(6 * 3600 + 3 * 60 + 7), false),
            "+6h03m"
        );
        assert_eq!(
            format_offset(Duration::from_secs(6 * 3600 + 3 * 60 + 7), true),
            "+6h03m07s"
        );
        assert_eq!(format_offset(Duration::ZERO, true), "+0h00m00s");
    }
}
