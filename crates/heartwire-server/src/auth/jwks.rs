//! The keys of a JWKS URL, cached by `kid`.
//!
//! A token whose `kid` the cache lacks makes the set be fetched again, at most once
//! per `--jwt-jwks-refetch` whatever the number of such tokens, so that a key rotated
//! in at the issuer is picked up without a restart while a flood of made-up `kid`s
//! costs the issuer one request per interval. Keys older than `--jwt-jwks-max-age`
//! are fetched again in the background, so keys removed from the set stop working.
//! One fetch runs at a time; it is bounded in time ([`FETCH_TIMEOUT`]) and size
//! ([`MAX_BODY`]).
//!
//! The decision (use a key, fetch, or refuse) is [`Cache::lookup`], which reads no
//! clock.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use parking_lot::Mutex;

use super::refusal::Refusal;
use super::token::VerifyingKey;
use crate::Error;

/// How long one fetch of the set may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest set accepted, in bytes.
const MAX_BODY: usize = 256 * 1024;
/// How long a client refused because the set could not be fetched is asked to wait.
const RETRY_AFTER_FETCH_FAILURE: Duration = Duration::from_secs(5);

/// The keys of one set, and when it was fetched.
#[derive(Default)]
pub(crate) struct Cache {
    keys: HashMap<String, Arc<VerifyingKey>>,
    /// Keys without a `kid`, usable only by tokens without one when the set holds a
    /// single key.
    unnamed: Vec<Arc<VerifyingKey>>,
    fetched_at: Option<Instant>,
    attempted_at: Option<Instant>,
    /// The last fetch failed: a key the cache lacks may exist.
    failed: bool,
}

/// What to do with a token's `kid` at some instant.
#[derive(Debug)]
pub(crate) enum Lookup {
    /// Verify with this key; `refresh` when the set should be fetched again in the
    /// background.
    Key {
        key: Arc<VerifyingKey>,
        refresh: bool,
    },
    /// Fetch the set, then look again.
    Fetch,
    /// No such key, and the set was fetched too recently to try again;
    /// `fetch_failed` when that fetch failed (the key may exist after all).
    Unknown { fetch_failed: bool },
}

impl std::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("algorithms", &self.algorithms)
            .finish_non_exhaustive()
    }
}

impl Cache {
    /// What to do for a token with `kid` at `now`, given the two intervals.
    pub(crate) fn lookup(
        &self,
        kid: Option<&str>,
        now: Instant,
        refetch: Duration,
        max_age: Duration,
    ) -> Lookup {
        let may_fetch = self
            .attempted_at
            .is_none_or(|attempted| now.saturating_duration_since(attempted) >= refetch);
        let key = match kid {
            Some(kid) => self.keys.get(kid).cloned(),
            None => match (self.keys.len(), self.unnamed.as_slice()) {
                (0, [only]) => Some(only.clone()),
                (1, []) => self.keys.values().next().cloned(),
                _ => None,
            },
        };
        match key {
            Some(key) => {
                let stale = self
                    .fetched_at
                    .is_some_and(|fetched| now.saturating_duration_since(fetched) >= max_age);
                Lookup::Key {
                    key,
                    refresh: stale && may_fetch,
                }
            }
            None if may_fetch => Lookup::Fetch,
            None => Lookup::Unknown {
                fetch_failed: self.failed,
            },
        }
    }

    /// A fetch started at `now`.
    pub(crate) fn attempt(&mut self, now: Instant) {
        self.attempted_at = Some(now);
    }

    /// The fetch failed.
    pub(crate) fn fail(&mut self) {
        self.failed = true;
    }

    /// The set fetched at `now` replaces the keys.
    pub(crate) fn replace(&mut self, set: &JwkSet, now: Instant) {
        self.keys.clear();
        self.unnamed.clear();
        for jwk in &set.keys {
            if matches!(
                jwk.common.public_key_use,
                Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
            ) {
                continue;
            }
            // A symmetric key in a published set would let anyone sign.
            if matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_)) {
                continue;
            }
            let Ok(key) = DecodingKey::from_jwk(jwk) else {
                continue;
            };
            let alg = match jwk.common.key_algorithm {
                None => None,
                Some(alg) => match algorithm(alg) {
                    Some(alg) if key.family().algorithms().contains(&alg) => Some(alg),
                    _ => continue,
                },
            };
            let key = Arc::new(VerifyingKey::new(key, alg));
            match &jwk.common.key_id {
                Some(kid) => {
                    self.keys.insert(kid.clone(), key);
                }
                None => self.unnamed.push(key),
            }
        }
        self.fetched_at = Some(now);
        self.failed = false;
    }
}

