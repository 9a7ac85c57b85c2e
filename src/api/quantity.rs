//! Kubernetes quantity strings (`"40"`, `"1.5k"`, `"500m"`, `"2Mi"`, `"1e3"`) read as `f64`.
//!
//! `targetPerReplica` is a quantity like HPA's `averageValue`; the planner needs a number.

/// Why a quantity string could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid quantity {0:?} (use e.g. 40, 2.5, 500m, 1.5k)")]
pub struct ParseQuantityError(String);

/// Parses a Kubernetes quantity into a plain number (`"1.5k"` -> 1500.0, `"500m"` -> 0.5).
pub fn parse_quantity(input: &str) -> Result<f64, ParseQuantityError> {
    let err = || ParseQuantityError(input.to_string());
    let s = input.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    if number.is_empty() {
        return Err(err());
    }
    let base: f64 = number.parse().map_err(|_| err())?;
    let factor = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        e if e.starts_with(['e', 'E']) => {
            let exp: i32 = e[1..].parse().map_err(|_| err())?;
            10f64.powi(exp)
        }
        _ => return Err(err()),
    };
    let value = base * factor;
    if value.is_finite() {
        Ok(value)
    } else {
        Err(err())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_quantities() {
        let cases = [
            ("40", 40.0),
            ("2.5", 2.5),
            ("500m", 0.5),
            ("1.5k", 1500.0),
            ("2Mi", 2.0 * 1024.0 * 1024.0),
            ("1e3", 1000.0),
        ];
        for (input, want) in cases {
            assert!(
                (parse_quantity(input).unwrap() - want).abs() < 1e-9,
                "{input}"
            );
        }
    }

    #[test]
    fn rejects_garbage() {
        for input in ["", "abc", "4x", "k", "1e", "1..2"] {
            assert!(parse_quantity(input).is_err(), "{input:?} should fail");
        }
    }
}
