//! Where channels live: in this process, or in Redis shared with other nodes (one
//! server, several, a Redis Cluster, or a master found through Sentinel).

use std::time::Duration;

use super::{declared_defaults, parse};
use crate::{Error, RedisConfig, RedisTopology, WaitReplicas};

/// Which broker `heartwire serve` fans messages out through. A library user passes a
/// broker to [`Server::bind_with_broker`](crate::Server::bind_with_broker) instead.
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
#[command(next_help_heading = "Redis")]
pub struct BrokerConfig {
    /// Share channels with every node on this Redis (redis://host:port/db): a message
    /// published on one node reaches subscribers on all of them, `seq` and history
    /// come from Redis, and django-websocket-redis apps on the same Redis interoperate.
    /// Several URLs separated by commas spread the channels over those servers by a
    /// consistent hash (facilities stay on the first) (without it, channels stay in
    /// this process)
    #[arg(
        long,
        visible_alias = "redis-url",
        env = "HEARTWIRE_REDIS",
        value_name = "URL[,URL…]",
        // A URL may hold a password.
        hide_env_values = true
    )]
    pub redis: Option<String>,

    /// Share channels through this Redis Cluster, given by seed nodes separated by
    /// commas (the others are discovered): each channel on the shard of its slot,
    /// its messages by sharded pub/sub (Redis 7) (none unless given)
    #[arg(
        long,
        env = "HEARTWIRE_REDIS_CLUSTER",
        value_name = "URL[,URL…]",
        hide_env_values = true
    )]
    pub redis_cluster: Option<String>,

    /// Share channels through the Redis master that these sentinels (URLs separated
    /// by commas) name, followed when they fail over; needs --redis-sentinel-master
    /// (none unless given)
    #[arg(
        long,
        env = "HEARTWIRE_REDIS_SENTINEL",
        value_name = "URL[,URL…]",
        hide_env_values = true
    )]
    pub redis_sentinel: Option<String>,

    /// The master's name in the sentinels' configuration (none unless given)
    #[arg(
        long,
        env = "HEARTWIRE_REDIS_SENTINEL_MASTER",
        value_name = "NAME",
        allow_hyphen_values = true
    )]
    pub redis_sentinel_master: Option<String>,

    /// django-websocket-redis's WS4REDIS_PREFIX: Redis names start with PREFIX: (the
    /// facility chat is then PREFIX:broadcast:chat; none unless given)
    #[arg(
        long,
        env = "HEARTWIRE_REDIS_PREFIX",
        value_name = "PREFIX",
        allow_hyphen_values = true
    )]
    pub redis_prefix: Option<String>,

    /// Acknowledge a publish only once this many Redis replicas hold it (Redis WAIT),
    /// so that a fail-over cannot take an acknowledged message away; costs a
    /// replication round trip per pipeline of publishes (0: do not wait)
    #[arg(
        long,
        env = "HEARTWIRE_REDIS_WAIT_REPLICAS",
        value_name = "N",
        default_value = "0"
    )]
    pub redis_wait_replicas: u32,

    /// How long a pipeline of publishes waits for --redis-wait-replicas; past it the
    /// publishes are answered with `unavailable`, to be sent again with their ids
    #[arg(
        long,
        env = "HEARTWIRE_REDIS_WAIT_TIMEOUT",
        value_name = "DURATION",
        default_value = "500ms",
        value_parser = parse::duration
    )]
    pub redis_wait_timeout: Duration,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        declared_defaults()
    }
}

/// The URLs of a comma-separated list, trimmed, without empty ones.
fn urls(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .map(str::to_owned)
        .collect()
}

impl BrokerConfig {
    /// The Redis broker's settings, when a Redis is given; an error when the options
    /// contradict each other.
    /// An empty value counts as not given.
    pub fn redis_config(&self) -> Result<Option<RedisConfig>, Error> {
        let given = |value: &Option<String>| {
            value
                .as_deref()
                .map(str::trim)
                .filter(|value| !value.is_empty())
                .map(str::to_owned)
        };
        let topology = match (
            given(&self.redis),
            given(&self.redis_cluster),
            given(&self.redis_sentinel),
            given(&self.redis_sentinel_master),
        ) {
            (None, None, None, None) => return Ok(None),
            (Some(list), None, None, None) => RedisTopology::Servers(urls(&list)),
            (None, Some(list), None, None) => RedisTopology::Cluster(urls(&list)),
            (None, None, Some(list), Some(master)) => RedisTopology::Sentinel {
                sentinels: urls(&list),
                master,
            },
            (None, None, Some(_), None) => {
                return Err(Error::Config(
                    "redis-sentinel needs redis-sentinel-master, the master's name".into(),
                ));
            }
            (None, None, None, Some(_)) => {
                return Err(Error::Config(
                    "redis-sentinel-master needs redis-sentinel, the sentinels' URLs".into(),
                ));
            }
            _ => {
                return Err(Error::Config(
                    "give one of redis, redis-cluster and redis-sentinel".into(),
                ));
            }
        };
        let mut config =
            RedisConfig::new(topology).with_prefix(self.redis_prefix.clone().unwrap_or_default());
        if self.redis_wait_replicas > 0 {
            config = config.with_wait(WaitReplicas {
                replicas: self.redis_wait_replicas,
                timeout: self.redis_wait_timeout,
            });
        }
        config.validate()?;
        Ok(Some(config))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_topology_comes_from_its_option() {
        let servers = BrokerConfig {
            redis: Some("redis://a:1/, redis://b:2/".into()),
            ..BrokerConfig::default()
        };
        assert_eq!(
            servers.redis_config().unwrap().unwrap().topology,
            RedisTopology::Servers(vec!["redis://a:1/".into(), "redis://b:2/".into()])
        );
        let sentinel = BrokerConfig {
            redis_sentinel: Some("redis://s:26379/".into()),
            redis_sentinel_master: Some("main".into()),
            redis_wait_replicas: 1,
            ..BrokerConfig::default()
        };
        let config = sentinel.redis_config().unwrap().unwrap();
        assert!(
            matches!(config.topology, RedisTopology::Sentinel { ref master, .. } if master == "main")
        );
        assert_eq!(config.wait.map(|wait| wait.replicas), Some(1));
        assert!(BrokerConfig::default().redis_config().unwrap().is_none());
        let empty = BrokerConfig {
            redis: Some("redis://a/".into()),
            redis_cluster: Some(String::new()),
            ..BrokerConfig::default()
        };
        assert!(empty.redis_config().is_ok(), "an empty value is not given");
    }

    #[test]
    fn contradictions_are_named() {
        let both = BrokerConfig {
            redis: Some("redis://a/".into()),
            redis_cluster: Some("redis://b/".into()),
            ..BrokerConfig::default()
        };
        assert!(
            both.redis_config()
                .unwrap_err()
                .to_string()
                .contains("one of")
        );
        let nameless = BrokerConfig {
            redis_sentinel: Some("redis://s/".into()),
            ..BrokerConfig::default()
        };
        assert!(
            nameless
                .redis_config()
                .unwrap_err()
                .to_string()
                .contains("master")
        );
    }
}
