//! A real Redis Cluster for the broker's scale-out tests: `redis-server` processes on
//! loopback made into a cluster with `redis-cli --cluster create`, in a temporary
//! directory of its own; every wait is bounded, and everything is killed and removed
//! when dropped. [`redis_sentinel`](super::redis_sentinel) has a master watched by
//! sentinels.

use std::process::{Command, Stdio};
use std::time::Duration;

use heartwire_server::{RedisConfig, RedisTopology};

use super::PATIENCE;
use super::redis_process::{
    CLI_TIMEOUT, Process, TempDir, detach_replica, free_port, redis_cli, wait_until,
};

/// How long a cluster node may be silent before the others fail it over; short, so
/// that fail-over tests take seconds.
pub const CLUSTER_NODE_TIMEOUT: Duration = Duration::from_millis(1000);

/// A Redis Cluster of `redis-server` processes on 127.0.0.1, made with
/// `redis-cli --cluster create`.
#[derive(Debug)]
pub struct TestCluster {
    nodes: Vec<Process>,
    _dir: TempDir,
}

impl TestCluster {
    /// Three masters with one replica each, [`CLUSTER_NODE_TIMEOUT`], no persistence;
    /// returns once every slot is served and every replica is in sync.
    pub fn start() -> Self {
        let dir = TempDir::new("cluster");
        let nodes: Vec<Process> = (0..6).map(|_| cluster_node(dir.path())).collect();
        let addresses: Vec<String> = nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port))
            .collect();
        let output = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .expect("redis-cli --cluster create runs");
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        let cluster = Self { nodes, _dir: dir };
        cluster.wait_until_settled();
        cluster
    }

    /// Starts a new node and has it join the cluster as a master without slots
    /// (`redis-cli --cluster add-node`); returns its port once every node knows it and
    /// every node counts the same current epoch. A node that takes a slot before it
    /// knows the current epoch may claim it under an epoch lower than its old owner's;
    /// it then loses the slot again, and, left without slots, turns into that owner's
    /// replica for a moment.
    pub fn add_master(&mut self) -> u16 {
        let node = cluster_node(self._dir.path());
        let port = node.port;
        let known = self.ports()[0];
        let output = Command::new("redis-cli")
            .args(["--cluster", "add-node"])
            .arg(format!("127.0.0.1:{port}"))
            .arg(format!("127.0.0.1:{known}"))
            .output()
            .expect("redis-cli --cluster add-node runs");
        assert!(
            output.status.success(),
            "redis-cli --cluster add-node failed: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        self.nodes.push(node);
        let id = self.id_of(port);
        wait_until("every node knows the new one", PATIENCE, || {
            self.ports()
                .into_iter()
                .all(|other| redis_cli(other, &["CLUSTER", "NODES"]).contains(&id))
        });
        wait_until("every node counts the same current epoch", PATIENCE, || {
            let epochs: std::collections::HashSet<u64> = self
                .ports()
                .into_iter()
                .map(|other| self.cluster_counter(other, "cluster_current_epoch"))
                .collect();
            epochs.len() == 1
        });
        self.wait_until_settled();
        port
    }

    /// The ports of every node still running.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|node| node.is_running())
            .map(|node| node.port)
            .collect()
    }

    /// The broker's settings: the cluster, from every node as a seed.
    pub fn config(&self) -> RedisConfig {
        RedisConfig::new(RedisTopology::Cluster(
            self.ports()
                .iter()
                .map(|port| format!("redis://127.0.0.1:{port}/"))
                .collect(),
        ))
    }

    /// Runs `redis-cli` against node `port`.
    pub fn cli(&self, port: u16, args: &[&str]) -> String {
        redis_cli(port, args)
    }

    /// The replication ids node `port` reports: `master_replid`, then
    /// `master_replid2` (all zeros unless it was promoted from a replica).
    pub fn replication_ids(&self, port: u16) -> (String, String) {
        let info = redis_cli(port, &["INFO", "replication"]);
        let id = |name| info_field(&info, name).unwrap_or_default().to_owned();
        (id("master_replid"), id("master_replid2"))
    }

    /// The role (`master` or `slave`) node `port` reports.
    pub fn role(&self, port: u16) -> String {
        redis_cli(port, &["ROLE"])
            .lines()
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned()
    }

    /// The ports of the nodes that are masters now.
    pub fn masters(&self) -> Vec<u16> {
        self.ports()
            .into_iter()
            .filter(|port| self.role(*port) == "master")
            .collect()
    }

    /// The port of the master that serves `key`'s slot now.
    pub fn master_of(&self, key: &str) -> u16 {
        self.masters_of(&[key.to_owned()])[0]
    }

    /// The ports of the masters that serve the slots of `keys` now, in order.
    pub fn masters_of(&self, keys: &[String]) -> Vec<u16> {
        let asked = *self.masters().first().expect("a running master to ask");
        let slots = self.slots_of(keys);
        let nodes = redis_cli(asked, &["CLUSTER", "NODES"]);
        let masters: Vec<(u16, &str)> = nodes
            .lines()
            .filter(|line| {
                let flags = line.split(' ').nth(2).unwrap_or_default();
                flags.split(',').any(|flag| flag == "master")
                    && !flags.split(',').any(|flag| flag == "fail")
            })
            .filter_map(|line| {
                let address = line.split(' ').nth(1)?;
                let port = address.split(['@', ',']).next()?.rsplit_once(':')?.1;
                Some((port.parse().ok()?, line))
            })
            .collect();
        slots
            .iter()
            .map(|slot| {
                masters
                    .iter()
                    .find(|(_, line)| serves_slot(line, *slot))
                    .map(|(port, _)| *port)
                    .unwrap_or_else(|| panic!("no master serves slot {slot}"))
            })
            .collect()
    }

    /// The slots of `keys`, in order: one `CLUSTER KEYSLOT` per key, all on one
    /// `redis-cli`.
    pub fn slots_of(&self, keys: &[String]) -> Vec<u16> {
        let asked = *self.masters().first().expect("a running master to ask");
        let script: String = keys
            .iter()
            .map(|key| format!("CLUSTER KEYSLOT \"{key}\"\n"))
            .collect();
        let mut cli = Command::new("timeout")
            .args([CLI_TIMEOUT, "redis-cli", "-p", &asked.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("redis-cli runs");
        std::io::Write::write_all(
            &mut cli.stdin.take().expect("piped stdin"),
            script.as_bytes(),
        )
        .expect("redis-cli reads its commands");
        let output = cli.wait_with_output().expect("redis-cli ends");
        let slots: Vec<u16> = String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(|line| line.trim().parse().expect("a slot"))
            .collect();
        assert_eq!(slots.len(), keys.len(), "a slot for every key");
        slots
    }

    /// The lowest slot that master `port` serves.
    pub fn first_slot_of(&self, port: u16) -> u16 {
        let nodes = redis_cli(port, &["CLUSTER", "NODES"]);
        let line = nodes
            .lines()
            .find(|line| line.contains("myself"))
            .expect("the node's own line");
        line.split(' ')
            .skip(8)
            .filter_map(|range| range.split('-').next()?.parse().ok())
            .min()
            .expect("the master serves slots")
    }

    /// The port of a replica of master `port`.
    pub fn replica_of(&self, port: u16) -> u16 {
        let id = redis_cli(port, &["CLUSTER", "MYID"]).trim().to_owned();
        self.ports()
            .into_iter()
            .find(|candidate| {
                redis_cli(*candidate, &["CLUSTER", "NODES"])
                    .lines()
                    .any(|line| {
                        line.contains("myself") && line.contains(&id) && line.contains("slave")
                    })
            })
            .unwrap_or_else(|| panic!("master {port} has no replica"))
    }

    /// The id of node `port` in the cluster.
    pub fn id_of(&self, port: u16) -> String {
        redis_cli(port, &["CLUSTER", "MYID"]).trim().to_owned()
    }

    /// Kills node `port` with SIGKILL.
    pub fn kill(&mut self, port: u16) {
        self.node(port).kill();
    }

    /// Cuts master `master` off from its replica, which is stopped, so that what
    /// the master writes from now on is on no replica (see `detach_replica`); returns
    /// the replica's port. Send it `CONT` once the master is gone.
    pub fn detach_replica(&self, master: u16, ballast_key: &str) -> u16 {
        let replica = self.replica_of(master);
        let process = self
            .nodes
            .iter()
            .find(|node| node.port == replica)
            .expect("a node of this cluster");
        detach_replica(master, process, ballast_key, self._dir.path());
        replica
    }

    /// Sends `signal` (such as `STOP` or `CONT`) to node `port`.
    pub fn signal(&self, port: u16, signal: &str) {
        self.nodes
            .iter()
            .find(|node| node.port == port)
            .expect("a node of this cluster")
            .signal(signal);
    }

    fn node(&mut self, port: u16) -> &mut Process {
        self.nodes
            .iter_mut()
            .find(|node| node.port == port)
            .expect("a node of this cluster")
    }

    /// Waits until node `port` is a master (its replica was promoted, say); returns
    /// how long that took.
    pub fn wait_for_master(&self, port: u16, bound: Duration) -> Duration {
        wait_until(&format!("node {port} becomes a master"), bound, || {
            self.role(port) == "master"
        })
    }

    /// Waits until every running master node says the cluster is ok and every running
    /// replica is in sync with its master.
    pub fn wait_until_settled(&self) {
        wait_until("the cluster serves every slot", PATIENCE * 3, || {
            self.ports().into_iter().all(|port| {
                let info = redis_cli(port, &["CLUSTER", "INFO"]);
                info.contains("cluster_state:ok")
            }) && self.ports().into_iter().all(|port| {
                let replication = redis_cli(port, &["INFO", "replication"]);
                replication.contains("role:master") || replication.contains("master_link_status:up")
            })
        });
    }

    /// Moves `slots` slots from master `from` to master `to` with
    /// `redis-cli --cluster reshard`, while traffic flows.
    pub fn reshard(&self, from: u16, to: u16, slots: u32) {
        let output = Command::new("redis-cli")
            .arg("--cluster")
            .arg("reshard")
            .arg(format!("127.0.0.1:{from}"))
            .args(["--cluster-from", &self.id_of(from)])
            .args(["--cluster-to", &self.id_of(to)])
            .args(["--cluster-slots", &slots.to_string()])
            .args(["--cluster-yes", "--cluster-pipeline", "100"])
            .stdout(Stdio::piped())
            .output()
            .expect("redis-cli --cluster reshard runs");
        assert!(
            output.status.success(),
            "redis-cli --cluster reshard failed: {}",
            String::from_utf8_lossy(&output.stdout)
        );
    }

    /// A counter of `CLUSTER INFO` on node `port`, such as
    /// `cluster_stats_messages_publish_sent`.
    pub fn cluster_counter(&self, port: u16, name: &str) -> u64 {
        info_field(&redis_cli(port, &["CLUSTER", "INFO"]), name)
            .map_or(0, |value| value.parse().unwrap_or(0))
    }
}

/// The value of `name` in an `INFO`-style reply (`name:value` lines).
fn info_field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
}

