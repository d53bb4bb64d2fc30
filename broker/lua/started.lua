-- Before a batch runs: which of its runs are cancelled, and a hop_started event for each that is not,
-- in the round trip that reads the flags (one call per partition, all keys in its hash slot).
--
-- KEYS[1] the partition's cancelled-runs set   KEYS[1 + i] the event log of run i (i = 1..n)
-- KEYS[1 + n + i] the record of run i (a run that has ended gets no event: its log is final)
-- ARGV[1] events maxlen  ARGV[2] events ttl (s)  ARGV[2 + i] run i's id  ARGV[2 + n + i] its event ('' = none)
-- Returns one flag per run: 1 cancelled (nothing written), 0 not (its event appended).
local n = (#KEYS - 1) / 2
local flags = {}
for i = 1, n do
  if redis.call('SISMEMBER', KEYS[1], ARGV[2 + i]) == 1 then
    flags[i] = 1
  else
    flags[i] = 0
    local ev = ARGV[2 + n + i]
    if ev ~= '' and not is_terminal(redis.call('HGET', KEYS[1 + n + i], 'status')) then
      redis.call('XADD', KEYS[1 + i], 'MAXLEN', '~', ARGV[1], '*', 'ev', ev)
      redis.call('EXPIRE', KEYS[1 + i], tonumber(ARGV[2]))
    end
  end
end
return flags
