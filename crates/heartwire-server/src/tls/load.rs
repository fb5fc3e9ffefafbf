//! Reading a certificate chain and its private key from PEM files into what rustls
//! serves, with one sentence for each way the pair can be unusable.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why a certificate and key pair cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum TlsFileError {
    /// A file cannot be read.
    #[error("cannot read the TLS {what} file {}: {source}", path.display())]
    Read {
        /// `certificate` or `key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The certificate file holds no PEM certificate, or a broken one.
    #[error("the TLS certificate file {} holds no usable PEM certificate: {reason}", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
        /// What the PEM reader said.
        reason: String,
    },
    /// The key file holds no PEM private key, or one rustls cannot use.
    #[error("the TLS key file {} holds no usable private key (PKCS#8, PKCS#1 or SEC1 PEM): {reason}", path.display())]
    NoKey {
        /// The file.
        path: PathBuf,
        /// What the PEM reader or rustls said.
        reason: String,
    },
    /// The key is not the one the certificate was issued for.
    #[error("the TLS key in {} does not match the certificate in {}", key.display(), cert.display())]
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
}

/// Reads `cert` (a chain, the server's certificate first) and `key`, and checks that
/// they belong together.
pub(crate) fn certified_key(
    cert: &Path,
    key: &Path,
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, TlsFileError> {
    let read = |what, path: &Path| {
        std::fs::read(path).map_err(|source| TlsFileError::Read {
            what,
            path: path.to_owned(),
            source,
        })
    };
    let cert_pem = read("certificate", cert)?;
    let key_pem = read("key", key)?;
    let no_certificate = |reason: String| TlsFileError::NoCertificate {
        path: cert.to_owned(),
        reason,
    };
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| no_certificate(err.to_string()))?;
    if chain.is_empty() {
        return Err(no_certificate("no CERTIFICATE block".into()));
    }
    let no_key = |reason: String| TlsFileError::NoKey {
        path: key.to_owned(),
        reason,
    };
    let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|err| no_key(err.to_string()))?;
    match CertifiedKey::from_der(chain, private, provider) {
        Ok(certified) => Ok(Arc::new(certified)),
        Err(rustls::Error::InconsistentKeys(_)) => Err(TlsFileError::Mismatch {
            cert: cert.to_owned(),
            key: key.to_owned(),
        }),
        Err(rustls::Error::InvalidCertificate(err)) => Err(no_certificate(err.to_string())),
        Err(err) => Err(no_key(err.to_string())),
    }
}
