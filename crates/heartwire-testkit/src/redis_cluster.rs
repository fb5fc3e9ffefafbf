//! Real Redis topologies for the broker's scale-out tests: a Redis Cluster of
//! `redis-server` processes on loopback ([`TestCluster`]), and a master with a
//! replica watched by sentinels ([`TestSentinels`]). Each runs in a temporary
//! directory of its own, every wait is bounded, and everything is killed and removed
//! when dropped.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use heartwire_server::{RedisConfig, RedisTopology};

use super::PATIENCE;

/// How long a cluster node may be silent before the others fail it over; short, so
/// that fail-over tests take seconds.
pub const CLUSTER_NODE_TIMEOUT: Duration = Duration::from_millis(1000);

/// How long sentinels wait before they call a silent master down.
pub const SENTINEL_DOWN_AFTER: Duration = Duration::from_millis(500);

/// A directory under the system's temporary directory, removed when dropped.
#[derive(Debug)]
struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.subsec_nanos());
        let path =
            std::env::temp_dir().join(format!("heartwire-{what}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path).expect("a temporary directory");
        Self(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A free loopback port; with `bus`, one whose cluster bus port (+10000) is free too.
fn free_port(bus: bool) -> u16 {
    for _ in 0..200 {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free loopback port")
            .port();
        if !bus {
            return port;
        }
        if port <= 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
    panic!("no free port pair for a cluster node");
}

/// How long one `redis-cli` call may take: a stopped server never answers.
const CLI_TIMEOUT: &str = "2";

/// Runs `redis-cli -p port args…` and returns its output (nothing when the server
/// does not answer within two seconds).
pub fn redis_cli(port: u16, args: &[&str]) -> String {
    let output = Command::new("timeout")
        .arg(CLI_TIMEOUT)
        .arg("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .unwrap_or_else(|err| {
            panic!("cannot run redis-cli ({err}); run scripts/test, which installs it")
        });
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Waits until `done` holds, checking every 50 ms, for at most `bound`; panics
/// with `what` after.
pub fn wait_until(what: &str, bound: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < bound, "{what}: not within {bound:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    start.elapsed()
}

/// Makes master `master` lose its replica `replica` (which is stopped): a ballast
/// larger than every buffer on the way fills the replica's output buffer, past a
/// small limit, so the master drops the replica. What the master writes from then
/// on is on no replica: a fail-over now loses it, as a real one loses what the
/// asynchronous replication had not carried yet. `ballast_key` must hash to the
/// master's slots in a cluster.
fn detach_replica(master: u16, replica: &Process, ballast_key: &str, dir: &Path) {
    redis_cli(
        master,
        &[
            "CONFIG",
            "SET",
            "client-output-buffer-limit",
            "replica 256kb 0 0",
        ],
    );
    replica.signal("STOP");
    let ballast = dir.join("ballast");
    std::fs::write(&ballast, vec![b'x'; 16 << 20]).expect("a ballast file");
    let status = Command::new("timeout")
        .args([
            CLI_TIMEOUT,
            "redis-cli",
            "-p",
            &master.to_string(),
            "-x",
            "SET",
            ballast_key,
        ])
        .stdin(std::fs::File::open(&ballast).expect("the ballast file"))
        .stdout(Stdio::null())
        .status()
        .expect("redis-cli runs");
    assert!(status.success(), "the ballast was written");
    wait_until("the master drops its replica", PATIENCE, || {
        redis_cli(master, &["INFO", "replication"]).contains("connected_slaves:0")
    });
}

/// One `redis-server` process.
#[derive(Debug)]
struct Process {
    port: u16,
    child: Option<Child>,
}

impl Process {
    fn spawn(port: u16, args: &[String]) -> Self {
        let child = Command::new("redis-server")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| {
                panic!("cannot run redis-server ({err}); run scripts/test, which installs it")
            });
        let process = Self {
            port,
            child: Some(child),
        };
        wait_until("redis-server answers PING", PATIENCE, || {
            redis_cli(port, &["ping"]).trim() == "PONG"
        });
        process
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("the process runs").id();
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal} {pid} failed");
    }

    /// Whether the process runs (it may be stopped).
    fn is_running(&self) -> bool {
        self.child.is_some()
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // SIGKILL ends a stopped process too; wait reaps it.
        self.kill();
    }
}

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
        let nodes: Vec<Process> = (0..6)
            .map(|_| {
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
                    &dir.path().display().to_string(),
                ]
                .map(str::to_owned)
                .to_vec();
                Process::spawn(port, &args)
            })
            .collect();
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
        redis_cli(port, &["CLUSTER", "INFO"])
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{name}:")))
            .map_or(0, |value| value.trim().parse().unwrap_or(0))
    }
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

/// The master name the sentinels of [`TestSentinels`] watch.
pub const SENTINEL_MASTER: &str = "hw";

