//! `heartwire chaos` as a process:
//!
//! - `chaos check` against a `heartwire serve` with a 200 ms ping interval and timeout,
//!   restarted by a script the check runs: every verdict passes, and the figures fall
//!   within what the configuration allows;
//! - `chaos check` against a server that pings only after 2 s of silence, behind an
//!   idle cut of 500 ms (nginx's 60 s cut against a slow heartbeat, in miniature): the
//!   idle-cut verdict fails and the exit status says so;
//! - `chaos proxy` forwards to its upstream with the fault it was started with, and
//!   refuses a fault that is not valid.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{PATIENCE, heartwire};
use serde_json::Value;

const PING_INTERVAL_MS: u64 = 200;
const PING_TIMEOUT_MS: u64 = 200;
/// Scheduling slack on a shared 2-core machine, as in the other timing tests; the
/// check's own tolerance is set to it.
const SLACK_MS: u64 = 1000;
/// Messages per second of the check's stream: one every 20 ms.
const RATE: u64 = 50;

/// A `heartwire serve` whose exit is reaped at once (so a script's `kill -0` sees it
/// gone), killed when dropped if still running.
struct Server {
    pid: u32,
    addr: String,
    stop: Option<mpsc::Sender<()>>,
    reaper: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start(args: &[&str]) -> Self {
        let mut child = heartwire()
            .arg("serve")
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let addr = line
            .trim()
            .strip_prefix("heartwire listening on http://")
            .and_then(|rest| rest.strip_suffix('/'))
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        let pid = child.id();
        let (stop, stopped) = mpsc::channel();
        let reaper = std::thread::spawn(move || reap(child, &stopped));
        Self {
            pid,
            addr,
            stop: Some(stop),
            reaper: Some(reaper),
        }
    }
}

/// Waits for `child` to exit, or kills it when told to stop.
fn reap(mut child: Child, stopped: &mpsc::Receiver<()>) {
    while let Ok(None) = child.try_wait() {
        match stopped.recv_timeout(Duration::from_millis(20)) {
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return;
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(reaper) = self.reaper.take() {
            let _ = reaper.join();
        }
    }
}

/// A folder of its own for one test, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("heartwire-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // The server the restart script started is ours to stop.
        if let Ok(pid) = std::fs::read_to_string(self.0.join("pid")) {
            kill(pid.trim());
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `heartwire chaos check` with `args`, killing it after `within`.
fn check(args: &[String], within: Duration) -> Output {
    let child = heartwire()
        .args(["chaos", "check", "--json"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    let (done, finished) = mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = finished.recv_timeout(within) {
            kill(&pid);
        }
    });
    let output = child.wait_with_output().unwrap();
    drop(done);
    watchdog.join().unwrap();
    output
}

/// Stops a process this test started but does not own as a child.
fn kill(pid: &str) {
    let _ = Command::new("kill").args(["-KILL", pid]).status();
}

/// The rows of a `--json` report, by scenario and a word of their check.
fn row<'a>(report: &'a Value, scenario: &str, check: &str) -> &'a Value {
    report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["scenario"] == scenario && row["check"].as_str().unwrap().contains(check))
        .unwrap_or_else(|| panic!("no row {scenario} / {check} in {report:#}"))
}

fn ms(row: &Value) -> u64 {
    row["measured"]
        .as_u64()
        .unwrap_or_else(|| panic!("not measured: {row}"))
}

