//! The config file: its keys mapped to the flags they address, its values installed
//! as those arguments' defaults, and the rest read by serde.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::{Arg, ArgAction, ArgMatches, Command, FromArgMatches};
use serde::de::DeserializeOwned;
use toml::{Table, Value};

use super::{CONFIG, SourceError, check};

/// A config file read against the options of a command: the defaults it gives them,
/// and the rest of its keys.
#[derive(Debug)]
pub(crate) struct FileLayer {
    path: PathBuf,
    /// Each addressed argument, its values, and the key that gave them.
    defaults: Vec<(clap::Id, Vec<OsString>, String)>,
    /// The keys that address no flag, with their tables.
    rest: Table,
}

impl FileLayer {
    /// Reads the file at `path` for the options of `options`.
    pub(crate) fn read(options: &Command, path: &Path) -> Result<Self, SourceError> {
        let text = std::fs::read_to_string(path).map_err(|source| SourceError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(options, path, &text)
    }

    /// Reads `text`, the content of the file at `path`, for the options of `options`.
    pub(crate) fn parse(options: &Command, path: &Path, text: &str) -> Result<Self, SourceError> {
        let table: Table = text.parse().map_err(|source| SourceError::Syntax {
            path: path.to_owned(),
            source,
        })?;
        let mut flags = HashMap::new();
        for arg in options.get_arguments() {
            let addressable = arg.get_id() != CONFIG
                && !matches!(
                    arg.get_action(),
                    ArgAction::Help
                        | ArgAction::HelpShort
                        | ArgAction::HelpLong
                        | ArgAction::Version
                );
            if !addressable {
                continue;
            }
            for name in arg
                .get_long()
                .into_iter()
                .chain(arg.get_all_aliases().into_iter().flatten())
            {
                flags.insert(name.to_owned(), arg);
            }
        }
        let mut layer = Self {
            path: path.to_owned(),
            defaults: Vec::new(),
            rest: Table::new(),
        };
        layer.rest = layer.walk(&flags, "", "", table)?;
        Ok(layer)
    }

    /// Takes the values of `table`, whose keys are prefixed by `flag_prefix` (`redis-`
    /// inside `[redis]`), and returns the keys that address no flag.
    fn walk(
        &mut self,
        flags: &HashMap<String, &Arg>,
        flag_prefix: &str,
        key_prefix: &str,
        table: Table,
    ) -> Result<Table, SourceError> {
        let mut rest = Table::new();
        for (name, value) in table {
            let flag = format!("{flag_prefix}{name}");
            let key = format!("{key_prefix}{name}");
            match value {
                Value::Table(inner) => {
                    let inner = self.walk(flags, &format!("{flag}-"), &format!("{key}."), inner)?;
                    if !inner.is_empty() {
                        rest.insert(name, Value::Table(inner));
                    }
                }
                value => match flags.get(&flag) {
                    Some(arg) => self.take(arg, key, value)?,
                    None => {
                        rest.insert(name, value);
                    }
                },
            }
        }
        Ok(rest)
    }

    /// Takes `value`, given by `key`, as the default of `arg`.
    fn take(&mut self, arg: &Arg, key: String, value: Value) -> Result<(), SourceError> {
        let shape = |expected| SourceError::Shape {
            path: self.path.clone(),
            key: key.clone(),
            expected,
        };
        let repeatable = matches!(arg.get_action(), ArgAction::Append);
        let values = match &value {
            Value::Array(items) if repeatable => items
                .iter()
                .map(|item| scalar(item).ok_or_else(|| shape("takes a list of plain values")))
                .collect::<Result<Vec<_>, _>>()?,
            Value::Array(_) => return Err(shape("takes one value, not a list")),
            other => vec![scalar(other).ok_or_else(|| shape("takes a plain value"))?],
        };
        if let Err(reason) = check(arg, values.clone()) {
            let value = if arg.is_hide_default_value_set() {
                "(hidden)".to_owned()
            } else {
                value.to_string()
            };
            return Err(SourceError::Value {
                path: self.path.clone(),
                key,
                value,
                reason,
            });
        }
        if let Some((_, _, first)) = self.defaults.iter().find(|(id, _, _)| id == arg.get_id()) {
            return Err(SourceError::Twice {
                path: self.path.clone(),
                first: first.clone(),
                second: key,
                flag: arg.get_long().unwrap_or_default().to_owned(),
            });
        }
        self.defaults.push((arg.get_id().clone(), values, key));
        Ok(())
    }

    /// Whether the file gives a value to the argument `id`.
    #[cfg(test)]
    pub(crate) fn sets(&self, id: &clap::Id) -> bool {
        self.defaults.iter().any(|(given, _, _)| given == id)
    }

    /// Makes the file's values the defaults of the arguments of `options`.
    pub(super) fn install(&self, mut options: Command) -> Command {
        for (id, values, _) in &self.defaults {
            options = options.mut_arg(id, |arg| arg.default_values(values.clone()));
        }
        options
    }
}

/// A TOML value as the text a flag would take; `None` for lists and tables.
fn scalar(value: &Value) -> Option<OsString> {
    let text = match value {
        Value::String(text) => text.clone(),
        Value::Integer(number) => number.to_string(),
        Value::Float(number) => number.to_string(),
        Value::Boolean(yes) => yes.to_string(),
        Value::Datetime(when) => when.to_string(),
        Value::Array(_) | Value::Table(_) => return None,
    };
    Some(text.into())
}

/// A `T` from the rest of the file (serde) and from `matches` (every option with a flag).
pub(super) fn complete<T>(file: Option<FileLayer>, matches: &ArgMatches) -> Result<T, SourceError>
where
    T: DeserializeOwned + FromArgMatches,
{
    let mut config: T = match file {
        None => Value::Table(Table::new())
            .try_into()
            .expect("the fields read by serde have defaults"),
        Some(FileLayer { path, rest, .. }) => {
            let known = serde_keys::<T>();
            if let Some((name, value)) = rest
                .iter()
                .find(|(name, _)| !known.contains(&name.as_str()))
            {
                return Err(SourceError::UnknownKey {
                    path,
                    key: first_key(name, value),
                });
            }
            Value::Table(rest)
                .try_into()
                .map_err(|reason| SourceError::Tables { path, reason })?
        }
    };
    config.update_from_arg_matches(matches)?;
    Ok(config)
}

/// The dotted path of the first plain value under `name` (`redis.prefx` for a
/// mistyped key of a `[redis]` table).
fn first_key(name: &str, value: &Value) -> String {
    match value {
        Value::Table(table) => match table.iter().next() {
            Some((inner, value)) => format!("{name}.{}", first_key(inner, value)),
            None => name.to_owned(),
        },
        _ => name.to_owned(),
    }
}

/// The keys `T` reads with serde: the names of its fields that serde does not skip.
fn serde_keys<T: DeserializeOwned>() -> &'static [&'static str] {
    /// A deserializer that only records the field names it is asked for.
    #[derive(Debug)]
    struct Keys<'a>(&'a mut &'static [&'static str]);

    impl<'de> serde::Deserializer<'de> for Keys<'_> {
        type Error = serde::de::value::Error;

        fn deserialize_any<V: serde::de::Visitor<'de>>(
            self,
            _: V,
        ) -> Result<V::Value, Self::Error> {
            Err(serde::de::Error::custom("only a struct has keys"))
        }

        fn deserialize_struct<V: serde::de::Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(serde::de::Error::custom("only the keys were asked for"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }

    let mut keys: &'static [&'static str] = &[];
    let _ = T::deserialize(Keys(&mut keys));
    keys
}
