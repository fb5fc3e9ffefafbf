//! TLS on the listener: the certificate and key files, and how often they are
//! checked for a change.

use std::path::PathBuf;
use std::time::Duration;

use super::{declared_defaults, parse};
use crate::Error;

/// Whether the listener speaks TLS, and with which certificate.
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
#[command(next_help_heading = "TLS")]
pub struct TlsFiles {
    /// Serve every route, WebSocket and HTTP, over TLS with the certificate chain in
    /// this PEM file (the server's certificate first); needs --tls-key. It is read
    /// again on SIGHUP and when the file changes, without dropping open connections
    /// (plain TCP unless given)
    #[arg(long, env = "HEARTWIRE_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert, in a PEM file (PKCS#8, PKCS#1 or SEC1)
    #[arg(long, env = "HEARTWIRE_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,

    /// How often the certificate and key files are checked for a change; a change
    /// loads them again, as SIGHUP does, and a pair that does not load is logged
    /// while the old certificate stays in use
    #[arg(
        long,
        env = "HEARTWIRE_TLS_RELOAD_CHECK",
        value_name = "DURATION",
        default_value = "10s",
        value_parser = parse::duration
    )]
    pub tls_reload_check: Duration,
}

impl Default for TlsFiles {
    fn default() -> Self {
        declared_defaults()
    }
}

impl TlsFiles {
    /// The certificate and key files when TLS is on; an error when only one is given.
    pub fn pair(&self) -> Result<Option<(PathBuf, PathBuf)>, Error> {
        match (&self.tls_cert, &self.tls_key) {
            (None, None) => Ok(None),
            (Some(cert), Some(key)) => Ok(Some((cert.clone(), key.clone()))),
            (Some(_), None) => Err(Error::Config(
                "tls-cert needs tls-key, the certificate's private key".into(),
            )),
            (None, Some(_)) => Err(Error::Config(
                "tls-key needs tls-cert, the certificate chain it signs for".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_certificate_and_key_come_together() {
        assert_eq!(TlsFiles::default().pair().unwrap(), None);
        let cert_only = TlsFiles {
            tls_cert: Some("cert.pem".into()),
            ..TlsFiles::default()
        };
        assert!(
            cert_only
                .pair()
                .unwrap_err()
                .to_string()
                .contains("tls-key")
        );
        let key_only = TlsFiles {
            tls_key: Some("key.pem".into()),
            ..TlsFiles::default()
        };
        assert!(
            key_only
                .pair()
                .unwrap_err()
                .to_string()
                .contains("tls-cert")
        );
    }
}
