"""The presence store in Redis, shared by every user-service replica.

Each operation is one Lua script, so updating leases and publishing a change
are one atomic step across replicas (two replicas can never both announce the
same transition, nor announce them out of order). Keys, under `prefix`:

    conns           hash   connection id → "<user id>\\n<instance id>"
    expiry          zset   connection id, scored by lease expiry (ms)
    user:<id>       zset   the user's connection ids, scored by last activity (ms)
    seen:<id>       string last time the user was seen connected (ms)
    state:<id>      string published "<status>|<version>|<last seen ms>"
    pending         zset   user ids whose OFFLINE is due, scored by due time (ms)

The scripts build key names from the prefix, so this needs a single Redis
(or a cluster with every key in one slot: use a prefix with a hash tag).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from chatmesh.common.errors import Unavailable
from chatmesh.common.logging import get_logger
from chatmesh.services.user.presence.store import (
    ConnectionConflictError,
    PresencePolicy,
    PresenceState,
    Status,
)

# Shared by every script: arguments 1-6 and the evaluation of a user.
_PRELUDE = r"""
local P = ARGV[1]
local NOW = tonumber(ARGV[2])
local TTL = tonumber(ARGV[3])
local AWAY = tonumber(ARGV[4])
local DELAY = tonumber(ARGV[5])
local STATE_TTL = tonumber(ARGV[6])

local function split_conn(value)
  return string.match(value, '^([^\n]*)\n(.*)$')
end

local function computed(uid)
  local top = redis.call('ZREVRANGE', P .. 'user:' .. uid, 0, 0, 'WITHSCORES')
  if #top == 0 then return 'offline' end
  if NOW - tonumber(top[2]) >= AWAY then return 'away' end
  return 'online'
end

local function evaluate(uid, commit_offline, changes)
  local status = computed(uid)
  local raw = redis.call('GET', P .. 'state:' .. uid)
  local old, version = 'offline', 0
  if raw then
    local s, v = string.match(raw, '^(%a+)|(%d+)|')
    old, version = s, tonumber(v)
  end
  if status == old then return end
  if status == 'offline' and not commit_offline then
    redis.call('ZADD', P .. 'pending', NOW + DELAY, uid)
    return
  end
  redis.call('ZREM', P .. 'pending', uid)
  version = math.max(version + 1, NOW * 1000)
  local seen = ''
  if status == 'offline' then
    seen = redis.call('GET', P .. 'seen:' .. uid) or string.format('%.0f', NOW)
  end
  local value = status .. '|' .. string.format('%.0f', version) .. '|' .. seen
  if status == 'offline' then
    redis.call('SET', P .. 'state:' .. uid, value, 'EX', STATE_TTL)
  else
    redis.call('SET', P .. 'state:' .. uid, value)
  end
  table.insert(changes, value .. '|' .. uid)
end

local function evaluate_all(touched, commit_offline, changes)
  for uid, _ in pairs(touched) do evaluate(uid, commit_offline, changes) end
end
"""

# ARGV 7: connection id, 8: user id, 9: instance id.
_OPEN = r"""
local conn, uid, instance = ARGV[7], ARGV[8], ARGV[9]
local existing = redis.call('HGET', P .. 'conns', conn)
if existing then
  local owner = split_conn(existing)
  if owner ~= uid then return redis.error_reply('CONNECTION_CONFLICT') end
end
redis.call('HSET', P .. 'conns', conn, uid .. '\n' .. instance)
redis.call('ZADD', P .. 'expiry', NOW + TTL, conn)
redis.call('ZADD', P .. 'user:' .. uid, NOW, conn)
redis.call('SET', P .. 'seen:' .. uid, string.format('%.0f', NOW), 'EX', STATE_TTL)
local changes = {}
evaluate(uid, false, changes)
return changes
"""

# ARGV 7: instance id, 8: n, then n connection ids, then n activity flags ("1"/"0").
_HEARTBEAT = r"""
local instance, n = ARGV[7], tonumber(ARGV[8])
local touched, unknown = {}, {}
for i = 1, n do
  local conn, active = ARGV[8 + i], ARGV[8 + n + i] == '1'
  local value = redis.call('HGET', P .. 'conns', conn)
  local uid, owner = nil, nil
  if value then uid, owner = split_conn(value) end
  if not value or owner ~= instance then
    table.insert(unknown, conn)
  else
    redis.call('ZADD', P .. 'expiry', 'XX', NOW + TTL, conn)
    if active then redis.call('ZADD', P .. 'user:' .. uid, 'XX', NOW, conn) end
    if not touched[uid] then
      redis.call('SET', P .. 'seen:' .. uid, string.format('%.0f', NOW), 'EX', STATE_TTL)
      touched[uid] = true
    end
  end
end
local changes = {}
evaluate_all(touched, false, changes)
return {changes, unknown}
"""

# ARGV 7: instance id, then connection ids.
_CLOSE = r"""
local instance = ARGV[7]
local touched = {}
for i = 8, #ARGV do
  local conn = ARGV[i]
  local value = redis.call('HGET', P .. 'conns', conn)
  if value then
    local uid, owner = split_conn(value)
    if owner == instance then
      redis.call('HDEL', P .. 'conns', conn)
      redis.call('ZREM', P .. 'expiry', conn)
      redis.call('ZREM', P .. 'user:' .. uid, conn)
      redis.call('SET', P .. 'seen:' .. uid, string.format('%.0f', NOW), 'EX', STATE_TTL)
      touched[uid] = true
    end
  end
