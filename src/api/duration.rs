//! Duration strings as users write them in a PredictiveScaler: Go style (`90s`, `1h30m`,
//! `1.5h`, `250ms`) plus whole days (`14d`), which Go and CEL do not have.
//!
//! Pure parsing, no IO. The CRD schema restricts the fields to [`DURATION_PATTERN`], so the
//! API server rejects malformed strings; this parser is what the controller and `simulate` use.

use std::time::Duration;

/// Formatting lives with the planner, which names models by their periods; it is the inverse
/// of [`parse_duration`] for whole seconds.
pub use crate::planner::series::format_duration;

/// The regular expression the CRD schema puts on every duration field: a whole number of
/// days, or a Go duration made of `ms`, `s`, `m` and `h` parts.
pub const DURATION_PATTERN: &str = r"^([0-9]+d|([0-9]+(\.[0-9]+)?(ms|s|m|h))+)$";

/// The pattern of `scaleUp.leadTime`: a duration, or `Auto` (learned from the target's scale-ups).
pub const LEAD_TIME_PATTERN: &str = r"^(Auto|[0-9]+d|([0-9]+(\.[0-9]+)?(ms|s|m|h))+)$";

/// Why a duration string could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {why} (use e.g. 90s, 5m, 1h30m, 14d)")]
pub struct ParseDurationError {
    input: String,
    why: &'static str,
}

/// Parses a duration string (`90s`, `5m`, `1h30m`, `1.5h`, `250ms`, `14d`).
pub fn parse_duration(input: &str) -> Result<Duration, ParseDurationError> {
    let err = |why| ParseDurationError {
        input: input.to_string(),
        why,
    };
    let s = input.trim();
    if s.is_empty() {
        return Err(err("empty"));
    }
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut total_ms: f64 = 0.0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
            i += 1;
        }
        if start == i {
            return Err(err("expected a number"));
        }
        let number: f64 = s[start..i].parse().map_err(|_| err("bad number"))?;
        let unit_start = i;
        while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
            i += 1;
        }
        let unit_ms = match &s[unit_start..i] {
            "ms" => 1.0,
            "s" => 1_000.0,
            "m" => 60_000.0,
            "h" => 3_600_000.0,
            "d" => 86_400_000.0,
            "" => return Err(err("missing unit")),
            _ => return Err(err("unknown unit")),
        };
        total_ms += number * unit_ms;
    }
    if !total_ms.is_finite() || total_ms > 1e15 {
        return Err(err("too large"));
    }
    Ok(Duration::from_millis(total_ms.round() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_and_day_durations() {
        let cases = [
            ("90s", 90_000),
            ("5m", 300_000),
            ("2h", 7_200_000),
            ("1h30m", 5_400_000),
            ("1.5h", 5_400_000),
            ("250ms", 250),
            ("14d", 14 * 86_400_000),
        ];
        for (input, ms) in cases {
            assert_eq!(parse_duration(input).unwrap().as_millis(), ms, "{input}");
        }
    }

    #[test]
    fn rejects_malformed_durations() {
        for input in ["", "5", "m", "5x", "-5m", "5 m", "1e9h", "d14"] {
            assert!(parse_duration(input).is_err(), "{input:?} should fail");
        }
    }

    #[test]
    fn formats_round_trip() {
        for input in ["14d", "2h", "5m", "90s"] {
            assert_eq!(format_duration(parse_duration(input).unwrap()), input);
        }
    }
}
