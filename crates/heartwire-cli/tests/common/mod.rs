//! Shared by the tests of the `heartwire` command: a `heartwire serve` process that is
//! killed when dropped, and the address it printed.

#![allow(dead_code, unreachable_pub)] // each test file uses a different part

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The longest any single wait may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// The `heartwire` binary, without settings inherited from the environment.
pub fn heartwire() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_heartwire"));
    without_inherited_settings(&mut command);
    command
}

/// Removes from `command`'s environment the settings of heartwire the tests' own
/// environment may hold, and gives it no stdin.
pub fn without_inherited_settings(command: &mut Command) -> &mut Command {
    command
        .env_remove("HEARTWIRE_LOG")
        .env_remove("RUST_LOG")
        .env_remove("HEARTWIRE_LOG_FORMAT")
        .env_remove("HEARTWIRE_REDIS")
        .env_remove("HEARTWIRE_CONFIG")
        .stdin(Stdio::null())
}

/// A running `heartwire serve` and the address it printed.
pub struct Running {
    pub child: Child,
    pub addr: String,
}

impl Running {
    /// Starts `command` (a `heartwire serve …`) and reads the address it listens on.
    pub fn start(mut command: Command) -> Self {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("heartwire listening on http://")
            .or_else(|| line.trim().strip_prefix("heartwire listening on https://"))
            .and_then(|rest| rest.strip_suffix('/'))
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        Self { child, addr }
    }

    /// Waits for the process to exit, failing after [`PATIENCE`].
    pub fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "heartwire did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