end
local changes = {}
evaluate_all(touched, false, changes)
return changes
"""

# ARGV 7: how many leases / due users to handle at most.
_SWEEP = r"""
local limit = tonumber(ARGV[7])
local touched = {}
local expired = redis.call('ZRANGEBYSCORE', P .. 'expiry', '-inf', NOW, 'LIMIT', 0, limit)
for _, conn in ipairs(expired) do
  redis.call('ZREM', P .. 'expiry', conn)
  local value = redis.call('HGET', P .. 'conns', conn)
  if value then
    local uid = split_conn(value)
    redis.call('HDEL', P .. 'conns', conn)
    redis.call('ZREM', P .. 'user:' .. uid, conn)
    touched[uid] = true
  end
end
local changes = {}
evaluate_all(touched, false, changes)
local due = redis.call('ZRANGEBYSCORE', P .. 'pending', '-inf', NOW, 'LIMIT', 0, limit)
for _, uid in ipairs(due) do
  redis.call('ZREM', P .. 'pending', uid)
  evaluate(uid, true, changes)
end
return {changes, #expired + #due}
"""

SWEEP_BATCH = 1000

log = get_logger(__name__)


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _parse_state(raw: str, user_id: str | None = None) -> PresenceState:
    """'<status>|<version>|<seen ms>[|<user id>]' → PresenceState."""
    status, version, seen, *rest = raw.split("|", 3)
    return PresenceState(
        user_id=user_id if user_id is not None else rest[0],
        status=Status(status),
        version=int(version),
        last_seen=int(seen) / 1000 if seen else None,
    )


def _unavailable() -> Unavailable:
    return Unavailable("presence is unavailable, try again", code="presence_unavailable")


class RedisPresenceStore:
    """The client belongs to the caller; `close_store` leaves it open."""

    def __init__(self, client: aioredis.Redis, *, prefix: str = "presence:") -> None:
        self._client = client
        self._prefix = prefix
        self._open = client.register_script(_PRELUDE + _OPEN)
        self._heartbeat = client.register_script(_PRELUDE + _HEARTBEAT)
        self._close = client.register_script(_PRELUDE + _CLOSE)
        self._sweep = client.register_script(_PRELUDE + _SWEEP)

    def _args(self, now: float, policy: PresencePolicy, *extra: object) -> list[Any]:
        return [
            self._prefix,
            _ms(now),
            _ms(policy.connection_ttl),
            _ms(policy.away_after),
            _ms(policy.offline_delay),
            max(1, round(policy.offline_state_ttl)),
            *extra,
        ]

    async def _run(self, script: Any, args: list[Any]) -> Any:
        try:
            return await script(keys=[], args=args)
        except ResponseError as error:
            if "CONNECTION_CONFLICT" in str(error):
                raise ConnectionConflictError(str(args[6])) from None
            log.error("presence_script_failed", error=repr(error))
            raise _unavailable() from error
        except (RedisError, OSError) as error:
            log.warning("presence_store_unavailable", error=repr(error))
            raise _unavailable() from error

    async def open(
        self,
        *,
        user_id: str,
        connection_id: str,
        instance_id: str,
        now: float,
        policy: PresencePolicy,
    ) -> list[PresenceState]:
        reply = await self._run(
            self._open, self._args(now, policy, connection_id, user_id, instance_id)
        )
        return [_parse_state(_text(item)) for item in reply]

    async def heartbeat(
        self,
        *,
        instance_id: str,
        connection_ids: Sequence[str],
        active_ids: Sequence[str],
        now: float,
        policy: PresencePolicy,
    ) -> tuple[list[PresenceState], list[str]]:
        if not connection_ids:
            return [], []
        active = set(active_ids)
        flags = ["1" if c in active else "0" for c in connection_ids]
        reply = await self._run(
            self._heartbeat,
            self._args(now, policy, instance_id, len(connection_ids), *connection_ids, *flags),
        )
        changes, unknown = reply
        return [_parse_state(_text(item)) for item in changes], [_text(c) for c in unknown]

    async def close(
        self,
        *,
        instance_id: str,
        connection_ids: Sequence[str],
        now: float,
        policy: PresencePolicy,
    ) -> list[PresenceState]:
        if not connection_ids:
            return []
        reply = await self._run(self._close, self._args(now, policy, instance_id, *connection_ids))
        return [_parse_state(_text(item)) for item in reply]

    async def sweep(self, *, now: float, policy: PresencePolicy) -> list[PresenceState]:
        changes: list[PresenceState] = []
        while True:
            reply = await self._run(self._sweep, self._args(now, policy, SWEEP_BATCH))
            batch, handled = reply
            changes += [_parse_state(_text(item)) for item in batch]
            if int(handled) < SWEEP_BATCH:
                return changes

    async def get(self, user_ids: Sequence[str]) -> list[PresenceState]:
        if not user_ids:
            return []
        try:
            values = await self._client.mget([f"{self._prefix}state:{u}" for u in user_ids])
        except (RedisError, OSError) as error:
            raise _unavailable() from error
        return [
            _parse_state(_text(raw), user_id)
            if raw is not None
            else PresenceState(user_id, Status.OFFLINE, 0)
            for user_id, raw in zip(user_ids, values, strict=True)
        ]

    async def close_store(self) -> None:
        return None
