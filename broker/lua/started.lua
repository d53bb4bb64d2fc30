-- Before a batch runs, in one call per partition (all keys in its hash slot): which of its runs are
-- cancelled, a hop_started event for each that is not, each run's record fields the worker decides
-- on (budget limits, tenant) and the scratchpads its prompts show.
--
-- KEYS[1] the partition's cancelled-runs set   KEYS[1 + i] the event log of run i (i = 1..n)
-- KEYS[1 + n + i] the record of run i (a run that has ended gets no event: its log is final)
-- KEYS[1 + 2n + j] scratchpad hash j (j = 1..m)
-- ARGV[1] events maxlen  ARGV[2] events ttl (s)  ARGV[3] k record fields  ARGV[4] m scratchpads
-- ARGV[4 + f] record field f (f = 1..k)  ARGV[4 + k + i] run i's id  ARGV[4 + k + n + i] its event ('' = none)
-- Returns {flags, records, pads}: one flag per run (1 cancelled, nothing written; 0 not, its event
-- appended), the k fields of each run's record (none when k is 0), each scratchpad's HGETALL. One HMGET
-- per run reads its status (for the event) with those fields.
local k = tonumber(ARGV[3])
local m = tonumber(ARGV[4])
local n = (#KEYS - 1 - m) / 2
local base = 4 + k
local fields = {}
for f = 1, k do
  fields[f] = ARGV[4 + f]
end
local flags, records, pads = {}, {}, {}
for i = 1, n do
  local cancelled = redis.call('SISMEMBER', KEYS[1], ARGV[base + i]) == 1
  flags[i] = cancelled and 1 or 0
  local ev = ARGV[base + n + i]
  local values = (k > 0 or (ev ~= '' and not cancelled)) and redis.call('HMGET', KEYS[1 + n + i], 'status', unpack(fields))
  if not cancelled and ev ~= '' and not is_terminal(values[1]) then
    log_events(KEYS[1 + i], ARGV[1], ARGV[2], {ev})
  end
  if k > 0 then
    table.remove(values, 1)
    records[i] = values
  end
end
for j = 1, m do
  pads[j] = redis.call('HGETALL', KEYS[1 + 2 * n + j])
end
return {flags, records, pads}
