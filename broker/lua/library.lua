#!lua name={{library}}
-- baton's Redis Functions library: one function per atomic step, sharing the checks below.
-- Rendered by broker/scripts.py: the name carries a hash of the source, C is the shared vocabulary
-- (terminal run states, review decisions...), and each step's body (broker/lua/<step>.lua, written
-- against KEYS and ARGV) follows as a local function.
local C = {{constants}}

local function is_terminal(status)
  return status ~= nil and status ~= false and C.TERMINAL_STATUSES[status] == true
end

-- HSET on ``key`` the pairs counted at ``argv[i]`` (n, then n field/value pairs); the index after them.
local function hset_counted(key, argv, i)
  local n = tonumber(argv[i])
  if n > 0 then
    redis.call('HSET', key, unpack(argv, i + 1, i + 2 * n))
  end
  return i + 2 * n + 1
end

-- Append ``events`` (a list of encoded events) to a run's event log, trimmed to about ``maxlen``
-- entries and expiring ``ttl`` seconds after its last write (broker/events.py); nothing when empty.
local function log_events(stream, maxlen, ttl, events)
  if #events == 0 then
    return
  end
  for _, ev in ipairs(events) do
    redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', 'ev', ev)
  end
  redis.call('EXPIRE', stream, tonumber(ttl))
end

-- The opening checks of every step that consumes a stream entry: 0 when the entry is no longer
-- pending for this consumer (reclaimed or acked: write nothing), -1 when the idempotency marker
-- says this message already committed (the entry is acked again), 2 when ``run`` (a run record
-- key, or nil) holds a terminal status (write nothing, leave the entry pending), nil to go on
-- (marker now set). Going on with a ``run``, the second result holds its record's ``status`` and
-- then the values of ``fields`` (one HMGET: a step reads what it adds to with the status check).
local function claim(stream, marker, group, consumer, id, marker_ttl, run, fields)
  local owned = redis.call('XPENDING', stream, group, id, id, 1, consumer)
  if #owned == 0 then
    return 0
  end
  if marker and not redis.call('SET', marker, '1', 'NX', 'EX', tonumber(marker_ttl)) then
    redis.call('XACK', stream, group, id)
    return -1
  end
  if run then
    local values = redis.call('HMGET', run, 'status', unpack(fields or {}))
    if is_terminal(values[1]) then
      if marker then
        redis.call('DEL', marker)
      end
      return 2
    end
    return nil, values
  end
  return nil
end

-- Threads (broker/threads.py): a thread's hash holds its running turn (``active``); the lists
-- ``<thread>:turns`` (finished turns, JSON) and ``<thread>:queue`` (waiting turns: run id, run record
-- key, task stream and task) sit beside it, and every run of a thread lives in the thread's
-- partition, so each key named here is in the slot of the keys a step was given.
local function thread_touch(thread, index, id, now, ttl)
  redis.call('HSET', thread, 'id', id, 'updated_at', now)
  redis.call('HSETNX', thread, 'created_at', now)
  redis.call('ZADD', index, now, id)
  if ttl > 0 then
    redis.call('EXPIRE', thread, ttl)
    redis.call('EXPIRE', thread .. ':turns', ttl)
    redis.call('EXPIRE', thread .. ':queue', ttl)
  end
end

-- Append the turn of ``run_id`` (its record ``run``) to the thread's history.
local function thread_turn(thread, run, run_id, now)
  local f = redis.call('HMGET', run, 'task', 'result', 'status', 'error')
  redis.call('RPUSH', thread .. ':turns', cjson.encode({run_id = run_id, task = f[1] or '', result = f[2] or '',
                                                       status = f[3] or '', error = f[4] or '', at = now}))
end

-- Start the first waiting turn that was not cancelled meanwhile (its task goes to its stream);
-- the thread is idle when none is left. Returns the started run id or ''.
local function thread_next(thread)
  while true do
    local item = redis.call('LPOP', thread .. ':queue')
    if not item then
      redis.call('HSET', thread, 'active', '')
      return ''
    end
    local q = cjson.decode(item)
    local status = redis.call('HGET', q.record, 'status')
    if status and not is_terminal(status) then
      redis.call('HSET', thread, 'active', q.run_id)
      redis.call('XADD', q.stream, '*', 'msg', q.task)
      return q.run_id
    end
  end
end
