//! Every `heartwire …` command shown in a shell block of README.md and docs/*.md is
//! run, so an example can never rot: each is given to the real binary with its
//! addresses moved to free loopback ports and its server URLs pointed at a server
//! of the test. A `serve` must come up and answer `/healthz`; a `connect` must open;
//! any other command (`chaos`, `bench`…) must start — get past its arguments and not
//! fail within two seconds, or end by itself with success. The server API's commands
//! (`publish`, `api`) are given the test server and its key, and must succeed.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{PATIENCE, Running, heartwire};

/// The repository's root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The documents whose examples are checked.
fn documents() -> Vec<PathBuf> {
    let mut files = vec![root().join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .expect("docs/ exists")
        .map(|entry| entry.expect("a readable entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

/// The `heartwire` command lines of the shell blocks of `text`: continuation lines
/// joined, a leading `$ ` and a trailing `# comment` removed, split as sh would.
fn commands(text: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let mut in_shell = false;
    let mut pending = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if let Some(fence) = trimmed.strip_prefix("```") {
            in_shell = !in_shell && matches!(fence, "sh" | "bash" | "shell" | "console");
            pending.clear();
            continue;
        }
        if !in_shell {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            pending.push_str(head);
            pending.push(' ');
            continue;
        }
        pending.push_str(trimmed);
        let whole = std::mem::take(&mut pending);
        let whole = whole.strip_prefix("$ ").unwrap_or(&whole);
        let Some(words) = shlex::split(whole) else {
            continue;
        };
        let words: Vec<String> = words
            .into_iter()
            .take_while(|w| !w.starts_with('#'))
            .collect();
        if words.first().map(String::as_str) == Some("heartwire") {
            found.push(words[1..].to_vec());
        }
    }
    found
}

/// `words` with every `HOST:PORT` value of an address option moved to a free
/// loopback port, and every server URL pointed at `server`.
fn localized(words: &[String], server: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut previous = "";
    for word in words {
        let moved = match previous {
            "--listen" | "--control" => "127.0.0.1:0".to_owned(),
            "--upstream" => server.to_owned(),
            _ if word.starts_with("ws://") || word.starts_with("wss://") => {
                let path = word
                    .splitn(4, '/')
                    .nth(3)
                    .map_or(String::new(), |path| format!("/{path}"));
                format!("ws://{server}{path}")
            }
            _ => word.clone(),
        };
        previous = word.as_str();
        out.push(moved);
    }
    out
}

/// The response to `GET /healthz` from the server at `addr`.
fn healthz(addr: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("the server listens");
    stream.set_read_timeout(Some(PATIENCE)).expect("a timeout");
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: docs\r\nConnection: close\r\n\r\n")
        .expect("the request is sent");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("a response");
    response
}

/// Waits for the first stderr line of `child` that contains `needle`, failing after
/// [`PATIENCE`].
fn wait_for_stderr(child: &mut Child, needle: &str, what: &str) {
    let stderr = child.stderr.take().expect("stderr is piped");
    let (found, seen) = std::sync::mpsc::channel();
    let wanted = needle.to_owned();
    std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let hit = line.contains(&wanted);
            lines.push(line);
            if hit {
                let _ = found.send(Ok(()));
                return;
            }
        }
        let _ = found.send(Err(lines.join("\n")));
    });
    match seen.recv_timeout(PATIENCE) {
        Ok(Ok(())) => {}
        Ok(Err(output)) => panic!("{what}: ended without {needle:?}:\n{output}"),
        Err(_) => panic!("{what}: nothing like {needle:?} within {PATIENCE:?}"),
    }
}

/// `args` of a server API command (`publish`, `api`) with its key file replaced by
/// `key_file` and pointed at the server at `addr`.
fn with_api_key(args: Vec<String>, key_file: &Path, addr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut previous = String::new();
    for word in args {
        let word = if previous == "--api-key-file" {
            key_file.display().to_string()
        } else {
            word
        };
        previous.clone_from(&word);
        out.push(word);
    }
    if !out.iter().any(|word| word == "--api-key-file") {
        out.push("--api-key-file".into());
        out.push(key_file.display().to_string());
    }
    out.push("--server".into());
    out.push(format!("http://{addr}"));
    out
}

