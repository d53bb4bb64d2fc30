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
-- then (optional) n counts and that many (field, increment) pairs added to the run record: read with
-- the status check (one HMGET) and written with the record's fields (one HSET), not one HINCRBY each.
local n = tonumber(ARGV[14])
local at = 15 + 2 * n + (#KEYS - 6) + tonumber(ARGV[12])
local counts = tonumber(ARGV[at] or '0')
local fields = {}
for c = 1, counts do
  fields[c] = ARGV[at + 2 * c - 1]
end
local ended_ok = ARGV[13] == '1'
local claimed, values = claim(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3], ARGV[4], not ended_ok and KEYS[3], fields)
if claimed then
  return claimed
end
if counts > 0 and ended_ok then
  values = {false, unpack(redis.call('HMGET', KEYS[3], unpack(fields)))}
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
local i = 15
local pairs = {}
for j = 0, 2 * n - 1 do
  pairs[j + 1] = ARGV[i + j]
end
i = i + 2 * n
for c = 1, counts do
  pairs[#pairs + 1] = fields[c]
  pairs[#pairs + 1] = (tonumber(values[c + 1]) or 0) + tonumber(ARGV[at + 2 * c])
end
if #pairs > 0 then
  redis.call('HSET', KEYS[3], unpack(pairs))
  if ttl > 0 then
    redis.call('EXPIRE', KEYS[3], ttl)
  end
end
for k = 7, #KEYS do
  redis.call('XADD', KEYS[k], '*', 'msg', ARGV[i])
  i = i + 1
end
log_events(KEYS[6], ARGV[10], ARGV[11], {unpack(ARGV, i, i + tonumber(ARGV[12]) - 1)})
redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
return 1
