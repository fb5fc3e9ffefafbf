//! TLS on the listener (`--tls-cert`, `--tls-key`): rustls with the ring provider,
//! and a certificate that can be replaced while the server runs.
//!
//! The certificate a handshake presents is looked up in [`Certificates`] at each
//! handshake, so loading a new pair (on SIGHUP, or when [`reload`] sees a file
//! change) affects only connections that start afterwards: open connections keep
//! their session. A pair that does not load leaves the old one in place, and says
//! why in the log; at start it is an error that stops the server.

mod load;
mod reload;

use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::RwLock;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;

use crate::Error;
use crate::config::TlsFiles;

pub use load::TlsFileError;

/// The certificate every new handshake presents, replaceable at any time.
#[derive(Debug)]
struct Certificates(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().clone())
    }
}

/// The listener's TLS: the acceptor, and where its certificate comes from.
pub(crate) struct Tls {
    acceptor: TlsAcceptor,
    certificates: Arc<Certificates>,
    provider: Arc<CryptoProvider>,
    cert: PathBuf,
    key: PathBuf,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// The listener's TLS when `files` turn it on: the pair is read and checked now.
    pub(crate) fn new(files: &TlsFiles) -> Result<Option<Self>, Error> {
        let Some((cert, key)) = files.pair()? else {
            return Ok(None);
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let first = load::certified_key(&cert, &key, &provider)?;
        let certificates = Arc::new(Certificates(RwLock::new(first)));
        let mut config = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|err| Error::Config(format!("TLS: {err}")))?
            .with_no_client_auth()
            .with_cert_resolver(certificates.clone());
        // The server speaks HTTP/1.1 only (a WebSocket upgrade is an HTTP/1.1 request).
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Some(Self {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            certificates,
            provider,
            cert,
            key,
        }))
    }

    /// The acceptor of new connections.
    pub(crate) fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }

    /// Reads the files again and, when they make a usable pair, presents it from the
    /// next handshake on.
    fn reload(&self) -> Result<(), TlsFileError> {
        let fresh = load::certified_key(&self.cert, &self.key, &self.provider)?;
        *self.certificates.0.write() = fresh;
        Ok(())
    }
}

pub(crate) use reload::{hangups, reload};
