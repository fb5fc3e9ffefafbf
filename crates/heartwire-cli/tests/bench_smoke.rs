//! `heartwire bench` against a heartwire server with a handful of connections: every
//! scenario completes and gives sane, non-zero figures, and the report is written.
//! The figures themselves are not judged here: they belong to `bench/run`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;

const HEARTWIRE: &str = env!("CARGO_BIN_EXE_heartwire");

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("an address").port()
}

fn scratch_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("heartwire-bench-smoke-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    dir
}

#[test]
fn bench_runs_every_scenario_and_writes_a_report() {
    let dir = scratch_dir();
    let figures = dir.join("figures.jsonl");
    let port = free_port();
    let server = format!(
        "env HEARTWIRE_LOG=warn {HEARTWIRE} serve --listen 127.0.0.1:{port} \
         --ping-interval 1s --ping-timeout 1s --message-rate 0/s --accept-rate 0/s \
         --max-connections-per-ip 0"
    );
    let status = Command::new(HEARTWIRE)
        .args([
            "bench",
            "run",
            "--name",
            "heartwire",
            "--dialect",
            "heartwire",
        ])
        .args(["--port", &port.to_string(), "--server", &server])
        .args(["--out", figures.to_str().expect("a UTF-8 path")])
        .args(["--idle", "40", "--subscribers", "20", "--sizes", "64"])
        .args(["--broadcast-step", "300ms", "--broadcast-steps", "2"])
        .args(["--echo-connections", "10", "--echo-window", "500ms"])
        .args(["--detect-connections", "100", "--detection-bound", "2s"])
        .args(["--storm-clients", "30", "--heartbeat-window", "2s"])
        .args(["--per-process", "25", "--settle", "500ms"])
        .status()
        .expect("heartwire bench runs");
    assert!(status.success(), "bench run failed: {status}");

    let text = std::fs::read_to_string(&figures).expect("figures were written");
    let values: HashMap<String, f64> = text
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).expect("a JSON figure"))
        .filter_map(|figure| {
            let name = figure["figure"].as_str()?.to_owned();
            Some((name, figure["value"].as_f64()?))
        })
        .collect();
    for positive in [
        "idle_bytes_per_conn_40",
        "connects_per_sec_40",
        "heartbeat_cpu_us",
        "heartbeats_per_sec",
        "broadcast_deliveries_per_sec_20_64B",
        "echo_messages_per_sec",
        "storm_attempts_per_client",
        "storm_100pct_secs",
    ] {
        let value = values.get(positive).copied();
        assert!(
            value.is_some_and(|v| v > 0.0 && v.is_finite()),
            "{positive} = {value:?}"
        );
    }
    for zero in [
        "false_disconnects",
        "detect_false_positives",
        "detect_undetected",
    ] {
        assert_eq!(values.get(zero).copied(), Some(0.0), "{zero}");
    }
    let over_bound = values["detect_over_bound_max_ms"];
    assert!(
        (-2000.0..5000.0).contains(&over_bound),
        "detection {over_bound} ms after the bound"
    );

    let results = dir.join("RESULTS.md");
    let chart = dir.join("ratios.svg");
    let status = Command::new(HEARTWIRE)
        .args([
            "bench",
            "report",
            "--figures",
            figures.to_str().expect("UTF-8"),
        ])
        .args(["--out", results.to_str().expect("UTF-8")])
        .args(["--chart", chart.to_str().expect("UTF-8")])
        .status()
        .expect("heartwire bench report runs");
    assert!(status.success(), "bench report failed: {status}");
    let report = std::fs::read_to_string(&results).expect("RESULTS.md was written");
    assert!(report.contains("| heartbeat_cpu_us |"), "{report}");
    assert!(report.contains("## Targets"), "{report}");
    let _ = std::fs::remove_dir_all(&dir);
}
