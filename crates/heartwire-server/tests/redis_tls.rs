//! The Redis broker over TLS (`rediss://`): nodes share channels through a
//! `redis-server` that speaks only TLS, its certificate from a test CA made by
//! `openssl`; and the topologies that take only `redis://` say so.

use heartwire_core::protocol::{ClientFrame, ServerFrame};
use heartwire_server::{RedisConfig, RedisTopology, ServerConfig};
use heartwire_testkit::certs::TestCa;
use heartwire_testkit::redis::node_on;
use heartwire_testkit::redis_tls::TestRedisTls;
use heartwire_testkit::{connect_native, next_frame, send, subscribe};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_share_channels_through_redis_over_tls() {
    let ca = TestCa::new("heartwire redis CA");
    let redis = TestRedisTls::start(&ca);
    let config = RedisConfig::single(redis.url()).with_tls_ca(&ca.cert);
    let first = node_on(&config, ServerConfig::default()).await;
    let second = node_on(&config, ServerConfig::default()).await;

    let (mut listener, _) = connect_native(&first).await;
    subscribe(&mut listener, "room:tls").await;
    let (mut speaker, _) = connect_native(&second).await;
    send(
        &mut speaker,
        &ClientFrame::Publish {
            channel: "room:tls".into(),
            data: json!("over TLS"),
            id: Some("p1".into()),
        },
    )
    .await;
    loop {
        match next_frame(&mut listener).await {
            ServerFrame::Message { data, .. } => {
                assert_eq!(data, json!("over TLS"));
                break;
            }
            ServerFrame::Subscribed { .. } => {}
            other => panic!("expected the message, got {other:?}"),
        }
    }
    // The message went through Redis: its stream is there, read over TLS.
    assert!(redis.cli(&["--scan"]).contains("room:tls"));
    drop((listener, speaker));
    first.shut_down().await;
    second.shut_down().await;
}

#[test]
fn rediss_is_for_redis_servers_and_the_ca_for_rediss() {
    let cluster = RedisConfig::new(RedisTopology::Cluster(vec!["rediss://a:7000/".into()]));
    let err = cluster.validate().unwrap_err().to_string();
    assert!(err.contains("redis-cluster takes redis:// URLs"), "{err}");
    let sentinel = RedisConfig::new(RedisTopology::Sentinel {
        sentinels: vec!["rediss://s:26379/".into()],
        master: "main".into(),
    });
    let err = sentinel.validate().unwrap_err().to_string();
    assert!(err.contains("redis-sentinel takes redis:// URLs"), "{err}");
    let plain_with_ca = RedisConfig::single("redis://a:6379/").with_tls_ca("ca.pem");
    let err = plain_with_ca.validate().unwrap_err().to_string();
    assert!(err.contains("redis-ca is for rediss://"), "{err}");
}
