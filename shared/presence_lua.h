#ifndef CHATD_SHARED_PRESENCE_LUA_H
#define CHATD_SHARED_PRESENCE_LUA_H

/* Presence Lua shared by the worker's scripts and chatctl (docs/redis.md). */

/* Changes one (room, user) count by delta, keeps the sets and the user
 * hash in step, and announce the first join
 * and the last leave on the room's channel ("p <user>\n" + JSON, as hub.h).
 * Counts move with HINCRBY, one call where a read and a write were two:
 * Redis's time per connection is mostly the cost of each redis.call
 * (docs/performance.md, "What bounds these"). d is delta as the worker
 * sent it, passed on as it is: a Lua number becomes a command argument
 * through printf. uj is the user's JSON object as the worker wrote it,
 * spliced into the event (room names need no escaping); without them
 * (reaping, reconciling) the script formats both itself. */
#define PRESENCE_LUA_CHANGE                                                                          \
    "local function change(p, room, user, name, role, delta, d, uj)\n"                      \
    "  if delta == 0 then return end\n"                                                     \
    "  local by = d or delta\n"                                                             \
    "  local ukey = p .. 'user:' .. user\n"                                                 \
    "  if not name then name = redis.call('HGET', ukey, 'name') or user end\n"              \
    "  local rkey = p .. 'room_users:' .. room\n"                                           \
    "  local after = redis.call('HINCRBY', rkey, user, by)\n"                               \
    "  local before = after - delta\n"                                                      \
    "  if after <= 0 then redis.call('HDEL', rkey, user) end\n"                             \
    "  local ua = redis.call('HINCRBY', p .. 'user_conns', user, by)\n"                     \
    "  if ua <= 0 then\n"                                                                   \
    "    redis.call('HDEL', p .. 'user_conns', user)\n"                                     \
    "    redis.call('SREM', p .. 'online', user)\n"                                         \
    "    redis.call('DEL', ukey)\n"                                                         \
    "  else\n"                                                                              \
    "    if ua <= delta then redis.call('SADD', p .. 'online', user) end\n"                 \
    "    if role then redis.call('HSET', ukey, 'name', name, 'role', role) end\n"           \
    "  end\n"                                                                               \
    "  local ev = nil\n"                                                                    \
    "  if before <= 0 and after > 0 then\n"                                                 \
    "    redis.call('SADD', p .. 'online:' .. room, user); ev = 'join'\n"                   \
    "    redis.call('HSET', p .. 'room_names:' .. room, user, name)\n"                      \
    "  elseif before > 0 and after <= 0 then\n"                                             \
    "    redis.call('SREM', p .. 'online:' .. room, user); ev = 'leave'\n"                  \
    "    redis.call('HDEL', p .. 'room_names:' .. room, user)\n"                            \
    "  end\n"                                                                               \
    "  if ev then\n"                                                                        \
    "    local body\n"                                                                      \
    "    if uj then\n"                                                                      \
    "      body = '{\"type\":\"' .. ev .. '\",\"room\":\"' .. room .. '\",\"user\":' .. uj .. '}'\n" \
    "    else\n"                                                                            \
    "      body = cjson.encode({type = ev, room = room, user = {id = user, name = name}})\n" \
    "    end\n"                                                                             \
    "    redis.call('PUBLISH', p .. 'room:' .. room, 'p ' .. user .. '\\n' .. body)\n"     \
    "  end\n"                                                                               \
    "end\n"

/* ARGV: prefix, own instance ('' for none: chatctl), alive_ms, predecessor
 * ('' none). Refreshes our heartbeat, then reaps the predecessor and every
 * instance whose heartbeat expired: their users leave. An instance reaped
 * for an expired heartbeat may only have been stalled (stopped, swapped
 * out): it is marked, and finds the mark at its next heartbeat. Returns
 * how many were reaped, and 1 if we were reaped ourselves (our records
 * must be put back), else 0. */
#define PRESENCE_LUA_REAP                                                                   \
    PRESENCE_LUA_CHANGE                                                                     \
    "local p, me = ARGV[1], ARGV[2]\n"                                                      \
    "local restore = 0\n"                                                                   \
    "if me ~= '' then\n"                                                                    \
    "  restore = redis.call('DEL', p .. 'reaped:' .. me)\n"                                 \
    "  redis.call('SET', p .. 'alive:' .. me, '1', 'PX', ARGV[3])\n"                        \
    "  redis.call('SADD', p .. 'instances', me)\n"                                          \
    "end\n"                                                                                 \
    "local reaped = 0\n"                                                                    \
    "for _, inst in ipairs(redis.call('SMEMBERS', p .. 'instances')) do\n"                  \
    "  if inst ~= me and (inst == ARGV[4] or redis.call('EXISTS', p .. 'alive:' .. inst) == 0) then\n" \
    "    local ikey = p .. 'inst:' .. inst\n"                                               \
    "    local all = redis.call('HGETALL', ikey)\n"                                         \
    "    for i = 1, #all, 2 do\n"                                                           \
    "      local sep = string.find(all[i], '\\31', 1, true)\n"                              \
    "      change(p, string.sub(all[i], 1, sep - 1), string.sub(all[i], sep + 1), nil, nil,\n" \
    "             -tonumber(all[i + 1]))\n"                                                 \
    "    end\n"                                                                             \
    "    redis.call('DEL', ikey, p .. 'alive:' .. inst)\n"                                   \
    "    redis.call('SREM', p .. 'instances', inst)\n"                                      \
    "    if inst ~= ARGV[4] then redis.call('SET', p .. 'reaped:' .. inst, '1', 'EX', 86400) end\n" \
    "    reaped = reaped + 1\n"                                                             \
    "  end\n"                                                                               \
    "end\n"                                                                                 \
    "return {reaped, restore}\n"

#endif
