-- Budgets and accounting on one run record, atomically. Never creates a record that is gone.
--
-- KEYS[1] run record
-- ARGV[1] 'model': reserve a model call; ARGV[2] msg id  ARGV[3] tokens to reserve
--         Refuses when the calls or tokens used and reserved, plus this request, exceed the
--         run's max_model_calls / max_tokens. A reservation is keyed by the message id, so a
--         redelivered message replaces its earlier (unsettled) reservation.
-- ARGV[1] 'settle': end a reservation; ARGV[2] msg id  ARGV[3] tokens used  ARGV[4] role
--         ARGV[5] model  ARGV[6] '1' when the call was made (account it), '0' to give it back.
-- ARGV[1] 'tool': count one tool call; ARGV[2] role. Refuses past max_tool_calls.
-- Returns '' when allowed (or settled), else the one-line reason, which is also kept in the
-- record's budget_exceeded field: every later request of the run is refused with it.
local run = KEYS[1]
if redis.call('EXISTS', run) == 0 then
  return ''
end
local op = ARGV[1]

local function num(field)
  return tonumber(redis.call('HGET', run, field) or '0') or 0
end

local function commas(n)
  local s = tostring(math.floor(n)):reverse():gsub('(%d%d%d)', '%1,'):reverse()
  if s:sub(1, 1) == ',' then
    s = s:sub(2)
  end
  return s
end

local function refuse(would, limit, what)
  local reason = 'budget exceeded: ' .. commas(would) .. ' of ' .. commas(limit) .. ' ' .. what
  redis.call('HSET', run, 'budget_exceeded', reason)
  return reason
end

if op == 'settle' then
  local field = 'reserved:' .. ARGV[2]
  local held = redis.call('HGET', run, field)
  if not held then
    return ''
  end
  redis.call('HDEL', run, field)
  redis.call('HINCRBY', run, 'reserved_tokens', -tonumber(held))
  redis.call('HINCRBY', run, 'reserved_calls', -1)
  if ARGV[6] == '1' then
    local used = tonumber(ARGV[3])
    redis.call('HINCRBY', run, 'tokens', used)
    redis.call('HINCRBY', run, 'tokens:' .. ARGV[4], used)
    redis.call('HINCRBY', run, 'tokens@' .. ARGV[5], used)
    redis.call('HINCRBY', run, 'model_calls', 1)
    redis.call('HINCRBY', run, 'model_calls:' .. ARGV[4], 1)
  end
  return ''
end

local exceeded = redis.call('HGET', run, 'budget_exceeded')
if exceeded then
  return exceeded
end

if op == 'tool' then
  local limit = num('max_tool_calls')
  local would = num('tool_calls') + 1
  if limit > 0 and would > limit then
    return refuse(would, limit, 'tool calls')
  end
  redis.call('HINCRBY', run, 'tool_calls', 1)
  redis.call('HINCRBY', run, 'tool_calls:' .. ARGV[2], 1)
  return ''
end

local field = 'reserved:' .. ARGV[2]
local held = redis.call('HGET', run, field)
if held then
  redis.call('HDEL', run, field)
  redis.call('HINCRBY', run, 'reserved_tokens', -tonumber(held))
  redis.call('HINCRBY', run, 'reserved_calls', -1)
end
local want = tonumber(ARGV[3])
local max_calls = num('max_model_calls')
local calls = num('model_calls') + num('reserved_calls') + 1
if max_calls > 0 and calls > max_calls then
  return refuse(calls, max_calls, 'model calls')
end
local max_tokens = num('max_tokens')
local tokens = num('tokens') + num('reserved_tokens') + want
if max_tokens > 0 and tokens > max_tokens then
  return refuse(tokens, max_tokens, 'tokens')
end
redis.call('HSET', run, field, want)
redis.call('HINCRBY', run, 'reserved_tokens', want)
redis.call('HINCRBY', run, 'reserved_calls', 1)
return ''
