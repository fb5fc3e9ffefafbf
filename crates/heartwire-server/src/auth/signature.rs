//! How the RSA signatures of JWTs are checked: by ring (which rustls already brings),
//! rather than by RustCrypto's `rsa`, whose big-integer arithmetic made an RS256
//! connect cost about four anonymous ones (bench/NOTES.md, "JWT").
//!
//! Every other algorithm, and every RSA signature ring does not find valid, goes to
//! jsonwebtoken's RustCrypto provider as before, so a verdict is RustCrypto's whenever
//! ring does not accept: ring only makes the valid signatures of the keys it supports
//! (2048 to 8192 bits) cheaper, and a key outside that range (1024 bits, say) works as
//! it did.

use std::sync::LazyLock;

use jsonwebtoken::crypto::{CryptoProvider, JwtVerifier, rust_crypto};
use jsonwebtoken::signature::{Error as SignatureError, Verifier};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, DecodingKeyKind};
use pkcs1::der::Decode;
use ring::signature::{RsaParameters, RsaPublicKeyComponents};

/// jsonwebtoken's RustCrypto provider with ring's RSA verification in front.
static PROVIDER: LazyLock<CryptoProvider> = LazyLock::new(|| CryptoProvider {
    verifier_factory: new_verifier,
    ..rust_crypto::DEFAULT_PROVIDER.clone()
});

/// Makes [`PROVIDER`] the process's provider, before the first token is checked.
/// When an application embedding the server installed its own first, that one stays.
pub(super) fn install() {
    let _ = (*PROVIDER).install_default();
}

fn new_verifier(
    algorithm: &Algorithm,
    key: &DecodingKey,
) -> jsonwebtoken::errors::Result<Box<dyn JwtVerifier>> {
    let fallback = (rust_crypto::DEFAULT_PROVIDER.verifier_factory)(algorithm, key)?;
    let Some(parameters) = ring_parameters(*algorithm) else {
        return Ok(fallback);
    };
    let Some((modulus, exponent)) = rsa_components(key) else {
        return Ok(fallback);
    };
    Ok(Box::new(RingRsa {
        algorithm: *algorithm,
        parameters,
        modulus: modulus.to_vec(),
        exponent: exponent.to_vec(),
        fallback,
    }))
}

/// ring's parameters for an RSA algorithm of JWT (RFC 7518: PKCS#1 v1.5, or PSS with
/// a salt as long as the hash).
fn ring_parameters(algorithm: Algorithm) -> Option<&'static RsaParameters> {
    use ring::signature as ring;
    Some(match algorithm {
        Algorithm::RS256 => &ring::RSA_PKCS1_2048_8192_SHA256,
        Algorithm::RS384 => &ring::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &ring::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &ring::RSA_PSS_2048_8192_SHA256,
        Algorithm::PS384 => &ring::RSA_PSS_2048_8192_SHA384,
        Algorithm::PS512 => &ring::RSA_PSS_2048_8192_SHA512,
        _ => return None,
    })
}

/// The modulus and public exponent of an RSA key, big-endian: given as such (a JWK),
/// or read from the PKCS#1 document jsonwebtoken keeps of a PEM key.
fn rsa_components(key: &DecodingKey) -> Option<(&[u8], &[u8])> {
    if key.family() != AlgorithmFamily::Rsa {
        return None;
    }
    match key.kind() {
        DecodingKeyKind::RsaModulusExponent { n, e } => Some((n, e)),
        DecodingKeyKind::SecretOrDer(der) => {
            let key = pkcs1::RsaPublicKey::from_der(der).ok()?;
            Some((key.modulus.as_bytes(), key.public_exponent.as_bytes()))
        }
    }
}

/// An RSA signature checked by ring, then by RustCrypto when ring does not accept it.
struct RingRsa {
    algorithm: Algorithm,
    parameters: &'static RsaParameters,
    modulus: Vec<u8>,
    exponent: Vec<u8>,
    fallback: Box<dyn JwtVerifier>,
}

impl Verifier<Vec<u8>> for RingRsa {
    fn verify(&self, message: &[u8], signature: &Vec<u8>) -> Result<(), SignatureError> {
        let key = RsaPublicKeyComponents {
            n: &self.modulus,
            e: &self.exponent,
        };
        match key.verify(self.parameters, message, signature) {
            Ok(()) => Ok(()),
            Err(_) => self.fallback.verify(message, signature),
        }
    }
}

impl JwtVerifier for RingRsa {
    fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
}
