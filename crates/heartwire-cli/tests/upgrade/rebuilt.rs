//! A live upgrade to another build of heartwire, one minor version on: the new process
//! is the binary named by `HEARTWIRE_TAKE_OVER_BINARY`, which `scripts/test`'s
//! `package` stage builds from the packaged crates in a workspace of their own (the
//! same sources, a separate build, their version the next minor one). Run by that
//! stage only, hence ignored by the `rust` stage.

use std::path::PathBuf;
use std::process::Command;

use crate::common::{Running, without_inherited_settings};
use crate::traffic::{client, serve, serve_of, socket_path, traffic, until};

/// The variable that names the binary the new process runs.
const TAKE_OVER_BINARY: &str = "HEARTWIRE_TAKE_OVER_BINARY";

/// The binary of the new process: it must be given, and be another build than the
/// test's own.
fn take_over_binary() -> PathBuf {
    let Some(path) = std::env::var_os(TAKE_OVER_BINARY) else {
        panic!("{TAKE_OVER_BINARY} names no binary: scripts/test package sets it");
    };
    let path = PathBuf::from(path);
    let theirs = std::fs::read(&path)
        .unwrap_or_else(|err| panic!("{TAKE_OVER_BINARY}={}: {err}", path.display()));
    let ours = std::fs::read(env!("CARGO_BIN_EXE_heartwire")).unwrap();
    // Not `assert_ne!`: it would print both binaries.
    assert!(
        theirs != ours,
        "{TAKE_OVER_BINARY}={} is this test's own binary, not another build",
        path.display()
    );
    let (old, new) = (
        minor_version(env!("CARGO_BIN_EXE_heartwire").as_ref()),
        minor_version(&path),
    );
    assert_eq!(new, old + 1, "the rebuilt binary is one minor version on");
    path
}

/// The minor version `binary --version` says it is.
fn minor_version(binary: &std::path::Path) -> u64 {
    let output = Command::new(binary).arg("--version").output().unwrap();
    let text = String::from_utf8(output.stdout).unwrap();
    // "heartwire 0.1.0"
    let version = text.split_whitespace().nth(1).unwrap_or_default();
    version
        .split('.')
        .nth(1)
        .and_then(|minor| minor.parse().ok())
        .unwrap_or_else(|| panic!("{} --version said {text:?}", binary.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a rebuilt binary in HEARTWIRE_TAKE_OVER_BINARY: run by scripts/test package"]
async fn a_rebuilt_binary_takes_over_without_a_close_or_a_gap() {
    let binary = take_over_binary();
    let (_dir, socket) = socket_path("upgrade-rebuilt");
    let mut old = Running::start(serve(&socket, false));
    let traffic = traffic(&old.addr, 3).await;

    let mut rebuilt = Command::new(&binary);
    without_inherited_settings(&mut rebuilt);
    let new = Running::start(serve_of(rebuilt, &socket, true, &[]));
    assert_eq!(
        new.addr, old.addr,
        "the rebuilt process serves the same listening socket"
    );
    assert!(
        old.wait().success(),
        "the old process ends once it has handed over"
    );
    traffic.twenty_more("messages after the upgrade").await;
    let (_late, late) = client(&new.addr, true);
    until("a client of the rebuilt process", || {
        late.lock().unwrap().opens == 1
    })
    .await;
    traffic.check().await;
    drop(new);
}
