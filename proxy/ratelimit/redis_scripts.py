"""The Lua the shared limiter runs in Redis, and the names of the keys it runs on.

Times are microseconds of Redis's own clock (`TIME`), so replicas need no synchronised clocks.
A bucket's value is its GCRA theoretical arrival time (TAT); a missing key is a full bucket.

Redis Cluster: a script may only touch keys of one hash slot (else CROSSSLOT). Every key is
`{key_prefix}:<rule>:<bucket>`, and Cluster hashes only the part in braces, so all of a
limiter's keys share one slot: a request's buckets are always charged in one atomic script.
The price is that that slot's node holds every bucket and runs every decision.
"""

from __future__ import annotations

# Used when `key_prefix` has nothing left to make a hash tag of (empty or only braces).
FALLBACK_HASH_TAG = "throttle-proxy"

# KEYS: one per bucket. ARGV: max_wait_us, then interval_us and tolerance_us per key.
# Returns {admitted (1|0), wait_us, admit_at_us, own_wait_us per key, then (when admitted)
# the TAT granted per key}, which is what a cancelled waiter needs to take its grant back.
GCRA_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local max_wait = tonumber(ARGV[1])
local admit = now
local tats, own = {}, {}
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[2 * i])
  local tolerance = tonumber(ARGV[2 * i + 1])
  local tat = tonumber(redis.call('GET', key) or '0')
  if tat < now then tat = now end
  tats[i] = tat
  local allow = tat + interval - tolerance
  if allow < now then allow = now end
  own[i] = allow - now
  if allow > admit then admit = allow end
end
local wait = admit - now
local reply = {0, wait, admit}
for i = 1, #KEYS do reply[i + 3] = own[i] end
if wait > max_wait then return reply end
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[2 * i])
  local base = tats[i]
  if admit > base then base = admit end
  local tat = base + interval
  local ttl = math.ceil((tat - now) / 1000) + 1000
  redis.call('SET', key, string.format('%.0f', tat), 'PX', ttl)
  reply[#KEYS + 3 + i] = tat
end
reply[1] = 1
return reply
"""

# KEYS: the buckets one grant charged. ARGV: admit_at_us, then granted_tat_us and interval_us
# per key. A waiter cancelled before its slot gives the slot back, bucket by bucket, but only
# where its grant is still the bucket's latest (the TAT is the one it set): refunding a grant
# that later grants were stacked on would let a newcomer share a moment with a later waiter.
# Never refunds more than the grant took. Returns how many buckets were refunded.
REFUND_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
if now >= tonumber(ARGV[1]) then return 0 end
local refunded = 0
for i, key in ipairs(KEYS) do
  local granted = tonumber(ARGV[2 * i])
  local current = tonumber(redis.call('GET', key) or '-1')
  if current == granted then
    local tat = granted - tonumber(ARGV[2 * i + 1])
    if tat > now then
      local ttl = math.ceil((tat - now) / 1000) + 1000
      redis.call('SET', key, string.format('%.0f', tat), 'PX', ttl)
    else
      redis.call('DEL', key)
    end
    refunded = refunded + 1
  end
end
return refunded
"""


def hash_tag(key_prefix: str) -> str:
    """`{key_prefix}`, the part of every key Redis Cluster hashes. Braces in the prefix would
    cut the tag short or empty it (an empty tag hashes the whole key), so they are dropped."""
    tag = key_prefix.replace("{", "").replace("}", "")
    return "{" + (tag or FALLBACK_HASH_TAG) + "}"


def bucket_redis_key(tag: str, rule: str, bucket: str) -> str:
    """The Redis key of one bucket of one rule; `tag` comes from `hash_tag`."""
    return f"{tag}:{rule}:{bucket}"
