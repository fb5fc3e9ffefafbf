//! `heartwire publish` and `heartwire api`: the server API (docs/API.md) from the
//! command line.
//!
//! `heartwire publish CHANNEL DATA` is `POST /api/publish`. `heartwire api CALL
//! [NAME=VALUE…]` makes any call: `history`, `presence`, `channels` and `info` are
//! GETs whose pairs become the query; `publish`, `broadcast`, `disconnect` and
//! `unsubscribe` are POSTs whose pairs become the JSON body (a value that reads as
//! JSON is taken as JSON, any other as a string), or whose one argument is the body.
//! The answer is printed on stdout; an error's sentence goes to stderr with exit
//! status 1.

use std::path::PathBuf;

use anyhow::{Context, bail};
use serde_json::{Map, Value};

/// Where the server is and the key that opens its API.
#[derive(clap::Args, Debug)]
pub(crate) struct ApiTarget {
    /// The server's base URL
    #[arg(
        long,
        env = "HEARTWIRE_SERVER",
        value_name = "URL",
        default_value = "http://127.0.0.1:8080"
    )]
    server: String,

    /// The server's API key; prefer --api-key-file, which keeps it out of the
    /// process list
    #[arg(
        long,
        env = "HEARTWIRE_API_KEY",
        value_name = "KEY",
        allow_hyphen_values = true,
        hide_env_values = true
    )]
    api_key: Option<String>,

    /// Read the API key from this file (a final newline is not part of it)
    #[arg(long, env = "HEARTWIRE_API_KEY_FILE", value_name = "FILE")]
    api_key_file: Option<PathBuf>,
}

/// `heartwire publish`.
#[derive(clap::Args, Debug)]
pub(crate) struct PublishArgs {
    /// The channel
    channel: String,
    /// The message: JSON, or any other text (sent as a JSON string)
    #[arg(allow_hyphen_values = true)]
    data: String,
    /// A publish id: the same id within the dedup window is published once
    #[arg(long)]
    id: Option<String>,
    #[command(flatten)]
    target: ApiTarget,
}

/// `heartwire api`.
#[derive(clap::Args, Debug)]
pub(crate) struct ApiArgs {
    /// The call: publish, broadcast, history, presence, channels, info, disconnect
    /// or unsubscribe
    call: String,
    /// NAME=VALUE pairs (the query, or the JSON body), or one JSON body
    args: Vec<String>,
    #[command(flatten)]
    target: ApiTarget,
}

const GETS: [&str; 4] = ["history", "presence", "channels", "info"];
const POSTS: [&str; 4] = ["publish", "broadcast", "disconnect", "unsubscribe"];

pub(crate) fn publish(args: PublishArgs) -> anyhow::Result<()> {
    let mut body = Map::new();
    body.insert("channel".into(), Value::String(args.channel));
    body.insert("data".into(), json_or_text(&args.data));
    if let Some(id) = args.id {
        body.insert("id".into(), Value::String(id));
    }
    let request = Request::Post {
        call: "publish".into(),
        body: Value::Object(body),
    };
    call(&args.target, request)
}

pub(crate) fn api(args: ApiArgs) -> anyhow::Result<()> {
    let request = if GETS.contains(&args.call.as_str()) {
        let query = args
            .args
            .iter()
            .map(|pair| split(pair))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Request::Get {
            call: args.call,
            query,
        }
    } else if POSTS.contains(&args.call.as_str()) {
        let body = match args.args.as_slice() {
            [only] if only.trim_start().starts_with('{') => serde_json::from_str(only)
                .with_context(|| format!("the body {only:?} is not JSON"))?,
            pairs => {
                let mut body = Map::new();
                for pair in pairs {
                    let (name, value) = split(pair)?;
                    body.insert(name, json_or_text(&value));
                }
                Value::Object(body)
            }
        };
        Request::Post {
            call: args.call,
            body,
        }
    } else {
        bail!(
            "unknown call {:?}: use one of {}",
            args.call,
            [GETS, POSTS].concat().join(", ")
        );
    };
    call(&args.target, request)
}

enum Request {
    Get {
        call: String,
        query: Vec<(String, String)>,
    },
    Post {
        call: String,
        body: Value,
    },
}

fn split(pair: &str) -> anyhow::Result<(String, String)> {
    let (name, value) = pair
        .split_once('=')
        .with_context(|| format!("{pair:?} is not NAME=VALUE"))?;
    Ok((name.to_owned(), value.to_owned()))
}

/// `text` as JSON when it reads as JSON, else as a JSON string.
fn json_or_text(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

fn key(target: &ApiTarget) -> anyhow::Result<String> {
    match (&target.api_key, &target.api_key_file) {
        (Some(key), None) => Ok(key.clone()),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read --api-key-file {}", path.display()))?;
            Ok(text.trim_end_matches(['\n', '\r']).to_owned())
        }
        (Some(_), Some(_)) => bail!("give --api-key or --api-key-file, not both"),
        (None, None) => bail!("no API key: give --api-key-file, --api-key or HEARTWIRE_API_KEY"),
    }
}

fn call(target: &ApiTarget, request: Request) -> anyhow::Result<()> {
    let key = key(target)?;
    let base = target.server.trim_end_matches('/');
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let (status, text) = runtime
        .block_on(async {
            let client = reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(30))
                .build()?;
            let builder = match &request {
                Request::Get { call, query } => {
                    client.get(format!("{base}/api/{call}")).query(query)
                }
                Request::Post { call, body } => client
                    .post(format!("{base}/api/{call}"))
                    .header("content-type", "application/json")
                    .body(body.to_string()),
            };
            let response = builder.header("x-api-key", key).send().await?;
            let status = response.status();
            Ok::<_, reqwest::Error>((status, response.text().await?))
        })
        .with_context(|| format!("cannot reach {base}"))?;
    if status.is_success() {
        println!("{text}");
        return Ok(());
    }
    let message = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|answer| answer["error"]["message"].as_str().map(str::to_owned))
        .unwrap_or(text);
    bail!("{status}: {message}")
}
