//! Where a subcommand's options come from besides the command line: the environment
//! and a TOML config file, all read by clap's own value parsers.
//!
//! The file's path may itself come from `--config` or its variable, so a lenient
//! first parse finds it. The file's values then become the defaults of the arguments
//! they address, and clap parses the command line and the environment once: a flag
//! beats the environment, which beats the file, which beats the built-in default, and
//! each value is checked by the same parser wherever it comes from.
//!
//! A key of the file addresses the option whose flag (or one of its aliases) has that
//! name: `ping-interval = "5s"` is `--ping-interval 5s`. A table puts its name in
//! front of its keys: `[redis]` `prefix = "x"` is `--redis-prefix x`. Whatever
//! addresses no flag (lists of tables such as `[[name]]`) is read by serde into the
//! fields of the config that have no flag; anything else is an unknown key.
//!
//! A bad value is named by where it came from: the variable and its value, or the
//! file and its key (clap names the flag itself).

mod file;

use std::ffi::OsString;
use std::path::PathBuf;

use clap::error::{ContextKind, ContextValue};
use clap::parser::ValueSource;
use clap::{Arg, ArgMatches, Command, FromArgMatches};
use serde::de::DeserializeOwned;

pub(crate) use file::FileLayer;

/// The id of the argument that names the config file.
const CONFIG: &str = "config";

/// Why the options cannot be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SourceError {
    /// The command line is wrong, or asks for help or the version (clap reports it).
    #[error(transparent)]
    CommandLine(#[from] clap::Error),
    /// An environment variable holds a value its option does not accept.
    #[error("{var}={value}: {reason}")]
    Environment {
        var: String,
        value: String,
        reason: String,
    },
    /// The config file cannot be read.
    #[error("cannot read config file {}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The config file is not TOML.
    #[error("invalid config file {}", path.display())]
    Syntax {
        path: PathBuf,
        source: toml::de::Error,
    },
    /// A key of the file holds a value its option does not accept.
    #[error("config file {}: {key} = {value}: {reason}", path.display())]
    Value {
        path: PathBuf,
        key: String,
        value: String,
        reason: String,
    },
    /// A key of the file holds a list, or a list of lists or tables, where its
    /// option takes something else.
    #[error("config file {}: {key} {expected}", path.display())]
    Shape {
        path: PathBuf,
        key: String,
        expected: &'static str,
    },
    /// Two keys of the file address the same option.
    #[error("config file {}: {first} and {second} both set --{flag}", path.display())]
    Twice {
        path: PathBuf,
        first: String,
        second: String,
        flag: String,
    },
    /// A key of the file addresses no option.
    #[error(
        "config file {}: unknown field `{key}`: it names no option (see --help)",
        path.display()
    )]
    UnknownKey { path: PathBuf, key: String },
    /// The lists of tables of the file do not have the expected shape. The reason is
    /// part of the message, not a source, so that it is said once.
    #[error("config file {}: {reason}", path.display())]
    Tables {
        path: PathBuf,
        reason: toml::de::Error,
    },
}

impl SourceError {
    /// The exit status: 2 for what is wrong with the invocation (as clap uses for the
    /// command line), 1 for the config file.
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            Self::CommandLine(err) => u8::try_from(err.exit_code()).unwrap_or(2),
            Self::Environment { .. } => 2,
            _ => 1,
        }
    }
}

