"""The status rules of a task's view, as the one Lua function every writer runs.

`shared.stores.tasks` updates views through `UPDATE_VIEW` (the gateway at acceptance,
memory as events arrive, a cancel, the deadline sweep); `shared.messaging.dead_letters`
calls the same function from the script that writes a dead letter, so a task whose event
was dead-lettered ends under the same rules. It lives here, below both, so that the bus
can use it without importing the stores.

KEYS of a view update: the view hash, the task's ended stream, the workspace's index.
A status only moves forward: an initial status never overwrites one; an end is not undone
by a later non-terminal update; a cancelled task takes no more status changes or fields,
and a task that ended otherwise cannot become cancelled. Reaching an end is announced once
on the one-entry ended stream that long-polls block on (kept an hour: it only serves
long-polls that read a live status first).
"""

from __future__ import annotations

TERMINAL_LUA = "{completed = true, failed = true, rejected = true, cancelled = true}"

# update_view(view, ended, index, ttl, status ('' keeps it), now, task_id, fields)
UPDATE_VIEW_FUNCTION = f"""
local function update_view(view, ended, index, ttl, status, now, task_id, fields)
  local current = redis.call('HGET', view, 'status')
  local terminal = {TERMINAL_LUA}
  local initial = {{requested = true, accepted = true}}
  if current == 'cancelled' and status ~= '' and status ~= 'cancelled' then return 0 end
  if status == 'cancelled' and current and terminal[current] and current ~= 'cancelled' then
    return 0
  end
  if #fields > 0 then redis.call('HSET', view, unpack(fields)) end
  if status ~= '' and not (current and (terminal[current] and not terminal[status]
      or initial[status])) then
    redis.call('HSET', view, 'status', status)
    if terminal[status] and not (current and terminal[current]) then
      redis.call('XADD', ended, 'MAXLEN', '1', '*', 'status', status)
      redis.call('EXPIRE', ended, 3600)
    end
  end
  redis.call('EXPIRE', view, ttl)
  if redis.call('ZADD', index, 'NX', now, task_id) == 1 then
    redis.call('ZREMRANGEBYSCORE', index, '-inf', tonumber(now) - tonumber(ttl))
  end
  return 1
end
"""

# KEYS: view, ended stream, index. ARGV: ttl, status, now, task_id, field/value pairs...
UPDATE_VIEW = UPDATE_VIEW_FUNCTION + """
local fields = {}
for i = 5, #ARGV do fields[#fields + 1] = ARGV[i] end
return update_view(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3], ARGV[4], fields)
"""
