-- Cost of a check through bindings/lua/revledger.lua beside the plain C call, in one
-- process: a C loop (bench/check.c, loaded with ffi.load) and the same loop in Lua, on
-- the same ledger handle, token and JWT, alternated round after round.
--   luajit bench/check.lua <libbenchcheck.so> <ledger> <rules> <jwt> [rounds]
local ffi = require "ffi"
local revledger = require "revledger"

ffi.cdef [[
int bench_create(const char *path, long rules);
double bench_check(const revledger *r, const revledger_token *t, long n);
double bench_check_jwt(const revledger *r, const revledger_claims *c, const uint8_t *jwt,
                       size_t len, long n);
typedef long time_t;
struct timespec { time_t tv_sec; long tv_nsec; };
int clock_gettime(int clk_id, struct timespec *tp);
]]
local B = ffi.load(assert(arg[1]))
local path, rules, jwt = assert(arg[2]), tonumber(arg[3]), assert(arg[4])
local rounds = tonumber(arg[5] or 7)
assert(B.bench_create(path, rules) == 0, "creating the ledger")

local ts = ffi.new("struct timespec")
local function now_ns()
  ffi.C.clock_gettime(3, ts) -- CLOCK_THREAD_CPUTIME_ID: time on a CPU, not time preempted
  return tonumber(ts.tv_sec) * 1e9 + tonumber(ts.tv_nsec)
end

local ledger = assert(revledger.open_reader(path))
local claims = assert(revledger.claims("generic"))
local t = {
  tenant = "acme", sub = "3f2b8c1e-5d0a-4c1b-9a7e-2b9d6f1e0c44", client = "web-app",
  sid = "0e8c2a6d-1f3b-4d5e-8a9c-7b6d5e4f3a2b", jti = "9a8b7c6d-5e4f-3a2b-1c0d-e9f8a7b6c5d4",
  roles = { "billing", "reports", "editor" }, iat = 1699999000,
}
-- the same token as a C struct for the C loop
local roles = ffi.new("revledger_bytes[3]")
local tok = ffi.new("revledger_token")
local function set(f, s) f.ptr = s; f.len = #s end
for i = 1, 3 do set(roles[i - 1], t.roles[i]) end
set(tok.tenant, t.tenant); set(tok.subject, t.sub); set(tok.client, t.client)
set(tok.session, t.sid); set(tok.token_id, t.jti)
tok.roles = roles; tok.roles_len = 3; tok.issued_at = t.iat

local function lua_check(n)
  local t0 = now_ns()
  for _ = 1, n do
    local v = assert(ledger:check(t))
    if v.revoked then return -1 end
  end
  return (now_ns() - t0) / n
end

-- the verdict kept past the loop iteration (as a handler that stores it would), so
-- that LuaJIT cannot sink the allocation of the result table
local kept = {}
local function lua_check_kept(n)
  local t0 = now_ns()
  for i = 1, n do
    local v = assert(ledger:check(t))
    if v.revoked then return -1 end
    kept[i % 64] = v
  end
  return (now_ns() - t0) / n
end

local function lua_check_jwt(n)
  local t0 = now_ns()
  for _ = 1, n do
    local v = assert(ledger:check_jwt(claims, jwt))
    if v.revoked then return -1 end
  end
  return (now_ns() - t0) / n
end

local kinds = {
  { "C   revledger_check", function(n) return B.bench_check(ledger.handle, tok, n) end, 1000000 },
  { "Lua ledger:check(t)", lua_check, 1000000 },
  { "Lua ledger:check(t), kept", lua_check_kept, 1000000 },
  { "C   revledger_check_jwt", function(n)
      return B.bench_check_jwt(ledger.handle, claims.handle, jwt, #jwt, n) end, 200000 },
  { "Lua ledger:check_jwt(c, jwt)", lua_check_jwt, 200000 },
}
local best = {}
for _ = 1, rounds do
  for i, k in ipairs(kinds) do
    local ns = k[2](k[3])
    assert(ns > 0, k[1] .. ": an error or a revoked verdict")
    best[i] = math.min(best[i] or math.huge, ns)
  end
end
print(string.format("ledger of %d rules, JWT of %d bytes, best of %d alternated rounds", rules,
                    #jwt, rounds))
for i, k in ipairs(kinds) do
  print(string.format("  %-30s %8.1f ns", k[1], best[i]))
end
print(string.format("  the module over the C call: check %+.1f ns (%+.1f ns with the verdict "
                    .. "table kept), check_jwt %+.1f ns", best[2] - best[1], best[3] - best[1],
                    best[5] - best[4]))
