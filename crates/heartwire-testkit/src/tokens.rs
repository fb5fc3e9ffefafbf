//! Keys and JWTs made by an independent implementation (PyJWT and `cryptography`,
//! through `tests/peers/jwt_tool.py`), for the tests of token verification.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use super::peer::repo_root;

/// How long one run of the tool may take.
const TOOL_TIMEOUT: Duration = Duration::from_secs(60);

/// A folder of fresh keys, removed when dropped: `rsa`, `rsa2` (RSA 2048), `ec`
/// (P-256) and `ed` (Ed25519), each as `NAME.pem` (private) and `NAME.pub.pem`.
#[derive(Debug)]
pub struct TokenKit {
    dir: PathBuf,
}

/// One token to mint: an algorithm, a key (a secret, or the name of a key of the
/// kit), the claims, and optionally a `kid`.
#[derive(Debug, Clone)]
pub struct Spec(Value);

impl Spec {
    /// A token signed with an HMAC `secret`.
    pub fn secret(alg: &str, secret: &str, claims: Value) -> Self {
        Self(json!({"alg": alg, "secret": secret, "claims": claims}))
    }

    /// A token signed with the kit's private key `name` (`rsa`, `rsa2`, `ec`, `ed`).
    pub fn key(alg: &str, name: &str, claims: Value) -> Self {
        Self(json!({"alg": alg, "key": name, "claims": claims}))
    }

    /// A token signed HS256 with any text as the secret (a public key, say), which
    /// PyJWT refuses to do: the token of the algorithm-confusion attack.
    pub fn forged_hmac(text: &str, claims: Value) -> Self {
        Self(json!({"forge_hmac": text, "claims": claims}))
    }

    /// The same, with a `kid` in its header.
    pub fn kid(mut self, kid: &str) -> Self {
        self.0["kid"] = kid.into();
        self
    }

    /// The same, expiring `seconds` after it is minted (the `exp` claim is set by
    /// the tool, so the time it takes to start does not shorten the token's life).
    pub fn expires_in(mut self, seconds: u64) -> Self {
        self.0["exp_in"] = seconds.into();
        self
    }
}

/// A minted token and its claims (`exp` as set at minting).
#[derive(Debug, Clone)]
pub struct Minted {
    /// The token.
    pub token: String,
    /// Its claims.
    pub claims: Value,
}

impl Minted {
    /// The token's `exp`, in Unix seconds.
    pub fn exp(&self) -> u64 {
        self.claims["exp"].as_u64().expect("the token has an exp")
    }
}

/// Unix seconds now, as `exp` claims count.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs()
}

impl TokenKit {
    /// Makes the keys in a fresh folder.
    pub async fn new() -> Self {
        static COUNT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "heartwire-keys-{}-{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed)
        ));
        let dir_text = dir.to_str().expect("a UTF-8 temp path").to_owned();
        run(&["keys", &dir_text], None).await;
        Self { dir }
    }

    /// The path of a file of the kit, such as `rsa.pub.pem`.
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// The folder of the kit, for other files of the test.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Mints the tokens of `specs`, in order.
    pub async fn mint(&self, specs: &[Spec]) -> Vec<String> {
        let minted = self.mint_with_claims(specs).await;
        minted.into_iter().map(|minted| minted.token).collect()
    }

    /// Mints the tokens of `specs`, in order, with their claims.
    pub async fn mint_with_claims(&self, specs: &[Spec]) -> Vec<Minted> {
        let specs: Vec<Value> = specs
            .iter()
            .map(|Spec(spec)| {
                let mut spec = spec.clone();
                if let Some(name) = spec["key"].as_str() {
                    spec["key"] = self.path(&format!("{name}.pem")).to_str().unwrap().into();
                }
                spec
            })
            .collect();
        let output = run(&["mint"], Some(Value::Array(specs).to_string())).await;
        let minted: Vec<Value> =
            serde_json::from_str(&output).expect("the tool prints a JSON list");
        minted
            .into_iter()
            .map(|mut minted| Minted {
                token: minted["token"].as_str().expect("a token").to_owned(),
                claims: minted["claims"].take(),
            })
            .collect()
    }

    /// Mints one token.
    pub async fn mint_one(&self, spec: Spec) -> String {
        self.mint(&[spec]).await.remove(0)
    }

    /// A JWK set of the public keys `(name, kid, alg)` of the kit, as JSON text.
    pub async fn jwks(&self, keys: &[(&str, &str, &str)]) -> String {
        let mut args = vec!["jwks".to_owned()];
        for (name, kid, alg) in keys {
            let path = self.path(&format!("{name}.pub.pem"));
            args.push(format!("{}:{kid}:{alg}", path.display()));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&args, None).await
    }
}

impl Drop for TokenKit {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs the tool with `args` (and `input` on stdin); its stdout. Fails the test with
/// what to do when it cannot run.
async fn run(args: &[&str], input: Option<String>) -> String {
    let mut child = tokio::process::Command::new("python3")
        .arg("tests/peers/jwt_tool.py")
        .args(args)
        .current_dir(repo_root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 runs");
    let mut stdin = child.stdin.take().expect("stdin is piped");
    if let Some(input) = input {
        stdin
            .write_all(input.as_bytes())
            .await
            .expect("the tool reads its input");
    }
    drop(stdin);
    let output = tokio::time::timeout(TOOL_TIMEOUT, child.wait_with_output())
        .await
        .expect("jwt_tool.py finishes in time")
        .expect("jwt_tool.py runs");
    assert!(
        output.status.success(),
        "jwt_tool.py {args:?} failed ({}): {}; run scripts/test, which installs PyJWT and cryptography",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("the tool prints UTF-8")
}
