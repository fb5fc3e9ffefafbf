//! Redis masters dying under a stream of 2,000 messages per second: the cluster
//! promotes their replicas, the nodes follow, and no client takes a silent loss.
//! Every subscriber either receives every message once, in order, or is told
//! `recovered: false` for the channels whose history the fail-over cut; no `seq` is
//! ever reused for another message. First a master killed with SIGKILL, then one
//! that hangs (SIGSTOP), on one cluster; then a master that Sentinel fails over.
//! (`scripts/test` installs redis-server 7.)

use std::time::{Duration, Instant};

use heartwire_server::{Limits, RedisConfig, Retention, ServerConfig};
use heartwire_testkit::redis::node_on;
use heartwire_testkit::redis_cluster::{CLUSTER_NODE_TIMEOUT, TestCluster};
use heartwire_testkit::redis_sentinel::{SENTINEL_DOWN_AFTER, TestSentinels};
use heartwire_testkit::stream::{Acked, Publisher, Verdict, Watcher, judge};
use heartwire_testkit::{TestServer, http_get};

/// Messages per second, over all publishers.
const RATE: u32 = 2_000;
/// Channels of the stream.
const CHANNELS: usize = 30;
/// Traffic before a master dies, and after the nodes are back.
const STEADY: Duration = Duration::from_secs(1);
/// How long a master takes writes that no replica receives before it dies: the
/// fail-over loses them.
const LAG: Duration = Duration::from_millis(300);

/// How long a fail-over may take: the cluster's (or the sentinels') detection and
/// election, then the nodes' probe (2 s), placement and resync; with slack for a
/// shared 2-core machine.
const FAILOVER_BOUND: Duration = Duration::from_secs(20);

/// A node whose history holds the whole stream, so what the fail-over did not
/// take can always be replayed, and whose outbound queue holds that replay: after
/// a fail-over a watcher gets at once what its channels received meanwhile, up to
/// RATE × FAILOVER_BOUND messages.
async fn node(redis: &RedisConfig) -> TestServer {
    let config = ServerConfig {
        retention: Retention {
            history_size: 20_000,
            ..Retention::default()
        },
        limits: Limits {
            outbound_queue: RATE as usize * FAILOVER_BOUND.as_secs() as usize,
            ..Limits::default()
        },
        ..ServerConfig::default()
    };
    node_on(redis, config).await
}

