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
-- says this message already committed (the entry is acked again), 2 when ``run`` (a run record
-- key, or nil) holds a terminal status (write nothing, leave the entry pending), nil to go on
-- (marker now set).
local function claim(stream, marker, group, consumer, id, marker_ttl, run)
  local owned = redis.call('XPENDING', stream, group, id, id, 1, consumer)
  if #owned == 0 then
    return 0
  end
  if marker and redis.call('EXISTS', marker) == 1 then
    redis.call('XACK', stream, group, id)
    return -1
  end
  if run and is_terminal(redis.call('HGET', run, 'status')) then
    return 2
  end
  if marker then
    redis.call('SET', marker, '1', 'EX', tonumber(marker_ttl))
  end
  return nil
end