/// Parses `argv` (program name first) for `command`. When `subcommand` is the one
/// chosen, its options also come from the environment and from the config file its
/// `--config` names, and its matches fill a `T`: the options with a flag through
/// clap, the lists of tables of the file through serde.
pub(crate) fn parse<T>(
    mut command: Command,
    subcommand: &str,
    argv: &[OsString],
) -> Result<(ArgMatches, Option<T>), SourceError>
where
    T: DeserializeOwned + FromArgMatches,
{
    // Leniently, this first parse fails only for help and the version, which the
    // real parse below shows without reading anything; it skips what it cannot read.
    let lenient = command
        .clone()
        .ignore_errors(true)
        .try_get_matches_from(argv);
    let given = lenient
        .as_ref()
        .ok()
        .and_then(|m| m.subcommand_matches(subcommand));
    let mut file = None;
    if let (Some(given), Some(options)) = (given, command.find_subcommand(subcommand)) {
        check_environment(options, given)?;
        if let Ok(Some(path)) = given.try_get_one::<PathBuf>(CONFIG) {
            file = Some(FileLayer::read(options, path)?);
        }
    }
    if let Some(layer) = &file {
        command = command.mut_subcommand(subcommand, |options| layer.install(options));
    }
    let matches = command.try_get_matches_from(argv)?;
    let config = match matches.subcommand_matches(subcommand) {
        Some(options) => Some(file::complete(file, options)?),
        None => None,
    };
    Ok((matches, config))
}

/// Fails on the first variable that holds a value its option does not accept,
/// unless the command line gives that option anyway.
fn check_environment(options: &Command, given: &ArgMatches) -> Result<(), SourceError> {
    for arg in options.get_arguments() {
        let Some(var) = arg.get_env() else { continue };
        if given.value_source(arg.get_id().as_str()) == Some(ValueSource::CommandLine) {
            continue;
        }
        let Some(value) = std::env::var_os(var) else {
            continue;
        };
        if let Err(reason) = check(arg, vec![value.clone()]) {
            return Err(SourceError::Environment {
                var: var.to_string_lossy().into_owned(),
                value: if arg.is_hide_env_values_set() {
                    "(hidden)".to_owned()
                } else {
                    value.to_string_lossy().into_owned()
                },
                reason,
            });
        }
    }
    Ok(())
}

/// Whether `arg` accepts `values`, read by its own parser as clap will read them;
/// the parser's reason when it does not.
fn check(arg: &Arg, values: Vec<OsString>) -> Result<(), String> {
    // A fresh argument with the same parser, so that the relations of the real one
    // to other arguments play no part.
    let probe = Arg::new(arg.get_id().clone())
        .long("probe")
        .action(arg.get_action().clone())
        .value_parser(arg.get_value_parser().clone())
        .value_delimiter(arg.get_value_delimiter())
        .ignore_case(arg.is_ignore_case_set())
        .default_values(values);
    Command::new("check")
        .no_binary_name(true)
        .arg(probe)
        .try_get_matches_from(std::iter::empty::<OsString>())
        .map(drop)
        .map_err(|err| reason(&err))
}

/// What a value parser said, without clap's framing.
fn reason(err: &clap::Error) -> String {
    if let Some(source) = std::error::Error::source(err) {
        return source.to_string();
    }
    if let Some(ContextValue::Strings(valid)) = err.get(ContextKind::ValidValue) {
        return format!("expected one of {}", valid.join(", "));
    }
    err.kind().as_str().unwrap_or("invalid value").to_owned()
}

/// A config file that exists while this value does.
#[cfg(test)]
#[derive(Debug)]
pub(crate) struct TempFile(pub(crate) PathBuf);

#[cfg(test)]
impl TempFile {
    /// Writes `text` to a new file in the temporary directory.
    pub(crate) fn new(text: &str) -> Self {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "heartwire-config-{}-{}.toml",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let path = std::env::temp_dir().join(name);
        std::fs::write(&path, text).expect("write a temporary config file");
        Self(path)
    }
}

