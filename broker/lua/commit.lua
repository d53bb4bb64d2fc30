-- Atomic handoff: publish outputs, write the scratchpad entry, run record and run events, ack the input.
-- Refuses (returns 0) when the input entry is no longer pending for this consumer, so a stale
-- worker whose message was reclaimed cannot commit twice. Returns -1 when the idempotency
-- marker says this message already committed (the entry is acked again), 1 on success, 2 when the
-- run has ended (a terminal status in its record: the record and events are final; nothing written,
-- the entry left pending for the worker to dead-letter) unless ARGV[13] is '1' (a cancelled run's halt).
--
-- KEYS[1] input stream      KEYS[2] idempotency marker   KEYS[3] run record
-- KEYS[4] scratchpad hash   KEYS[5] scratchpad index     KEYS[6] run event log   KEYS[7..] output streams
-- ARGV[1] group  ARGV[2] consumer  ARGV[3] entry id  ARGV[4] marker ttl (s)
-- ARGV[5] pad field ('' = none)  ARGV[6] pad value  ARGV[7] pad index member  ARGV[8] score
-- ARGV[9] record ttl (s, 0 = keep)  ARGV[10] events maxlen  ARGV[11] events ttl (s)  ARGV[12] n events
-- ARGV[13] '1' = may write an ended run  ARGV[14] n record pairs, pairs..., then one payload per output,
-- then one payload per event,
-- then (optional) n counts and that many (field, increment) pairs added to the run record (HINCRBY)
local claimed = claim(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[13] ~= '1' and KEYS[3])
if claimed then
  return claimed
end
local ttl = tonumber(ARGV[9])
if ARGV[5] ~= '' then
  redis.call('HSETNX', KEYS[4], ARGV[5], ARGV[6])
  redis.call('ZADD', KEYS[5], 'NX', tonumber(ARGV[8]), ARGV[7])
  if ttl > 0 then
    redis.call('EXPIRE', KEYS[4], ttl)
    redis.call('EXPIRE', KEYS[5], ttl)
  end
end
local n = tonumber(ARGV[14])
local i = 15
if n > 0 then
  local pairs = {}
  for j = 0, 2 * n - 1 do
    pairs[#pairs + 1] = ARGV[i + j]
  end
  redis.call('HSET', KEYS[3], unpack(pairs))
  if ttl > 0 then
    redis.call('EXPIRE', KEYS[3], ttl)
  end
  i = i + 2 * n
end
for k = 7, #KEYS do
  redis.call('XADD', KEYS[k], '*', 'msg', ARGV[i])
  i = i + 1
end
local events = tonumber(ARGV[12])
if events > 0 then
  for _ = 1, events do
    redis.call('XADD', KEYS[6], 'MAXLEN', '~', ARGV[10], '*', 'ev', ARGV[i])
    i = i + 1
  end
  redis.call('EXPIRE', KEYS[6], tonumber(ARGV[11]))
end
local counts = tonumber(ARGV[i] or '0')
for c = 1, counts do
  redis.call('HINCRBY', KEYS[3], ARGV[i + 2 * c - 1], ARGV[i + 2 * c])
end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
return 1
