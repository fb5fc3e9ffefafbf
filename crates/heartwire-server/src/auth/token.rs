//! JWT verification: the key (an HMAC secret, a PEM public key, or a JWKS), the
//! optional `aud` and `iss` checks, and the claims that make an [`Identity`].
//!
//! `jsonwebtoken` checks the signature, the algorithm against the key's family, and
//! `aud`/`iss`; `exp` and `nbf` are checked here against an explicit `now`, so that an
//! expired token is told apart (close 4498: fetch a fresh one) from an invalid one
//! (close 4401: final), and so that the rule is tested on synthetic time.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Validation};
use serde::Deserialize;

use super::Identity;
use super::jwks::Jwks;
use super::refusal::Refusal;
use crate::Error;
use crate::config::Access;

/// A key and the algorithms it verifies.
pub(crate) struct VerifyingKey {
    pub(crate) key: DecodingKey,
    pub(crate) algorithms: Vec<Algorithm>,
}

impl VerifyingKey {
    /// The algorithms of the key's family, or only `alg` when the key names one.
    pub(crate) fn new(key: DecodingKey, alg: Option<Algorithm>) -> Self {
        let algorithms = match alg {
            Some(alg) => vec![alg],
            None => key.family().algorithms().to_vec(),
        };
        Self { key, algorithms }
    }
}

/// Verifies tokens. See the [module docs](self).
pub(crate) struct TokenVerifier {
    /// The keys given by file or value: secrets, a public key.
    fixed: Vec<Arc<VerifyingKey>>,
    /// The keys of a JWKS URL, by `kid`.
    jwks: Option<Arc<Jwks>>,
    audience: Option<String>,
    issuer: Option<String>,
}

/// A token's user, with when the token expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Who the token is for.
    pub identity: Identity,
}

/// The claims heartwire reads. Others are ignored.
#[derive(Deserialize)]
struct Claims {
    /// Required; optional here so that its absence is named as such.
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    exp: Option<f64>,
    #[serde(default)]
    nbf: Option<f64>,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    channels: Vec<String>,
}

impl TokenVerifier {
    /// The verifier of the configured keys, `None` when no key is configured.
    pub(crate) fn from_config(access: &Access) -> Result<Option<Self>, Error> {
        super::signature::install();
        let mut fixed = Vec::new();
        if let Some(secret) = &access.jwt_secret {
            fixed.push(hmac(secret.expose().as_bytes(), "--jwt-secret")?);
        }
        if let Some(path) = &access.jwt_secret_file {
            let text = read("--jwt-secret-file", path)?;
            let secret = text.strip_suffix(b"\n").unwrap_or(&text);
            let secret = secret.strip_suffix(b"\r").unwrap_or(secret);
            fixed.push(hmac(secret, "--jwt-secret-file")?);
        }
        if let Some(path) = &access.jwt_public_key {
            let key = public_key(&read("--jwt-public-key", path)?).ok_or_else(|| {
                Error::Config(format!(
                    "--jwt-public-key {}: not a PEM RSA, EC (P-256, P-384) or Ed25519 public key or certificate",
                    path.display()
                ))
            })?;
            fixed.push(Arc::new(key));
        }
        let jwks = access
            .jwt_jwks_url
            .as_deref()
            .map(|url| Jwks::new(url, access.jwt_jwks_refetch, access.jwt_jwks_max_age))
            .transpose()?
            .map(Arc::new);
        if fixed.is_empty() && jwks.is_none() {
            return Ok(None);
        }
        Ok(Some(Self {
            fixed,
            jwks,
            audience: access.jwt_audience.clone(),
            issuer: access.jwt_issuer.clone(),
        }))
    }

    /// The JWKS, when the keys come from one.
    pub(crate) fn jwks(&self) -> Option<&Jwks> {
        self.jwks.as_deref()
    }

