//! The check's findings: one row per measured figure, with its bound and verdict, shown
//! as a table or as JSON (`--json`).
//!
//! A timing passes when it is at most its bound plus the tolerance (`--tolerance`:
//! timer and scheduling delay); a count passes when it is at most its bound; a row
//! without a bound only informs. A figure that could not be measured (the event never
//! came) fails.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{Value, json};

use super::probe::ServerInfo;

/// Whether a row met its bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Pass,
    Fail,
    Info,
}

/// A measured value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Figure {
    Time(Duration),
    Count(u64),
    /// The event that would have been measured never came.
    Missing,
}

/// What a figure is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bound {
    AtMost(Figure),
    Below(Duration),
    None,
}

/// One line of the table.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub(crate) scenario: &'static str,
    pub(crate) check: String,
    pub(crate) measured: Figure,
    pub(crate) bound: Bound,
    pub(crate) verdict: Verdict,
    pub(crate) note: Option<String>,
}

impl Row {
    /// A timing that passes when at most `bound + tolerance`.
    pub(crate) fn timing(
        scenario: &'static str,
        check: impl Into<String>,
        measured: Option<Duration>,
        bound: Duration,
        tolerance: Duration,
    ) -> Self {
        let verdict = match measured {
            Some(measured) if measured <= bound + tolerance => Verdict::Pass,
            _ => Verdict::Fail,
        };
        Self {
            scenario,
            check: check.into(),
            measured: measured.map_or(Figure::Missing, Figure::Time),
            bound: Bound::AtMost(Figure::Time(bound)),
            verdict,
            note: None,
        }
    }

    /// A count that passes when at most `bound`.
    pub(crate) fn count(
        scenario: &'static str,
        check: impl Into<String>,
        measured: u64,
        bound: u64,
    ) -> Self {
        Self {
            scenario,
            check: check.into(),
            measured: Figure::Count(measured),
            bound: Bound::AtMost(Figure::Count(bound)),
            verdict: if measured <= bound {
                Verdict::Pass
            } else {
                Verdict::Fail
            },
            note: None,
        }
    }

    /// A figure shown for information.
    pub(crate) fn info(scenario: &'static str, check: impl Into<String>, measured: Figure) -> Self {
        Self {
            scenario,
            check: check.into(),
            measured,
            bound: Bound::None,
            verdict: Verdict::Info,
            note: None,
        }
    }

    pub(crate) fn with_note(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
    }

    fn to_json(&self) -> Value {
        let (measured, unit) = figure_json(self.measured);
        let (bound, compare) = match self.bound {
            Bound::AtMost(figure) => (figure_json(figure).0, Some("at_most")),
            Bound::Below(time) => (figure_json(Figure::Time(time)).0, Some("below")),
            Bound::None => (Value::Null, None),
        };
        json!({
            "scenario": self.scenario,
            "check": self.check,
            "measured": measured,
            "bound": bound,
            "compare": compare,
            "unit": unit,
            "verdict": match self.verdict {
                Verdict::Pass => "pass",
                Verdict::Fail => "fail",
                Verdict::Info => "info",
            },
            "note": self.note,
        })
    }
}

fn figure_json(figure: Figure) -> (Value, Option<&'static str>) {
    match figure {
        Figure::Time(time) => (json!(time.as_millis() as u64), Some("ms")),
        Figure::Count(count) => (json!(count), Some("count")),
        Figure::Missing => (Value::Null, None),
    }
}

/// Everything the check found.
#[derive(Debug)]
pub(crate) struct Report {
    pub(crate) url: String,
    pub(crate) server: ServerInfo,
    pub(crate) tolerance: Duration,
    pub(crate) rows: Vec<Row>,
}

impl Report {
    pub(crate) fn failed(&self) -> usize {
        self.rows
            .iter()
            .filter(|row| row.verdict == Verdict::Fail)
            .count()
    }

    pub(crate) fn judged(&self) -> usize {
        self.rows
            .iter()
            .filter(|row| row.verdict != Verdict::Info)
            .count()
    }

    pub(crate) fn to_json(&self) -> Value {
        json!({
            "url": self.url,
            "server": self.server.name,
            "ping_interval_ms": self.server.ping_interval.as_millis() as u64,
            "ping_timeout_ms": self.server.ping_timeout.as_millis() as u64,
            "tolerance_ms": self.tolerance.as_millis() as u64,
            "rows": self.rows.iter().map(Row::to_json).collect::<Vec<_>>(),
            "passed": self.failed() == 0,
        })
    }

