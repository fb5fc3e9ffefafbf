//! The Redis topologies of the scale-out scenario, as `redis-server` processes on
//! loopback without persistence: one server, three independent servers, or a Redis
//! Cluster of three masters with a replica each. Each lives in a temporary directory
//! and is killed, directory and all, when dropped.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

/// How long a cluster node may be silent before its replica takes over.
const NODE_TIMEOUT_MS: &str = "1000";
/// The longest a topology may take to come up.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Which Redis the three heartwire processes share.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Topology {
    /// One server.
    Single,
    /// Three independent servers, channels spread by consistent hash.
    Sharded,
    /// A cluster of three masters, one replica each.
    Cluster,
}

impl Topology {
    /// Its name in the figures.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Single => "single",
            Self::Sharded => "sharded3",
            Self::Cluster => "cluster3",
        }
    }
}

/// The running servers of one topology.
pub(crate) struct Servers {
    topology: Topology,
    children: Vec<(u16, Child)>,
    dir: PathBuf,
}

/// Runs `redis-cli -p port args…` (two seconds at most) and returns its output.
pub(crate) fn cli(port: u16, args: &[&str]) -> String {
    Command::new("timeout")
        .args(["2", "redis-cli", "-p", &port.to_string()])
        .args(args)
        .output()
        .map(|output| String::from_utf8_lossy(&output.stdout).into_owned())
        .unwrap_or_default()
}

fn free_port(bus: bool) -> anyhow::Result<u16> {
    for _ in 0..200 {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        if !bus || (port <= 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok()) {
            return Ok(port);
        }
    }
    anyhow::bail!("no free port for redis-server")
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) -> anyhow::Result<()> {
    let start = Instant::now();
    while !done() {
        anyhow::ensure!(
            start.elapsed() < START_TIMEOUT,
            "{what}: not within {START_TIMEOUT:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

impl Servers {
    /// Starts `topology`; returns once it serves.
    pub(crate) fn start(topology: Topology) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!(
            "heartwire-bench-{}-{}",
            topology.label(),
            std::process::id()
        ));
        std::fs::create_dir_all(&dir)?;
        let mut servers = Self {
            topology,
            children: Vec::new(),
            dir,
        };
        let (count, cluster) = match topology {
            Topology::Single => (1, false),
            Topology::Sharded => (3, false),
            Topology::Cluster => (6, true),
        };
        for _ in 0..count {
            servers.launch(cluster)?;
        }
        if cluster {
            let addresses: Vec<String> = servers
                .ports()
                .iter()
                .map(|port| format!("127.0.0.1:{port}"))
                .collect();
            let status = Command::new("redis-cli")
                .args(["--cluster", "create"])
                .args(&addresses)
                .args(["--cluster-replicas", "1", "--cluster-yes"])
                .stdout(Stdio::null())
                .status()
                .context("cannot run redis-cli --cluster create")?;
            anyhow::ensure!(status.success(), "redis-cli --cluster create failed");
            let ports = servers.ports();
            wait_until("the cluster serves every slot", || {
                ports.iter().all(|port| {
                    cli(*port, &["CLUSTER", "INFO"]).contains("cluster_state:ok") && {
                        let replication = cli(*port, &["INFO", "replication"]);
                        replication.contains("role:master")
                            || replication.contains("master_link_status:up")
                    }
                })
            })?;
        }
        Ok(servers)
    }

    fn launch(&mut self, cluster: bool) -> anyhow::Result<()> {
        let port = free_port(cluster)?;
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir);
        if cluster {
            command
                .args([
                    "--cluster-enabled",
                    "yes",
                    "--cluster-node-timeout",
                    NODE_TIMEOUT_MS,
                ])
                .args(["--cluster-config-file", &format!("nodes-{port}.conf")]);
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot run redis-server (scripts/test installs it)")?;
        self.children.push((port, child));
        wait_until("redis-server answers", || {
            cli(port, &["PING"]).trim() == "PONG"
        })
    }

    /// The ports of the running servers.
    pub(crate) fn ports(&self) -> Vec<u16> {
        self.children.iter().map(|(port, _)| *port).collect()
    }

    /// The `heartwire serve` options that reach this topology.
    pub(crate) fn serve_options(&self) -> Vec<String> {
        let urls: Vec<String> = self
            .ports()
            .iter()
            .map(|port| format!("redis://127.0.0.1:{port}/"))
            .collect();
        let flag = match self.topology {
            Topology::Cluster => "--redis-cluster",
            Topology::Single | Topology::Sharded => "--redis",
        };
        vec![flag.to_owned(), urls.join(",")]
    }

    /// In a cluster, the port of the master that serves `key`'s slot.
    pub(crate) fn master_of(&self, key: &str) -> anyhow::Result<u16> {
        let asked = self.ports()[0];
        let slot: u16 = cli(asked, &["CLUSTER", "KEYSLOT", key])
            .trim()
            .parse()
            .context("CLUSTER KEYSLOT")?;
        let nodes = cli(asked, &["CLUSTER", "NODES"]);
        nodes
            .lines()
            .filter(|line| line.split(' ').nth(2).is_some_and(|flags| flags.contains("master")))
            .find(|line| {
                line.split(' ').skip(8).any(|range| {
                    let (low, high) = range.split_once('-').unwrap_or((range, range));
                    matches!((low.parse::<u16>(), high.parse::<u16>()), (Ok(low), Ok(high)) if (low..=high).contains(&slot))
                })
            })
            .and_then(|line| {
                let address = line.split(' ').nth(1)?;
                address.split(['@', ',']).next()?.rsplit_once(':')?.1.parse().ok()
            })
            .context("no master serves the slot")
    }

    /// Kills the server at `port` with SIGKILL.
    pub(crate) fn kill(&mut self, port: u16) {
        if let Some((_, child)) = self.children.iter_mut().find(|(at, _)| *at == port) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