#[cfg(test)]
impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    /// A config with options of each kind and a list of tables without a flag.
    #[derive(clap::Args, Deserialize, Debug, PartialEq)]
    #[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
    struct Example {
        #[arg(long, default_value = "1")]
        #[serde(skip)]
        level: u32,
        #[arg(long = "tag", allow_hyphen_values = true)]
        #[serde(skip)]
        tags: Vec<String>,
        #[arg(long)]
        #[serde(skip)]
        tls_cert: Option<String>,
        #[arg(long, hide_default_value = true)]
        #[serde(skip)]
        pin: Option<u32>,
        #[arg(long)]
        #[serde(skip)]
        compress: bool,
        #[arg(skip)]
        channels: Vec<ChannelRule>,
    }

    impl Default for Example {
        fn default() -> Self {
            Self {
                level: 1,
                tags: Vec::new(),
                tls_cert: None,
                pin: None,
                compress: false,
                channels: Vec::new(),
            }
        }
    }

    /// One record of the list of tables `[[channels]]`.
    #[derive(Deserialize, Debug, Clone, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct ChannelRule {
        pattern: String,
        #[serde(default)]
        publish: bool,
    }

    fn read(argv: &[&str], file: Option<&str>) -> Result<Example, SourceError> {
        let options = <Example as clap::Args>::augment_args(
            Command::new("run").arg(
                Arg::new(CONFIG)
                    .long("config")
                    .value_parser(clap::value_parser!(PathBuf)),
            ),
        );
        let command = Command::new("example").subcommand(options);
        let file = file.map(TempFile::new);
        let mut args: Vec<OsString> = vec!["example".into(), "run".into()];
        if let Some(file) = &file {
            args.extend(["--config".into(), file.0.clone().into()]);
        }
        args.extend(argv.iter().map(OsString::from));
        let (_, example) = parse::<Example>(command, "run", &args)?;
        Ok(example.expect("the subcommand was chosen"))
    }

    #[test]
    fn lists_of_tables_are_read_by_serde_and_flags_by_clap() {
        let file = r#"
            level = 3
            tag = ["a", "-b"]
            compress = true
            [tls]
            cert = "/etc/heartwire/cert.pem"
            [[channels]]
            pattern = "room:*"
            publish = true
            [[channels]]
            pattern = "news"
        "#;
        let example = read(&["--level", "5"], Some(file)).unwrap();
        assert_eq!(
            example,
            Example {
                level: 5,
                tags: vec!["a".into(), "-b".into()],
                tls_cert: Some("/etc/heartwire/cert.pem".into()),
                pin: None,
                compress: true,
                channels: vec![
                    ChannelRule {
                        pattern: "room:*".into(),
                        publish: true,
                    },
                    ChannelRule {
                        pattern: "news".into(),
                        publish: false,
                    },
                ],
            }
        );
        assert_eq!(read(&[], None).unwrap(), Example::default());
    }

    #[test]
    fn what_the_file_holds_wrongly_is_named_with_the_file_and_the_key() {
        let message = |file: &str| {
            let err = read(&[], Some(file)).unwrap_err();
            assert!(matches!(err.exit_code(), 1), "{err}");
            assert!(err.to_string().contains("config file "), "{err}");
            err.to_string()
        };
        let err = message("level = \"high\"");
        assert!(err.contains("level = \"high\": invalid digit"), "{err}");
        let err = message("[[chanels]]\npattern = \"x\"");
        assert!(err.contains("unknown field `chanels`"), "{err}");
        let err = message("[tls]\ncrt = \"x\"");
        assert!(err.contains("unknown field `tls.crt`"), "{err}");
        let err = message("[[channels]]\npatern = \"x\"");
        assert!(err.contains("patern"), "{err}");
        let err = message("level = [1, 2]");
        assert!(err.contains("level takes one value, not a list"), "{err}");
        let err = message("tag = [[\"a\"]]");
        assert!(err.contains("tag takes a list of plain values"), "{err}");
        let err = message("tls-cert = \"a\"\n[tls]\ncert = \"b\"");
        assert!(err.contains("both set --tls-cert"), "{err}");
        assert!(
            err.contains("tls-cert") && err.contains("tls.cert"),
            "{err}"
        );
        let err = message("compress = \"maybe\"");
        assert!(err.contains("compress = \"maybe\""), "{err}");
        let err = message("pin = \"s3cret\"");
        assert!(err.contains("pin = (hidden): invalid digit"), "{err}");
        assert!(!err.contains("s3cret"), "{err}");
        let err = message("config = \"other.toml\"");
        assert!(err.contains("unknown field `config`"), "{err}");
    }

    #[test]
    fn one_value_may_stand_for_a_list() {
        let example = read(&[], Some("tag = \"solo\"")).unwrap();
        assert_eq!(example.tags, ["solo"]);
    }
}
