//! Interop with Node `ws`: `tests/peers/node_client.mjs`, an unchanged third-party client
//! that answers protocol Pings by itself, speaks the native `/ws` protocol against a real
//! server and checks hello, ping/pong, subscribe, publish with ack and seq, the `bad_json`
//! error, the server's Pings while the client is silent, and a clean close.
//!
//! Node and the locked packages of `tests/peers/package.json` must be installed
//! (`scripts/test` does it); without them this test fails and says so.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_ws_client_speaks_the_native_protocol() {
    heartwire_testkit::peer::require(
        "node",
        &[
            "--input-type=module",
            "-e",
            "await import('./tests/peers/node_modules/ws/wrapper.mjs')",
        ],
        "the npm package ws in tests/peers",
    )
    .await;
    let report = heartwire_testkit::peer::run_peer(
        "node",
        &["tests/peers/node_client.mjs", "--stay-ms", "1000"],
    )
    .await;
    // Silent for 1 s with a 200 ms ping interval: the server pinged at least twice.
    assert!(
        report["observed"]["server_pings"].as_u64().unwrap_or(0) >= 2,
        "{report}"
    );
}