/// The signing algorithm a JWK names, if it is one.
fn algorithm(alg: KeyAlgorithm) -> Option<Algorithm> {
    alg.to_string().parse().ok()
}

/// A JWKS URL and its cache. See the [module docs](self).
pub(crate) struct Jwks {
    url: reqwest::Url,
    client: reqwest::Client,
    refetch: Duration,
    max_age: Duration,
    cache: Mutex<Cache>,
    /// Held while a fetch runs, so that one runs at a time.
    fetching: tokio::sync::Mutex<()>,
}

impl Jwks {
    pub(crate) fn new(url: &str, refetch: Duration, max_age: Duration) -> Result<Self, Error> {
        let url = reqwest::Url::parse(url)
            .ok()
            .filter(|url| matches!(url.scheme(), "http" | "https"))
            .ok_or_else(|| {
                Error::Config(format!(
                    "--jwt-jwks-url {url:?} is not an http or https URL"
                ))
            })?;
        Ok(Self {
            url,
            client: super::http_client(FETCH_TIMEOUT, true)?,
            refetch,
            max_age,
            cache: Mutex::default(),
            fetching: tokio::sync::Mutex::new(()),
        })
    }

    /// The key for a token with `kid`, fetching the set when the cache lacks it and
    /// may fetch.
    pub(crate) async fn key(
        self: &Arc<Self>,
        kid: Option<&str>,
    ) -> Result<Arc<VerifyingKey>, Refusal> {
        match self.lookup(kid) {
            Lookup::Key { key, refresh } => {
                if refresh {
                    let jwks = Arc::clone(self);
                    tokio::spawn(async move {
                        let _ = jwks.fetch_if_due().await;
                    });
                }
                return Ok(key);
            }
            Lookup::Unknown { fetch_failed } => return Err(unknown(kid, fetch_failed)),
            Lookup::Fetch => {}
        }
        let _ = self.fetch_if_due().await;
        match self.lookup(kid) {
            Lookup::Key { key, .. } => Ok(key),
            Lookup::Unknown { fetch_failed } => Err(unknown(kid, fetch_failed)),
            // Fetched by another task just as this one looked: it is as if unknown.
            Lookup::Fetch => Err(unknown(kid, false)),
        }
    }

    fn lookup(&self, kid: Option<&str>) -> Lookup {
        self.cache
            .lock()
            .lookup(kid, Instant::now(), self.refetch, self.max_age)
    }

    /// Fetches the set unless another fetch ran within the refetch interval (the one
    /// this call waited for, say). Errors are logged and returned as a sentence.
    pub(crate) async fn fetch_if_due(&self) -> Result<(), String> {
        let _one_at_a_time = self.fetching.lock().await;
        {
            let mut cache = self.cache.lock();
            let now = Instant::now();
            if cache
                .attempted_at
                .is_some_and(|attempted| now.saturating_duration_since(attempted) < self.refetch)
            {
                return Ok(());
            }
            cache.attempt(now);
        }
        match self.fetch().await {
            Ok(set) => {
                let mut cache = self.cache.lock();
                cache.replace(&set, Instant::now());
                tracing::info!(
                    keys = cache.keys.len() + cache.unnamed.len(),
                    "JWKS fetched"
                );
                Ok(())
            }
            Err(reason) => {
                self.cache.lock().fail();
                tracing::warn!(%reason, "cannot fetch the JWKS");
                Err(reason)
            }
        }
    }

    async fn fetch(&self) -> Result<JwkSet, String> {
        let mut response = self
            .client
            .get(self.url.clone())
            .send()
            .await
            .map_err(|err| format!("cannot fetch the JWKS: {}", err.without_url()))?;
        if !response.status().is_success() {
            return Err(format!(
                "the JWKS URL answered HTTP {}",
                response.status().as_u16()
            ));
        }
        let body = super::read_bounded(&mut response, MAX_BODY)
            .await
            .map_err(|err| format!("cannot read the JWKS: {err}"))?;
        serde_json::from_slice(&body).map_err(|err| format!("the JWKS is not a JWK set: {err}"))
    }
}

