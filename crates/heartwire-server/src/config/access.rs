//! Who may connect: allowed origins, the keys that verify tokens, the connect hook,
//! token expiry and the anonymous policy (docs/SECURITY.md).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use super::{declared_defaults, parse};

/// A secret value (a key, a password): kept out of `Debug`, logs and errors.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret itself, for the code that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(Self(text.to_owned()))
    }
}

impl From<&str> for Secret {
    fn from(text: &str) -> Self {
        Self(text.to_owned())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(hidden)")
    }
}

/// Who may open a WebSocket, and as whom.
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
#[command(next_help_heading = "Access")]
pub struct Access {
    /// Let pages of this browser origin connect: exact (https://app.example.com) or
    /// with a * for one or more subdomain labels (https://*.example.com); * alone
    /// allows every origin. Repeatable. Without any, only pages of the server's own
    /// origin may (the Origin's host and port equal the Host header); requests without
    /// an Origin header (not browsers) are never refused for it
    #[arg(
        long = "allowed-origin",
        env = "HEARTWIRE_ALLOWED_ORIGIN",
        value_name = "PATTERN"
    )]
    pub allowed_origins: Vec<String>,

    /// Verify JWTs signed with this HMAC secret (HS256, HS384, HS512); prefer
    /// --jwt-secret-file, which keeps it out of the process list. The key options
    /// combine: a token is checked with the keys of its algorithm
    #[arg(
        long,
        env = "HEARTWIRE_JWT_SECRET",
        value_name = "SECRET",
        allow_hyphen_values = true,
        hide_env_values = true,
        hide_default_value = true
    )]
    pub jwt_secret: Option<Secret>,

    /// Verify JWTs signed with the HMAC secret in this file (a final newline is not
    /// part of it)
    #[arg(long, env = "HEARTWIRE_JWT_SECRET_FILE", value_name = "FILE")]
    pub jwt_secret_file: Option<PathBuf>,

    /// Verify JWTs signed with the private key of this PEM public key or certificate:
    /// RSA (RS256/384/512, PS256/384/512), EC (ES256, ES384) or Ed25519 (EdDSA)
    #[arg(long, env = "HEARTWIRE_JWT_PUBLIC_KEY", value_name = "FILE")]
    pub jwt_public_key: Option<PathBuf>,

    /// Verify JWTs with the keys published at this JWKS URL, chosen by the token's
    /// kid; keys that rotate are picked up without a restart
    #[arg(long, env = "HEARTWIRE_JWT_JWKS_URL", value_name = "URL")]
    pub jwt_jwks_url: Option<String>,

    /// Fetch the JWKS again for a token whose kid it lacks at most once per this
    /// interval
    #[arg(
        long,
        env = "HEARTWIRE_JWT_JWKS_REFETCH",
        value_name = "DURATION",
        default_value = "30s",
        value_parser = parse::duration
    )]
    pub jwt_jwks_refetch: Duration,

    /// Fetch the JWKS again, in the background, once its keys are this old, so keys
    /// removed from it stop being accepted
    #[arg(
        long,
        env = "HEARTWIRE_JWT_JWKS_MAX_AGE",
        value_name = "DURATION",
        default_value = "10m",
        value_parser = parse::duration
    )]
    pub jwt_jwks_max_age: Duration,

    /// Accept only tokens whose aud claim holds this audience (unchecked unless given)
    #[arg(long, env = "HEARTWIRE_JWT_AUDIENCE", value_name = "AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// Accept only tokens whose iss claim is this issuer (unchecked unless given)
    #[arg(long, env = "HEARTWIRE_JWT_ISSUER", value_name = "ISSUER")]
    pub jwt_issuer: Option<String>,

    /// Connect hook: for each upgrade that no JWT key identifies, POST the request's
    /// path, query and address, with its Cookie, Authorization, Origin, User-Agent and
    /// X-Forwarded-For headers, to this URL; the app answers who the user is
    /// (docs/SECURITY.md)
    #[arg(
        long,
        env = "HEARTWIRE_AUTH_URL",
        value_name = "URL",
        hide_env_values = true,
        hide_default_value = true
    )]
    pub auth_url: Option<Secret>,

    /// Refuse with close 1013 (try again later) a connection whose hook has not
    /// answered within this time
    #[arg(
        long,
        env = "HEARTWIRE_AUTH_TIMEOUT",
        value_name = "DURATION",
        default_value = "2s",
        value_parser = parse::duration
    )]
    pub auth_timeout: Duration,

    /// The cookie that holds the session key of a web framework (Django's sessionid),
    /// kept as the connection's session
    #[arg(
        long,
        env = "HEARTWIRE_SESSION_COOKIE",
        value_name = "NAME",
        default_value = "sessionid"
    )]
    pub session_cookie: String,

    /// Close a connection this long after its token expired, with close 4498, unless
    /// it sent a fresh token with refresh
    #[arg(
        long,
        env = "HEARTWIRE_TOKEN_GRACE",
        value_name = "DURATION",
        default_value = "25s",
        value_parser = parse::duration
    )]
    pub token_grace: Duration,

    /// Let connections without credentials in (true or false). Unless given, they
    /// are let in when no JWT key and no hook are configured, and refused with close
    /// 4401 otherwise
    #[arg(
        long,
        env = "HEARTWIRE_ALLOW_ANONYMOUS",
        value_name = "BOOL",
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub allow_anonymous: Option<bool>,
}

impl Default for Access {
    fn default() -> Self {
        declared_defaults()
    }
}

impl Access {
    /// Whether tokens are verified: some JWT key is configured.
    pub fn verifies_tokens(&self) -> bool {
        self.jwt_secret.is_some()
            || self.jwt_secret_file.is_some()
            || self.jwt_public_key.is_some()
            || self.jwt_jwks_url.is_some()
    }

    /// Whether connections without credentials are let in.
    pub fn anonymous_allowed(&self) -> bool {
        self.allow_anonymous
            .unwrap_or(!self.verifies_tokens() && self.auth_url.is_none())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anonymous_is_the_default_only_without_credentials() {
        assert!(Access::default().anonymous_allowed());
        let jwt = Access {
            jwt_secret: Some("s".into()),
            ..Access::default()
        };
        assert!(!jwt.anonymous_allowed());
        let hook = Access {
            auth_url: Some("http://127.0.0.1:1/auth".into()),
            ..Access::default()
        };
        assert!(!hook.anonymous_allowed());
        let opened = Access {
            allow_anonymous: Some(true),
            ..jwt
        };
        assert!(opened.anonymous_allowed());
        let closed = Access {
            allow_anonymous: Some(false),
            ..Access::default()
        };
        assert!(!closed.anonymous_allowed());
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let access = Access {
            jwt_secret: Some("hunter2".into()),
            auth_url: Some("http://user:pw@127.0.0.1/auth".into()),
            ..Access::default()
        };
        let shown = format!("{access:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("pw@"),
            "{shown}"
        );
    }
}
