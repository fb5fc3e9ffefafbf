//! Every Lua script of the Redis broker. Each makes one channel operation atomic
//! across nodes; each doc names its `KEYS` and `ARGV` in order, which
//! [`commands`](super::commands) follows, and what it returns, which
//! [`replies`](super::replies) reads. Every key a script declares belongs to one
//! channel, so in a Redis Cluster each script runs on the node of that channel's slot.
//!
//! [`PUBLISH`] checks the publish id, takes the next `seq` (`INCR`), appends the
//! message to the channel's stream (`XADD … MAXLEN cap 0-{seq}`), drops the oldest
//! messages past the channel's bytes, and publishes the envelope to every node, all
//! in one step: every node sees a channel's messages in one `seq` order, and the
//! history holds exactly what was published.
//!
//! **Bytes of history.** Each stream entry carries `e`, the bytes the channel's
//! history has counted up to and including it (its body plus a fixed overhead per
//! message). The `#bytes` key holds `{e} {b}`: the newest entry's `e`, and a lower
//! bound of where the oldest message starts. A publish reads the stream only when
//! `e - b` passes the bound: it then reads the oldest entry, drops it while the rest
//! is over, and moves `b` to where the oldest kept starts. A channel held by its
//! count alone reads its stream about once per bound's worth of bytes published. A
//! lost `#bytes` is counted again from the newest entry's `e`; a stale one only keeps
//! `b` below the truth, which costs a read, never the bound. An entry without `e`
//! (written by a version without the bound) ends the trimming by bytes until it goes
//! by count or expiry.
//!
//! **Epochs and fail-overs.** Redis replicates asynchronously: a replica promoted to
//! master may lack the last messages of a channel and count its `seq` again from
//! below what clients saw. So the epoch key holds the epoch *and* the replication id
//! (`master_replid`) of the master that wrote it. [`PUBLISH`] and [`SNAPSHOT`] read
//! the master's replication ids first (the [`LINEAGE`] helper): a stamp equal to
//! `master_replid` is this master's own history; one equal to `master_replid2` was
//! written before this master was promoted, so the channel gets a new epoch at once
//! (`renewed`) and no old position can be taken for a new message. Any other stamp
//! (the slot was moved from another node, or the history is older) is returned as
//! `stale` for the node to judge: [`RESTAMP`] adopts a channel moved intact from a
//! live master, [`RENEW`] gives a new epoch to one whose history is gone.

use std::sync::LazyLock;

use redis::Script;

/// The replication check shared by the scripts that read or write a channel's
/// position: `checked_epoch(epoch key, seq key, stream key, fresh epoch, ttl ms)`
/// returns `epoch, status` with status `ok`, `new` (no epoch was there) or `renewed`
/// (the history was cut by a promotion), or `nil, stamp` for another history.
const LINEAGE: &str = r#"
local function histories()
    local info = redis.call('INFO', 'replication')
    return string.match(info, 'master_replid:(%x+)'), string.match(info, 'master_replid2:(%x+)')
end
local function checked_epoch(epoch_key, seq_key, stream_key, fresh_epoch, ttl)
    local replid, replid2 = histories()
    local stored = redis.call('GET', epoch_key)
    if not stored then
        redis.call('SET', epoch_key, fresh_epoch .. ' ' .. replid, 'PX', ttl)
        redis.call('DEL', seq_key, stream_key)
        return fresh_epoch, 'new'
    end
    local epoch, stamp = string.match(stored, '^(%S+) (%x+)$')
    if not epoch then
        redis.call('SET', epoch_key, stored .. ' ' .. replid, 'KEEPTTL')
        return stored, 'ok'
    end
    if stamp == replid then return epoch, 'ok' end
    if stamp == replid2 then
        redis.call('SET', epoch_key, fresh_epoch .. ' ' .. replid, 'PX', ttl)
        redis.call('DEL', seq_key, stream_key)
        return fresh_epoch, 'renewed'
    end
    return nil, stamp
end
"#;

/// A script that starts with [`LINEAGE`].
fn with_lineage(body: &str) -> Script {
    Script::new(&format!("{LINEAGE}{body}"))
}