/// A new `redis-server` in cluster mode, with [`CLUSTER_NODE_TIMEOUT`] and no
/// persistence, its files in `dir`.
fn cluster_node(dir: &std::path::Path) -> Process {
    let port = free_port(true);
    let args: Vec<String> = [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        &format!("nodes-{port}.conf"),
        "--cluster-node-timeout",
        &CLUSTER_NODE_TIMEOUT.as_millis().to_string(),
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        &dir.display().to_string(),
    ]
    .map(str::to_owned)
    .to_vec();
    Process::spawn(port, &args)
}

/// Whether a `CLUSTER NODES` line lists `slot` among its slot ranges.
fn serves_slot(line: &str, slot: u16) -> bool {
    line.split(' ').skip(8).any(|range| {
        let (low, high) = range.split_once('-').unwrap_or((range, range));
        match (low.parse::<u16>(), high.parse::<u16>()) {
            (Ok(low), Ok(high)) => (low..=high).contains(&slot),
            _ => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_ranges_are_read_from_a_nodes_line() {
        let line =
            "4bb2 127.0.0.1:7101@17101 myself,master - 0 0 1 connected 0-5460 6000 7000-7001";
        assert!(serves_slot(line, 0) && serves_slot(line, 5460) && serves_slot(line, 6000));
        assert!(serves_slot(line, 7001) && !serves_slot(line, 5461) && !serves_slot(line, 7002));
    }
}
