-- Shared rate limits of one model endpoint: GCRA over requests and tokens per minute.
--
-- KEYS[1]  the model's state hash (Keys.rate_limit)
-- acquire: ARGV = "acquire", model, rpm, tpm, requests, tokens, ttl_s
--          -> {1, minute} granted and reserved, or {0, wait_ms} nothing reserved
-- settle:  ARGV = "settle", model, rpm, tpm, unused_tokens, minute, ttl_s -> 1 (unused tokens given back)
--
-- Time is the server's (TIME, microseconds): worker clocks do not matter. A limit of 0 is
-- unlimited. Each limit has a theoretical arrival time (rtat, ttat); the burst is a tenth of the
-- minute's budget (at least one unit). A call bigger than the burst is granted once the bucket
-- is full, so the long-run rate still holds; while one waits (field hold), smaller calls wait
-- too, so they cannot starve it. The hash also counts requests and tokens of the current and
-- previous minute (req, tok, preq, ptok, min) for the monitor.
local key = KEYS[1]
local op = ARGV[1]
local t = redis.call('TIME')
local secs = tonumber(t[1])
local now = secs * 1000000 + tonumber(t[2])
local minute = math.floor(secs / 60)

local function num(field)
  return tonumber(redis.call('HGET', key, field) or '0') or 0
end

local function roll()
  local m = num('min')
  if m ~= minute then
    local req, tok = 0, 0
    if m == minute - 1 then
      req, tok = num('req'), num('tok')
    end
    redis.call('HSET', key, 'min', minute, 'req', 0, 'tok', 0, 'preq', req, 'ptok', tok)
  end
end

local HOLD_GRACE_US = 1000000

local function gcra(field, limit, n)
  if limit <= 0 or n <= 0 then
    return 0, nil, false
  end
  local interval = 60000000 / limit
  local units = math.max(1, math.floor(limit / 10))
  local tat = math.max(num(field), now)
  local new_tat = tat + n * interval
  return math.max(0, new_tat - now - math.max(units, n) * interval), new_tat, n > units
end

local function us(x)
  return string.format('%.0f', x)
end

local model, rpm, tpm = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
roll()
redis.call('HSET', key, 'model', model, 'rpm', rpm, 'tpm', tpm)

if op == 'acquire' then
  local requests, tokens, ttl = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
  local rwait, rtat, rbig = gcra('rtat', rpm, requests)
  local twait, ttat, tbig = gcra('ttat', tpm, tokens)
  local oversize = rbig or tbig
  local wait = math.max(rwait, twait)
  local hold = num('hold')
  if wait == 0 and not oversize and hold > now then
    wait = hold - now
  end
  if wait > 0 then
    if oversize then
      redis.call('HSET', key, 'hold', us(math.max(hold, now + wait + HOLD_GRACE_US)))
    end
    redis.call('EXPIRE', key, ttl)
    return {0, math.ceil(wait / 1000)}
  end
  if oversize then redis.call('HDEL', key, 'hold') end
  if rtat then redis.call('HSET', key, 'rtat', us(rtat)) end
  if ttat then redis.call('HSET', key, 'ttat', us(ttat)) end
  redis.call('HINCRBY', key, 'req', requests)
  redis.call('HINCRBY', key, 'tok', tokens)
  redis.call('HINCRBY', key, 'total_req', requests)
  redis.call('HINCRBY', key, 'total_tok', tokens)
  redis.call('EXPIRE', key, ttl)
  return {1, minute}
end

if op == 'settle' then
  local unused, at, ttl = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
  if unused > 0 then
    if tpm > 0 then
      local ttat = num('ttat')
      if ttat > now then
        redis.call('HSET', key, 'ttat', us(math.max(now, ttat - unused * 60000000 / tpm)))
      end
    end
    local field = (at == minute and 'tok') or (at == minute - 1 and 'ptok') or nil
    if field then
      redis.call('HSET', key, field, math.max(0, num(field) - unused))
    end
    redis.call('HSET', key, 'total_tok', math.max(0, num('total_tok') - unused))
  end
  redis.call('EXPIRE', key, ttl)
  return 1
end

return redis.error_reply('ratelimit.lua: unknown op ' .. tostring(op))
