//! TLS for `wss://`: which certificate authorities a server's certificate must chain
//! to, the rustls connector of each attempt, and what a failed check says.
//!
//! The platform's roots (as `rustls-native-certs` finds them, which honours
//! `SSL_CERT_FILE` and `SSL_CERT_DIR`) are the default and are read once per process;
//! [`TlsRoots::from_pem_file`] trusts a private CA instead. A certificate that fails
//! a check is final for that server: retrying cannot make it valid.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::{CertificateError, RootCertStore};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::Error;

/// The certificate authorities a `wss://` server's certificate must chain to.
#[derive(Debug, Clone, Default)]
pub enum TlsRoots {
    /// The platform's trusted roots.
    #[default]
    Platform,
    /// Only these (a private CA, say).
    Only(Arc<RootCertStore>),
}

impl TlsRoots {
    /// Trusts only the CA certificates of a PEM file.
    pub fn from_pem_file(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let failed = |reason: String| Error::TlsRoots(format!("{}: {reason}", path.display()));
        let pem = std::fs::read(path).map_err(|err| failed(err.to_string()))?;
        let certificates = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| failed(format!("not PEM certificates ({err})")))?;
        let mut store = RootCertStore::empty();
        let (added, _ignored) = store.add_parsable_certificates(certificates);
        if added == 0 {
            return Err(failed("holds no usable CA certificate".into()));
        }
        Ok(Self::Only(Arc::new(store)))
    }

    /// The root store, reading the platform's once per process.
    pub(crate) fn store(&self) -> Result<Arc<RootCertStore>, Error> {
        static PLATFORM: OnceLock<Result<Arc<RootCertStore>, String>> = OnceLock::new();
        match self {
            Self::Only(store) => Ok(store.clone()),
            Self::Platform => PLATFORM
                .get_or_init(platform_roots)
                .clone()
                .map_err(Error::TlsRoots),
        }
    }
}

fn platform_roots() -> Result<Arc<RootCertStore>, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut store = RootCertStore::empty();
    store.add_parsable_certificates(found.certs);
    if store.is_empty() {
        return Err(format!(
            "the platform has no trusted root certificates ({} errors reading them); \
             give the server's CA explicitly",
            found.errors.len()
        ));
    }
    Ok(Arc::new(store))
}

/// The rustls settings of a `wss://` attempt.
pub(crate) fn connector(roots: &TlsRoots) -> Result<Arc<rustls::ClientConfig>, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| Error::TlsRoots(err.to_string()))?
        .with_root_certificates(roots.store()?)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// One sentence for a TLS failure with the server `name`: which check failed, and
/// what rustls found.
pub(crate) fn describe(name: &str, err: &rustls::Error) -> String {
    let rustls::Error::InvalidCertificate(certificate) = err else {
        return match err {
            rustls::Error::AlertReceived(alert) => {
                format!("the TLS handshake with {name} failed: the server sent the alert {alert:?}")
            }
            other => format!("the TLS handshake with {name} failed: {other}"),
        };
    };
    let check = match certificate {
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            "the host name check (the certificate does not name this host)"
        }
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            "the validity check (the certificate has expired)"
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            "the validity check (the certificate is not valid yet)"
        }
        CertificateError::UnknownIssuer => {
            "the trust check (no trusted certificate authority issued it)"
        }
        CertificateError::BadSignature => "the signature check",
        CertificateError::Revoked => "the revocation check (it is revoked)",
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
            "the key usage check"
        }
        _ => "certificate verification",
    };
    format!("the TLS certificate of {name} failed {check}: {err}")
}
