//! Reading a recorded load trace, in the format `prescale simulate` reads: CSV with a header whose
//! first column is `timestamp` (unix seconds or RFC 3339), equally spaced rows, and a value
//! column (default: the second) holding requests/s. Blank and `NaN` values are gaps: a gap
//! replays the value before it. IO: [`read_trace`] reads the file; [`parse_trace`] is pure.

use std::{path::Path, time::Duration};

/// Why a trace cannot be replayed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TraceError {
    #[error("{path}: cannot read: {message}")]
    Read { path: String, message: String },
    #[error("the trace is empty (no header)")]
    NoHeader,
    #[error("the header must start with a timestamp column, found {0:?}")]
    BadHeader(String),
    #[error("no column {name:?} in the header (columns: {columns})")]
    NoColumn { name: String, columns: String },
    #[error("the header has no value column after timestamp")]
    NoValueColumn,
    #[error("line {line}: {message}")]
    Line { line: u64, message: String },
    #[error("only {0} rows; at least 2 are needed")]
    TooFewRows(usize),
}

/// A trace: requests/s at `start`, `start + step`, ...
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    /// The value column's name.
    pub column: String,
    /// The first row's time, unix seconds.
    pub start: i64,
    /// Seconds between rows.
    pub step: i64,
    /// Requests/s, one per row, gaps filled.
    pub values: Vec<f64>,
}

impl Trace {
    /// How much time the trace covers: its rows times its step.
    pub fn span(&self) -> Duration {
        Duration::from_secs(self.values.len() as u64 * self.step as u64)
    }

    /// The rate `offset` into the trace, interpolated linearly between rows (the last row's
    /// value holds until the end of its step; 0 after the span).
    pub fn rate_at(&self, offset: Duration) -> f64 {
        let x = offset.as_secs_f64() / self.step as f64;
        let i = x.floor() as usize;
        match (self.values.get(i), self.values.get(i + 1)) {
            (Some(a), Some(b)) => a + (b - a) * (x - i as f64),
            (Some(a), None) => *a,
            _ => 0.0,
        }
    }
}

