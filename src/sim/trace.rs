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
    let csv_err = |e: csv::Error| TraceError::Line {
        line: line_at(text, e.position()),
        message: e.to_string(),
    };
    let mut records = reader
        .records()
        .map(|r| r.map_err(csv_err))
        // blank lines (every field empty) are skipped
        .filter(|r| r.as_ref().map_or(true, |r| r.iter().any(|f| !f.is_empty())));
    let header = records.next().ok_or(TraceError::NoHeader)??;
    let idx = value_column(&header, column)?;
    let mut rows = Rows::default();
    for record in records {
        let record = record?;
        let line = line_at(text, record.position());
        rows.push(&record, idx).map_err(|e| match e {
            RowError::Line(message) => TraceError::Line { line, message },
            RowError::Step { step, found } => TraceError::UnequalSteps { line, step, found },
        })?;
    }
    if rows.values.len() < MIN_ROWS {
        return Err(TraceError::TooFewRows {
            rows: rows.values.len(),
            min: MIN_ROWS,
        });
    }
    Ok(Trace {
        column: header[idx].to_string(),
        series: Series::new(
            rows.times[0],
            rows.step.expect("at least two rows"),
            rows.values,
        ),
    })
}

/// The columns of a trace whose names match `patterns` (each a name, or a prefix ending in
/// `*`, e.g. `client_*`), in the header's order, each read as [`parse_trace`] reads one.
pub fn parse_columns(text: &str, patterns: &[String]) -> Result<Vec<Trace>, TraceError> {
    let header = text
        .strip_prefix('\u{feff}')
        .unwrap_or(text)
        .lines()
        .find(|l| !l.trim().is_empty())
        .ok_or(TraceError::NoHeader)?;
    let names: Vec<String> = header
        .split(',')
        .skip(1)
        .map(|n| n.trim().trim_matches('"').to_string())
        .collect();
    let matches = |n: &str| {
        patterns.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => n.starts_with(prefix),
            None => n == p,
        })
    };
    let chosen: Vec<&String> = names.iter().filter(|n| matches(n)).collect();
    if chosen.is_empty() {
        return Err(TraceError::NoColumn {
            name: patterns.join(","),
            columns: names.join(", "),
        });
    }
    chosen
        .into_iter()
        .map(|c| parse_trace(text, Some(c)))
        .collect()
}

/// The line a record starts on, as an editor numbers it (counted from the byte offset, so
/// blank lines and CRLF ends count as the file has them).
fn line_at(text: &str, p: Option<&csv::Position>) -> usize {
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
}

/// The index of the value column: `column` if named, else the second. The first must be
/// `timestamp`.
fn value_column(header: &csv::StringRecord, column: Option<&str>) -> Result<usize, TraceError> {
    let names: Vec<&str> = header.iter().collect();
    if !names[0].eq_ignore_ascii_case("timestamp") {
        return Err(TraceError::BadHeader(names[0].to_string()));
    }
    match column {
        Some(c) => names
            .iter()
            .position(|n| *n == c)
            .filter(|&i| i > 0)
            .ok_or_else(|| TraceError::NoColumn {
                name: c.to_string(),
                columns: names[1..].join(", "),
            }),
        None if names.len() >= 2 => Ok(1),
        None => Err(TraceError::NoValueColumn),
    }
}

/// The rows read so far, and the step between them (from the first two).
#[derive(Default)]
struct Rows {
    times: Vec<i64>,
    values: Vec<f64>,
    step: Option<i64>,
}

/// Why a row cannot be used (its line is added by the caller).
enum RowError {
    Line(String),
    Step { step: i64, found: i64 },
}

impl Rows {
    /// Adds a record's timestamp and value (column `idx`): both parse, the value is a load,
    /// and the timestamp is one step after the previous one.
    fn push(&mut self, record: &csv::StringRecord, idx: usize) -> Result<(), RowError> {
        let err = RowError::Line;
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
        if let Some(&prev) = self.times.last() {
            let d = t - prev;
            if d <= 0 {
                return Err(err(format!(
                    "timestamp {} is not after the previous one",
                    fields[0]
                )));
            }
            match self.step {
                None => self.step = Some(d),
                Some(s) if s != d => return Err(RowError::Step { step: s, found: d }),
                _ => {}
            }
        }
        self.times.push(t);
        self.values.push(v);
        Ok(())
    }
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
    fn group_columns_are_matched_by_name_or_prefix_in_header_order() {
        let mut text = String::from("timestamp,requests,client_1,client_2,other\n");
        for i in 0..12 {
            text.push_str(&format!("{},{},{},{},{}\n", i * 60, 6 + i, 1, 2 + i, 3));
        }
        let got = parse_columns(&text, &["other".into(), "client_*".into()]).unwrap();
        let names: Vec<&str> = got.iter().map(|t| t.column.as_str()).collect();
        assert_eq!(names, ["client_1", "client_2", "other"]);
        assert_eq!(got[1].series.values[3], 5.0);
        let err = parse_columns(&text, &["model_*".into()]).unwrap_err();
        assert!(err.to_string().contains("no column \"model_*\""), "{err}");
    }

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