/// Waits until every node's `/healthz` says ok and shows it has followed the
/// fail-over (`followed`); returns how long that took. "ok" alone is not enough:
/// a node that has not yet noticed a hung master still reports its link up, and
/// the channels it carried would be placed again only after the test stopped
/// watching.
async fn all_followed(
    nodes: &[TestServer],
    bound: Duration,
    followed: impl Fn(&serde_json::Value) -> bool,
) -> Duration {
    let start = Instant::now();
    loop {
        let mut ok = true;
        for node in nodes {
            let health: serde_json::Value =
                serde_json::from_str(&http_get(node.addr, "/healthz").await).unwrap();
            ok &= health["status"] == "ok" && followed(&health);
        }
        if ok {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < bound,
            "the nodes have not followed the fail-over"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether a node's `/healthz` no longer shows a link to the cluster node on `port`.
fn unlinked_from(port: u16) -> impl Fn(&serde_json::Value) -> bool {
    let name = format!("127.0.0.1:{port}");
    move |health| {
        health["broker_shards"]
            .as_array()
            .is_some_and(|shards| shards.iter().all(|shard| shard["name"] != name.as_str()))
    }
}

/// The stream: a watcher and a publisher on every node, over the same channels.
struct Stream {
    watchers: Vec<Watcher>,
    publishers: Vec<Publisher>,
}

impl Stream {
    async fn start(nodes: &[TestServer], channels: &[String]) -> Self {
        let mut watchers = Vec::new();
        for node in nodes {
            watchers.push(Watcher::start(&node.url("/ws"), channels).await);
        }
        let mut publishers = Vec::new();
        let rate = RATE / nodes.len() as u32;
        for (index, node) in nodes.iter().enumerate() {
            let name = format!("p{index}");
            publishers
                .push(Publisher::start(&node.url("/ws"), &name, channels.to_vec(), rate).await);
        }
        Self {
            watchers,
            publishers,
        }
    }

    async fn finish(self) -> (Vec<Acked>, Verdict) {
        let mut acked = Vec::new();
        for publisher in self.publishers {
            acked.push(publisher.finish().await);
        }
        let mut seen = Vec::new();
        for watcher in self.watchers {
            seen.push(watcher.finish().await);
        }
        let verdict = judge(&acked, &seen);
        (acked, verdict)
    }
}

/// Checks the verdict of a fail-over: no silent loss, no repeat, no alias.
fn check(acked: &[Acked], verdict: &Verdict) {
    let published: usize = acked
        .iter()
        .flat_map(|one| one.values())
        .map(Vec::len)
        .sum();
    println!("{published} messages acknowledged; {verdict:?}");
    assert!(verdict.delivered > 0);
    assert_eq!(verdict.silent_losses(), 0, "silent losses: {verdict:?}");
    assert_eq!((verdict.repeats, verdict.aliases), (0, 0), "{verdict:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_masters_killed_or_hung_under_load_lose_nothing_silently() {
    let mut cluster = tokio::task::block_in_place(TestCluster::start);
    let config = cluster.config();
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(node(&config).await);
    }
    let channels: Vec<String> = (0..CHANNELS).map(|n| format!("s:{n}")).collect();
    let lives: Vec<String> = channels
        .iter()
        .map(|channel| format!("hw:{{{channel}}}#live"))
        .collect();
    let owners = tokio::task::block_in_place(|| cluster.masters_of(&lives));
    let mut masters = owners.clone();
    masters.sort_unstable();
    masters.dedup();
    assert_eq!(masters.len(), 3, "the channels land on every shard");
    let stream = Stream::start(&nodes, &channels).await;
    tokio::time::sleep(STEADY).await;

    // SIGKILL, of a master cut off from its replica: the master's connections drop
    // at once, and the messages of its last LAG never reached the replica.
    let killed = masters[0];
    let ballast = format!(
        "ballast:{{{}}}",
        channels[owners.iter().position(|owner| *owner == killed).unwrap()]
    );
    let replica = tokio::task::block_in_place(|| cluster.detach_replica(killed, &ballast));
    tokio::time::sleep(LAG).await;
    tokio::task::block_in_place(|| {
        cluster.kill(killed);
        cluster.signal(replica, "CONT");
    });
    let died = Instant::now();
    let promoted = tokio::task::block_in_place(|| cluster.wait_for_master(replica, FAILOVER_BOUND));
    let recovered = all_followed(&nodes, FAILOVER_BOUND, unlinked_from(killed)).await;
    println!(
        "SIGKILL: replica promoted after {promoted:?}, every node ok {:?} after the kill",
        died.elapsed()
    );
    assert!(died.elapsed() <= FAILOVER_BOUND, "{recovered:?}");
    tokio::time::sleep(STEADY).await;

    // SIGSTOP: the master hangs with its connections open.
    let hung = masters[1];
    let replica = tokio::task::block_in_place(|| cluster.replica_of(hung));
    tokio::task::block_in_place(|| cluster.signal(hung, "STOP"));
    let stopped = Instant::now();
    let promoted = tokio::task::block_in_place(|| cluster.wait_for_master(replica, FAILOVER_BOUND));
    all_followed(&nodes, FAILOVER_BOUND, unlinked_from(hung)).await;
    println!(
        "SIGSTOP: replica promoted after {promoted:?} (node timeout {CLUSTER_NODE_TIMEOUT:?}), every node ok {:?} after the stop",
        stopped.elapsed()
    );
    tokio::time::sleep(STEADY).await;

    let (acked, verdict) = stream.finish().await;
    check(&acked, &verdict);
    assert!(
        verdict.told > 0,
        "the fail-over cut the history: {verdict:?}"
    );
    let mut failovers = 0.0;
    for node in &nodes {
        failovers += node.metric("heartwire_broker_failovers_total").await;
    }
    println!("channels moved after their master was lost, over the nodes: {failovers}");
    assert!(failovers > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_fail_over_under_load_loses_nothing_silently() {
    let mut sentinels = tokio::task::block_in_place(TestSentinels::start);
    let config = sentinels.config();
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(node(&config).await);
    }
    let channels: Vec<String> = (0..CHANNELS).map(|n| format!("s:{n}")).collect();
    let stream = Stream::start(&nodes, &channels).await;
    tokio::time::sleep(STEADY).await;

    // The master is cut off from its replica: its last messages are lost with it.
    let master = tokio::task::block_in_place(|| sentinels.master_port());
    let replica = tokio::task::block_in_place(|| sentinels.detach_replica());
    tokio::time::sleep(LAG).await;
    tokio::task::block_in_place(|| {
        sentinels.kill(master);
        sentinels.signal(replica, "CONT");
    });
    let died = Instant::now();
    let promoted =
        tokio::task::block_in_place(|| sentinels.wait_for_failover(master, FAILOVER_BOUND));
    let elected = died.elapsed();
    let new_master = format!("127.0.0.1:{promoted}");
    all_followed(&nodes, FAILOVER_BOUND, |health| {
        health["broker_shards"][0]["master"] == new_master.as_str()
    })
    .await;
    println!(
        "the sentinels named {promoted} after {elected:?} (down after {SENTINEL_DOWN_AFTER:?}); every node ok {:?} after the kill",
        died.elapsed()
    );
    tokio::time::sleep(STEADY).await;

    let (acked, verdict) = stream.finish().await;
    check(&acked, &verdict);
    assert!(
        verdict.told > 0,
        "the fail-over cut the history: {verdict:?}"
    );
    let health: serde_json::Value =
        serde_json::from_str(&http_get(nodes[0].addr, "/healthz").await).unwrap();
    println!("/healthz {health}");
    assert_eq!(health["broker_failovers"], 1, "{health}");
    assert_eq!(
        health["broker_shards"][0]["master"],
        format!("127.0.0.1:{promoted}"),
        "{health}"
    );
}