/// The refusal of a token whose key is not in the set: final, unless the set could
/// not be fetched, when the key may be there after all.
fn unknown(kid: Option<&str>, fetch_failed: bool) -> Refusal {
    if fetch_failed {
        return Refusal::Unavailable {
            reason: "the server cannot fetch its JWKS".into(),
            retry_after: RETRY_AFTER_FETCH_FAILURE,
        };
    }
    Refusal::Unauthorized(match kid {
        Some(kid) => format!("no key with the token's kid {kid:?} in the JWKS"),
        None => "the token has no kid, and the JWKS holds more than one key".into(),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const REFETCH: Duration = Duration::from_secs(30);
    const MAX_AGE: Duration = Duration::from_secs(600);

    /// A set of Ed25519 keys (the public point of RFC 8037's example), by kid.
    fn set(kids: &[&str]) -> JwkSet {
        let keys: Vec<_> = kids
            .iter()
            .map(|kid| {
                json!({
                    "kty": "OKP", "crv": "Ed25519", "kid": kid, "alg": "EdDSA",
                    "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
                })
            })
            .collect();
        serde_json::from_value(json!({ "keys": keys })).unwrap()
    }

    fn found(lookup: &Lookup) -> Option<bool> {
        match lookup {
            Lookup::Key { refresh, .. } => Some(*refresh),
            Lookup::Fetch | Lookup::Unknown { .. } => None,
        }
    }

    #[test]
    fn an_unknown_kid_fetches_at_most_once_per_interval() {
        let t0 = Instant::now();
        let mut cache = Cache::default();
        assert!(matches!(
            cache.lookup(Some("a"), t0, REFETCH, MAX_AGE),
            Lookup::Fetch
        ));
        cache.attempt(t0);
        cache.replace(&set(&["a"]), t0);
        assert_eq!(
            found(&cache.lookup(Some("a"), t0, REFETCH, MAX_AGE)),
            Some(false)
        );
        // A kid the set lacks: no second fetch within the interval…
        let soon = t0 + REFETCH - Duration::from_millis(1);
        assert!(matches!(
            cache.lookup(Some("b"), soon, REFETCH, MAX_AGE),
            Lookup::Unknown {
                fetch_failed: false
            }
        ));
        // …and one once it has passed.
        let later = t0 + REFETCH;
        assert!(matches!(
            cache.lookup(Some("b"), later, REFETCH, MAX_AGE),
            Lookup::Fetch
        ));
        cache.attempt(later);
        cache.replace(&set(&["b"]), later);
        assert_eq!(
            found(&cache.lookup(Some("b"), later, REFETCH, MAX_AGE)),
            Some(false)
        );
        // The rotated-out key is gone.
        assert!(matches!(
            cache.lookup(Some("a"), later, REFETCH, MAX_AGE),
            Lookup::Unknown {
                fetch_failed: false
            }
        ));
    }

    #[test]
    fn a_failed_fetch_also_waits_for_the_interval() {
        let t0 = Instant::now();
        let mut cache = Cache::default();
        cache.attempt(t0);
        cache.fail();
        assert!(matches!(
            cache.lookup(Some("a"), t0 + Duration::from_secs(1), REFETCH, MAX_AGE),
            Lookup::Unknown { fetch_failed: true }
        ));
        assert!(matches!(
            cache.lookup(Some("a"), t0 + REFETCH, REFETCH, MAX_AGE),
            Lookup::Fetch
        ));
    }

    #[test]
    fn old_keys_are_used_while_a_refresh_is_asked_for() {
        let t0 = Instant::now();
        let mut cache = Cache::default();
        cache.attempt(t0);
        cache.replace(&set(&["a"]), t0);
        assert_eq!(
            found(&cache.lookup(Some("a"), t0 + MAX_AGE, REFETCH, MAX_AGE)),
            Some(true)
        );
        cache.attempt(t0 + MAX_AGE);
        let just_after = t0 + MAX_AGE + Duration::from_secs(1);
        assert_eq!(
            found(&cache.lookup(Some("a"), just_after, REFETCH, MAX_AGE)),
            Some(false)
        );
    }

    #[test]
    fn a_token_without_kid_uses_the_only_key() {
        let t0 = Instant::now();
        let mut cache = Cache::default();
        cache.replace(&set(&["a"]), t0);
        assert_eq!(
            found(&cache.lookup(None, t0, REFETCH, MAX_AGE)),
            Some(false)
        );
        cache.replace(&set(&["a", "b"]), t0);
        assert!(found(&cache.lookup(None, t0, REFETCH, MAX_AGE)).is_none());
    }

    #[test]
    fn symmetric_and_encryption_keys_are_left_out() {
        let set: JwkSet = serde_json::from_value(json!({"keys": [
            {"kty": "oct", "kid": "h", "k": "c2VjcmV0"},
            {"kty": "OKP", "crv": "Ed25519", "kid": "e", "use": "enc",
             "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
            {"kty": "OKP", "crv": "Ed25519", "kid": "wrong-alg", "alg": "RS256",
             "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
        ]}))
        .unwrap();
        let mut cache = Cache::default();
        cache.replace(&set, Instant::now());
        assert!(cache.keys.is_empty() && cache.unnamed.is_empty());
    }
}
