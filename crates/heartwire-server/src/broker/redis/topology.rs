//! Which Redis servers hold the channels, and which of them holds one channel.
//!
//! - One server (`--redis URL`): every channel on it.
//! - Several independent servers (`--redis URL,URL,…`): each channel on one of them,
//!   chosen by a jump consistent hash of its name, so adding a server moves only the
//!   channels that go to the new one. django-websocket-redis facilities
//!   (`broadcast:*`) and identity audiences (`user:*`, `group:*`, `session:*`) stay
//!   on the first server, the one a Django app publishes to.
//! - A Redis Cluster (`--redis-cluster URL,…`, seed nodes): the library's cluster
//!   client routes each command by its key's slot; see [`names`](super::names) for the
//!   hash tags.
//! - Sentinel (`--redis-sentinel URL,… --redis-sentinel-master NAME`): one server
//!   whose address the sentinels give, asked again whenever the link to it is lost.

use std::time::Duration;

use super::names::is_ws4redis;
use crate::error::Error;

/// Where channels live in Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTopology {
    /// One or more independent servers (`redis://` URLs); with several, channels
    /// spread over them by a consistent hash of their name.
    Servers(Vec<String>),
    /// A Redis Cluster, reached through these seed nodes; the others are discovered.
    Cluster(Vec<String>),
    /// A master found through these sentinels under the name `master`.
    Sentinel {
        /// `redis://` URLs of the sentinels.
        sentinels: Vec<String>,
        /// The master's name in the sentinels' configuration.
        master: String,
    },
}

/// Publishes wait until this many replicas hold them (Redis `WAIT`) before their
/// `ack`, which narrows what a fail-over can take away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitReplicas {
    /// Replicas that must confirm each pipeline of publishes.
    pub replicas: u32,
    /// How long a pipeline waits for them; then its publishes are answered with
    /// `unavailable`.
    pub timeout: Duration,
}

/// Where the Redis broker connects and how it names things.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// The servers, cluster or sentinels.
    pub topology: RedisTopology,
    /// django-websocket-redis's `WS4REDIS_PREFIX` (empty: none).
    pub prefix: String,
    /// Wait for replicas after each pipeline of publishes (none: do not wait).
    pub wait: Option<WaitReplicas>,
}

impl RedisConfig {
    /// One Redis server at `url`, no prefix, publishes not waiting for replicas.
    pub fn single(url: impl Into<String>) -> Self {
        Self::new(RedisTopology::Servers(vec![url.into()]))
    }

    /// `topology`, no prefix, publishes not waiting for replicas.
    pub fn new(topology: RedisTopology) -> Self {
        Self {
            topology,
            prefix: String::new(),
            wait: None,
        }
    }

    /// The same with names under `prefix` (`WS4REDIS_PREFIX`).
    pub fn with_prefix(self, prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
            ..self
        }
    }

    /// The same, with publishes waiting for replicas.
    pub fn with_wait(self, wait: WaitReplicas) -> Self {
        Self {
            wait: Some(wait),
            ..self
        }
    }

    /// Checks what would make the broker misbehave.
    pub fn validate(&self) -> Result<(), Error> {
        let (what, urls) = match &self.topology {
            RedisTopology::Servers(urls) => ("redis", urls),
            RedisTopology::Cluster(urls) => ("redis-cluster", urls),
            RedisTopology::Sentinel { sentinels, master } => {
                if master.is_empty() {
                    return Err(Error::Config(
                        "redis-sentinel needs redis-sentinel-master, the master's name".into(),
                    ));
                }
                ("redis-sentinel", sentinels)
            }
        };
        if urls.is_empty() {
            return Err(Error::Config(format!("{what} needs at least one URL")));
        }
        let schemes = ["redis://", "rediss://", "redis+unix://", "unix://"];
        if let Some(url) = urls
            .iter()
            .find(|url| !schemes.iter().any(|s| url.starts_with(s)))
        {
            // Text with an `@` may hold a password: it is not repeated.
            let given = if url.contains('@') {
                "the URL given"
            } else {
                url.as_str()
            };
            return Err(Error::Config(format!(
                "{what}: {given} is not a Redis URL; it starts with redis:// (rediss:// for TLS), e.g. redis://127.0.0.1:6379/"
            )));
        }
        if self.prefix.contains(['{', '}']) {
            return Err(Error::Config(format!(
                "redis-prefix {:?} must not contain braces: they would be a cluster hash tag",
                self.prefix
            )));
        }
        if let Some(wait) = self.wait {
            if wait.replicas == 0 || wait.timeout.is_zero() {
                return Err(Error::Config(
                    "redis-wait-replicas must be at least 1, with a timeout above zero".into(),
                ));
            }
        }
        Ok(())
    }

    /// Whether this is a Redis Cluster.
    pub(super) fn is_cluster(&self) -> bool {
        matches!(self.topology, RedisTopology::Cluster(_))
    }
}

