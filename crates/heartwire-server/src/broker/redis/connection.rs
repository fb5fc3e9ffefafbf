//! A shard's connection for commands, kept usable across fail-overs.
//!
//! On one server it is the library's `ConnectionManager`, which reconnects by itself;
//! under Sentinel the link to the master swaps in a manager for the new master when
//! the sentinels name another one. In a cluster it is the library's cluster
//! connection, which routes each command by its key's slot and follows `MOVED` and
//! `ASK`. That connection only learns the cluster's new shape from a redirection or
//! a lost connection; a master that hangs gives neither, so after a timeout the
//! connection is dropped, and the next command builds one from the seed nodes, which
//! reads the slots again from nodes that answer.

use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};

use super::shared::PROBE_EVERY;

/// How long one Redis command may take before it counts as failed.
pub(super) const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

/// A connection that commands go through: one server's, or the cluster's.
#[derive(Clone)]
pub(super) enum Connection {
    /// One server.
    Server(ConnectionManager),
    /// A Redis Cluster, routed by slot.
    Cluster(ClusterConnection),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Server(connection) => connection.req_packed_command(cmd),
            Self::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Server(connection) => connection.req_packed_commands(cmd, offset, count),
            Self::Cluster(connection) => connection.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Server(connection) => connection.get_db(),
            Self::Cluster(connection) => connection.get_db(),
        }
    }
}

/// The settings of a server's command connection.
fn manager_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(COMMAND_TIMEOUT))
        .set_response_timeout(Some(COMMAND_TIMEOUT))
        .set_number_of_retries(1)
        .set_max_delay(PROBE_EVERY)
}

/// A lazy command connection to the server of `client`.
pub(super) fn server_manager(client: redis::Client) -> RedisResult<ConnectionManager> {
    ConnectionManager::new_lazy_with_config(client, manager_config())
}

/// The cluster client of these seed nodes, with short timeouts and few retries, so
/// that a failing command comes back within a bound rather than after the library's
/// long default retry schedule.
pub(super) fn cluster_client(seeds: &[String]) -> RedisResult<ClusterClient> {
    ClusterClient::builder(seeds.iter().map(String::as_str))
        .connection_timeout(PROBE_EVERY)
        .response_timeout(PROBE_EVERY)
        .overall_response_timeout(Some(COMMAND_TIMEOUT + PROBE_EVERY))
        .retries(3)
        .min_retry_wait(50)
        .max_retry_wait(500)
        .build()
}

/// Where one shard's commands go.
pub(super) enum Commands {
    /// One server (none yet while the sentinels have not named the master).
    Server(RwLock<Option<ServerCommands>>),
    /// A Redis Cluster.
    Cluster(Box<ClusterCommands>),
}

/// The command connection of one server.
pub(super) struct ServerCommands {
    /// `host:port` of the server.
    address: String,
    manager: ConnectionManager,
}

/// The cluster's command connection, built when first needed and again after a
/// timeout.
pub(super) struct ClusterCommands {
    client: ClusterClient,
    connection: tokio::sync::Mutex<Option<ClusterConnection>>,
    built_at: Mutex<Option<Instant>>,
}

impl Commands {
    /// Commands to the server at `address` through `manager`, or to the server that
    /// [`replace_server`](Self::replace_server) names later.
    pub(super) fn server(first: Option<(String, ConnectionManager)>) -> Self {
        Self::Server(RwLock::new(
            first.map(|(address, manager)| ServerCommands { address, manager }),
        ))
    }

    /// Commands to the cluster of `client`.
    pub(super) fn cluster(client: ClusterClient) -> Self {
        Self::Cluster(Box::new(ClusterCommands {
            client,
            connection: tokio::sync::Mutex::new(None),
            built_at: Mutex::new(None),
        }))
    }

    /// A connection to send commands on.
    pub(super) async fn get(&self) -> RedisResult<Connection> {
        match self {
            Self::Server(server) => match &*server.read() {
                Some(server) => Ok(Connection::Server(server.manager.clone())),
                None => Err(redis::RedisError::from((
                    redis::ErrorKind::Io,
                    "the sentinels have not named a master yet",
                ))),
            },
            Self::Cluster(cluster) => cluster.get().await.map(Connection::Cluster),
        }
    }

    /// Where a server's commands go now (`None` in a cluster, or before the sentinels
    /// named a master).
    pub(super) fn server_address(&self) -> Option<String> {
        match self {
            Self::Server(server) => server.read().as_ref().map(|server| server.address.clone()),
            Self::Cluster(_) => None,
        }
    }

    /// Sends later commands to the server at `address`, through `manager`.
    pub(super) fn replace_server(&self, address: String, manager: ConnectionManager) {
        if let Self::Server(server) = self {
            *server.write() = Some(ServerCommands { address, manager });
        }
    }

    /// Notes that a command failed with `err`: a cluster connection that timed out
    /// or lost a node is rebuilt before the next command, at most once per
    /// [`PROBE_EVERY`].
    pub(super) async fn failed(&self, err: &redis::RedisError) {
        let Self::Cluster(cluster) = self else {
            return;
        };
        if !(err.is_timeout() || err.is_io_error() || err.is_connection_dropped()) {
            return;
        }
        let recent = cluster
            .built_at
            .lock()
            .is_some_and(|at| at.elapsed() < PROBE_EVERY);
        if !recent {
            tracing::info!(%err, "rebuilding the cluster connection from the seed nodes");
            *cluster.connection.lock().await = None;
        }
    }
}

impl ClusterCommands {
    async fn get(&self) -> RedisResult<ClusterConnection> {
        let mut connection = self.connection.lock().await;
        if let Some(connection) = &*connection {
            return Ok(connection.clone());
        }
        let built = tokio::time::timeout(COMMAND_TIMEOUT * 2, self.client.get_async_connection())
            .await
            .map_err(|_| {
                redis::RedisError::from((
                    redis::ErrorKind::Io,
                    "no seed node of the cluster answered in time",
                ))
            })??;
        *self.built_at.lock() = Some(Instant::now());
        *connection = Some(built.clone());
        Ok(built)
    }
}
