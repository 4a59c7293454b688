"""The Lua the shared limiter runs in Redis, and the names of the keys it runs on.

Times are microseconds of Redis's own clock (`TIME`), so replicas need no synchronised clocks.
A bucket's value is `tat:interval:burst`: its GCRA theoretical arrival time (TAT) and the
rule's shape when it was last charged; a missing key is a full bucket. When a reload changed
the rule (any replica's), the next request first rescales the bucket as the local limiter
does: its level (tokens it could spend now) is kept, capped at the new burst, so shrinking
leaves no debt and growing gives no credit. The rescaled bucket is stored even when the
request is refused, so the new rate applies from then on. (A bucket Redis has already
expired was full: it comes back full of the new burst.)

One script call decides a whole batch of requests, one after another, each atomically over
all of its buckets: that is how concurrent requests share one round trip.

Redis Cluster: a script may only touch keys of one hash slot (else CROSSSLOT). Every key is
`{key_prefix:account/region}:<rule>:<bucket>` (`*/region` or `*/*` for the `region` and
`global` scopes), and Cluster hashes only the part in braces: budgets spread over the
cluster's slots by account and region, and all of one budget's keys share a slot.
"""

from __future__ import annotations

# Used when `key_prefix` has nothing left to make a hash tag of (empty or only braces).
FALLBACK_HASH_TAG = "throttle-proxy"

# The clock and a bucket's TAT as of now, rescaled when the rule's shape changed (see above).
_READ_BUCKET = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])

local function read(key, interval, burst)
  local value = redis.call('GET', key)
  if not value then return now end
  local tat, old_interval, old_burst = string.match(value, '^(%d+):(%d+):(.+)$')
  if not tat then
    tat = tonumber(value)
    if tat == nil or tat < now then return now end
    return tat
  end
  tat = tonumber(tat)
  if tat <= now then return now end
  if old_interval == interval and old_burst == burst then return tat end
  local spent = (tat - now) / tonumber(old_interval) + tonumber(burst) - tonumber(old_burst)
  if spent <= 0 then return now, true end
  return math.floor(now + spent * tonumber(interval)), true
end
"""

# KEYS: every bucket of every request in the batch, request after request.
# ARGV[1]: the requests, `;`-separated; each `count,max_wait_us,interval_us,burst,cost,...`
# (per key: the rule's interval and burst, stored with the TAT to notice a reload, and the
# tokens the request takes from it: 1, or the resources it acts on). One string in and one
# out keep the client's encoding and parsing cost per request small.
# Returns the replies, `;`-separated; each `admitted (1|0),wait_us,admit_at_us,own_wait_us per
# key[,TAT granted per key when admitted]`, which a cancelled waiter needs to take its grant
# back.
GCRA_BATCH_SCRIPT = (
    _READ_BUCKET
    + """
