-- A run ended (broker/ends.py): when it is its thread's running turn, its turn joins the thread's
-- history and the thread's next waiting turn starts. Does nothing for a run of no thread, a run that
-- is not (or no longer) its thread's running turn, or one that has not ended. Safe to call any
-- number of times. Returns the started run id, '' when none started, or false when nothing changed.
--
-- KEYS[1] run record  KEYS[2] threads index
-- ARGV[1] run id  ARGV[2] the run's partition tag (the thread key is <tag>:thread:<id>)  ARGV[3] now
-- ARGV[4] thread ttl (s, 0 = keep)
local id = redis.call('HGET', KEYS[1], 'thread')
if not id then
  if redis.call('EXISTS', KEYS[1]) == 1 or ARGV[5] == nil then
    return false
  end
  id = ARGV[5]  -- (ARGV[5]: the thread, when the caller knows it and the record may have expired)
end
local thread = ARGV[2] .. ':thread:' .. id
if redis.call('HGET', thread, 'active') ~= ARGV[1] then
  return false
end
local status = redis.call('HGET', KEYS[1], 'status')
if status and not is_terminal(status) then
  return false
end
local now = tonumber(ARGV[3])
if status then
  thread_turn(thread, KEYS[1], ARGV[1], now)
end
local started = thread_next(thread)
thread_touch(thread, KEYS[2], id, now, tonumber(ARGV[4]))
return started
