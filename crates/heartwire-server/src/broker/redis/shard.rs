//! One shard: a Redis master (or a whole Redis Cluster) with its command connection,
//! the way its pub/sub links find the master, and the running of every command.
//!
//! A single server is one shard; `--redis` with several URLs makes one shard per
//! server; Sentinel is one shard whose master the sentinels name, asked again each
//! time its link reconnects (and the command connection follows when the answer
//! changes: a fail-over); a cluster is one shard whose commands go through the
//! library's cluster connection and whose links go to each master node that holds
//! subscribed channels.

use std::sync::atomic::{AtomicU64, Ordering};

use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{
    Cmd, ConnectionAddr, ConnectionInfo, ErrorKind, FromRedisValue, IntoConnectionInfo,
    RedisResult, ServerErrorKind, Value,
};

use super::commands::ScriptCall;
use super::connection::{Commands, cluster_client, server_manager};
use super::topology::address_of;

/// How a shard's links find its master.
enum Locator {
    /// One server at a fixed address.
    Fixed {
        client: redis::Client,
        address: String,
    },
    /// The master the sentinels name.
    Sentinel {
        sentinel: tokio::sync::Mutex<SentinelClient>,
        master: String,
    },
    /// A cluster: links go to nodes by address, with these settings.
    Cluster { settings: ConnectionInfo },
}

/// One shard. See the [module docs](self).
pub(super) struct Shard {
    locator: Locator,
    commands: Commands,
    failovers: AtomicU64,
}

impl std::fmt::Debug for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shard")
            .field("name", &self.name())
            .finish_non_exhaustive()
    }
}

