-- A code role's durable timers and signals (broker/timers.py), one step with three operations:
--   park:   the handler of the entry's task sleeps or waits for a signal. Ack the entry and store the
--           wait (record, due index, the run's waits, run status 'waiting', a 'waiting' event); a
--           signal already buffered for it resumes the task at once instead.
--   wake:   a ticker found the wait due. Only while the wait's record is still the one the ticker read
--           (seq and requested_at: a woken task parks its next wait under the same member) and the
--           wait is still due at the ticker's time, and only the caller whose ZREM removes it goes on:
--           the journal gets the wait's result (when given), the task goes back on its stream, the
--           wait is gone.
--   signal: buffer the signal; when a wait of the run asks for it (and no ticker took it first),
--           take the oldest buffered signal of that name and resume the task with it.
-- Returns: park 1 parked, 3 resumed at once, 0 entry not ours, 2 run ended (entry acked);
--          wake 1 woken, 0 taken by another ticker (or no longer the wait it read), 2 run ended (dropped);
--          signal 1 delivered, 0 buffered, -1 no such run, -2 run ended.
--
-- KEYS[1] wait record  KEYS[2] due index  KEYS[3] run record  KEYS[4] task stream  KEYS[5] journal
-- KEYS[6] journal hops  KEYS[7] events  KEYS[8] signal buffer  KEYS[9] run's waits
-- ARGV[1] op  ARGV[2] now  ARGV[3] record ttl (0 = keep)  ARGV[4] events maxlen  ARGV[5] events ttl
-- ARGV[6] index member  ARGV[7] the task's id
-- park:   ARGV[8] group ARGV[9] consumer ARGV[10] entry id ARGV[11] due score ARGV[12] signal name ('' = sleep)
--         ARGV[13] 'waiting' event ARGV[14] 'woken' event ARGV[15] n record pairs, pairs...
-- wake:   ARGV[8] journal value ('' = none) ARGV[9] 'woken' event ARGV[10] the record's seq and
--         ARGV[11] requested_at as the ticker read them ('' = it read no record)
-- signal: ARGV[8] data ARGV[9] signal name ARGV[10] 'woken' event
local op, now, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])

local function event(ev)
  log_events(KEYS[7], ARGV[4], ARGV[5], {ev})
end

local function resume(value, ev)
  local f = redis.call('HMGET', KEYS[1], 'msg', 'seq', 'hop')
  if value then
    redis.call('HSET', KEYS[5], f[2], value)
    redis.call('HSETNX', KEYS[6], f[3], ARGV[7])
    if ttl > 0 then
      redis.call('EXPIRE', KEYS[5], ttl)
      redis.call('EXPIRE', KEYS[6], ttl)
    end
  end
  redis.call('XADD', KEYS[4], '*', 'msg', f[1])
  redis.call('DEL', KEYS[1])
  redis.call('HDEL', KEYS[9], ARGV[7])
  if redis.call('HGET', KEYS[3], 'status') == C.STATUS.WAITING and redis.call('HLEN', KEYS[9]) == 0 then
    redis.call('HSET', KEYS[3], 'status', C.STATUS.RUNNING, 'updated_at', now)
  end
  event(ev)
end

local function signalled(ev)
  local f = redis.call('HMGET', KEYS[1], 'sig_prefix', 'sig_suffix')
  local data = redis.call('LPOP', KEYS[8])
  resume(f[1] .. data .. f[2], ev)
end

local function forget()
  redis.call('DEL', KEYS[1])
  redis.call('HDEL', KEYS[9], ARGV[7])
end

if op == 'park' then
  local claimed = claim(KEYS[4], nil, ARGV[8], ARGV[9], ARGV[10], 0, KEYS[3])
  if claimed == 2 then
    redis.call('XACK', KEYS[4], ARGV[8], ARGV[10])
    return 2
  elseif claimed then
    return claimed
  end
  local n = tonumber(ARGV[15])
  local fields = {}
  for j = 1, 2 * n do
    fields[j] = ARGV[15 + j]
  end
  redis.call('HSET', KEYS[1], unpack(fields))
  if ttl > 0 then
    redis.call('EXPIRE', KEYS[1], ttl)
  end
  redis.call('XACK', KEYS[4], ARGV[8], ARGV[10])
  if ARGV[12] ~= '' and redis.call('LLEN', KEYS[8]) > 0 then
    signalled(ARGV[14])
    return 3
  end
  redis.call('ZADD', KEYS[2], ARGV[11], ARGV[6])
  redis.call('HSET', KEYS[9], ARGV[7], ARGV[12])
  if ttl > 0 then
    redis.call('EXPIRE', KEYS[9], ttl)
  end
  redis.call('HSET', KEYS[3], 'status', C.STATUS.WAITING, 'updated_at', now)
  event(ARGV[13])
  return 1
end

if op == 'wake' then
  local read = redis.call('HMGET', KEYS[1], 'seq', 'requested_at')
  if (read[1] or '') ~= ARGV[10] or (read[2] or '') ~= ARGV[11] then
    return 0
  end
  -- still due: the record and the index are read in two round trips, so a ticker may read the
  -- record of the next wait parked under the member after it read the woken one's due score
  local due = redis.call('ZSCORE', KEYS[2], ARGV[6])
  if not due or tonumber(due) > tonumber(now) then
    return 0
  end
  redis.call('ZREM', KEYS[2], ARGV[6])
  if redis.call('EXISTS', KEYS[1]) == 0 or is_terminal(redis.call('HGET', KEYS[3], 'status'))
      or redis.call('EXISTS', KEYS[3]) == 0 then
    forget()
    return 2
  end
  local value = ARGV[8]
  if value == '' then
    value = nil
  end
  resume(value, ARGV[9])
  return 1
end

-- signal
local status = redis.call('HGET', KEYS[3], 'status')
if not status then
  return -1
end
if is_terminal(status) then
  return -2
end
redis.call('RPUSH', KEYS[8], ARGV[8])
if ttl > 0 then
  redis.call('EXPIRE', KEYS[8], ttl)
end
if ARGV[6] ~= '' and redis.call('HGET', KEYS[1], 'name') == ARGV[9]
    and redis.call('ZREM', KEYS[2], ARGV[6]) == 1 then
  signalled(ARGV[10])
  return 1
end
return 0