#[test]
fn every_command_in_the_docs_runs() {
    let key_file = std::env::temp_dir().join(format!("heartwire-docs-key-{}", std::process::id()));
    std::fs::write(&key_file, "docs-examples-api-key-0123456789\n").expect("a temporary file");
    let mut server = Running::start({
        let mut command = heartwire();
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--api-key-file"])
            .arg(&key_file);
        command
    });
    let addr = server.addr.clone();
    let mut ran = 0;
    for document in documents() {
        let text = std::fs::read_to_string(&document).expect("a readable document");
        for words in commands(&text) {
            let shown = format!("{}: heartwire {}", document.display(), words.join(" "));
            let mut args = localized(&words, &addr);
            if matches!(args.first().map(String::as_str), Some("publish" | "api")) {
                args = with_api_key(args, &key_file, &addr);
            }
            match args.first().map(String::as_str) {
                Some("serve") => {
                    let mut command = heartwire();
                    command.args(&args);
                    if !args.iter().any(|arg| arg == "--listen") {
                        // The default port may be taken: the example runs on a free one.
                        command.args(["--listen", "127.0.0.1:0"]);
                    }
                    let started = Running::start(command);
                    let health = healthz(&started.addr);
                    assert!(health.starts_with("HTTP/1.1 200"), "{shown}: {health}");
                }
                Some("connect") => {
                    // A terminal's stdin: open, nothing typed yet.
                    let mut child = heartwire()
                        .args(&args)
                        .stdin(Stdio::piped())
                        .stdout(Stdio::null())
                        .stderr(Stdio::piped())
                        .spawn()
                        .expect("heartwire runs");
                    wait_for_stderr(&mut child, "open", &shown);
                    let _ = child.kill();
                    let _ = child.wait();
                }
                _ => {
                    // Long-running tools: arguments parse, and the command starts
                    // (it runs until it prints, or a short bound), then it is stopped.
                    let mut child = heartwire()
                        .args(&args)
                        .stdout(Stdio::piped())
                        .stderr(Stdio::piped())
                        .spawn()
                        .expect("heartwire runs");
                    let deadline = Instant::now() + Duration::from_secs(2);
                    let status = loop {
                        if let Some(status) = child.try_wait().expect("waitable") {
                            break Some(status);
                        }
                        if Instant::now() >= deadline {
                            break None;
                        }
                        std::thread::sleep(Duration::from_millis(20));
                    };
                    if let Some(status) = status {
                        // A command that ends by itself must end well, not with a usage error.
                        let mut stderr = String::new();
                        let _ = std::io::Read::read_to_string(
                            &mut child.stderr.take().expect("piped"),
                            &mut stderr,
                        );
                        assert!(status.success(), "{shown}: exit {status}\n{stderr}");
                    }
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
            ran += 1;
        }
    }
    assert!(ran >= 5, "only {ran} commands found in the docs");
    let _ = server.child.kill();
    server.wait();
    let _ = std::fs::remove_file(&key_file);
}

#[test]
fn commands_are_read_as_sh_reads_them() {
    let text = "text\n```sh\n$ heartwire serve --listen 0.0.0.0:8080 \\\n    --heartbeat-text --heartbeat--   # magic\nls\n```\n```toml\nheartwire = 1\n```\n";
    assert_eq!(
        commands(text),
        [[
            "serve",
            "--listen",
            "0.0.0.0:8080",
            "--heartbeat-text",
            "--heartbeat--"
        ]]
    );
    assert_eq!(
        localized(
            &[
                "connect".into(),
                "ws://example.com:9/ws".into(),
                "--listen".into(),
                "x:1".into()
            ],
            "127.0.0.1:5"
        ),
        ["connect", "ws://127.0.0.1:5/ws", "--listen", "127.0.0.1:0"]
    );
}
