-- Park a reviewed role's output: in one step, ack the input, write the scratchpad entry, store the
-- review, index it as pending, set the run record (status 'review') and append 'review_requested'.
-- Returns 0 when the input is no longer pending for this consumer (nothing written), -1 when the
-- idempotency marker says this message already committed (acked again), 1 on success.
--
-- KEYS[1] input stream  KEYS[2] idempotency marker  KEYS[3] run record  KEYS[4] scratchpad hash
-- KEYS[5] scratchpad index  KEYS[6] review hash  KEYS[7] pending reviews  KEYS[8] review -> run
-- KEYS[9] events stream
-- ARGV[1] group  ARGV[2] consumer  ARGV[3] entry id  ARGV[4] marker ttl  ARGV[5] pad field
-- ARGV[6] pad value  ARGV[7] agent  ARGV[8] pad score  ARGV[9] record ttl (0 = keep)
-- ARGV[10] review id  ARGV[11] run id  ARGV[12] requested at  ARGV[13] event  ARGV[14] events maxlen
-- ARGV[15] events ttl  ARGV[16] n review pairs, pairs..., then n record pairs, pairs...
local claimed = claim(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3], ARGV[4])
if claimed then
  return claimed
end
local ttl = tonumber(ARGV[9])
redis.call('HSETNX', KEYS[4], ARGV[5], ARGV[6])
redis.call('ZADD', KEYS[5], 'NX', tonumber(ARGV[8]), ARGV[7])
hset_counted(KEYS[3], ARGV, hset_counted(KEYS[6], ARGV, 16))
if ttl > 0 then
  for k = 3, 6 do
    redis.call('EXPIRE', KEYS[k], ttl)
  end
end
redis.call('ZADD', KEYS[7], tonumber(ARGV[12]), ARGV[10])
redis.call('HSET', KEYS[8], ARGV[10], ARGV[11])
log_events(KEYS[9], ARGV[14], ARGV[15], {ARGV[13]})
redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
return 1
