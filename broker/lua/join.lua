-- Fan-in: record one part of a fan-out group; park it (ack) until all parts have arrived.
-- Idempotent: a part is the hash field 'p:<index>', so a repeated part overwrites itself. The
-- delivery that completes the group is remembered in the field 'done' (its entry id) and left
-- pending: its worker processes the gathered task and acks it in the ordinary commit step. A
-- redelivery of that entry completes again (the commit's idempotency marker then stops a second
-- handoff); any other entry of an already gathered group is a late duplicate: acked, dropped.
--
-- KEYS[1] input stream   KEYS[2] join hash
-- ARGV[1] group  ARGV[2] consumer  ARGV[3] entry id  ARGV[4] part index  ARGV[5] payload
-- ARGV[6] parts expected  ARGV[7] join hash ttl (s)
-- Returns {-1} stale (not pending for this consumer), {0} parked, {2} late duplicate,
-- {1, index, payload, ...} complete.
if claim(KEYS[1], nil, ARGV[1], ARGV[2], ARGV[3]) == 0 then
  return {-1}
end
local done = redis.call('HGET', KEYS[2], 'done')
if done and done ~= ARGV[3] then
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
  return {2}
end
if not done then
  redis.call('HSET', KEYS[2], 'p:' .. ARGV[4], ARGV[5])
  redis.call('EXPIRE', KEYS[2], tonumber(ARGV[7]))
  if redis.call('HLEN', KEYS[2]) < tonumber(ARGV[6]) then
    redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
    return {0}
  end
  redis.call('HSET', KEYS[2], 'done', ARGV[3])
end
local all = redis.call('HGETALL', KEYS[2])
local out = {1}
for i = 1, #all, 2 do
  if string.sub(all[i], 1, 2) == 'p:' then
    out[#out + 1] = string.sub(all[i], 3)
    out[#out + 1] = all[i + 1]
  end
end
return out
