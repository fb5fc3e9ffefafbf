//! The API key: read once at start, compared in constant time.
//!
//! The key and the presented value are both hashed with SHA-256 and the digests
//! compared with `subtle`, so neither the bytes nor the length of the key leak
//! through the time a refusal takes.

use std::path::Path;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::Error;
use crate::config::ApiAccess;

/// The configured key, kept only as its digest.
#[derive(Clone)]
pub(crate) struct ApiKey {
    digest: [u8; 32],
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(hidden)")
    }
}

impl ApiKey {
    /// The key of `--api-key` or `--api-key-file`; `None` when neither is given
    /// (the API and the admin page are then off). An empty `--api-key` counts as
    /// not given.
    pub(crate) fn from_config(api: &ApiAccess) -> Result<Option<Self>, Error> {
        let given = api.api_key.as_ref().filter(|key| !key.expose().is_empty());
        let key = match (given, &api.api_key_file) {
            (Some(_), Some(_)) => {
                return Err(Error::Config(
                    "give --api-key or --api-key-file, not both".into(),
                ));
            }
            (Some(key), None) => key.expose().as_bytes().to_vec(),
            (None, Some(path)) => read(path)?,
            (None, None) => return Ok(None),
        };
        if key.len() < 16 {
            return Err(Error::Config(
                "the API key must be at least 16 bytes long".into(),
            ));
        }
        Ok(Some(Self {
            digest: Sha256::digest(&key).into(),
        }))
    }

    /// Whether `presented` is the key.
    pub(crate) fn matches(&self, presented: &[u8]) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented).into();
        digest.ct_eq(&self.digest).into()
    }
}

fn read(path: &Path) -> Result<Vec<u8>, Error> {
    let mut text = std::fs::read(path).map_err(|source| {
        Error::Config(format!(
            "--api-key-file {}: cannot read it: {source}",
            path.display()
        ))
    })?;
    for end in [b'\n', b'\r'] {
        if text.last() == Some(&end) {
            text.pop();
        }
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn access(key: &str) -> ApiAccess {
        ApiAccess {
            api_key: Some(Secret::from(key)),
            api_key_file: None,
        }
    }

    #[test]
    fn only_the_key_itself_matches() {
        let key = ApiKey::from_config(&access("0123456789abcdef"))
            .unwrap()
            .unwrap();
        assert!(key.matches(b"0123456789abcdef"));
        assert!(!key.matches(b"0123456789abcdeF"));
        assert!(!key.matches(b"0123456789abcdef0"));
        assert!(!key.matches(b""));
        assert_eq!(format!("{key:?}"), "ApiKey(hidden)");
    }

    #[test]
    fn no_key_is_off_and_a_short_key_is_refused() {
        assert!(
            ApiKey::from_config(&ApiAccess::default())
                .unwrap()
                .is_none()
        );
        let err = ApiKey::from_config(&access("short")).unwrap_err();
        assert!(err.to_string().contains("at least 16 bytes"), "{err}");
    }

    #[test]
    fn a_key_file_loses_its_final_newline() {
        let path = std::env::temp_dir().join(format!("heartwire-api-key-{}", std::process::id()));
        std::fs::write(&path, "0123456789abcdef\r\n").unwrap();
        let key = ApiKey::from_config(&ApiAccess {
            api_key: None,
            api_key_file: Some(path.clone()),
        })
        .unwrap()
        .unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(key.matches(b"0123456789abcdef"));
    }
}