/// Reads a trace file.
pub fn read_trace(path: &Path, column: Option<&str>) -> Result<Trace, TraceError> {
    let text = std::fs::read_to_string(path).map_err(|e| TraceError::Read {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    parse_trace(&text, column)
}

/// Parses trace text; quoted fields, a byte-order mark, CRLF line ends and blank lines are fine.
pub fn parse_trace(text: &str, column: Option<&str>) -> Result<Trace, TraceError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let mut records = reader
        .records()
        .map(|r| {
            r.map_err(|e| TraceError::Line {
                line: e.position().map_or(0, |p| p.line()),
                message: e.to_string(),
            })
        })
        .filter(|r| r.as_ref().map_or(true, |r| r.iter().any(|f| !f.is_empty())));
    let header = records.next().ok_or(TraceError::NoHeader)??;
    let names: Vec<&str> = header.iter().collect();
    if !names[0].eq_ignore_ascii_case("timestamp") {
        return Err(TraceError::BadHeader(names[0].to_string()));
    }
    let idx = match column {
        Some(c) => names
            .iter()
            .skip(1)
            .position(|n| *n == c)
            .map(|i| i + 1)
            .ok_or_else(|| TraceError::NoColumn {
                name: c.to_string(),
                columns: names[1..].join(", "),
            })?,
        None if names.len() >= 2 => 1,
        None => return Err(TraceError::NoValueColumn),
    };
    let mut times: Vec<i64> = Vec::new();
    let mut values: Vec<f64> = Vec::new();
    let mut step = None;
    for record in records {
        let record = record?;
        let line = record.position().map_or(0, |p| p.line());
        let err = |message: String| TraceError::Line { line, message };
        let (Some(ts), Some(v)) = (record.get(0), record.get(idx)) else {
            return Err(err(format!(
                "expected at least {} fields, found {}",
                idx + 1,
                record.len()
            )));
        };
        let t = parse_timestamp(ts).ok_or_else(|| err(format!("unparsable timestamp {ts:?}")))?;
        let v = match v {
            "" | "NaN" | "nan" => values.last().copied().unwrap_or(0.0),
            s => match s.parse::<f64>() {
                Ok(v) if v.is_finite() && v >= 0.0 => v,
                _ => {
                    return Err(err(format!(
                        "unparsable value {s:?}: a rate is a number, 0 or more"
                    )));
                }
            },
        };
        if let Some(&prev) = times.last() {
            let d = t - prev;
            if d <= 0 {
                return Err(err(format!("timestamp {ts} is not after the previous one")));
            }
            match step {
                None => step = Some(d),
                Some(s) if s != d => {
                    return Err(err(format!(
                        "timestamps must be equally spaced: step {d}s after a step of {s}s"
                    )));
                }
                _ => {}
            }
        }
        times.push(t);
        values.push(v);
    }
    let Some(step) = step else {
        return Err(TraceError::TooFewRows(values.len()));
    };
    Ok(Trace {
        column: names[idx].to_string(),
        start: times[0],
        step,
        values,
    })
}

/// Unix seconds, or RFC 3339.
fn parse_timestamp(s: &str) -> Option<i64> {
    if let Ok(t) = s.parse::<i64>() {
        return Some(t);
    }
    if let Ok(t) = s.parse::<f64>() {
        return t.is_finite().then_some(t.round() as i64);
    }
    s.parse::<k8s_openapi::jiff::Timestamp>()
        .ok()
        .map(|t| t.as_second())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_unix_and_rfc3339_rows_and_fills_gaps() {
        let t = parse_trace(
            "\u{feff}\"timestamp\",\"requests\"\r\n60,1\n\n120,NaN\n180,3\n",
            None,
        )
        .unwrap();
        assert_eq!((t.start, t.step), (60, 60));
        assert_eq!(t.values, vec![1.0, 1.0, 3.0]);
        let t = parse_trace(
            "timestamp,a,b\n2026-03-02T00:00:00Z,1,10\n2026-03-02T00:01:00Z,2,20\n",
            Some("b"),
        )
        .unwrap();
        assert_eq!(t.column, "b");
        assert_eq!(t.values, vec![10.0, 20.0]);
        assert_eq!(t.step, 60);
    }

    #[test]
    fn interpolates_between_rows() {
        let t = parse_trace("timestamp,v\n0,10\n60,70\n", None).unwrap();
        assert_eq!(t.span(), Duration::from_secs(120));
        assert_eq!(t.rate_at(Duration::ZERO), 10.0);
        assert_eq!(t.rate_at(Duration::from_secs(30)), 40.0);
        assert_eq!(t.rate_at(Duration::from_secs(90)), 70.0);
        assert_eq!(t.rate_at(Duration::from_secs(120)), 0.0);
    }

    #[test]
    fn every_problem_is_one_sentence() {
        let cases = [
            ("", "empty"),
            ("time,v\n0,1\n60,1\n", "timestamp column"),
            ("timestamp\n0\n", "no value column"),
            ("timestamp,v\n0,1\n60,x\n", "line 3: unparsable value"),
            ("timestamp,v\n0,1\n60,-1\n", "unparsable value"),
            ("timestamp,v\nyesterday,1\n", "unparsable timestamp"),
            ("timestamp,v\n0,1\n60,1\n180,1\n", "equally spaced"),
            ("timestamp,v\n60,1\n0,1\n", "not after"),
            ("timestamp,v\n0,1\n", "only 1 rows"),
        ];
        for (text, want) in cases {
            let err = parse_trace(text, None).expect_err(text).to_string();
            assert!(err.contains(want), "{text:?}: {err}");
        }
        let err = parse_trace("timestamp,v\n0,1\n60,1\n", Some("w")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no column \"w\" in the header (columns: v)"
        );
    }
}
