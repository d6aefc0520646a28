"""The group directory (``bridge.modyo.group_directory``) in the Redis the replicas share, so
that one replica's listing serves every replica's group queries.

Keys (after ``idempotency.key_prefix``): ``groups:rows``, a hash of group id to the group as
JSON (``r``: id, displayName, externalId, created, lastModified; ``s``: when it was seen;
``k``: the digests it is found by); ``groups:by``, a hash of such a digest (of
``display_name:name`` or ``external_id:id``, lower-cased: no name in a key) to the JSON list
of ids; ``groups:pass``, where the refresh stands. Each change is one script (atomic); the
three keys expire :data:`EXPIRY_MS` after the last change. If Redis fails, the directory
reads as empty and changes are dropped: the upstream then reads the whole listing (more
calls, never a wrong answer).
"""

from __future__ import annotations

import contextlib
import json
from typing import Final

from bridge.modyo.group_directory import Listed, Pass, key, keys
from bridge.store.errors import StoreUnavailable
from bridge.store.redis_link import RedisLink, digest
from bridge.upstream import GroupField, GroupRecord

EXPIRY_MS: Final = 86_400_000
"""A day without a change and the directory is rebuilt from the listing."""

# KEYS: rows, by, pass. ARGV: the digest. {complete_at or false, cursor, ids, rows}.
FIND: Final = """
local state = redis.call('HMGET', KEYS[3], 'complete_at', 'cursor')
local ids = cjson.decode(redis.call('HGET', KEYS[2], ARGV[1]) or '[]')
local rows = {}
if #ids > 0 then rows = redis.call('HMGET', KEYS[1], unpack(ids)) end
return {state[1], state[2], rows}
"""
# KEYS: rows, by, pass. ARGV: what ('rebuild', 'refresh', 'put', 'drop'), now, size, the next
# page (refresh), expiry (ms), then each group: id, its JSON, its digests joined by ','.
APPLY: Final = """
local rows, by, pass = KEYS[1], KEYS[2], KEYS[3]
local what, now, size, cursor = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local function unlink(id)
  local raw = redis.call('HGET', rows, id)
  if not raw then return end
  for _, k in ipairs(cjson.decode(raw).k) do
    local kept = {}
    for _, other in ipairs(cjson.decode(redis.call('HGET', by, k) or '[]')) do
      if other ~= id then table.insert(kept, other) end
    end
    if #kept == 0 then
      redis.call('HDEL', by, k)
    else
      redis.call('HSET', by, k, cjson.encode(kept))
    end
  end
  redis.call('HDEL', rows, id)
end
local function link(i)
  local id = ARGV[i]
  unlink(id)
  redis.call('HSET', rows, id, ARGV[i + 1])
  for k in string.gmatch(ARGV[i + 2], '[^,]+') do
    local ids = cjson.decode(redis.call('HGET', by, k) or '[]')
    table.insert(ids, id)
    redis.call('HSET', by, k, cjson.encode(ids))
  end
end
local function clear() redis.call('DEL', rows, by, pass) end
local count = (#ARGV - 5) / 3
if what == 'rebuild' then
  clear()
  if count > size then return 0 end
  for i = 6, #ARGV, 3 do link(i) end
  redis.call('HSET', pass, 'complete_at', now, 'cursor', 1, 'started', now)
elseif not redis.call('HGET', pass, 'complete_at') then
  return 0
elseif what == 'drop' then
  unlink(ARGV[6])
elseif what == 'put' then
  if redis.call('HEXISTS', rows, ARGV[6]) == 0 and redis.call('HLEN', rows) >= size then
    clear()
    return 0
  end
  link(6)
else
  for i = 6, #ARGV, 3 do link(i) end
  if redis.call('HLEN', rows) > size then
    clear()
    return 0
  end
  if cursor > 1 then
    redis.call('HSET', pass, 'cursor', cursor)
  else
    local started = tonumber(redis.call('HGET', pass, 'started'))
    local all = redis.call('HGETALL', rows)
    for i = 1, #all, 2 do
      if tonumber(cjson.decode(all[i + 1]).s) < started then unlink(all[i]) end
    end
    redis.call('HSET', pass, 'complete_at', now, 'cursor', 1, 'started', now)
  end
end
for _, k in ipairs(KEYS) do redis.call('PEXPIRE', k, ARGV[5]) end
return 1
"""


class RedisGroupDirectory:
    """:class:`~bridge.modyo.group_directory.GroupDirectory` in Redis (module docstring)."""

    def __init__(self, link: RedisLink, size: int) -> None:
        self.link = link
        self.size = size
        self._keys = [link.key("groups", part) for part in ("rows", "by", "pass")]
        self._find = link.client.register_script(FIND)
        self._apply = link.client.register_script(APPLY)

    async def find(self, field: GroupField, value: str) -> tuple[Pass, list[Listed]]:
        args = [digest(key(field, value))]
        try:
            complete_at, cursor, rows = await self.link.call(
                "group directory", lambda: self._find(keys=self._keys, args=args)
            )
        except StoreUnavailable:
            return Pass(None, 1), []  # read as empty: the whole listing answers
        state = Pass(None if complete_at is None else float(complete_at), int(cursor or 1))
        return state, [_listed(row) for row in rows if row is not None]

    async def rebuild(self, records: list[GroupRecord], now: float) -> None:
        await self._change("rebuild", now, records)

    async def refresh(self, records: list[GroupRecord], cursor: int, now: float) -> None:
        await self._change("refresh", now, records, cursor)

    async def put(self, record: GroupRecord, now: float) -> None:
        await self._change("put", now, [record])

    async def drop(self, group_id: str) -> None:
        args: list[str | int | float] = ["drop", 0, self.size, 1, EXPIRY_MS, group_id, "", ""]
        await self._call(args)

    async def _change(
        self, what: str, now: float, records: list[GroupRecord], cursor: int = 1
    ) -> None:
        args: list[str | int | float] = [what, now, self.size, cursor, EXPIRY_MS]
        if what == "rebuild" and len(records) > self.size:
            records = []  # emptied, as the script would
            args[2] = -1
        for record in records:
            found = [digest(k) for k in keys(record)]
            row = {"r": [record.id, record.display_name, record.external_id, record.created,
                         record.last_modified], "s": now, "k": found}  # fmt: skip
            args += [record.id, json.dumps(row, separators=(",", ":")), ",".join(found)]
        await self._call(args)

    async def _call(self, args: list[str | int | float]) -> None:
        with contextlib.suppress(StoreUnavailable):  # logged by the link
            await self.link.call("group directory", lambda: self._apply(keys=self._keys, args=args))


def _listed(raw: bytes) -> Listed:
    row = json.loads(raw)
    group_id, name, external_id, created, modified = row["r"]
    return Listed(GroupRecord(group_id, name, external_id, created, modified), float(row["s"]))
