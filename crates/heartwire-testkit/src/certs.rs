//! Certificates for the TLS tests, made by the `openssl` command at test time: a
//! private CA, and server certificates it signs (valid, expired, or for another
//! host). The verifying side never shares code with the side that made them. And a
//! TLS client (rustls) that trusts such a CA, for raw HTTP over TLS.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::PATIENCE;
use super::redis_process::TempDir;

/// A private certificate authority in a temporary directory (removed when dropped).
#[derive(Debug)]
pub struct TestCa {
    dir: TempDir,
    /// The CA's certificate (PEM): what clients are told to trust.
    pub cert: PathBuf,
    key: PathBuf,
    issued: std::sync::atomic::AtomicU32,
}

/// A certificate and its private key, as PEM files.
#[derive(Debug, Clone)]
pub struct CertPair {
    /// The certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM, PKCS#8).
    pub key: PathBuf,
}

/// Runs `openssl args…` in `dir`, failing the test with its output when it fails.
fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|err| {
            panic!("cannot run openssl ({err}); run scripts/test, which installs it")
        });
    assert!(
        output.status.success(),
        "openssl {args:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

impl TestCa {
    /// A new CA named `name`.
    pub fn new(name: &str) -> Self {
        let dir = TempDir::new("ca");
        let subject = format!("/CN={name}");
        openssl(
            dir.path(),
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                &subject,
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
        Self {
            cert: dir.path().join("ca.pem"),
            key: dir.path().join("ca.key"),
            dir,
            issued: std::sync::atomic::AtomicU32::new(0),
        }
    }

    /// A server certificate for `localhost` and 127.0.0.1, valid for a day.
    pub fn localhost(&self) -> CertPair {
        self.issue(&["DNS:localhost", "IP:127.0.0.1"], 1)
    }

    /// A server certificate for `names` (`DNS:…`, `IP:…`), valid from now for `days`
    /// (a negative number gives one that expired that many days ago).
    pub fn issue(&self, names: &[&str], days: i32) -> CertPair {
        let serial = self
            .issued
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        let dir = self.dir.path();
        let (key, csr, cert, ext) = (
            format!("server-{serial}.key"),
            format!("server-{serial}.csr"),
            format!("server-{serial}.pem"),
            format!("server-{serial}.ext"),
        );
        std::fs::write(
            dir.join(&ext),
            format!(
                "subjectAltName={}\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
                names.join(",")
            ),
        )
        .expect("an extensions file");
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &csr,
                "-subj",
                "/CN=heartwire test server",
            ],
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                self.key.to_str().expect("a UTF-8 path"),
                "-set_serial",
                &serial.to_string(),
                "-days",
                &days.to_string(),
                "-extfile",
                &ext,
                "-out",
                &cert,
            ],
        );
        CertPair {
            cert: dir.join(cert),
            key: dir.join(key),
        }
    }

    /// A path in the CA's directory, for files a test writes.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// A TLS connection to `addr` by the name `localhost`, trusting only `ca`.
pub async fn tls_connect(addr: SocketAddr, ca: &Path) -> std::io::Result<TlsStream<TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("the CA file") {
        roots
            .add(cert.expect("a PEM certificate"))
            .expect("a CA certificate");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").expect("a DNS name");
    tokio::time::timeout(
        PATIENCE,
        TlsConnector::from(Arc::new(config)).connect(name, tcp),
    )
    .await
    .expect("the TLS handshake ends in time")
}

/// `GET path` over TLS (HTTP/1.0, so the server closes after answering); the whole
/// response.
pub async fn https_get(addr: SocketAddr, ca: &Path, path: &str) -> String {
    let mut stream = tls_connect(addr, ca).await.expect("a TLS connection");
    let request = format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    // The server may end without close_notify: what arrived is the response.
    let _ = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut response))
        .await
        .expect("the response in time");
    String::from_utf8_lossy(&response).into_owned()
}
