//! The server API for backends and the admin page: the key that opens them.

use std::path::PathBuf;

use super::{Secret, declared_defaults};

/// Who may call `/api/*` and open `/admin`: both are off until a key is given.
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
#[command(next_help_heading = "Server API")]
pub struct ApiAccess {
    /// Open the server API (/api/*) and the admin page (/admin) to callers that send
    /// this key in the X-API-Key header (or log in with it); prefer --api-key-file,
    /// which keeps it out of the process list. Both are off without a key
    #[arg(
        long,
        env = "HEARTWIRE_API_KEY",
        value_name = "KEY",
        allow_hyphen_values = true,
        hide_env_values = true,
        hide_default_value = true
    )]
    pub api_key: Option<Secret>,

    /// Read the API key from this file (a final newline is not part of it)
    #[arg(long, env = "HEARTWIRE_API_KEY_FILE", value_name = "FILE")]
    pub api_key_file: Option<PathBuf>,
}

impl Default for ApiAccess {
    fn default() -> Self {
        declared_defaults()
    }
}
