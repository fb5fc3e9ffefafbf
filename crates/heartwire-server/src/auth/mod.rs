//! Who a connection is: the [`Identity`] decided in the HTTP handler before the
//! upgrade, and carried by the connection for as long as it lives.
//!
//! Before each upgrade ([`Caller`], then [`Auth::identify`]):
//! 1. the `Origin` is checked (`origin`): a page of a foreign origin is refused with
//!    HTTP 403 and a sentence naming the option that allows it;
//! 2. a token (the `token` query parameter, else `Authorization: Bearer`) is
//!    verified when a JWT key is configured (`token`, with `jwks` for a JWKS URL);
//! 3. otherwise the connect hook, when configured, says who the caller is (`hook`);
//! 4. otherwise the caller is anonymous, which `--allow-anonymous` allows or not.
//!
//! A refusal of credentials ([`Refusal`]) is sent as the only frame after the 101, a
//! close frame whose code tells clients whether to stop (4401, 4403), fetch a fresh
//! token (4498) or back off (1013). While a connection lives, `expiry` decides when
//! its token has run out and what a `refresh` changes.

mod caller;
pub(crate) mod expiry;
mod hook;
mod jwks;
pub(crate) mod origin;
mod refusal;
mod signature;
mod token;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub(crate) use caller::Caller;
pub use refusal::Refusal;
pub use token::Verified;

use crate::Error;
use crate::config::Access;
use crate::mailbox::{Mailbox, Outbound};
use hook::ConnectHook;
use origin::OriginPolicy;
use token::TokenVerifier;

/// The identity of a connection that was identified.
///
/// An anonymous connection carries none (`Option<Box<Identity>>` is one word), so
/// identifying costs nothing to connections that are not identified.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Identity {
    /// The user: the JWT's `sub`, or the connect hook's `user`.
    pub user: String,
    /// The user's groups: the JWT's `groups`, or the connect hook's `groups`.
    pub groups: Vec<String>,
    /// The value of the session cookie (`--session-cookie`), when the request had one.
    pub session_key: Option<String>,
    /// When the identity stops being valid unless refreshed.
    pub expires_at: Option<SystemTime>,
    /// Channel patterns this identity may use beyond the rules (the JWT's `channels`).
    pub channels: Vec<String>,
}

/// The server's policy of who may connect, built once from [`Access`].
pub(crate) struct Auth {
    origins: OriginPolicy,
    tokens: Option<TokenVerifier>,
    hook: Option<ConnectHook>,
    anonymous: bool,
    session_cookie: String,
}

impl Auth {
    /// Reads the keys and builds the clients the configuration asks for.
    pub(crate) fn new(access: &Access) -> Result<Self, Error> {
        let hook = access
            .auth_url
            .as_ref()
            .map(|url| ConnectHook::new(url.expose(), access.auth_timeout))
            .transpose()?;
        Ok(Self {
            origins: OriginPolicy::new(&access.allowed_origins).map_err(Error::Config)?,
            tokens: TokenVerifier::from_config(access)?,
            hook,
            anonymous: access.anonymous_allowed(),
            session_cookie: access.session_cookie.clone(),
        })
    }

    /// Fetches the JWKS once, when there is one, so that a wrong URL shows in the
    /// log at start. A failure is not fatal: the issuer may come up later.
    pub(crate) async fn prefetch(&self) {
        if let Some(jwks) = self.tokens.as_ref().and_then(TokenVerifier::jwks) {
            let _ = jwks.fetch_if_due().await;
        }
    }

    /// Decides who `caller` is at `now`: `None` for an anonymous caller the policy
    /// lets in.
    pub(crate) async fn identify(
        &self,
        caller: Caller,
        now: SystemTime,
    ) -> Result<Option<Box<Identity>>, Refusal> {
        let Caller {
            token,
            session_key,
            hook,
        } = caller;
        if let (Some(token), Some(tokens)) = (token.as_deref(), &self.tokens) {
            let mut identity = tokens.verify(token, now).await?.identity;
            identity.session_key = session_key;
            return Ok(Some(Box::new(identity)));
        }
        if let (Some(request), Some(connect_hook)) = (hook, &self.hook) {
            if let Some(found) = connect_hook.identify(&request, now).await? {
                return Ok(Some(Box::new(Identity {
                    user: found.user,
                    groups: found.groups,
                    session_key,
                    expires_at: found.expires_at,
                    channels: Vec::new(),
                })));
            }
            return self.anonymous("not signed in: the application knows no user for this request");
        }
        self.anonymous(
            "this server needs a token: pass it as the token query parameter or an Authorization: Bearer header",
        )
    }

    fn anonymous(&self, refusal: &str) -> Result<Option<Box<Identity>>, Refusal> {
        if self.anonymous {
            Ok(None)
        } else {
            Err(Refusal::Unauthorized(refusal.to_owned()))
        }
    }

    /// Verifies the token of a `refresh` at `now`.
    pub(crate) async fn verify_refresh(
        &self,
        token: &str,
        now: SystemTime,
    ) -> Result<Verified, Refusal> {
        match &self.tokens {
            Some(tokens) => tokens.verify(token, now).await,
            None => Err(Refusal::Unauthorized(
                "this server verifies no tokens; reconnect to renew the session".into(),
            )),
        }
    }
}

/// Verifies a `refresh`'s `token` in a task of its own (a JWKS may have to be
/// fetched) and delivers the outcome to the connection's mailbox.
pub(crate) fn start_refresh(
    server: Arc<crate::state::ServerState>,
    token: String,
    mailbox: Arc<Mailbox>,
) {
    tokio::spawn(async move {
        let outcome = server.auth.verify_refresh(&token, SystemTime::now()).await;
        mailbox.deliver(Outbound::Refreshed(Box::new(outcome)));
    });
}

/// An HTTP client with a bounded time per request. A `public` one (the JWKS of an
/// identity provider) follows a few redirects and the proxy of the environment
/// (`HTTPS_PROXY`); the hook's, an application's own service, does neither.
fn http_client(timeout: Duration, public: bool) -> Result<reqwest::Client, Error> {
    let mut builder = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(concat!("heartwire/", env!("CARGO_PKG_VERSION")));
    builder = if public {
        builder.redirect(reqwest::redirect::Policy::limited(3))
    } else {
        builder
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
    };
    builder
        .build()
        .map_err(|err| Error::Config(format!("cannot build an HTTP client: {err}")))
}

/// The body of `response`, refused past `limit` bytes.
async fn read_bounded(response: &mut reqwest::Response, limit: usize) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|err| err.without_url().to_string())?
    {
        if body.len() + chunk.len() > limit {
            return Err(format!("the body is larger than {limit} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