    /// Verifies `token` at `now`: its signature, `aud`, `iss`, `nbf` and `exp`.
    ///
    /// The keys tried are those of the token's algorithm: the secrets for HS*, the
    /// public key of the same family, and the JWKS's key of the token's `kid` (or of
    /// a token without `kid` when no other key fits). The first whose signature
    /// verifies decides.
    pub(crate) async fn verify(&self, token: &str, now: SystemTime) -> Result<Verified, Refusal> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| not_a_jwt())?;
        let mut candidates: Vec<Arc<VerifyingKey>> = self
            .fixed
            .iter()
            .filter(|key| key.algorithms.contains(&header.alg))
            .cloned()
            .collect();
        let asymmetric = !AlgorithmFamily::Hmac.algorithms().contains(&header.alg);
        if let Some(jwks) = self.jwks.as_ref().filter(|_| asymmetric) {
            if header.kid.is_some() || candidates.is_empty() {
                candidates.push(jwks.key(header.kid.as_deref()).await?);
            }
        }
        let mut outcome = Err(Refusal::Unauthorized(format!(
            "the token is signed with {:?}, which none of the server's keys verifies",
            header.alg
        )));
        for key in candidates {
            outcome = self.verify_with(&key, token, now);
            if !matches!(&outcome, Err(Refusal::Unauthorized(reason)) if reason == BAD_SIGNATURE) {
                break;
            }
        }
        outcome
    }

    /// Verifies `token` with `key` at `now`.
    fn verify_with(
        &self,
        key: &VerifyingKey,
        token: &str,
        now: SystemTime,
    ) -> Result<Verified, Refusal> {
        let mut validation = Validation::new(key.algorithms[0]);
        validation.algorithms = key.algorithms.clone();
        validation.set_required_spec_claims(&["sub"]);
        // Checked below against `now`.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.leeway = 0;
        match &self.audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                validation.required_spec_claims.insert("aud".into());
            }
            None => validation.validate_aud = false,
        }
        if let Some(issuer) = &self.issuer {
            validation.set_issuer(&[issuer]);
            validation.required_spec_claims.insert("iss".into());
        }
        let claims = jsonwebtoken::decode::<Claims>(token, &key.key, &validation)
            .map_err(|err| self.explain(err.kind(), token))?
            .claims;
        let seconds = now
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        if claims.nbf.is_some_and(|nbf| nbf > seconds) {
            return Err(Refusal::Unauthorized(
                "the token is not valid yet (its nbf is in the future)".into(),
            ));
        }
        let expires_at = claims.exp.map(|exp| {
            UNIX_EPOCH + Duration::try_from_secs_f64(exp.max(0.0)).unwrap_or(Duration::MAX / 2)
        });
        if expires_at.is_some_and(|expires_at| expires_at <= now) {
            return Err(Refusal::Expired(
                "token expired; connect again with a fresh token".into(),
            ));
        }
        let user = claims
            .sub
            .filter(|sub| !sub.is_empty())
            .ok_or_else(|| Refusal::Unauthorized("the token's sub is empty".into()))?;
        Ok(Verified {
            identity: Identity {
                user,
                groups: claims.groups,
                session_key: None,
                expires_at,
                channels: claims.channels,
            },
        })
    }

    /// The sentence for a token `jsonwebtoken` refused.
    fn explain(&self, kind: &ErrorKind, token: &str) -> Refusal {
        let reason = match kind {
            ErrorKind::InvalidSignature => BAD_SIGNATURE.to_owned(),
            ErrorKind::InvalidAudience => format!(
                "the token's aud is not {}",
                self.audience.as_deref().unwrap_or("the expected audience")
            ),
            ErrorKind::InvalidIssuer => format!(
                "the token's iss is not {}",
                self.issuer.as_deref().unwrap_or("the expected issuer")
            ),
            ErrorKind::MissingRequiredClaim(claim) => format!("the token has no {claim} claim"),
            ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => {
                let alg = jsonwebtoken::decode_header(token)
                    .map(|header| format!("{:?}", header.alg))
                    .unwrap_or_else(|_| "an unknown algorithm".into());
                format!("the token is signed with {alg}, which the server's key does not verify")
            }
            ErrorKind::InvalidClaimFormat(claim) => {
                format!("the token's {claim} claim is malformed")
            }
            ErrorKind::Json(_) => {
                "the token's claims are malformed (sub must be a string, groups a list of strings)"
                    .to_owned()
            }
            _ => return not_a_jwt(),
        };
        Refusal::Unauthorized(reason)
    }
}

/// The reason of a token whose signature no key verifies.
const BAD_SIGNATURE: &str = "the token's signature does not verify";

/// Reads the key file of `option`.
fn read(option: &str, path: &std::path::Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|err| {
        Error::Config(format!(
            "{option} {}: cannot read it: {err}",
            path.display()
        ))
    })
}

fn not_a_jwt() -> Refusal {
    Refusal::Unauthorized("the token is not a JWT".into())
}

/// An HMAC key, refusing an empty secret.
fn hmac(secret: &[u8], option: &str) -> Result<Arc<VerifyingKey>, Error> {
    if secret.is_empty() {
        return Err(Error::Config(format!("{option} is empty")));
    }
    Ok(Arc::new(VerifyingKey::new(
        DecodingKey::from_secret(secret),
        None,
    )))
}

