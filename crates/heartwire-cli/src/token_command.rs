//! `heartwire connect --token-command`: a shell command whose output is the token,
//! run before every connection attempt and every refresh, so a short-lived token
//! is always fresh.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use heartwire_client::TokenProvider;
use tokio::process::Command;

/// How long the command may take; past it the attempt goes without a token.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// A token provider that runs `command` with `sh -c` and takes its standard output,
/// trimmed, as the token. A command that fails, prints nothing or takes too long
/// gives no token, and one sentence on stderr says why (never the token).
pub(crate) fn provider(command: String) -> TokenProvider {
    let command = Arc::new(command);
    Arc::new(move || {
        let command = Arc::clone(&command);
        Box::pin(async move {
            match run(&command).await {
                Ok(token) => Some(token),
                Err(why) => {
                    eprintln!("--token-command gave no token: {why}");
                    None
                }
            }
        })
    })
}

async fn run(command: &str) -> Result<String, String> {
    let child = Command::new("sh")
        .args(["-c", command])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|err| format!("cannot run sh: {err}"))?;
    let output = tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| format!("it took longer than {} s", COMMAND_TIMEOUT.as_secs()))?
        .map_err(|err| format!("cannot read its output: {err}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let first = stderr.lines().next().unwrap_or("").trim();
        return Err(if first.is_empty() {
            format!("it exited with {}", output.status)
        } else {
            format!("it exited with {}: {first}", output.status)
        });
    }
    let token = String::from_utf8(output.stdout)
        .map_err(|_| "its output is not UTF-8".to_owned())?
        .trim()
        .to_owned();
    if token.is_empty() {
        return Err("it printed nothing".into());
    }
    Ok(token)
}