/// A master with one replica, watched by three sentinels (quorum 2) that fail it
/// over after [`SENTINEL_DOWN_AFTER`] of silence.
#[derive(Debug)]
pub struct TestSentinels {
    servers: Vec<Process>,
    sentinels: Vec<Process>,
    _dir: TempDir,
}

impl TestSentinels {
    /// Starts the master, its replica and the sentinels; returns once the replica is
    /// in sync and every sentinel knows the replica and the other sentinels.
    pub fn start() -> Self {
        let dir = TempDir::new("sentinel");
        let server = |replica_of: Option<u16>| {
            let port = free_port(false);
            let mut args: Vec<String> = [
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ]
            .map(str::to_owned)
            .to_vec();
            if let Some(master) = replica_of {
                args.extend(["--replicaof".into(), "127.0.0.1".into(), master.to_string()]);
            }
            Process::spawn(port, &args)
        };
        let master = server(None);
        let replica = server(Some(master.port));
        let sentinels: Vec<Process> = (0..3)
            .map(|_| {
                let port = free_port(false);
                let file = dir.path().join(format!("sentinel-{port}.conf"));
                let config = format!(
                    "port {port}\nbind 127.0.0.1\ndir {}\nsentinel monitor {SENTINEL_MASTER} 127.0.0.1 {} 2\nsentinel down-after-milliseconds {SENTINEL_MASTER} {}\nsentinel failover-timeout {SENTINEL_MASTER} 3000\nsentinel parallel-syncs {SENTINEL_MASTER} 1\n",
                    dir.path().display(),
                    master.port,
                    SENTINEL_DOWN_AFTER.as_millis()
                );
                std::fs::write(&file, config).expect("a sentinel config file");
                Process::spawn(port, &[file.display().to_string(), "--sentinel".into()])
            })
            .collect();
        let set = Self {
            servers: vec![master, replica],
            sentinels,
            _dir: dir,
        };
        wait_until("the replica is in sync", PATIENCE, || {
            redis_cli(set.servers[1].port, &["INFO", "replication"])
                .contains("master_link_status:up")
        });
        wait_until(
            "the sentinels know each other and the replica",
            PATIENCE * 2,
            || {
                set.sentinels.iter().all(|sentinel| {
                    let others =
                        redis_cli(sentinel.port, &["SENTINEL", "SENTINELS", SENTINEL_MASTER]);
                    let replicas =
                        redis_cli(sentinel.port, &["SENTINEL", "REPLICAS", SENTINEL_MASTER]);
                    others.matches("runid").count() >= 2 && replicas.contains("slave")
                })
            },
        );
        set
    }

    /// The broker's settings: the master named [`SENTINEL_MASTER`], found through
    /// every sentinel.
    pub fn config(&self) -> RedisConfig {
        RedisConfig::new(RedisTopology::Sentinel {
            sentinels: self
                .sentinels
                .iter()
                .map(|sentinel| format!("redis://127.0.0.1:{}/", sentinel.port))
                .collect(),
            master: SENTINEL_MASTER.into(),
        })
    }

    /// The port of the master the first sentinel names now.
    pub fn master_port(&self) -> u16 {
        let reply = redis_cli(
            self.sentinels[0].port,
            &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", SENTINEL_MASTER],
        );
        reply
            .lines()
            .nth(1)
            .and_then(|port| port.trim().parse().ok())
            .expect("the sentinels name a master")
    }

    /// The ports of the master and its replica, as started.
    pub fn server_ports(&self) -> Vec<u16> {
        self.servers.iter().map(|server| server.port).collect()
    }

    /// Cuts the master off from its replica, which is stopped, so that what the
    /// master writes from now on is on no replica; returns the replica's port. Send
    /// it `CONT` once the master is gone.
    pub fn detach_replica(&self) -> u16 {
        let master = self.master_port();
        let replica = self
            .servers
            .iter()
            .find(|server| server.port != master)
            .expect("a replica");
        detach_replica(master, replica, "ballast", self._dir.path());
        replica.port
    }

    /// Kills the server at `port` with SIGKILL.
    pub fn kill(&mut self, port: u16) {
        if let Some(server) = self.servers.iter_mut().find(|server| server.port == port) {
            server.kill();
        }
    }

    /// Sends `signal` to the server at `port`.
    pub fn signal(&self, port: u16, signal: &str) {
        self.servers
            .iter()
            .find(|server| server.port == port)
            .expect("a server of this set")
            .signal(signal);
    }

    /// Waits until the sentinels name a master other than `old`; returns its port.
    pub fn wait_for_failover(&self, old: u16, bound: Duration) -> u16 {
        wait_until("the sentinels fail the master over", bound, || {
            self.master_port() != old
        });
        self.master_port()
    }

    /// Runs `redis-cli` against the server at `port`.
    pub fn cli(&self, port: u16, args: &[&str]) -> String {
        redis_cli(port, args)
    }
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