    /// The table, its notes, and a closing line.
    pub(crate) fn to_text(&self) -> String {
        let header = ["scenario", "check", "measured", "bound", "verdict"];
        let cells: Vec<[String; 5]> = self
            .rows
            .iter()
            .map(|row| {
                [
                    row.scenario.to_owned(),
                    row.check.clone(),
                    show_figure(row.measured),
                    show_bound(row.bound),
                    match row.verdict {
                        Verdict::Pass => "pass",
                        Verdict::Fail => "FAIL",
                        Verdict::Info => "info",
                    }
                    .to_owned(),
                ]
            })
            .collect();
        let widths: Vec<usize> = (0..header.len())
            .map(|column| {
                cells
                    .iter()
                    .map(|row| row[column].chars().count())
                    .chain([header[column].len()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut text = format!(
            "{}: {}, ping interval {}, ping timeout {}; tolerance {}\n\n",
            self.url,
            self.server.name,
            show_time(self.server.ping_interval),
            show_time(self.server.ping_timeout),
            show_time(self.tolerance),
        );
        let header = header.map(str::to_owned);
        for line in std::iter::once(&header).chain(&cells) {
            let padded: Vec<String> = line
                .iter()
                .zip(&widths)
                .map(|(cell, width)| format!("{cell:<width$}"))
                .collect();
            text.push_str(padded.join("  ").trim_end());
            text.push('\n');
        }
        let notes: Vec<&Row> = self.rows.iter().filter(|row| row.note.is_some()).collect();
        if !notes.is_empty() {
            text.push_str("\nnotes:\n");
            for row in notes {
                let note = row.note.as_deref().unwrap_or_default();
                let _ = writeln!(text, "  {} / {}: {note}", row.scenario, row.check);
            }
        }
        let failed = self.failed();
        let _ = writeln!(
            text,
            "\n{} verdicts: {} passed, {failed} failed",
            self.judged(),
            self.judged() - failed
        );
        text
    }
}

fn show_figure(figure: Figure) -> String {
    match figure {
        Figure::Time(time) => show_time(time),
        Figure::Count(count) => count.to_string(),
        Figure::Missing => "none".to_owned(),
    }
}

fn show_bound(bound: Bound) -> String {
    match bound {
        Bound::AtMost(figure) => format!("≤ {}", show_figure(figure)),
        Bound::Below(time) => format!("< {}", show_time(time)),
        Bound::None => String::new(),
    }
}

/// Milliseconds below 10 s, seconds with one decimal above.
pub(crate) fn show_time(time: Duration) -> String {
    if time < Duration::from_secs(10) {
        format!("{} ms", time.as_millis())
    } else {
        format!("{:.1} s", time.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn timings_pass_within_their_bound_and_the_tolerance() {
        let row = |measured| Row::timing("s", "c", measured, 400 * MS, 100 * MS).verdict;
        assert_eq!(row(Some(300 * MS)), Verdict::Pass);
        assert_eq!(row(Some(500 * MS)), Verdict::Pass);
        assert_eq!(row(Some(501 * MS)), Verdict::Fail);
        assert_eq!(row(None), Verdict::Fail, "never measured");
        assert_eq!(Row::count("s", "c", 0, 0).verdict, Verdict::Pass);
        assert_eq!(Row::count("s", "c", 1, 0).verdict, Verdict::Fail);
    }

    #[test]
    fn the_table_and_json_say_the_same() {
        let report = Report {
            url: "ws://x/ws".into(),
            server: ServerInfo {
                name: "heartwire/0".into(),
                ping_interval: 200 * MS,
                ping_timeout: 200 * MS,
            },
            tolerance: 250 * MS,
            rows: vec![
                Row::timing("blackhole", "notices", Some(412 * MS), 400 * MS, 250 * MS)
                    .with_note("server side"),
                Row::count("blackhole", "lost", 2, 0),
                Row::info("latency", "median", Figure::Time(40 * MS)),
            ],
        };
        let text = report.to_text();
        assert!(
            text.contains("blackhole  notices  412 ms    ≤ 400 ms  pass"),
            "{text}"
        );
        assert!(
            text.contains("blackhole  lost     2         ≤ 0       FAIL"),
            "{text}"
        );
        assert!(text.contains("blackhole / notices: server side"), "{text}");
        assert!(text.ends_with("2 verdicts: 1 passed, 1 failed\n"), "{text}");
        let json = report.to_json();
        assert_eq!(json["passed"], false);
        assert_eq!(json["rows"][0]["measured"], 412);
        assert_eq!(json["rows"][0]["bound"], 400);
        assert_eq!(json["rows"][0]["unit"], "ms");
        assert_eq!(json["rows"][1]["verdict"], "fail");
        assert_eq!(json["rows"][2]["bound"], Value::Null);
    }
}
