-- A message to a thread (broker/threads.py): start it when the thread is idle, else follow the
-- policy: 'reject', 'enqueue' (wait in the thread's queue), 'interrupt' (cancel the running turn,
-- which keeps a cancelled turn, and start this one) or 'rollback' (as interrupt, leaving no turn).
-- Returns {what, active}: what is 'started', 'queued' or 'rejected' ('exists' when the run was written
-- already: a retry; 'claimed' with the run id the idempotency key names instead: nothing written);
-- 'moved' when the running turn is
-- not the one the caller named (read it again), 'ended' when the running turn has ended but the
-- thread was not yet released (the caller releases it, then tries again).
--
-- KEYS[1] thread  KEYS[2] threads index  KEYS[3] run record  KEYS[4] runs index  KEYS[5] task stream
-- KEYS[6] run events  KEYS[7] cancelled set  KEYS[8] running turn's record  KEYS[9] running turn's events
-- ARGV[1] thread id  ARGV[2] run id  ARGV[3] policy  ARGV[4] running turn the caller read ('' none)
-- ARGV[5] now  ARGV[6] thread ttl (s, 0 = keep)  ARGV[7] record ttl (s, 0 = keep)  ARGV[8] events maxlen
-- ARGV[9] events ttl (s)  ARGV[10] task  ARGV[11] queued event  ARGV[12] cancelled event of the
-- running turn  ARGV[13] created_at  ARGV[14] n record pairs, pairs...
-- With an idempotency key (broker/idempotency.py): KEYS[10] the key, ARGV[15 + 2n] its ttl (s); the
-- key is set to the run id in the same step that writes the turn.
local thread = KEYS[1]
local idem = KEYS[10]
if idem then
  local named = redis.call('GET', idem)
  if named and named ~= ARGV[2] then
    return {'claimed', named}
  end
end
local active = redis.call('HGET', thread, 'active') or ''
if redis.call('EXISTS', KEYS[3]) == 1 then  -- a retried submit whose first call landed: nothing again
  return {'exists', active}
end
if active ~= ARGV[4] then
  return {'moved', active}
end
local now = tonumber(ARGV[5])
local policy = ARGV[3]
if active ~= '' then
  local status = redis.call('HGET', KEYS[8], 'status')
  if not status or is_terminal(status) then
    return {'ended', active}
  end
  if policy == 'reject' then
    return {'rejected', active}
  end
end

local record_ttl = tonumber(ARGV[7])
local after = hset_counted(KEYS[3], ARGV, 14)
if idem then
  redis.call('SET', idem, ARGV[2], 'EX', tonumber(ARGV[after]))
end
redis.call('HSET', KEYS[3], 'thread', ARGV[1])
if record_ttl > 0 then
  redis.call('EXPIRE', KEYS[3], record_ttl)
end
redis.call('ZADD', KEYS[4], tonumber(ARGV[13]), ARGV[2])
log_events(KEYS[6], ARGV[8], ARGV[9], {ARGV[11]})

local what = 'started'
if active ~= '' and policy == 'enqueue' then
  redis.call('RPUSH', thread .. ':queue', cjson.encode({run_id = ARGV[2], record = KEYS[3], stream = KEYS[5],
                                                        task = ARGV[10]}))
  what = 'queued'
else
  if active ~= '' then  -- interrupt or rollback: the running turn is cancelled, as cancel_run does
    redis.call('SADD', KEYS[7], active)
    redis.call('HSET', KEYS[8], 'status', C.STATUS.CANCELLED, 'error', 'interrupted by run ' .. ARGV[2],
               'updated_at', now, 'cancelled_at', now)
    if record_ttl > 0 then
      redis.call('EXPIRE', KEYS[8], record_ttl)
    end
    log_events(KEYS[9], ARGV[8], ARGV[9], {ARGV[12]})
    if policy == 'interrupt' then
      thread_turn(thread, KEYS[8], active, now)
    end
  end
  redis.call('HSET', thread, 'active', ARGV[2])
  redis.call('XADD', KEYS[5], '*', 'msg', ARGV[10])
end
thread_touch(thread, KEYS[2], ARGV[1], now, tonumber(ARGV[6]))
return {what, active}
