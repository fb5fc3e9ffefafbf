//! Where channels live: in this process, or on a Redis shared with other nodes.

use super::declared_defaults;
use crate::RedisConfig;

/// Which broker `heartwire serve` fans messages out through. A library user passes a
/// broker to [`Server::bind_with_broker`](crate::Server::bind_with_broker) instead.
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
#[command(next_help_heading = "Redis")]
pub struct BrokerConfig {
    /// Share channels with every node on this Redis (redis://host:port/db): a message
    /// published on one node reaches subscribers on all of them, `seq` and history
    /// come from Redis, and django-websocket-redis apps on the same Redis interoperate
    /// (without it, channels stay in this process)
    #[arg(
        long,
        visible_alias = "redis-url",
        env = "HEARTWIRE_REDIS",
        value_name = "URL"
    )]
    pub redis: Option<String>,

    /// django-websocket-redis's WS4REDIS_PREFIX: Redis names start with PREFIX: (the
    /// facility chat is then PREFIX:broadcast:chat; none unless given)
    #[arg(
        long,
        env = "HEARTWIRE_REDIS_PREFIX",
        value_name = "PREFIX",
        allow_hyphen_values = true
    )]
    pub redis_prefix: Option<String>,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        declared_defaults()
    }
}

impl BrokerConfig {
    /// The Redis broker's settings, when a Redis is given.
    pub fn redis_config(&self) -> Option<RedisConfig> {
        self.redis.as_ref().map(|url| RedisConfig {
            url: url.clone(),
            prefix: self.redis_prefix.clone().unwrap_or_default(),
        })
    }
}
