-- Decide a pending review once: record the decision, drop it from the pending index, update the run
-- record, publish one message (the continuation task or the run's error) and append the events.
-- Returns {1, decision} when this call decided, {0, first decision} when it was decided before,
-- {-1, ''} when there is no such review, {-2, run status} when the run has ended (or expired).
--
-- KEYS[1] review hash  KEYS[2] pending reviews  KEYS[3] run record  KEYS[4] output stream
-- KEYS[5] events stream
-- ARGV[1] review id  ARGV[2] decision  ARGV[3] record ttl (0 = keep)  ARGV[4] payload
-- ARGV[5] events maxlen  ARGV[6] events ttl  ARGV[7] n review pairs, pairs..., n record pairs,
-- pairs..., then the events
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {-1, ''}
end
local first = redis.call('HGET', KEYS[1], 'decision')
if first and first ~= '' then
  return {0, first}
end
local status = redis.call('HGET', KEYS[3], 'status')
if not status or is_terminal(status) then
  return {-2, status or ''}
end
local i = hset_counted(KEYS[3], ARGV, hset_counted(KEYS[1], ARGV, 7))
local ttl = tonumber(ARGV[3])
if ttl > 0 then
  redis.call('EXPIRE', KEYS[3], ttl)
end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('XADD', KEYS[4], '*', 'msg', ARGV[4])
log_events(KEYS[5], ARGV[5], ARGV[6], {unpack(ARGV, i)})
return {1, ARGV[2]}
