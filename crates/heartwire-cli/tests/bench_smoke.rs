//! `heartwire bench` against a heartwire server with a handful of connections: every
//! scenario completes and gives sane, non-zero figures (over TLS and with JWTs minted by
//! PyJWT too), and the report is written.
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

#[test]
fn the_idle_scenario_runs_over_tls() {
    let ca = heartwire_testkit::certs::TestCa::new("heartwire bench CA");
    let pair = ca.localhost();
    let figures = ca.path("figures.jsonl");
    let port = free_port();
    let server = format!(
        "env HEARTWIRE_LOG=warn {HEARTWIRE} serve --listen 127.0.0.1:{port} \
         --ping-interval 1s --ping-timeout 1s --tls-cert {} --tls-key {}",
        pair.cert.display(),
        pair.key.display()
    );
    let status = Command::new(HEARTWIRE)
        .args(["bench", "run", "--name", "heartwire-tls"])
        .args(["--dialect", "heartwire", "--scenarios", "idle"])
        .args(["--port", &port.to_string(), "--server", &server])
        .args(["--out", figures.to_str().expect("a UTF-8 path")])
        .args(["--idle", "40", "--heartbeat-window", "2s"])
        .args(["--per-process", "25", "--settle", "500ms"])
        .arg("--tls-ca")
        .arg(&ca.cert)
        .status()
        .expect("heartwire bench runs");
    assert!(status.success(), "bench run failed: {status}");
    let text = std::fs::read_to_string(&figures).expect("figures were written");
    let value = |name: &str| {
        text.lines()
            .map(|line| serde_json::from_str::<serde_json::Value>(line).expect("a JSON figure"))
            .find(|figure| figure["figure"] == name)
            .and_then(|figure| figure["value"].as_f64())
    };
    let bytes = value("idle_bytes_per_conn_40");
    assert!(
        bytes.is_some_and(|b| b > 0.0),
        "idle bytes {bytes:?}\n{text}"
    );
    assert_eq!(value("false_disconnects"), Some(0.0), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cost_scenarios_run_and_connects_are_measured_with_pyjwt_tokens() {
    use heartwire_testkit::tokens::{Spec, TokenKit};
    let kit = TokenKit::new().await;
    let secret = "bench smoke secret of thirty-two bytes";
    let claims = serde_json::json!({"sub": "bench"});
    let tokens = kit
        .mint(&[
            Spec::secret("HS256", secret, claims.clone()).expires_in(600),
            Spec::key("RS256", "rsa", claims).expires_in(600),
        ])
        .await;
    std::fs::write(kit.path("hs256.secret"), secret).expect("the secret is written");
    std::fs::write(kit.path("hs256.jwt"), &tokens[0]).expect("a token file");
    std::fs::write(kit.path("rs256.jwt"), &tokens[1]).expect("a token file");
    let figures = kit.path("figures.jsonl");
    let port = free_port();
    let server = format!(
        "env HEARTWIRE_LOG=warn {HEARTWIRE} serve --listen 127.0.0.1:{port} \
         --ping-interval 1s --ping-timeout 1s --message-rate 0/s --accept-rate 0/s \
         --max-connections-per-ip 0 --max-connections-per-user 0 --allow-anonymous true \
         --jwt-secret-file {} --jwt-public-key {}",
        kit.path("hs256.secret").display(),
        kit.path("rsa.pub.pem").display()
    );
    let token_file = |name: &str| kit.path(name).to_str().expect("UTF-8").to_owned();
    let status = tokio::process::Command::new(HEARTWIRE)
        .args(["bench", "run", "--name", "heartwire-jwt"])
        .args(["--dialect", "heartwire"])
        .args(["--scenarios", "footprint,heartbeat,fanout,connect"])
        .args(["--port", &port.to_string(), "--server", &server])
        .args(["--out", figures.to_str().expect("a UTF-8 path")])
        .args(["--footprint", "40", "--footprint-concurrency", "20"])
        .args(["--heartbeat-connections", "30", "--heartbeat-window", "2s"])
        .args(["--fanout-subscribers", "20", "--fanout-window", "1s"])
        .args(["--connect-connections", "30", "--token-file"])
        .arg(token_file("rs256.jwt"))
        .arg("--connect-token")
        .arg(format!("hs256={}", token_file("hs256.jwt")))
        .arg("--connect-token")
        .arg(format!("rs256={}", token_file("rs256.jwt")))
        .args(["--per-process", "25", "--settle", "500ms"])
        .status()
        .await
        .expect("heartwire bench runs");
    assert!(status.success(), "bench run failed: {status}");
    let text = std::fs::read_to_string(&figures).expect("figures were written");
    let value = |name: &str| {
        text.lines()
            .map(|line| serde_json::from_str::<serde_json::Value>(line).expect("a JSON figure"))
            .find(|figure| figure["figure"] == name)
            .and_then(|figure| figure["value"].as_f64())
    };
    for positive in [
        "idle_user_bytes_per_conn_40",
        "footprint_connects_per_sec_40",
        "heartbeat_cpu_us_30",
        "heartbeats_per_sec_30",
        "connects_per_sec_anonymous",
        "connects_per_sec_hs256",
        "connects_per_sec_rs256",
        "load_fanout",
    ] {
        let value = value(positive);
        assert!(
            value.is_some_and(|v| v > 0.0 && v.is_finite()),
            "{positive} = {value:?}\n{text}"
        );
    }
    // Differences of two samples on a shared machine: present, and not below zero.
    for cost in [
        "idle_kernel_bytes_per_socket_40",
        "fanout_cpu_us_per_delivery_20",
    ] {
        let value = value(cost);
        assert!(
            value.is_some_and(|v| v >= 0.0),
            "{cost} = {value:?}\n{text}"
        );
    }
    let delivered = value("fanout_delivered_pct_20");
    assert!(
        delivered.is_some_and(|d| d >= 99.0),
        "{delivered:?}\n{text}"
    );
    for zero in [
        "false_disconnects_30",
        "failed_connects_anonymous",
        "failed_connects_hs256",
        "failed_connects_rs256",
    ] {
        assert_eq!(value(zero), Some(0.0), "{zero}\n{text}");
    }
}

#[test]
fn the_upgrade_scenario_moves_every_connection_live_and_a_restart_closes_them() {
    let dir = scratch_dir().join("upgrade");
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    let figures = dir.join("figures.jsonl");
    let status = Command::new(HEARTWIRE)
        .args(["bench", "upgrade", "--port", &free_port().to_string()])
        .args(["--idle", "40", "--per-process", "25"])
        .args(["--publishers", "2", "--subscribers", "8", "--rate", "20"])
        .args([
            "--steady",
            "1s",
            "--after",
            "500ms",
            "--restart-spread",
            "500ms",
        ])
        .args(["--out", figures.to_str().expect("a UTF-8 path")])
        .status()
        .expect("heartwire bench upgrade runs");
    assert!(status.success(), "bench upgrade failed: {status}");
    let text = std::fs::read_to_string(&figures).expect("figures were written");
    let values: HashMap<String, f64> = text
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).expect("a JSON figure"))
        .filter_map(|figure| {
            let name = figure["figure"].as_str()?.to_owned();
            Some((name, figure["value"].as_f64()?))
        })
        .collect();
    let value = |name: &str| {
        values
            .get(&format!("upgrade_40_{name}"))
            .copied()
            .unwrap_or_else(|| panic!("no upgrade_40_{name} in {text}"))
    };
    for swap in ["live", "restart"] {
        assert_eq!(value(&format!("{swap}_idle_connected")), 40.0, "{swap}");
        assert!(value(&format!("{swap}_messages_received")) > 0.0, "{swap}");
        for zero in ["messages_lost", "messages_repeated", "gaps_told"] {
            assert_eq!(value(&format!("{swap}_{zero}")), 0.0, "{swap}_{zero}");
        }
        assert!(value(&format!("{swap}_accepting_ms")) > 0.0, "{swap}");
        assert!(value(&format!("{swap}_old_gone_ms")) > 0.0, "{swap}");
    }
    assert_eq!(
        value("live_closes_seen"),
        0.0,
        "a live upgrade closes nothing"
    );
    assert_eq!(
        value("restart_closes_seen"),
        50.0,
        "a restart closes the 40 idle and 10 busy connections"
    );
    assert!(value("restart_clients_back_ms") > 0.0);
    let _ = std::fs::remove_dir_all(&dir);
}