/// Publishes one message. KEYS: seq, epoch, stream, publish id (or the seq key
/// again when there is none), live channel, bytes, and the raw channel as a key only
/// when its last value is kept here (one server). ARGV: body, kind, origin, raw text
/// (empty: not published raw), persist seconds (0: no SETEX), history cap, history
/// ttl in ms, dedup window in seconds, a fresh epoch, has id (`1`/`0`), the publish
/// command (`PUBLISH`, or `SPUBLISH` in a cluster), the raw channel, the history's
/// bytes cap, the bytes a message counts for beyond its body. The oldest messages
/// go while the history holds more than the cap, except the newest. Returns
/// `{status, seq, epoch}`: status `published`, `renewed` (published in a new epoch
/// after a fail-over), `duplicate` (the first `seq` of this id in this epoch), or
/// `stale` with the stamp in place of `seq`, nothing done.
pub(super) static PUBLISH: LazyLock<Script> = LazyLock::new(|| {
    with_lineage(
        r#"
local seq_key, epoch_key, stream_key, id_key, live, bytes_key, raw_key =
    KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local body, kind, origin, raw = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local persist, cap, ttl, window = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local fresh_epoch, has_id, publish, raw_channel = ARGV[9], ARGV[10] == '1', ARGV[11], ARGV[12]
local max_bytes, overhead = tonumber(ARGV[13]), tonumber(ARGV[14])
local epoch, status = checked_epoch(epoch_key, seq_key, stream_key, fresh_epoch, ttl)
if not epoch then return {'stale', status, ''} end
if has_id then
    local seen = redis.call('GET', id_key)
    if seen then
        local seen_seq, seen_epoch = string.match(seen, '^(%d+) (%S+)$')
        if seen_epoch == epoch then return {'duplicate', seen_seq, epoch} end
    end
end
local seq = redis.call('INCR', seq_key)
if cap > 0 then
    local size = #body + overhead
    local counted, oldest_from
    local through_newest, from = string.match(redis.call('GET', bytes_key) or '', '^(%S+) (%S+)$')
    through_newest, from = tonumber(through_newest or ''), tonumber(from or '')
    if through_newest and from then
        counted, oldest_from = through_newest + size, from
    else
        local newest = redis.call('XREVRANGE', stream_key, '+', '-', 'COUNT', 1)[1]
        counted, oldest_from = size, 0
        if newest then counted = (tonumber(newest[2][8] or '') or 0) + size end
    end
    redis.call('XADD', stream_key, 'MAXLEN', cap, '0-' .. seq,
        'k', kind, 'o', origin, 'd', body, 'e', counted)
    while counted - oldest_from > max_bytes do
        if redis.call('XLEN', stream_key) < 2 then
            oldest_from = counted - size
            break
        end
        local oldest = redis.call('XRANGE', stream_key, '-', '+', 'COUNT', 1)[1]
        local fields = oldest[2]
        local through = tonumber(fields[8] or '')
        if not through then break end
        oldest_from = through - #fields[6] - overhead
        if counted - oldest_from > max_bytes then
            redis.call('XDEL', stream_key, oldest[1])
            oldest_from = through
        end
    end
    redis.call('SET', bytes_key, counted .. ' ' .. oldest_from, 'PX', ttl)
    redis.call('PEXPIRE', stream_key, ttl)
end
redis.call('PEXPIRE', seq_key, ttl)
redis.call('PEXPIRE', epoch_key, ttl)
if has_id then redis.call('SET', id_key, seq .. ' ' .. epoch, 'EX', window) end
local raw_flag = '-'
if raw ~= '' then raw_flag = 'r' end
redis.call(publish, live, seq .. ' ' .. epoch .. ' ' .. kind .. raw_flag .. ' ' .. origin .. '\n' .. body)
if raw ~= '' then
    redis.call('PUBLISH', raw_channel, raw)
    if persist > 0 and raw_key then redis.call('SETEX', raw_key, persist, raw) end
end
if status == 'renewed' then return {'renewed', tostring(seq), epoch} end
return {'published', tostring(seq), epoch}
"#,
    )
});

/// Reads a channel. KEYS: seq, epoch, stream, and the raw channel as a key only
/// when its value is read here (one server). ARGV: a fresh epoch, the asked epoch
/// (empty: none asked), the asked seq, want retained (`1`/`0`), history ttl in ms.
/// Returns `{status, epoch, seq, recovered (-1 not asked, 0, 1), has retained,
/// retained, then seq, kind, origin, body for each message after the position}`;
/// status `ok`, `new` or `renewed`, or `{stale, stamp}` with nothing done.
pub(super) static SNAPSHOT: LazyLock<Script> = LazyLock::new(|| {
    with_lineage(
        r#"
local seq_key, epoch_key, stream_key, raw_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local fresh_epoch, since_epoch, since = ARGV[1], ARGV[2], tonumber(ARGV[3])
local want_retained, ttl = ARGV[4] == '1', tonumber(ARGV[5])
local epoch, status = checked_epoch(epoch_key, seq_key, stream_key, fresh_epoch, ttl)
if not epoch then return {'stale', status} end
local seq = tonumber(redis.call('GET', seq_key) or '0')
local reply = {status, epoch, tostring(seq), '-1', '0', ''}
if since_epoch ~= '' then
    reply[4] = '0'
    if since_epoch == epoch and since <= seq then
        if since == seq then
            reply[4] = '1'
        else
            local first = '0-' .. (since + 1)
            local entries = redis.call('XRANGE', stream_key, first, '0-' .. seq)
            if #entries > 0 and entries[1][1] == first then
                reply[4] = '1'
                for _, entry in ipairs(entries) do
                    local fields = entry[2]
                    table.insert(reply, string.sub(entry[1], 3))
                    table.insert(reply, fields[2])
                    table.insert(reply, fields[4])
                    table.insert(reply, fields[6])
                end
            end
        end
    end
end
if want_retained and raw_key then
    local retained = redis.call('GET', raw_key)
    if retained then
        reply[5] = '1'
        reply[6] = retained
    end
end
return reply
"#,
    )
});

