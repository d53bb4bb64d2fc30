-- A new run of a tenant (broker/runs.py stage_submit, broker/tenants.py): its task goes to its stream,
-- unless the tenant has a cap on its running runs in this partition and its running runs fill it: then
-- the run waits, queued, in the tenant's queue until one of them ends (tenant_end).
--
-- KEYS[1] the partition's caps hash (tenant -> cap)  KEYS[2] the tenant's running runs (set)
-- KEYS[3] the tenant's queue (list)  KEYS[4] the task stream  KEYS[5] the run record
-- ARGV[1] tenant  ARGV[2] run id  ARGV[3] the task
-- Returns 1 when the task went to its stream, 0 when the run was queued.
local cap = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if cap > 0 then
  if redis.call('SCARD', KEYS[2]) >= cap then
    redis.call('RPUSH', KEYS[3], cjson.encode({run_id = ARGV[2], record = KEYS[5], stream = KEYS[4], task = ARGV[3]}))
    return 0
  end
  redis.call('SADD', KEYS[2], ARGV[2])
end
redis.call('XADD', KEYS[4], '*', 'msg', ARGV[3])
return 1