/// A PEM public key or certificate of any family but HMAC.
fn public_key(pem: &[u8]) -> Option<VerifyingKey> {
    let key = DecodingKey::from_rsa_pem(pem)
        .or_else(|_| DecodingKey::from_ec_pem(pem))
        .or_else(|_| DecodingKey::from_ed_pem(pem))
        .ok()?;
    Some(VerifyingKey::new(key, None))
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;

    use super::*;

    const SECRET: &str = "a secret of the tests";

    fn verifier(audience: Option<&str>, issuer: Option<&str>) -> TokenVerifier {
        TokenVerifier {
            fixed: vec![hmac(SECRET.as_bytes(), "--jwt-secret").unwrap()],
            jwks: None,
            audience: audience.map(Into::into),
            issuer: issuer.map(Into::into),
        }
    }

    fn token(claims: serde_json::Value) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    }

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    fn key(verifier: &TokenVerifier) -> Arc<VerifyingKey> {
        verifier.fixed[0].clone()
    }

    fn check(verifier: &TokenVerifier, token: &str, now: SystemTime) -> Result<Verified, Refusal> {
        verifier.verify_with(&key(verifier), token, now)
    }

    #[test]
    fn expiry_is_judged_at_the_given_time() {
        let verifier = verifier(None, None);
        let token = token(json!({"sub": "ada", "exp": 1000, "groups": ["staff"]}));
        let verified = check(&verifier, &token, at(999)).unwrap();
        assert_eq!(verified.identity.user, "ada");
        assert_eq!(verified.identity.groups, ["staff"]);
        assert_eq!(verified.identity.expires_at, Some(at(1000)));
        assert!(matches!(
            check(&verifier, &token, at(1000)),
            Err(Refusal::Expired(_))
        ));
        let forever = self::token(json!({"sub": "ada"}));
        assert_eq!(
            check(&verifier, &forever, at(u32::MAX.into()))
                .unwrap()
                .identity
                .expires_at,
            None
        );
    }

    #[test]
    fn not_before_is_judged_at_the_given_time() {
        let verifier = verifier(None, None);
        let token = token(json!({"sub": "ada", "nbf": 500}));
        assert!(matches!(
            check(&verifier, &token, at(499)),
            Err(Refusal::Unauthorized(_))
        ));
        assert!(check(&verifier, &token, at(500)).is_ok());
    }

    #[test]
    fn audience_and_issuer_are_checked_only_when_configured() {
        let token = token(json!({"sub": "ada", "aud": "chat", "iss": "idp"}));
        assert!(check(&verifier(None, None), &token, at(0)).is_ok());
        assert!(check(&verifier(Some("chat"), Some("idp")), &token, at(0)).is_ok());
        let Err(Refusal::Unauthorized(reason)) =
            check(&verifier(Some("news"), None), &token, at(0))
        else {
            panic!("a wrong aud passed")
        };
        assert_eq!(reason, "the token's aud is not news");
        let Err(Refusal::Unauthorized(reason)) =
            check(&verifier(None, Some("other")), &token, at(0))
        else {
            panic!("a wrong iss passed")
        };
        assert_eq!(reason, "the token's iss is not other");
        let bare = self::token(json!({"sub": "ada"}));
        let Err(Refusal::Unauthorized(reason)) = check(&verifier(Some("chat"), None), &bare, at(0))
        else {
            panic!("a token without aud passed an audience check")
        };
        assert_eq!(reason, "the token has no aud claim");
    }

    #[tokio::test]
    async fn each_secret_of_the_ring_is_tried() {
        let mut ring = verifier(None, None);
        ring.fixed
            .push(hmac(b"the next secret", "--jwt-secret-file").unwrap());
        let signed = |secret: &[u8]| {
            encode(
                &Header::new(Algorithm::HS512),
                &json!({"sub": "ada"}),
                &EncodingKey::from_secret(secret),
            )
            .unwrap()
        };
        for secret in [SECRET.as_bytes(), b"the next secret"] {
            let verified = ring.verify(&signed(secret), at(0)).await.unwrap();
            assert_eq!(verified.identity.user, "ada");
        }
        match ring.verify(&signed(b"a third secret"), at(0)).await {
            Err(Refusal::Unauthorized(reason)) => assert_eq!(reason, BAD_SIGNATURE),
            other => panic!("{other:?}"),
        }
        // A token of an algorithm no key has (an RS256 header on an HMAC ring).
        // {"alg":"RS256","typ":"JWT"} . {"sub":"ada"} . a signature
        let forged = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhZGEifQ.c2ln";
        match ring.verify(forged, at(0)).await {
            Err(Refusal::Unauthorized(reason)) => assert_eq!(
                reason,
                "the token is signed with RS256, which none of the server's keys verifies"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_tokens_are_unauthorized_with_a_reason() {
        let verifier = verifier(None, None);
        let forged = encode(
            &Header::new(Algorithm::HS256),
            &json!({"sub": "ada"}),
            &EncodingKey::from_secret(b"another secret"),
        )
        .unwrap();
        for (token, expected) in [
            (forged.as_str(), "the token's signature does not verify"),
            ("not a token", "the token is not a JWT"),
            (
                &self::token(json!({"exp": 5})),
                "the token has no sub claim",
            ),
            (
                &self::token(json!({"sub": 7})),
                "the token's claims are malformed (sub must be a string, groups a list of strings)",
            ),
            (&self::token(json!({"sub": ""})), "the token's sub is empty"),
        ] {
            match check(&verifier, token, at(0)) {
                Err(Refusal::Unauthorized(reason)) => assert_eq!(reason, expected),
                other => panic!("{token}: {other:?}"),
            }
        }
    }
}
