//! The figures of one run: each is appended to a JSON-lines file the moment it is
//! measured (a run cut short keeps what it measured), and all are printed as a table
//! at the end. A figure that could not be measured is recorded with the reason.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// Which way is better for a figure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Better {
    /// A cost: less is better.
    Lower,
    /// A rate: more is better.
    Higher,
}

/// One measured (or missing) figure of one server.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Figure {
    pub(crate) server: String,
    pub(crate) figure: String,
    pub(crate) value: Option<f64>,
    pub(crate) unit: String,
    pub(crate) better: Better,
    /// Why the value is missing, or what qualifies it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) note: Option<String>,
}

/// The figures of one server, as they are measured.
pub(crate) struct Figures {
    server: String,
    path: PathBuf,
    taken: Vec<Figure>,
}

impl Figures {
    pub(crate) fn new(server: &str, path: &Path) -> Self {
        Self {
            server: server.to_owned(),
            path: path.to_owned(),
            taken: Vec::new(),
        }
    }

    /// Records a measured value.
    pub(crate) fn add(&mut self, figure: &str, value: f64, unit: &str, better: Better) {
        self.push(figure, Some(value), unit, better, None);
    }

    /// Records that `figure` was not measured, and why.
    pub(crate) fn missing(&mut self, figure: &str, unit: &str, better: Better, why: &str) {
        self.push(figure, None, unit, better, Some(why.to_owned()));
    }

    fn push(
        &mut self,
        figure: &str,
        value: Option<f64>,
        unit: &str,
        better: Better,
        note: Option<String>,
    ) {
        let figure = Figure {
            server: self.server.clone(),
            figure: figure.to_owned(),
            value,
            unit: unit.to_owned(),
            better,
            note,
        };
        if let Err(err) = append(&self.path, &figure) {
            eprintln!("bench: cannot record {}: {err:#}", figure.figure);
        }
        self.taken.push(figure);
    }

    /// The summary table of this run.
    pub(crate) fn table(&self) -> String {
        let mut table = format!("{:<40} {:>16}  unit\n", self.server, "value");
        for figure in &self.taken {
            let value = figure
                .value
                .map_or_else(|| "—".to_owned(), |value| format!("{value:.2}"));
            let note = figure.note.as_deref().unwrap_or("");
            table += &format!(
                "{:<40} {:>16}  {} {}\n",
                figure.figure, value, figure.unit, note
            );
        }
        table
    }
}

fn append(path: &Path, figure: &Figure) -> anyhow::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    writeln!(file, "{}", serde_json::to_string(figure)?)?;
    Ok(())
}

/// Every figure in a JSON-lines file.
pub(crate) fn read(path: &Path) -> anyhow::Result<Vec<Figure>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).with_context(|| format!("bad figure {line:?}")))
        .collect()
}