impl Shard {
    /// The server at `url`; a `rediss://` one's certificate must chain to `tls_ca`
    /// (PEM) when given, else to the platform's roots.
    pub(super) fn server(url: &str, tls_ca: Option<&[u8]>) -> RedisResult<Self> {
        let client = match tls_ca {
            Some(ca) if url.starts_with("rediss://") => redis::Client::build_with_tls(
                url,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(ca.to_vec()),
                },
            )?,
            _ => redis::Client::open(url)?,
        };
        let address = address_of(url);
        let manager = server_manager(client.clone())?;
        Ok(Self {
            commands: Commands::server(Some((address.clone(), manager))),
            locator: Locator::Fixed { client, address },
            failovers: AtomicU64::new(0),
        })
    }

    /// The master named `master` by the sentinels at `sentinels`.
    pub(super) fn sentinel(sentinels: &[String], master: &str) -> RedisResult<Self> {
        let client = SentinelClient::build(
            sentinels.to_vec(),
            master,
            Some(SentinelNodeConnectionInfo::default()),
            SentinelServerType::Master,
        )?;
        Ok(Self {
            commands: Commands::server(None),
            locator: Locator::Sentinel {
                sentinel: tokio::sync::Mutex::new(client),
                master: master.to_owned(),
            },
            failovers: AtomicU64::new(0),
        })
    }

    /// The cluster reached through the nodes at `seeds`.
    pub(super) fn cluster(seeds: &[String]) -> RedisResult<Self> {
        let first = seeds.first().ok_or_else(|| {
            redis::RedisError::from((ErrorKind::InvalidClientConfig, "no seed node"))
        })?;
        Ok(Self {
            commands: Commands::cluster(cluster_client(seeds)?),
            locator: Locator::Cluster {
                settings: first.as_str().into_connection_info()?,
            },
            failovers: AtomicU64::new(0),
        })
    }

    /// Whether this shard is a Redis Cluster.
    pub(super) fn is_cluster(&self) -> bool {
        matches!(self.locator, Locator::Cluster { .. })
    }

    /// The shard's name in health reports: an address, never a password.
    pub(super) fn name(&self) -> String {
        match &self.locator {
            Locator::Fixed { address, .. } => address.clone(),
            Locator::Sentinel { master, .. } => format!("sentinel:{master}"),
            Locator::Cluster { .. } => "cluster".into(),
        }
    }

    /// Where the shard's commands go now (`None` in a cluster).
    pub(super) fn master_address(&self) -> Option<String> {
        self.commands.server_address()
    }

    /// Times the master changed under this shard (a Sentinel fail-over).
    pub(super) fn failovers(&self) -> u64 {
        self.failovers.load(Ordering::Relaxed)
    }

    /// The client a pub/sub link to this shard's master connects with, and the
    /// master's address. Under Sentinel this asks the sentinels, and points the
    /// command connection at the master they name if it moved.
    pub(super) async fn master(&self) -> RedisResult<(redis::Client, String)> {
        match &self.locator {
            Locator::Fixed { client, address } => Ok((client.clone(), address.clone())),
            Locator::Sentinel { sentinel, master } => {
                let client = sentinel.lock().await.async_get_client().await?;
                let address = client.get_connection_info().addr().to_string();
                let before = self.commands.server_address();
                if before.as_deref() != Some(address.as_str()) {
                    if before.is_some() {
                        self.failovers.fetch_add(1, Ordering::Relaxed);
                    }
                    tracing::info!(%master, %address, ?before, "the sentinels name a master");
                    self.commands
                        .replace_server(address.clone(), server_manager(client.clone())?);
                }
                Ok((client, address))
            }
            Locator::Cluster { .. } => Err(redis::RedisError::from((
                ErrorKind::InvalidClientConfig,
                "a cluster's links connect to nodes",
            ))),
        }
    }

    /// A client for the cluster node at `address` (`host:port`), with the seed
    /// nodes' settings.
    pub(super) fn node_client(&self, address: &str) -> RedisResult<redis::Client> {
        let Locator::Cluster { settings } = &self.locator else {
            return Err(redis::RedisError::from((
                ErrorKind::InvalidClientConfig,
                "only a cluster has nodes",
            )));
        };
        let (host, port) = address
            .rsplit_once(':')
            .and_then(|(host, port)| Some((host, port.parse().ok()?)))
            .ok_or_else(|| {
                redis::RedisError::from((ErrorKind::Parse, "a node address is not host:port"))
            })?;
        let addr = ConnectionAddr::Tcp(host.to_owned(), port);
        redis::Client::open(settings.clone().set_addr(addr))
    }

    /// Runs one script call.
    pub(super) async fn invoke<T: FromRedisValue>(&self, call: &ScriptCall<'_>) -> RedisResult<T> {
        let mut connection = self.commands.get().await?;
        let result = call.invocation().invoke_async(&mut connection).await;
        self.note(result).await
    }

    /// Runs one command.
    pub(super) async fn query<T: FromRedisValue>(&self, command: &Cmd) -> RedisResult<T> {
        let mut connection = self.commands.get().await?;
        let result = command.query_async(&mut connection).await;
        self.note(result).await
    }

    /// Runs `calls` in one pipeline, in order, then `then` when given; in a cluster
    /// every call must touch one slot. Loads the scripts again when Redis lost them.
    pub(super) async fn pipeline(
        &self,
        calls: &[ScriptCall<'_>],
        then: Option<&Cmd>,
    ) -> RedisResult<Vec<Value>> {
        let mut pipeline = redis::pipe();
        for call in calls {
            pipeline.invoke_script(&call.invocation());
        }
        if let Some(command) = then {
            pipeline.add_command(command.clone());
        }
        let mut connection = self.commands.get().await?;
        let result = match pipeline.query_async(&mut connection).await {
            Err(err) if err.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                // Redis lost its scripts (it restarted, or this is a new master).
                let mut loaded: Vec<&redis::Script> = Vec::new();
                for call in calls {
                    let script = call.script();
                    if !loaded.iter().any(|done| std::ptr::eq(*done, script)) {
                        script.load_async(&mut connection).await?;
                        loaded.push(script);
                    }
                }
                pipeline.query_async(&mut connection).await
            }
            result => result,
        };
        self.note(result).await
    }

    /// Hands `result` back, noting a failure on the command connection.
    async fn note<T>(&self, result: RedisResult<T>) -> RedisResult<T> {
        if let Err(err) = &result {
            self.commands.failed(err).await;
        }
        result
    }

    /// The replication ids of this shard's masters (the one server, or every master
    /// of the cluster): each one's own (`master_replid`) and the one it was promoted
    /// from (`master_replid2`).
    pub(super) async fn master_histories(&self) -> RedisResult<Vec<(String, String)>> {
        use redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo};
        let mut info = redis::cmd("INFO");
        info.arg("replication");
        let replies: Vec<String> = match self.commands.get().await? {
            super::connection::Connection::Server(mut connection) => {
                let reply = info.query_async(&mut connection).await;
                vec![self.note(reply).await?]
            }
            super::connection::Connection::Cluster(mut connection) => {
                let routing = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None));
                let reply = connection.route_command(info, routing).await;
                match self.note(reply).await? {
                    Value::Map(pairs) => pairs
                        .into_iter()
                        .map(|(_, reply)| FromRedisValue::from_redis_value(reply))
                        .collect::<Result<_, _>>()?,
                    reply => vec![FromRedisValue::from_redis_value(reply)?],
                }
            }
        };
        Ok(replies
            .iter()
            .filter_map(|info| {
                Some((
                    replication_id(info, "master_replid:")?,
                    replication_id(info, "master_replid2:")?,
                ))
            })
            .collect())
    }

    /// Asks the cluster which master holds the slot of `key`, after a keyed read
    /// that lets the library follow a redirection first: the answer is that
    /// master's `host:port`, as the cluster announces it.
    pub(super) async fn cluster_master_of(&self, key: &str) -> RedisResult<String> {
        use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
        let mut connection = match self.commands.get().await? {
            super::connection::Connection::Cluster(connection) => connection,
            super::connection::Connection::Server(_) => {
                return Err(redis::RedisError::from((
                    ErrorKind::InvalidClientConfig,
                    "only a cluster has masters by slot",
                )));
            }
        };
        let mut probe = redis::cmd("EXISTS");
        probe.arg(key);
        let probed = probe.query_async::<i64>(&mut connection).await;
        self.note(probed).await?;
        let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(Route::with_key(
            key,
            SlotAddr::Master,
        )));
        let nodes = connection
            .route_command(redis::cmd("CLUSTER").arg("NODES").clone(), route)
            .await;
        let nodes: String = FromRedisValue::from_redis_value(self.note(nodes).await?)?;
        own_address(&nodes).ok_or_else(|| {
            redis::RedisError::from((ErrorKind::Parse, "CLUSTER NODES names no node `myself`"))
        })
    }
}

