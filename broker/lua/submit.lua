-- A new run (broker.runs.submit without a tenant): its record, its place in the runs index, its
-- first task on its stream and its queued event, in one call (the MULTI it replaces wrote the same).
--
-- KEYS[1] run record  KEYS[2] runs index  KEYS[3] task stream  KEYS[4] run event log
-- ARGV[1] record ttl (s, 0 = keep)  ARGV[2] created_at (index score)  ARGV[3] run id  ARGV[4] task payload
-- ARGV[5] events maxlen  ARGV[6] events ttl (s)  ARGV[7] the queued event  ARGV[8..] record field, value pairs
-- Returns 1, or 0 when a submit already wrote the run's record (its run_id field; a fork's labels,
-- written first, are not a submit): nothing is written. redis-py sends a command again when the
-- connection broke before its reply came (a failover), so a submit that had landed must not reset a
-- run that went on meanwhile (its status back to queued, its first task queued twice).
if redis.call('HEXISTS', KEYS[1], 'run_id') == 1 then
  return 0
end
redis.call('HSET', KEYS[1], unpack(ARGV, 8))
local ttl = tonumber(ARGV[1])
if ttl > 0 then
  redis.call('EXPIRE', KEYS[1], ttl)
end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
redis.call('XADD', KEYS[3], '*', 'msg', ARGV[4])
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[5], '*', 'ev', ARGV[7])
redis.call('EXPIRE', KEYS[4], tonumber(ARGV[6]))
return 1
