//! docs/CONFIG.md against the code: its table of options is the one the `serve`
//! command yields, and its example file loads and sets every option.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{ArgAction, CommandFactory};
use heartwire_server::Permission;

use super::tests::read;
use crate::Cli;
use crate::sources::FileLayer;

/// Where the table of options sits in docs/CONFIG.md.
const TABLE_BEGIN: &str = "<!-- options: begin -->\n";
const TABLE_END: &str = "<!-- options: end -->\n";

fn config_md() -> (PathBuf, String) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/CONFIG.md");
    let text = std::fs::read_to_string(&path).expect("docs/CONFIG.md exists");
    (path, text)
}

/// Markdown for a cell of the table: no line breaks, no table or emphasis marks.
fn cell(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
        .replace('*', "\\*")
}

/// The table of every option of `heartwire serve`, by help heading, as docs/CONFIG.md
/// shows it.
fn options_table() -> String {
    let command = Cli::command();
    let serve = command
        .find_subcommand("serve")
        .expect("a serve subcommand");
    let mut headings: Vec<(&str, Vec<&clap::Arg>)> = Vec::new();
    for arg in serve.get_arguments() {
        if matches!(arg.get_action(), ArgAction::Help) {
            continue;
        }
        let heading = arg.get_help_heading().unwrap_or("General");
        match headings.iter_mut().find(|(name, _)| *name == heading) {
            Some((_, args)) => args.push(arg),
            None => headings.push((heading, vec![arg])),
        }
    }
    let mut table = String::new();
    for (heading, args) in headings {
        writeln!(table, "### {heading}\n").unwrap();
        table.push_str(
            "| Flag (file key without the dashes) | Variable | Default | What it does |\n",
        );
        table.push_str("|---|---|---|---|\n");
        for arg in args {
            let long = arg.get_long().expect("every option has a long flag");
            let value = arg
                .get_value_names()
                .map(|names| format!(" <{}>", names.join(" ")))
                .unwrap_or_default();
            let mut flag = format!("`--{long}{value}`");
            if let Some(aliases) = arg.get_visible_aliases() {
                for alias in aliases {
                    write!(flag, " (or `--{alias}`)").unwrap();
                }
            }
            if matches!(arg.get_action(), ArgAction::Append) {
                flag.push_str(", repeatable");
            }
            let variable = arg
                .get_env()
                .map(|var| format!("`{}`", var.to_string_lossy()))
                .unwrap_or_default();
            let defaults: Vec<String> = arg
                .get_default_values()
                .iter()
                .map(|value| value.to_string_lossy().into_owned())
                .collect();
            let default = if defaults.is_empty() {
                "none".to_owned()
            } else {
                format!("`{}`", defaults.join(", "))
            };
            let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
            writeln!(
                table,
                "| {flag} | {variable} | {default} | {} |",
                cell(&help)
            )
            .unwrap();
        }
        table.push('\n');
    }
    table
}

#[test]
fn the_table_of_options_is_the_commands() {
    let (path, text) = config_md();
    let begin = text.find(TABLE_BEGIN).expect("the table's begin mark") + TABLE_BEGIN.len();
    let end = text.find(TABLE_END).expect("the table's end mark");
    let expected = options_table();
    assert!(
        text[begin..end].trim() == expected.trim(),
        "the table of options in {} differs from the code; put this between the marks:\n\n{expected}",
        path.display()
    );
}

/// The text of the ```toml block under "A complete example" in docs/CONFIG.md.
fn example_file() -> String {
    let (_, text) = config_md();
    let from = text
        .find("## A complete example")
        .expect("the example's heading");
    let start = text[from..].find("```toml\n").expect("a ```toml block") + from + 8;
    let len = text[start..].find("```").expect("the end of the block");
    text[start..start + len].to_owned()
}

#[test]
fn the_example_file_loads_and_sets_every_option() {
    let example = example_file();
    let args = read(&[], &example).expect("the example file loads");
    assert_eq!(args.worker_threads, Some(2));
    let config = args.server;
    config.validate().expect("the example's values are valid");
    assert_eq!(config.liveness.ping_interval, Duration::from_secs(10));
    assert_eq!(
        config.heartbeats.heartbeat_text.as_deref(),
        Some("--heartbeat--")
    );
    assert_eq!(config.broker.redis_prefix.as_deref(), Some("ws4redis"));
    assert!(config.broker.redis_config().unwrap().is_some());
    let patterns: Vec<&str> = config
        .channels
        .iter()
        .map(|rule| rule.pattern.as_str())
        .collect();
    assert_eq!(patterns, ["user:{user}:*", "room:*"]);
    assert_eq!(config.channels[1].presence, Permission::Authenticated);

    let command = Cli::command();
    let serve = command
        .find_subcommand("serve")
        .expect("a serve subcommand");
    let layer = FileLayer::parse(serve, Path::new("CONFIG.md"), &example).expect("it parses");
    for arg in serve.get_arguments() {
        let settable = arg.get_id() != "config" && !matches!(arg.get_action(), ArgAction::Help);
        assert!(
            !settable || layer.sets(arg.get_id()),
            "the example file of docs/CONFIG.md does not set --{}",
            arg.get_long().unwrap_or_default()
        );
    }
}
