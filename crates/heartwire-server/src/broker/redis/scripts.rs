//! Every Lua script of the Redis broker. Each makes one channel operation atomic
//! across nodes; each doc names its `KEYS` and `ARGV` in order, which
//! [`commands`](super::commands) follows, and what it returns, which
//! [`replies`](super::replies) reads.
//!
//! [`PUBLISH`] checks the publish id, takes the next `seq` (`INCR`), appends the
//! message to the channel's stream (`XADD … MAXLEN cap 0-{seq}`), and publishes the
//! envelope to every node, all in one step: every node sees a channel's messages in
//! one `seq` order, and the history holds exactly what was published. [`SNAPSHOT`]
//! reads a channel's epoch, latest `seq`, the messages after a position and the
//! retained ws4redis value, also in one step. [`TOUCH`] keeps a channel's history
//! alive. [`ADD_MEMBER`], [`REMOVE_MEMBER`] and [`LIVE_MEMBERS`] keep a channel's
//! members and the count of each user's, and announce their joins and leaves (see
//! [`presence`](super::presence)).

use std::sync::LazyLock;

use redis::Script;

/// Publishes one message. KEYS: seq, epoch, stream, publish id (or the seq key
/// again when there is none), live channel, raw channel. ARGV: body, kind, origin,
/// raw text (empty: not published raw), persist seconds (0: no SETEX), history cap,
/// history ttl in ms, dedup window in seconds, a fresh epoch, has id (`1`/`0`).
/// Returns `{duplicate 0/1, seq, epoch}`.
pub(super) static PUBLISH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local seq_key, epoch_key, stream_key, id_key, live, raw_channel =
    KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local body, kind, origin, raw = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local persist, cap, ttl, window = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local fresh_epoch, has_id = ARGV[9], ARGV[10] == '1'
local epoch = redis.call('GET', epoch_key)
if has_id then
    local seen = redis.call('GET', id_key)
    if seen and epoch then return {'1', seen, epoch} end
end
if not epoch then
    epoch = fresh_epoch
    redis.call('SET', epoch_key, epoch)
    redis.call('DEL', seq_key, stream_key)
end
local seq = redis.call('INCR', seq_key)
if cap > 0 then
    redis.call('XADD', stream_key, 'MAXLEN', cap, '0-' .. seq, 'k', kind, 'o', origin, 'd', body)
    redis.call('PEXPIRE', stream_key, ttl)
end
redis.call('PEXPIRE', seq_key, ttl)
redis.call('PEXPIRE', epoch_key, ttl)
if has_id then redis.call('SET', id_key, seq, 'EX', window) end
local raw_flag = '-'
if raw ~= '' then raw_flag = 'r' end
redis.call('PUBLISH', live, seq .. ' ' .. epoch .. ' ' .. kind .. raw_flag .. ' ' .. origin .. '\n' .. body)
if raw ~= '' then
    redis.call('PUBLISH', raw_channel, raw)
    if persist > 0 then redis.call('SETEX', raw_channel, persist, raw) end
end
return {'0', tostring(seq), epoch}
"#,
    )
});

/// Reads a channel. KEYS: seq, epoch, stream, raw channel. ARGV: a fresh epoch, the
/// asked epoch (empty: none asked), the asked seq, want retained (`1`/`0`), history
/// ttl in ms. Returns `{epoch, seq, recovered (-1 not asked, 0, 1), has retained,
/// retained, then seq, kind, origin, body for each message after the position}`.
pub(super) static SNAPSHOT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local seq_key, epoch_key, stream_key, raw_channel = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local fresh_epoch, since_epoch, since = ARGV[1], ARGV[2], tonumber(ARGV[3])
local want_retained, ttl = ARGV[4] == '1', tonumber(ARGV[5])
local epoch = redis.call('GET', epoch_key)
if not epoch then
    epoch = fresh_epoch
    redis.call('SET', epoch_key, epoch, 'PX', ttl)
    redis.call('DEL', seq_key, stream_key)