#[test]
fn check_passes_against_a_healthy_server_and_measures_within_bounds() {
    let scratch = Scratch::new("chaos-check");
    let settings = [
        "--ping-interval",
        "200ms",
        "--ping-timeout",
        "200ms",
        "--close-timeout",
        "200ms",
        "--shutdown-spread",
        "100ms",
    ];
    let server = Server::start(&settings);
    // The restart: SIGTERM, wait until the old process is gone, start a new one on the
    // same address and leave its pid for the test to stop.
    let script = scratch.0.join("restart.sh");
    std::fs::write(
        &script,
        format!(
            "old={old}\nkill -TERM $old\ni=0\nwhile kill -0 $old 2>/dev/null; do\n  \
             i=$((i+1)); [ $i -lt 200 ] || exit 1; sleep 0.05\ndone\n\
             '{bin}' serve --listen {addr} {settings} </dev/null >/dev/null 2>&1 &\n\
             echo $! > '{dir}/pid'\n",
            old = server.pid,
            bin = env!("CARGO_BIN_EXE_heartwire"),
            addr = server.addr,
            settings = settings.join(" "),
            dir = scratch.0.display(),
        ),
    )
    .unwrap();

    let args = [
        format!("ws://{}/ws", server.addr),
        "--idle-cut".into(),
        "1s".into(),
        "--latency".into(),
        "20ms".into(),
        "--jitter".into(),
        "10ms".into(),
        "--rate".into(),
        RATE.to_string(),
        "--tolerance".into(),
        format!("{SLACK_MS}ms"),
        "--restart-command".into(),
        format!("sh '{}'", script.display()),
        "--restart-within".into(),
        "10s".into(),
    ];
    let output = check(&args, Duration::from_secs(100));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let report: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|err| panic!("no JSON ({err}); stderr: {stderr}"));
    assert!(output.status.success(), "{report:#}\n{stderr}");
    assert_eq!(report["passed"], true);
    assert_eq!(report["ping_interval_ms"], PING_INTERVAL_MS);
    assert_eq!(report["ping_timeout_ms"], PING_TIMEOUT_MS);
    let rows = report["rows"].as_array().unwrap();
    for scenario in [
        "pings",
        "latency",
        "blackhole",
        "blackhole-up",
        "reset",
        "idle-cut",
        "restart",
    ] {
        assert!(
            rows.iter().any(|row| row["scenario"] == scenario),
            "{scenario} ran"
        );
    }
    assert!(
        rows.iter().all(|row| row["verdict"] != "fail"),
        "{report:#}"
    );

    // The server cannot ping before a ping interval of silence.
    let server_ping = ms(row(&report, "pings", "server's Ping"));
    assert!(
        (PING_INTERVAL_MS..=PING_INTERVAL_MS + SLACK_MS).contains(&server_ping),
        "{server_ping}"
    );
    // Detection counts from the fault; the last byte before it came at most two
    // stream intervals earlier.
    let bound = PING_INTERVAL_MS + PING_TIMEOUT_MS;
    let earliest = bound - 2 * 1000 / RATE;
    for scenario in ["blackhole", "blackhole-up"] {
        let detected = ms(row(&report, scenario, "notices"));
        assert!(
            (earliest..=bound + SLACK_MS).contains(&detected),
            "{scenario}: {detected} ms"
        );
    }
    // Latency adds 20..30 ms each way to every round trip.
    let median = ms(row(&report, "latency", "median"));
    let slowest = ms(row(&report, "latency", "slowest"));
    assert!(median >= 2 * 20, "median round trip {median} ms");
    assert!(
        slowest <= 2 * 30 + SLACK_MS,
        "slowest round trip {slowest} ms"
    );
    // The heartbeat keeps the path from being silent much longer than an interval.
    let silence = ms(row(&report, "idle-cut", "keeps open"));
    assert!(silence <= bound, "longest silence {silence} ms");
    assert!(ms(row(&report, "reset", "back")) <= 100 + PING_TIMEOUT_MS + SLACK_MS);
    assert!(ms(row(&report, "restart", "back")) <= 10_000);
    for scenario in ["blackhole", "blackhole-up", "reset", "restart"] {
        assert_eq!(row(&report, scenario, "duplicated")["measured"], 0);
        let lost = row(&report, scenario, "lost");
        assert!(
            lost["measured"] == 0 || lost["verdict"] == "info",
            "{scenario}: {lost}"
        );
    }
}

#[test]
fn an_idle_cut_shorter_than_the_ping_interval_fails_the_check() {
    let server = Server::start(&["--ping-interval", "2s", "--ping-timeout", "1s"]);
    let args = [
        format!("ws://{}/ws", server.addr),
        "--scenarios".into(),
        "idle-cut".into(),
        "--idle-cut".into(),
        "500ms".into(),
    ];
    let output = check(&args, Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let report: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|err| panic!("no JSON ({err}); stderr: {stderr}"));
    assert_eq!(output.status.code(), Some(1), "{report:#}\n{stderr}");
    assert!(stderr.contains("1 of 1 verdicts failed"), "{stderr}");
    assert_eq!(report["passed"], false);
    let cut = row(&report, "idle-cut", "keeps open");
    assert_eq!(cut["verdict"], "fail", "{cut}");
    assert_eq!(cut["bound"], 500);
    assert!(ms(cut) >= 500, "{cut}");
    assert!(
        cut["note"].as_str().unwrap().contains("ping interval"),
        "{cut}"
    );
}

#[test]
fn the_proxy_starts_with_its_fault_and_refuses_a_bad_one() {
    let server = Server::start(&[]);
    let mut proxy = heartwire()
        .args([
            "chaos",
            "proxy",
            "--listen",
            "127.0.0.1:0",
            "--control",
            "127.0.0.1:0",
        ])
        .args(["--upstream", &server.addr, "--fault", r#"{"kind":"reset"}"#])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(proxy.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let listen = line
        .strip_prefix("chaos proxy listening on ")
        .and_then(|rest| rest.split(',').next())
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    assert!(
        line.contains(&format!("forwarding to {}", server.addr)) && line.contains("/fault"),
        "{line}"
    );
    let mut stream = std::net::TcpStream::connect(listen).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let read = stream.read(&mut [0; 1]);
    assert_eq!(
        read.unwrap_err().kind(),
        std::io::ErrorKind::ConnectionReset
    );
    let _ = proxy.kill();
    let _ = proxy.wait();

    let refused = heartwire()
        .args([
            "chaos",
            "proxy",
            "--listen",
            "127.0.0.1:0",
            "--control",
            "127.0.0.1:0",
        ])
        .args(["--upstream", &server.addr, "--fault", r#"{"kind":"flood"}"#])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("the fault is not valid: unknown variant `flood`"),
        "{stderr}"
    );
}
