//! Sessions reaped for silence, shared by the nodes: one short-lived key per session
//! (`SET … EX`), so a client's report of it is judged on whichever node it comes back
//! to, and taken with `DEL`, so it counts once.

use std::time::Duration;

use redis::RedisResult;

use super::shared::Shared;
use super::topology::shard_of;

/// Notes that this node reaped `session`, for `ttl`.
pub(super) async fn note(shared: &Shared, session: &str, ttl: Duration) -> RedisResult<()> {
    let key = shared.node().reaped(session);
    let mut command = redis::cmd("SET");
    command.arg(&key).arg(1).arg("EX").arg(ttl.as_secs().max(1));
    shard(shared, &key).query(&command).await
}

/// Whether a node reaped `session` lately; forgets it.
pub(super) async fn take(shared: &Shared, session: &str) -> RedisResult<bool> {
    let key = shared.node().reaped(session);
    let mut command = redis::cmd("DEL");
    command.arg(&key);
    let deleted: u64 = shard(shared, &key).query(&command).await?;
    Ok(deleted == 1)
}

fn shard<'a>(shared: &'a Shared, key: &str) -> &'a super::shard::Shard {
    let shards = shared.shards();
    &shards[shard_of(key, shards.len())]
}