end
local seq = tonumber(redis.call('GET', seq_key) or '0')
local reply = {epoch, tostring(seq), '-1', '0', ''}
if since_epoch ~= '' then
    reply[3] = '0'
    if since_epoch == epoch and since <= seq then
        if since == seq then
            reply[3] = '1'
        else
            local first = '0-' .. (since + 1)
            local entries = redis.call('XRANGE', stream_key, first, '0-' .. seq)
            if #entries > 0 and entries[1][1] == first then
                reply[3] = '1'
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
if want_retained then
    local retained = redis.call('GET', raw_channel)
    if retained then
        reply[4] = '1'
        reply[5] = retained
    end
end
return reply
"#,
    )
});

/// Keeps a channel's history alive while this node has subscribers. KEYS: seq,
/// epoch, stream. ARGV: history ttl in ms.
pub(super) static TOUCH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
for _, key in ipairs(KEYS) do redis.call('PEXPIRE', key, ARGV[1]) end
return 0
"#,
    )
});

/// How a member leaves, shared by the scripts that remove members: `leave(presence,
/// users, session, value)`, where `value` is what `#members` held for the session.
/// An anonymous member's leave is announced (`l {session}`); a user's is counted
/// down, and announced (`l {session} {user}`) when it was the user's last member.
const LEAVE: &str = r#"
local function leave(presence, users, session, value)
    local space = string.find(value, ' ', 1, true)
    if not space then
        redis.call('PUBLISH', presence, 'l ' .. session)
        return
    end
    local user = string.sub(value, space + 1)
    if redis.call('HINCRBY', users, user, -1) <= 0 then
        redis.call('HDEL', users, user)
        redis.call('PUBLISH', presence, 'l ' .. session .. ' ' .. user)
    end
end
"#;

/// Adds a member. KEYS: members, presence channel, node key, users. ARGV: session,
/// node, node ttl in ms, members ttl in ms, user (empty: anonymous). Refreshes the
/// node's liveness key and adds the member. A new anonymous member is announced
/// (`j {session}`); a new user's member is counted, and announced
/// (`j {session} {user}`) when it is the user's first.
pub(super) static ADD_MEMBER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local session, node, user = ARGV[1], ARGV[2], ARGV[5]
redis.call('SET', KEYS[3], '1', 'PX', ARGV[3])
local value = node
if user ~= '' then value = node .. ' ' .. user end
local added = redis.call('HSET', KEYS[1], session, value)
redis.call('PEXPIRE', KEYS[1], ARGV[4])
if added == 1 then
    if user == '' then
        redis.call('PUBLISH', KEYS[2], 'j ' .. session)
    elseif redis.call('HINCRBY', KEYS[4], user, 1) == 1 then
        redis.call('PUBLISH', KEYS[2], 'j ' .. session .. ' ' .. user)
    end
end
redis.call('PEXPIRE', KEYS[4], ARGV[4])
return added
"#,
    )
});

/// Removes a member. KEYS: members, presence channel, users. ARGV: session. Announces
/// the leave as [`LEAVE`] does, when it was there.
pub(super) static REMOVE_MEMBER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r#"{LEAVE}
local value = redis.call('HGET', KEYS[1], ARGV[1])
if not value then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
leave(KEYS[2], KEYS[3], ARGV[1], value)
return 1
"#
    ))
});

/// Reads the live members. KEYS: members, presence channel, users. ARGV: node key
/// prefix, members ttl in ms. Removes members whose node is gone (their leave
/// announced as [`LEAVE`] does); returns the others as session, user pairs (the user
/// empty when anonymous). Node keys are read by name, so this needs a single Redis
/// (no cluster).
pub(super) static LIVE_MEMBERS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r#"{LEAVE}
local all = redis.call('HGETALL', KEYS[1])
local alive, members = {{}}, {{}}
for i = 1, #all, 2 do
    local session, value = all[i], all[i + 1]
    local space = string.find(value, ' ', 1, true)
    local node, user = value, ''
    if space then
        node, user = string.sub(value, 1, space - 1), string.sub(value, space + 1)
    end
    if alive[node] == nil then
        alive[node] = redis.call('EXISTS', ARGV[1] .. node) == 1
    end
    if alive[node] then
        table.insert(members, session)
        table.insert(members, user)
    else
        redis.call('HDEL', KEYS[1], session)
        leave(KEYS[2], KEYS[3], session, value)
    end
end
if #members > 0 then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    redis.call('PEXPIRE', KEYS[3], ARGV[2])
end
return members
"#
    ))
});