/// The replication id after `field` in an `INFO replication` reply.
fn replication_id(info: &str, field: &str) -> Option<String> {
    info.lines()
        .find_map(|line| line.strip_prefix(field))
        .map(|id| id.trim().to_owned())
}

/// The `host:port` of the line flagged `myself` in a `CLUSTER NODES` reply, whose
/// lines read `id host:port@cport[,hostname] flags …`.
fn own_address(nodes: &str) -> Option<String> {
    nodes.lines().find_map(|line| {
        let mut fields = line.split(' ');
        let (_id, address, flags) = (fields.next()?, fields.next()?, fields.next()?);
        flags
            .split(',')
            .any(|flag| flag == "myself")
            .then(|| address.split(['@', ',']).next().map(str::to_owned))
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_that_answered_names_itself() {
        let nodes = "\
21a8 127.0.0.1:7106@17106 slave 4bb2 0 1796197844562 1 connected
4bb2 127.0.0.1:7101@17101,host-a myself,master - 0 1796197844000 1 connected 0-5460
";
        assert_eq!(own_address(nodes).as_deref(), Some("127.0.0.1:7101"));
        assert_eq!(own_address("x 1.2.3.4:5@6 master - 0 0 1 connected"), None);
        let info = "# Replication\r\nrole:master\r\nmaster_replid:3d1c\r\nmaster_replid2:0000\r\n";
        assert_eq!(
            replication_id(info, "master_replid:").as_deref(),
            Some("3d1c")
        );
        assert_eq!(
            replication_id(info, "master_replid2:").as_deref(),
            Some("0000")
        );
    }

    #[test]
    fn node_clients_keep_the_seed_settings() {
        let shard = Shard::cluster(&["redis://:secret@127.0.0.1:7000/".into()]).unwrap();
        let client = shard.node_client("127.0.0.1:7003").unwrap();
        let info = client.get_connection_info();
        assert_eq!(info.addr().to_string(), "127.0.0.1:7003");
        assert_eq!(info.redis_settings().password(), Some("secret"));
        assert_eq!(shard.name(), "cluster");
        assert!(shard.node_client("nonsense").is_err());
    }
}
