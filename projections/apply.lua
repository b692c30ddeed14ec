-- Apply ONE decision to one account, atomically and idempotently (SPEC "Redis read model").
-- Mirrors projections/view.py `fold`; the contract tests keep the two in step.
--
-- KEYS[1] status hash, KEYS[2] history list: both carry the account's hash tag (same slot).
-- ARGV[1]  seq                 ARGV[2]  history cap        ARGV[3]  decision JSON (pushed as is)
-- ARGV[4]  account_id          ARGV[5]  type               ARGV[6]  status (restricted|clear)
-- ARGV[7]  scopes JSON         ARGV[8]  level or ''        ARGV[9]  lift_at or ''
-- ARGV[10] reason or ''        ARGV[11] at                 ARGV[12] appeal_allowed_at or ''
-- ARGV[13] trigger mode (merge|keep)    ARGV[14] appeal op (set|clear|keep)
-- ARGV[15] the decision's triggers as JSON    ARGV[16..] the same triggers, one per argument
--
-- Returns {applied 1|0, status, lift_at, since} of the state stored AFTER this call, also when
-- the decision is skipped, so the caller can (re)derive the active-set update on redelivery.
local seq = tonumber(ARGV[1])
local cur = redis.call('HMGET', KEYS[1],
  'seq', 'status', 'lift_at', 'since', 'triggers', 'appeal_pending')
if cur[1] and tonumber(cur[1]) >= seq then
  return {0, cur[2], cur[3], cur[4]}
end

local status = ARGV[6]
local was = cur[2] == 'restricted'
local triggers, pending, since = '[]', '0', ''
if status == 'restricted' then
  if not was then
    triggers = ARGV[15]
    since = ARGV[11]
  else
    since = cur[4]
    if ARGV[13] == 'merge' then
      local seen, list = {}, {}
      for _, t in ipairs(cjson.decode(cur[5])) do seen[t] = true end
      for i = 16, #ARGV do seen[ARGV[i]] = true end
      for t in pairs(seen) do list[#list + 1] = t end
      table.sort(list)
      local parts = {}
      for i, t in ipairs(list) do parts[i] = cjson.encode(t) end
      triggers = '[' .. table.concat(parts, ',') .. ']'
    else
      triggers = cur[5]
    end
  end
  local op = ARGV[14]
  if op == 'set' then
    pending = '1'
  elseif op == 'keep' and was then
    pending = cur[6]
  end
end

redis.call('HSET', KEYS[1],
  'account_id', ARGV[4], 'seq', ARGV[1], 'type', ARGV[5], 'status', status,
  'scopes', ARGV[7], 'level', ARGV[8], 'lift_at', ARGV[9], 'reason', ARGV[10],
  'at', ARGV[11], 'appeal_allowed_at', ARGV[12], 'triggers', triggers, 'since', since,
  'appeal_pending', pending)
redis.call('LPUSH', KEYS[2], ARGV[3])
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[2]) - 1)
return {1, status, ARGV[9], since}
