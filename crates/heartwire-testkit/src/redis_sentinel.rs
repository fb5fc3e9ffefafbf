//! A Redis master with one replica, watched by three sentinels, for the broker's
//! Sentinel tests: `redis-server` processes on loopback in a temporary directory of
//! their own; every wait is bounded, and everything is killed and removed when
//! dropped.

use std::time::Duration;

use heartwire_server::{RedisConfig, RedisTopology};

use super::PATIENCE;
use super::redis_process::{Process, TempDir, detach_replica, free_port, redis_cli, wait_until};

/// How long sentinels wait before they call a silent master down.
pub const SENTINEL_DOWN_AFTER: Duration = Duration::from_millis(500);

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
                "--dir",
                &dir.path().display().to_string(),
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
