//! Reading a recorded load trace: CSV with a header, first column `timestamp` (unix seconds or
//! RFC 3339), one row per step, and a value column (default: the second). Every problem is one
//! clear error line, never a panic. IO: [`read_trace`] reads the file; [`parse_trace`] is pure.

use std::path::Path;

use crate::planner::Series;

/// Why a trace cannot be used.
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
    Line { line: usize, message: String },
    #[error("only {rows} rows; at least {min} are needed")]
    TooFewRows { rows: usize, min: usize },
    #[error(
        "line {line}: timestamps must be equally spaced: step {found}s after a step of {step}s"
    )]
    UnequalSteps { line: usize, step: i64, found: i64 },
}

/// The fewest rows a trace may have.
pub const MIN_ROWS: usize = 10;

/// A parsed trace: the chosen column as a series, plus its name.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    pub column: String,
    pub series: Series,
}

/// Reads a trace file.
pub fn read_trace(path: &Path, column: Option<&str>) -> Result<Trace, TraceError> {
    let text = std::fs::read_to_string(path).map_err(|e| TraceError::Read {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    parse_trace(&text, column)
}

/// Parses trace text, as spreadsheets write CSV: quoted fields, a UTF-8 byte-order mark, CRLF
/// line ends and blank lines are all fine (the `csv` crate reads it).
pub fn parse_trace(text: &str, column: Option<&str>) -> Result<Trace, TraceError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let mut records = reader.records();
    // the line a record starts on, as an editor numbers it (counted from the byte offset, so
    // blank lines and CRLF ends count as the file has them)
    let line_at = |p: Option<&csv::Position>| {
        p.map_or(0, |p| {
            // a record's offset may point at the line end that closed the one before it
            let mut at = (p.byte() as usize).min(text.len());
            while at < text.len() && matches!(text.as_bytes()[at], b'\r' | b'\n') {
                at += 1;
            }
            text.as_bytes()[..at]
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
                + 1
        })
    };
    let csv_err = |e: csv::Error| TraceError::Line {
        line: line_at(e.position()),
        message: e.to_string(),
    };
    let header = loop {
        match records.next() {
            None => return Err(TraceError::NoHeader),
            Some(r) => {
                let r = r.map_err(csv_err)?;
                if r.iter().any(|f| !f.is_empty()) {
                    break r;
                }
            }
        }
    };
    let names: Vec<&str> = header.iter().collect();
    if !names[0].eq_ignore_ascii_case("timestamp") {
        return Err(TraceError::BadHeader(names[0].to_string()));
    }
    let idx = match column {
        Some(c) => names
            .iter()
            .position(|n| *n == c)
            .filter(|&i| i > 0)
            .ok_or_else(|| TraceError::NoColumn {
                name: c.to_string(),
                columns: names[1..].join(", "),
            })?,
        None if names.len() >= 2 => 1,
        None => return Err(TraceError::NoValueColumn),
    };
    let mut times = Vec::new();
    let mut values = Vec::new();
    let mut step: Option<i64> = None;
    for record in records {
        let record = record.map_err(csv_err)?;
        if record.iter().all(str::is_empty) {
            continue;
        }
        let lineno = line_at(record.position());
        let err = |message: String| TraceError::Line {
            line: lineno,
            message,
        };
        let fields: Vec<&str> = record.iter().collect();
        if fields.len() <= idx {
            return Err(err(format!(
                "expected at least {} fields, found {}",
                idx + 1,
                fields.len()
            )));
        }
        let t = parse_timestamp(fields[0])
            .ok_or_else(|| err(format!("unparsable timestamp {:?}", fields[0])))?;
        let v = match fields[idx] {
            "" | "NaN" | "nan" => f64::NAN,
            s => s
                .parse::<f64>()
                .map_err(|_| err(format!("unparsable value {s:?}")))?,
        };
        if v < 0.0 {
            return Err(err(format!("negative value {v}: load cannot be negative")));
        }
        if v.is_infinite() {
            return Err(err(format!("infinite value {:?}", fields[idx])));
        }
        if let Some(&prev) = times.last() {
            let d = t - prev;
            if d <= 0 {
                return Err(err(format!(
                    "timestamp {} is not after the previous one",
                    fields[0]
                )));
            }
            match step {
                None => step = Some(d),
                Some(s) if s != d => {
                    return Err(TraceError::UnequalSteps {
                        line: lineno,
                        step: s,
                        found: d,
                    });
                }
                _ => {}
            }
        }
        times.push(t);
        values.push(v);
    }
    if values.len() < MIN_ROWS {
        return Err(TraceError::TooFewRows {
            rows: values.len(),
            min: MIN_ROWS,
        });
    }
    Ok(Trace {
        column: header[idx].to_string(),
        series: Series::new(times[0], step.expect("at least two rows"), values),
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

    fn rows(n: usize) -> String {
        let mut s = String::from("timestamp,requests,tokens\n");
        for i in 0..n {
            s.push_str(&format!("{},{},{}\n", 60 * i, i, 2 * i));
        }
        s
    }

    #[test]
    fn reads_columns_and_step() {
        let t = parse_trace(&rows(12), None).unwrap();
        assert_eq!(
            (t.column.as_str(), t.series.step, t.series.len()),
            ("requests", 60, 12)
        );
        let t = parse_trace(&rows(12), Some("tokens")).unwrap();
        assert_eq!(t.series.values[3], 6.0);
    }

    #[test]
    fn spreadsheet_csv_with_bom_crlf_quotes_and_blank_lines() {
        let mut s = String::from("\u{feff}\"timestamp\",\"requests, per minute\"\r\n");
        for i in 0..12 {
            s.push_str(&format!("\"{}\",\"{}\"\r\n", 60 * i, i));
            if i == 4 {
                s.push_str("\r\n");
            }
        }
        let t = parse_trace(&s, None).unwrap();
        assert_eq!(t.column, "requests, per minute");
        assert_eq!((t.series.step, t.series.len()), (60, 12));
        assert_eq!(t.series.values[11], 11.0);
        let t = parse_trace(&s, Some("requests, per minute")).unwrap();
        assert_eq!(t.series.values[5], 5.0);
        // an error names the line as the file numbers it
        let bad = s.replace("\"180\",\"3\"", "\"180\",\"x\"");
        let err = parse_trace(&bad, None).unwrap_err().to_string();
        assert!(err.starts_with("line 5:"), "{err}");
    }

    #[test]
    fn rfc3339_timestamps() {
        let mut s = String::from("timestamp,v\n");
        for i in 0..12 {
            s.push_str(&format!("2024-01-01T00:{i:02}:00Z,{i}\n"));
        }
        let t = parse_trace(&s, None).unwrap();
        assert_eq!(t.series.start, 1_704_067_200);
        assert_eq!(t.series.step, 60);
    }

    #[test]
    fn bad_input_is_one_clear_error() {
        let cases: Vec<(String, &str)> = vec![
            (String::new(), "empty"),
            ("time,v\n0,1\n".into(), "timestamp column"),
            (rows(12).replace("0,0,0\n", "0,-1,0\n"), "negative"),
            (
                rows(12).replace("120,2,4", "abc,2,4"),
                "unparsable timestamp",
            ),
            (rows(12).replace("120,2,4", "120,x,4"), "unparsable value"),
            (rows(12).replace("120,2,4", "150,2,4"), "equally spaced"),
            (rows(5), "at least 10"),
            ("timestamp\n0\n".into(), "no value column"),
        ];
        for (text, want) in cases {
            let err = parse_trace(&text, None).unwrap_err().to_string();
            assert!(err.contains(want), "{want:?} not in {err:?}");
        }
        let err = parse_trace(&rows(12), Some("nope"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("no column \"nope\""), "{err}");
    }
}
