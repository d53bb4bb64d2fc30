-- A run ended (broker/ends.py), or the janitor looks (run id ''): the run leaves its tenant's running
-- runs, and the tenant's queued runs start, oldest first, while its cap allows (every one of them when
-- the tenant has no cap any more). A queued run that ended meanwhile (cancelled) is dropped. Safe to
-- call any number of times. Keys named here are in the partition's slot (<tag>:trun:<tenant>, ...).
--
-- KEYS[1] the run record  KEYS[2] the partition's caps hash
-- ARGV[1] run id ('' = only start what fits)  ARGV[2] the partition's tag  ARGV[3] tenant ('' = the record's)
-- Returns the run ids started.
local tenant = ARGV[3]
if tenant == '' then
  tenant = redis.call('HGET', KEYS[1], 'tenant')
  if not tenant then
    return {}
  end
end
local running = ARGV[2] .. ':trun:' .. tenant
local queue = ARGV[2] .. ':tqueue:' .. tenant
if ARGV[1] ~= '' then
  if not is_terminal(redis.call('HGET', KEYS[1], 'status')) and redis.call('EXISTS', KEYS[1]) == 1 then
    return {}
  end
  redis.call('SREM', running, ARGV[1])
end
local cap = tonumber(redis.call('HGET', KEYS[2], tenant) or '0')
local started = {}
while cap <= 0 or redis.call('SCARD', running) < cap do
  local item = redis.call('LPOP', queue)
  if not item then
    break
  end
  local q = cjson.decode(item)
  local status = redis.call('HGET', q.record, 'status')
  if status and not is_terminal(status) then
    if cap > 0 then
      redis.call('SADD', running, q.run_id)
    end
    redis.call('XADD', q.stream, '*', 'msg', q.task)
    started[#started + 1] = q.run_id
  end
end
return started