/// Gives a channel whose history is gone a new epoch, unless another node did it
/// first. KEYS: epoch, seq, stream. ARGV: the stamp found, a fresh epoch, history
/// ttl in ms. Returns 1 when it renewed the epoch, 0 when the stamp had changed.
pub(super) static RENEW: LazyLock<Script> = LazyLock::new(|| {
    with_lineage(
        r#"
local replid = histories()
local stored = redis.call('GET', KEYS[1]) or ''
local _, stamp = string.match(stored, '^(%S+) (%x+)$')
if (stamp or '') ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2] .. ' ' .. replid, 'PX', tonumber(ARGV[3]))
redis.call('DEL', KEYS[2], KEYS[3])
return 1
"#,
    )
});

/// Adopts a channel moved intact from another live master: its stamp becomes this
/// master's history. KEYS: epoch. ARGV: the stamp found. Returns the number of
/// replicas connected here (so the node can wait for them to hold the new stamp),
/// or -1 when the stamp had changed.
pub(super) static RESTAMP: LazyLock<Script> = LazyLock::new(|| {
    with_lineage(
        r#"
local replid = histories()
local stored = redis.call('GET', KEYS[1]) or ''
local epoch, stamp = string.match(stored, '^(%S+) (%x+)$')
if stamp ~= ARGV[1] then return -1 end
redis.call('SET', KEYS[1], epoch .. ' ' .. replid, 'KEEPTTL')
local info = redis.call('INFO', 'replication')
return tonumber(string.match(info, 'connected_slaves:(%d+)'))
"#,
    )
});

/// Keeps a channel's history alive while this node has subscribers. KEYS: seq,
/// epoch, stream, bytes. ARGV: history ttl in ms.
pub(super) static TOUCH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
for _, key in ipairs(KEYS) do redis.call('PEXPIRE', key, ARGV[1]) end
return 0
"#,
    )
});

/// Adds a member. KEYS: members, presence channel, users. ARGV: session, node,
/// members ttl in ms, the publish command, user (empty: anonymous). Adds the member
/// (its value in `#members` is the node, then a space and the user when it has
/// one). A new anonymous member is announced (`j {session}`); a new user's member
/// is counted in `#users`, and announced (`j {session} {user}`) when it is the
/// user's first.
pub(super) static ADD_MEMBER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local session, node, ttl, publish, user = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local value = node
if user ~= '' then value = node .. ' ' .. user end
local added = redis.call('HSET', KEYS[1], session, value)
redis.call('PEXPIRE', KEYS[1], ttl)
if added == 1 then
    if user == '' then
        redis.call(publish, KEYS[2], 'j ' .. session)
    elseif redis.call('HINCRBY', KEYS[3], user, 1) == 1 then
        redis.call(publish, KEYS[2], 'j ' .. session .. ' ' .. user)
    end
end
redis.call('PEXPIRE', KEYS[3], ttl)
return added
"#,
    )
});

/// Removes a member. KEYS: members, presence channel, users. ARGV: session, the
/// publish command. When it was there, an anonymous member's leave is announced
/// (`l {session}`); a user's member is counted down in `#users`, and its leave
/// announced (`l {session} {user}`) when it was the user's last. Both the node's
/// own removals and its sweeps of dead nodes' members go through here.
pub(super) static REMOVE_MEMBER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local session, publish = ARGV[1], ARGV[2]
local value = redis.call('HGET', KEYS[1], session)
if not value then return 0 end
redis.call('HDEL', KEYS[1], session)
local space = string.find(value, ' ', 1, true)
if not space then
    redis.call(publish, KEYS[2], 'l ' .. session)
    return 1
end
local user = string.sub(value, space + 1)
if redis.call('HINCRBY', KEYS[3], user, -1) <= 0 then
    redis.call('HDEL', KEYS[3], user)
    redis.call(publish, KEYS[2], 'l ' .. session .. ' ' .. user)
end
return 1
"#,
    )
});

/// Reads the members. KEYS: members, users. ARGV: members ttl in ms. Returns
/// session, value, session, value… where a value is the node, then a space and the
/// user when it has one; the node then removes the members of dead nodes with
/// [`REMOVE_MEMBER`] (node liveness keys live elsewhere in a cluster).
pub(super) static MEMBERS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local all = redis.call('HGETALL', KEYS[1])
if #all > 0 then
    redis.call('PEXPIRE', KEYS[1], ARGV[1])
    redis.call('PEXPIRE', KEYS[2], ARGV[1])
end
return all
"#,
    )
});
