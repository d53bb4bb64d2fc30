#!lua name={{library}}
-- baton's Redis Functions library: one function per atomic step, sharing the checks below.
-- Rendered by broker/scripts.py: the name carries a hash of the source, C is the shared vocabulary
-- (terminal run states, review decisions...), and each step's body (broker/lua/<step>.lua, written
-- against KEYS and ARGV) follows as a local function.
local C = {{constants}}

local function is_terminal(status)
  return status ~= nil and status ~= false and C.TERMINAL_STATUSES[status] == true
end

-- The opening checks of every step that consumes a stream entry: 0 when the entry is no longer
-- pending for this consumer (reclaimed or acked: write nothing), -1 when the idempotency marker
-- says this message already committed (the entry is acked again), nil to go on (marker now set).
local function claim(stream, marker, group, consumer, id, marker_ttl)
  local owned = redis.call('XPENDING', stream, group, id, id, 1, consumer)
  if #owned == 0 then
    return 0
  end
  if marker and not redis.call('SET', marker, '1', 'NX', 'EX', tonumber(marker_ttl)) then
    redis.call('XACK', stream, group, id)
    return -1
  end
  return nil
end
