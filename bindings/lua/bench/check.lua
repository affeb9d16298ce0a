-- Cost of a check from Lua (bindings/lua/revledger.lua) beside the same C calls made
-- directly through the FFI, on the ledger and JWT that bench/check.c uses.
--   luajit bench/check.lua <ledger> <jwt>
local ffi = require "ffi"
local revledger = require "revledger"
local C = revledger.C

ffi.cdef [[
typedef long time_t;
struct timespec { time_t tv_sec; long tv_nsec; };
int clock_gettime(int clk_id, struct timespec *tp);
]]
local ts = ffi.new("struct timespec")
local function now_ns()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) * 1e9 + tonumber(ts.tv_nsec)
end

local path, jwt = assert(arg[1]), assert(arg[2])
local ledger = assert(revledger.open_reader(path))
local claims = assert(revledger.claims("generic"))

local t = {
  tenant = "acme", sub = "3f2b8c1e-5d0a-4c1b-9a7e-2b9d6f1e0c44", client = "web-app",
  sid = "0e8c2a6d-1f3b-4d5e-8a9c-7b6d5e4f3a2b", jti = "9a8b7c6d-5e4f-3a2b-1c0d-e9f8a7b6c5d4",
  roles = { "billing", "reports", "editor" }, iat = 1699999000,
}

-- the same token as a prebuilt C struct, for the direct FFI call
local keep = { t.tenant, t.sub, t.client, t.sid, t.jti, t.roles }
local roles = ffi.new("revledger_bytes[3]")
for i = 1, 3 do
  roles[i - 1].ptr = t.roles[i]
  roles[i - 1].len = #t.roles[i]
end
local tok = ffi.new("revledger_token")
local function set(f, s) f.ptr = s; f.len = #s end
set(tok.tenant, t.tenant); set(tok.subject, t.sub); set(tok.client, t.client)
set(tok.session, t.sid); set(tok.token_id, t.jti)
tok.roles = roles; tok.roles_len = 3; tok.issued_at = t.iat
local jwt_bytes = ffi.new("revledger_bytes")
jwt_bytes.ptr = jwt; jwt_bytes.len = #jwt
local verdict = ffi.new("revledger_verdict")

local function bench(name, n, f)
  local best = math.huge
  for _ = 1, 5 do
    local t0 = now_ns()
    local revoked = f(n)
    local dt = (now_ns() - t0) / n
    assert(revoked == 0, name .. ": the benchmark token was found revoked")
    if dt < best then best = dt end
  end
  print(string.format("%-28s %7.1f ns", name, best))
  return best
end

bench("FFI revledger_check", 2000000, function(n)
  local revoked = 0
  for _ = 1, n do
    assert(C.revledger_check(ledger.handle, tok, verdict) == 0)
    if verdict.revoked then revoked = revoked + 1 end
  end
  return revoked
end)
bench("Lua ledger:check(t)", 2000000, function(n)
  local revoked = 0
  for _ = 1, n do
    local v = ledger:check(t)
    if v.revoked then revoked = revoked + 1 end
  end
  return revoked
end)
bench("FFI revledger_check_jwt", 500000, function(n)
  local revoked = 0
  local h, c = ledger.handle, claims.handle
  for _ = 1, n do
    assert(C.revledger_check_jwt(h, c, jwt_bytes, verdict) == 0)
    if verdict.revoked then revoked = revoked + 1 end
  end
  return revoked
end)
bench("FFI revledger_check_jwt_ptr", 500000, function(n)
  local revoked = 0
  local h, c = ledger.handle, claims.handle
  for _ = 1, n do
    assert(C.revledger_check_jwt_ptr(h, c, jwt, #jwt, verdict) == 0)
    if verdict.revoked then revoked = revoked + 1 end
  end
  return revoked
end)
bench("Lua ledger:check_jwt(c, jwt)", 500000, function(n)
  local revoked = 0
  for _ = 1, n do
    local v = ledger:check_jwt(claims, jwt)
    if v.revoked then revoked = revoked + 1 end
  end
  return revoked
end)
assert(#keep == 6)
