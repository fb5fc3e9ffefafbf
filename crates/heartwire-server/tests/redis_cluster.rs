//! Nodes sharing channels through a Redis Cluster of three masters with one replica
//! each, six `redis-server` processes started by the test: messages travel by
//! sharded pub/sub only within the shard that owns their channel, django-websocket-
//! redis's classic publishes reach facilities on every node, its identity audiences
//! work for user and group names that hold spaces and braces, and a node that joins
//! takes live channels by a resharding that loses nothing. (`scripts/test` installs
//! redis-server 7.)

use std::collections::HashMap;
use std::time::Duration;

use futures_util::SinkExt;
use heartwire_server::{Access, ServerConfig};
use heartwire_testkit::redis::node_on;
use heartwire_testkit::redis_cluster::TestCluster;
use heartwire_testkit::redis_process::wait_until;
use heartwire_testkit::stream::{Publisher, Watcher, judge};
use heartwire_testkit::tokens::{Spec, TokenKit};
use heartwire_testkit::{PATIENCE, TestServer, connect, http_get, next_text};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

/// Three nodes on `cluster`.
async fn nodes(cluster: &TestCluster) -> Vec<TestServer> {
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(node_on(&cluster.config(), ServerConfig::default()).await);
    }
    nodes
}

/// heartwire's live channel of `channel`: its hash tag is the channel.
fn live(channel: &str) -> String {
    format!("hw:{{{channel}}}#live")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_channels_over_three_shards_reach_every_node_once_and_only_their_shard() {
    let cluster = tokio::task::block_in_place(TestCluster::start);
    let nodes = nodes(&cluster).await;
    let channels: Vec<String> = (0..100).map(|n| format!("room:{n}")).collect();
    let lives: Vec<String> = channels.iter().map(|channel| live(channel)).collect();
    let mut owners: HashMap<u16, Vec<&String>> = HashMap::new();
    let masters = tokio::task::block_in_place(|| cluster.masters_of(&lives));
    for (channel, owner) in channels.iter().zip(masters) {
        owners.entry(owner).or_default().push(channel);
    }
    assert_eq!(owners.len(), 3, "the channels land on every shard");

    let mut watchers = Vec::new();
    for node in &nodes {
        watchers.push(Watcher::start(&node.url("/ws"), &channels).await);
    }
    // Every node subscribed each channel on its owner only.
    tokio::task::block_in_place(|| {
        for (owner, owned) in &owners {
            for master in cluster.masters() {
                let numsub = cluster.cli(master, &["PUBSUB", "SHARDNUMSUB", &live(owned[0])]);
                let count: u32 = numsub.lines().nth(1).unwrap().trim().parse().unwrap();
                assert_eq!(count, if master == *owner { 3 } else { 0 }, "{numsub}");
            }
        }
    });
    let counters = |name: &str| -> HashMap<u16, u64> {
        cluster
            .ports()
            .into_iter()
            .map(|port| (port, cluster.cluster_counter(port, name)))
            .collect()
    };
    let (classic_before, sharded_before) = tokio::task::block_in_place(|| {
        (
            counters("cluster_stats_messages_publish_sent"),
            counters("cluster_stats_messages_publishshard_sent"),
        )
    });

    // One publisher per node, each on a third of the channels: 1,000 messages.
    let mut publishers = Vec::new();
    for (index, node) in nodes.iter().enumerate() {
        let own: Vec<String> = channels.iter().skip(index).step_by(3).cloned().collect();
        let rate = 100 * own.len() as u32 / 10;
        publishers.push(Publisher::start(&node.url("/ws"), &format!("p{index}"), own, rate).await);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut acked = Vec::new();
    for publisher in publishers {
        acked.push(publisher.finish().await);
    }
    let mut seen = Vec::new();
    for watcher in watchers {
        seen.push(watcher.finish().await);
    }
    let published: usize = acked
        .iter()
        .flat_map(|one| one.values())
        .map(Vec::len)
        .sum();
    let verdict = judge(&acked, &seen);
    println!("{published} messages published, {verdict:?}");
    assert!(published >= 500, "{published} messages");
    assert_eq!(
        verdict.delivered,
        3 * published as u64,
        "every node got each once"
    );
    assert_eq!(
        (
            verdict.gaps,
            verdict.repeats,
            verdict.missing,
            verdict.aliases,
            verdict.told
        ),
        (0, 0, 0, 0, 0)
    );

    // Each message crossed the cluster bus only within its shard: never as a classic
    // publish to every node, and as a sharded one from its owner to its replica.
    let (classic_after, sharded_after) = tokio::task::block_in_place(|| {
        (
            counters("cluster_stats_messages_publish_sent"),
            counters("cluster_stats_messages_publishshard_sent"),
        )
    });
    for port in cluster.ports() {
        assert_eq!(
            classic_after[&port], classic_before[&port],
            "node {port} sent no classic publish"
        );
        let owned: usize = owners.get(&port).map_or(0, |owned| {
            acked
                .iter()
                .flat_map(|one| owned.iter().filter_map(|channel| one.get(channel.as_str())))
                .map(Vec::len)
                .sum()
        });
        assert_eq!(
            sharded_after[&port] - sharded_before[&port],
            owned as u64,
            "node {port} sent each message of its channels to its replica, and no other"
        );
    }
    let health: serde_json::Value =
        serde_json::from_str(&http_get(nodes[0].addr, "/healthz").await).unwrap();
    println!("/healthz {health}");
    let shards = health["broker_shards"].as_array().unwrap();
    assert_eq!(
        shards.len(),
        4,
        "the cluster and its three masters: {health}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_classic_publish_to_any_node_reaches_facilities_on_every_heartwire_node() {
    let cluster = tokio::task::block_in_place(TestCluster::start);
    let nodes = nodes(&cluster).await;
    let mut readers = Vec::new();
    for node in &nodes[..2] {
        readers.push(connect(&node.url("/ws/chat?subscribe-broadcast")).await);
    }
    // Both nodes subscribed (classic pub/sub reaches every cluster node).
    tokio::task::block_in_place(|| {
        wait_until("both nodes subscribed", PATIENCE, || {
            let owner = cluster.master_of(&live("broadcast:chat"));
            let numsub = cluster.cli(owner, &["PUBSUB", "NUMSUB", "broadcast:chat"]);
            numsub.lines().nth(1).map(str::trim) == Some("2")
        })
    });
    for port in cluster.ports() {
        let text = format!("from django via {port}");
        tokio::task::block_in_place(|| cluster.cli(port, &["PUBLISH", "broadcast:chat", &text]));
        for reader in &mut readers {
            assert_eq!(next_text(reader).await, text);
        }
    }
    // heartwire's own publish: once on each node, raw for Django, kept on the
    // node of its slot.
    let mut writer = connect(&nodes[2].url("/ws/chat?publish-broadcast")).await;
    writer.send(Message::text("from heartwire")).await.unwrap();
    for reader in &mut readers {
        assert_eq!(next_text(reader).await, "from heartwire");
    }
    let kept = tokio::task::block_in_place(|| {
        let owner = cluster.master_of("broadcast:chat");
        cluster.cli(owner, &["GET", "broadcast:chat"])
    });
    assert_eq!(kept.trim(), "from heartwire");
    let last = tokio::task::block_in_place(|| {
        cluster.cli(cluster.ports()[0], &["PUBLISH", "broadcast:chat", "last"])
    });
    assert!(!last.is_empty());
    for reader in &mut readers {
        assert_eq!(
            next_text(reader).await,
            "last",
            "no second copy of heartwire's message"
        );
    }
    // A value Django kept is read from the node of its slot by a late joiner.
    tokio::task::block_in_place(|| {
        let owner = cluster.master_of("broadcast:news");
        cluster.cli(owner, &["SETEX", "broadcast:news", "60", "kept by django"]);
    });
    let mut late = connect(&nodes[1].url("/ws/news?subscribe-broadcast")).await;
    assert_eq!(next_text(&mut late).await, "kept by django");
}

/// django-websocket-redis's identity audiences in a cluster, for a user and a group
/// whose names hold spaces and braces: heartwire's names of their channels are tagged
/// by the whole channel (its braces written `#(` and `#)`), Django's are untouched,
/// and messages from heartwire and from Django both arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_channels_of_names_with_spaces_and_braces_work_in_a_cluster() {
    const SECRET: &str = "cluster-identity-test-secret";
    let cluster = tokio::task::block_in_place(TestCluster::start);
    let config = || ServerConfig {
        access: Access {
            jwt_secret: Some(SECRET.into()),
            ..Access::default()
        },
        ..ServerConfig::default()
    };
    let (a, b) = (
        node_on(&cluster.config(), config()).await,
        node_on(&cluster.config(), config()).await,
    );
    let claims = json!({"sub": "{ada} lovelace", "groups": ["ops} {eu"]});
    let token = TokenKit::new()
        .await
        .mint_one(Spec::secret("HS256", SECRET, claims))
        .await;
    let url = |node: &TestServer, flags: &str| node.url(&format!("/ws/chat?{flags}&token={token}"));
    // Django's channel, and heartwire's live channel with its tag, of each audience.
    let channels = [
        (
            "user:{ada} lovelace:chat",
            "hw:{user:#(ada#) lovelace:chat}#live",
        ),
        ("group:ops} {eu:chat", "hw:{group:ops#) #(eu:chat}#live"),
    ];
    let mut reader = connect(&url(&a, "subscribe-user&subscribe-group")).await;
    tokio::task::block_in_place(|| {
        for (raw, live) in channels {
            wait_until(&format!("{raw} subscribed"), PATIENCE, || {
                let owner = cluster.master_of(live);
                let numsub = cluster.cli(owner, &["PUBSUB", "NUMSUB", raw]);
                numsub.lines().nth(1).map(str::trim) == Some("1")
            });
        }
    });
    let mut writer = connect(&url(&b, "publish-user&publish-group")).await;
    writer.send(Message::text("from heartwire")).await.unwrap();
    for _ in channels {
        assert_eq!(next_text(&mut reader).await, "from heartwire");
    }
    tokio::task::block_in_place(|| {
        for (raw, live) in channels {
            // Published once in heartwire's sequence, on the slot of the whole channel.
            let seq = live.replace("#live", "#seq");
            assert_eq!(
                cluster.master_of(&seq),
                cluster.master_of(live),
                "{seq} beside {live}"
            );
            assert_eq!(
                cluster.cli(cluster.master_of(&seq), &["GET", &seq]).trim(),
                "1"
            );
            // Kept raw under Django's name, on that name's own slot.
            let kept = cluster.cli(cluster.master_of(raw), &["GET", raw]);
            assert_eq!(kept.trim(), "from heartwire", "{raw}");
            // Django publishes there too.
            cluster.cli(
                cluster.ports()[0],
                &["PUBLISH", raw, &format!("django to {raw}")],
            );
        }
    });
    for (raw, _) in channels {
        assert_eq!(next_text(&mut reader).await, format!("django to {raw}"));
    }
    // A late joiner gets each channel's last message.
    let mut late = connect(&url(&a, "subscribe-user&subscribe-group")).await;
    for _ in channels {
        assert_eq!(next_text(&mut late).await, "from heartwire");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_joins_takes_live_channels_by_resharding_and_nothing_is_lost() {
    const MOVED_SLOTS: u16 = 300;
    const MOVED_CHANNELS: usize = 12;
    let mut cluster = tokio::task::block_in_place(TestCluster::start);
    let nodes = nodes(&cluster).await;
    let masters = tokio::task::block_in_place(|| cluster.masters());
    let from = masters[0];
    // Half the channels in the first slots of `from`, which the resharding moves;
    // the others anywhere.
    let candidates: Vec<String> = (0..6000).map(|n| format!("r:{n}")).collect();
    let lives: Vec<String> = candidates.iter().map(|channel| live(channel)).collect();
    let (slots, first) =
        tokio::task::block_in_place(|| (cluster.slots_of(&lives), cluster.first_slot_of(from)));
    let moving: Vec<String> = candidates
        .iter()
        .zip(&slots)
        .filter(|(_, slot)| (first..first + MOVED_SLOTS).contains(*slot))
        .map(|(channel, _)| channel.clone())
        .take(MOVED_CHANNELS)
        .collect();
    assert_eq!(
        moving.len(),
        MOVED_CHANNELS,
        "enough channels in the slots that move"
    );
    let channels: Vec<String> = moving
        .iter()
        .cloned()
        .chain(candidates.iter().take(12).cloned())
        .collect();

    let mut watchers = Vec::new();
    for node in &nodes {
        watchers.push(Watcher::start(&node.url("/ws"), &channels).await);
    }
    let mut publishers = Vec::new();
    for (index, node) in nodes.iter().enumerate() {
        let name = format!("p{index}");
        publishers.push(Publisher::start(&node.url("/ws"), &name, channels.clone(), 200).await);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // A fourth master joins, and the first master's slots move to it, under traffic.
    let to = tokio::task::block_in_place(|| cluster.add_master());
    tokio::task::block_in_place(|| cluster.reshard(from, to, u32::from(MOVED_SLOTS)));
    let moved_lives: Vec<String> = moving.iter().map(|channel| live(channel)).collect();
    let owners = tokio::task::block_in_place(|| cluster.masters_of(&moved_lives));
    assert!(
        owners.iter().all(|owner| *owner == to),
        "the channels moved: {owners:?}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut acked = Vec::new();
    for publisher in publishers {
        acked.push(publisher.finish().await);
    }
    let mut seen = Vec::new();
    for watcher in watchers {
        seen.push(watcher.finish().await);
    }
    let published: usize = acked
        .iter()
        .flat_map(|one| one.values())
        .map(Vec::len)
        .sum();
    let verdict = judge(&acked, &seen);
    println!("{published} messages across the resharding; {verdict:?}");
    assert_eq!(
        (
            verdict.gaps,
            verdict.repeats,
            verdict.missing,
            verdict.aliases
        ),
        (0, 0, 0, 0),
        "nothing lost silently, nothing repeated"
    );
    // Redis Cluster may still turn the new master into the old one's replica for a
    // moment during the resharding (see `TestCluster::add_master`), and promote it
    // again: it then reports the old master's history as the one it was promoted
    // from, so its channels' history may have been cut and they get a new epoch,
    // their subscribers told. Only then may an epoch change.
    let (old_history, _) = tokio::task::block_in_place(|| cluster.replication_ids(from));
    let (_, promoted_from) = tokio::task::block_in_place(|| cluster.replication_ids(to));
    if promoted_from == old_history {
        println!("the new master was the old one's replica for a while: moved channels renewed");
        assert!(
            verdict.told <= 3 * MOVED_CHANNELS as u64,
            "only the moved channels get a new epoch"
        );
    } else {
        assert_eq!(
            verdict.told, 0,
            "no epoch changed: the moved channels were adopted"
        );
        assert_eq!(
            verdict.delivered,
            3 * published as u64,
            "every node got each once"
        );
    }
}
