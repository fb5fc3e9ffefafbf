//! Interop with Python `websockets`: `tests/peers/ws_client.py`, an unchanged third-party
//! client with its own RFC 6455 keepalive, speaks the native `/ws` protocol against a real
//! server and checks hello, ping/pong, subscribe, publish with ack and seq, error envelopes,
//! keepalive Pongs and a clean close.
//!
//! Python 3 and the pinned packages of `tests/peers/requirements.txt` must be installed
//! (`scripts/test` does it); without them this test fails and says so.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_websockets_client_speaks_the_native_protocol() {
    heartwire_testkit::peer::require(
        "python3",
        &["-c", "import websockets"],
        "the Python package websockets",
    )
    .await;
    let report = heartwire_testkit::peer::run_peer(
        "python3",
        &[
            "tests/peers/ws_client.py",
            "--ping-interval",
            "0.2",
            "--ping-timeout",
            "0.2",
            "--stay",
            "1.0",
        ],
    )
    .await;
    // The client's own keepalive Pings were answered by the server.
    assert!(
        report["observed"]["latency_s"].as_f64().unwrap_or(0.0) > 0.0,
        "{report}"
    );
    assert_eq!(report["observed"]["close_code"], 1000, "{report}");
}