local replies = {}
local k = 0
for spec in string.gmatch(ARGV[1], '[^;]+') do
  local f = {}
  for field in string.gmatch(spec, '[^,]+') do f[#f + 1] = field end
  local count, max_wait = tonumber(f[1]), tonumber(f[2])
  local admit = now
  local tats, own, rescaled = {}, {}, {}
  for i = 1, count do
    local interval, burst, cost = f[3 * i], f[3 * i + 1], tonumber(f[3 * i + 2])
    local tat, changed = read(KEYS[k + i], interval, burst)
    tats[i] = tat
    rescaled[i] = changed
    local step = tonumber(interval)
    local allow = tat + cost * step - tonumber(burst) * step
    if allow < now then allow = now end
    own[i] = string.format('%d', allow - now)
    if allow > admit then admit = allow end
  end
  local wait = admit - now
  local admitted = wait <= max_wait
  local reply = {admitted and '1' or '0', string.format('%d', wait), string.format('%d', admit)}
  for i = 1, count do reply[#reply + 1] = own[i] end
  if admitted then
    for i = 1, count do
      local interval, burst, cost = f[3 * i], f[3 * i + 1], tonumber(f[3 * i + 2])
      local base = tats[i]
      if admit > base then base = admit end
      local tat = string.format('%d', math.floor(base + cost * tonumber(interval)))
      local ttl = math.ceil((tonumber(tat) - now) / 1000) + 1000
      redis.call('SET', KEYS[k + i], tat .. ':' .. interval .. ':' .. burst, 'PX', ttl)
      reply[#reply + 1] = tat
    end
  else
    -- A refused request's rescale is kept too: else every read would rescale the stored
    -- TAT again, and the bucket would go on refilling at the old rate until a grant.
    for i = 1, count do
      if rescaled[i] then
        local ttl = math.ceil((tats[i] - now) / 1000) + 1000
        local value = string.format('%d', tats[i]) .. ':' .. f[3 * i] .. ':' .. f[3 * i + 1]
        redis.call('SET', KEYS[k + i], value, 'PX', ttl)
      end
    end
  end
  replies[#replies + 1] = table.concat(reply, ',')
  k = k + count
end
return table.concat(replies, ';')
"""
)

# KEYS[1]: one bucket. ARGV: interval_us, burst, tokens wanted. Takes up to that many tokens
# the bucket can give now (never a later slot: requests that must wait queue in the batch
# script, in order) for a replica's slice (see proxy.ratelimit.lease). Returns how many.
LEASE_SCRIPT = (
    _READ_BUCKET
    + """
local interval, burst, want = ARGV[1], ARGV[2], tonumber(ARGV[3])
local tat = read(KEYS[1], interval, burst)
local step = tonumber(interval)
local got = want
if step > 0 then
  local room = math.floor((tonumber(burst) * step - (tat - now)) / step)
  if room < got then got = room end
end
if got <= 0 then return 0 end
local new_tat = string.format('%d', math.floor(tat + got * step))
local ttl = math.ceil((tonumber(new_tat) - now) / 1000) + 1000
redis.call('SET', KEYS[1], new_tat .. ':' .. interval .. ':' .. burst, 'PX', ttl)
return got
"""
)

# KEYS: the buckets one grant charged. ARGV: admit_at_us, then granted_tat_us and the
# grant's charge (interval_us x cost) per key. A waiter cancelled before its slot gives the
# slot back, bucket by bucket, but only where its grant is still the bucket's latest (the TAT
# is the one it set): refunding a grant that later grants were stacked on would let a
# newcomer share a moment with a later waiter.
# Never refunds more than the grant took. Returns how many buckets were refunded.
REFUND_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
if now >= tonumber(ARGV[1]) then return 0 end
local refunded = 0
for i, key in ipairs(KEYS) do
  local granted = tonumber(ARGV[2 * i])
  local value = redis.call('GET', key) or ''
  local current, shape = string.match(value, '^(%d+)(:.*)$')
  if current ~= nil and tonumber(current) == granted then
    local tat = granted - tonumber(ARGV[2 * i + 1])
    if tat > now then
      local ttl = math.ceil((tat - now) / 1000) + 1000
      redis.call('SET', key, string.format('%d', tat) .. shape, 'PX', ttl)
    else
      redis.call('DEL', key)
    end
    refunded = refunded + 1
  end
end
return refunded
"""


def _without_braces(text: str) -> str:
    # Braces would cut the tag short or empty it (an empty tag hashes the whole key).
    return text.replace("{", "").replace("}", "")


def hash_tag(key_prefix: str, budget: str = "") -> str:
    """`{key_prefix:budget}`, the part of a key Redis Cluster hashes: one slot per budget
    (account and region). Braces are dropped from both parts."""
    tag = _without_braces(key_prefix) or FALLBACK_HASH_TAG
    if budget:
        tag = f"{tag}:{_without_braces(budget)}"
    return "{" + tag + "}"


def bucket_redis_key(tag: str, rule: str, bucket: str) -> str:
    """The Redis key of one bucket of one rule; `tag` comes from `hash_tag`."""
    return f"{tag}:{rule}:{bucket}"
