//! Where the logs go and what they look like: stderr, filtered by `RUST_LOG` (the
//! ecosystem's variable, in tracing's filter syntax, e.g. `info,heartwire_server=debug`;
//! `HEARTWIRE_LOG` is read when `RUST_LOG` is not set), as text or as JSON lines, with
//! colours only when stderr is a terminal.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// The shape of log lines.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum LogFormat {
    /// One line of text per event.
    #[default]
    Text,
    /// One JSON object per line, for a log collector.
    Json,
}

/// The filter from `RUST_LOG`, else `HEARTWIRE_LOG`, else `info`. A filter that does
/// not parse is named on stderr and `info` is used.
fn filter() -> EnvFilter {
    for variable in ["RUST_LOG", "HEARTWIRE_LOG"] {
        match std::env::var(variable) {
            Ok(value) if !value.trim().is_empty() => match EnvFilter::try_new(&value) {
                Ok(filter) => return filter,
                Err(err) => {
                    eprintln!(
                        "heartwire: {variable}={value:?} is not a log filter ({err}); logging at info"
                    );
                    break;
                }
            },
            _ => {}
        }
    }
    EnvFilter::new("info")
}

/// Installs the process's log subscriber.
pub(crate) fn init(format: LogFormat) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
    }
}