/// The index, among `shards` independent servers, of the one that holds `channel`.
pub(super) fn shard_of(channel: &str, shards: usize) -> usize {
    if shards <= 1 || is_ws4redis(channel) {
        0
    } else {
        jump_hash(fnv1a(channel.as_bytes()), shards)
    }
}

/// FNV-1a, 64 bits: a hash of a channel name that every node and every version
/// computes alike.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Lamping and Veach's jump consistent hash: the bucket of `key` among `buckets`.
/// Going from `n` to `n + 1` buckets moves a key only to the new bucket, and only
/// one key in `n + 1`.
fn jump_hash(mut key: u64, buckets: usize) -> usize {
    let (mut bucket, mut next) = (0u64, 0u64);
    while next < buckets as u64 {
        bucket = next;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        let fraction = (1u64 << 31) as f64 / ((key >> 33) + 1) as f64;
        next = ((bucket + 1) as f64 * fraction) as u64;
    }
    bucket as usize
}

/// `host:port` of a `redis://` URL, for health reports and errors: never its
/// password. Text that is no URL is shown as given, unless it could hold one (`@`).
pub(super) fn address_of(url: &str) -> String {
    match redis::parse_redis_url(url) {
        Some(parsed) => match (parsed.host_str(), parsed.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => format!("{host}:6379"),
            _ => "a URL without a host".into(),
        },
        None if url.contains('@') => "a URL that does not parse".into(),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_spread_evenly_and_adding_a_server_moves_only_its_share() {
        let channels: Vec<String> = (0..30_000).map(|n| format!("room:{n}")).collect();
        let mut counts = [0usize; 3];
        for channel in &channels {
            counts[shard_of(channel, 3)] += 1;
        }
        for count in counts {
            assert!((9_000..11_000).contains(&count), "{counts:?}");
        }
        let moved: Vec<_> = channels
            .iter()
            .filter(|channel| shard_of(channel, 3) != shard_of(channel, 4))
            .collect();
        assert!(
            (6_500..8_500).contains(&moved.len()),
            "a quarter moves: {}",
            moved.len()
        );
        assert!(moved.iter().all(|channel| shard_of(channel, 4) == 3));
    }

    #[test]
    fn facilities_stay_on_the_first_server() {
        for audience in ["broadcast", "user:ada lovelace", "group:{ops}", "session:k"] {
            assert!((0..100).all(|n| shard_of(&format!("{audience}:f{n}"), 5) == 0));
        }
        assert_eq!(shard_of("room:1", 1), 0);
    }

    #[test]
    fn health_shows_addresses_without_passwords() {
        assert_eq!(
            address_of("redis://:secret@127.0.0.1:7000/"),
            "127.0.0.1:7000"
        );
        assert_eq!(address_of("redis://cache/"), "cache:6379");
        assert_eq!(address_of("not-a-url"), "not-a-url");
        assert!(!address_of("redis//:secret@x").contains("secret"));
    }

    #[test]
    fn bad_configurations_are_named() {
        let cluster = RedisConfig::new(RedisTopology::Cluster(vec![]));
        assert!(
            cluster
                .validate()
                .unwrap_err()
                .to_string()
                .contains("redis-cluster")
        );
        let braces = RedisConfig::single("redis://127.0.0.1/").with_prefix("a{b}");
        assert!(
            braces
                .validate()
                .unwrap_err()
                .to_string()
                .contains("braces")
        );
        let sentinel = RedisConfig::new(RedisTopology::Sentinel {
            sentinels: vec!["redis://127.0.0.1:26379/".into()],
            master: String::new(),
        });
        assert!(
            sentinel
                .validate()
                .unwrap_err()
                .to_string()
                .contains("master")
        );
        let wait = RedisConfig::single("redis://127.0.0.1/").with_wait(WaitReplicas {
            replicas: 0,
            timeout: Duration::from_millis(100),
        });
        assert!(wait.validate().is_err());
    }
}
