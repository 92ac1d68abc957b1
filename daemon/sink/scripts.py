"""The sink's Lua scripts: de-duplicated XADD and the forward-only MyInvois watermark.

Both run atomically on the master that owns their keys (every key of one call shares a
hash slot). Registered by :class:`daemon.sink.RedisSink`, sent through its pipelines.
"""

# XADD before the seen key: a script error (WRONGTYPE) does not roll back earlier writes,
# so a refused XADD must not leave a seen key behind that would make its retry a duplicate.
# ARGV: window, maxlen, force, then per entry: ``n`` and, when n > 0, n new field names
# (n = 0 reuses the previous entry's names: the entries of one stream share them), then
# one value per name. Sending each name once per call halves the arguments to pack.
PUBLISH_SCRIPT = """
local window = ARGV[1]
local maxlen = tonumber(ARGV[2])
local pos = 4
local names = {}
local flags = {}
local added = 0
for i = 3, #KEYS do
  local n = tonumber(ARGV[pos])
  pos = pos + 1
  if n > 0 then
    names = {}
    for j = 1, n do names[j] = ARGV[pos + j - 1] end
    pos = pos + n
  end
  if redis.call('EXISTS', KEYS[i]) == 0 then
    local args = {'XADD', KEYS[1]}
    if maxlen > 0 then
      table.insert(args, 'MAXLEN'); table.insert(args, '~'); table.insert(args, maxlen)
    end
    table.insert(args, '*')
    for j = 1, #names do
      table.insert(args, names[j]); table.insert(args, ARGV[pos + j - 1])
    end
    redis.call(unpack(args))
    redis.call('SET', KEYS[i], '1', 'PX', window)
    flags[#flags + 1] = 1
    added = added + 1
  else
    flags[#flags + 1] = 0
  end
  pos = pos + #names
end
if added == 0 and ARGV[3] == '1' then
  redis.call('SET', KEYS[2], '1', 'PX', window)
end
return flags
"""

# Always writes (the same value when it does not move), so a WAIT after it covers it.
WATERMARK_SCRIPT = """
local current = redis.call('GET', KEYS[1])
local value = ARGV[1]
if current and tonumber(current) >= tonumber(value) then value = current end
redis.call('SET', KEYS[1], value)
return value
"""
