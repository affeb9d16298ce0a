-- Tests of bindings/lua/revledger.lua under plain LuaJIT (no nginx).
--   luajit bindings/lua/tests/test_revledger.lua <scratch dir>
-- with package.path reaching bindings/lua and REVLEDGER_LIB (or package.cpath)
-- reaching librevledger.so. Exit status 0 when every test passes.

local ffi = require "ffi"
local revledger = require "revledger"
local C = revledger.C

-- The writer side is not part of the module's API: declare it here.
ffi.cdef [[
revledger_status revledger_open_writer(const char *path, int64_t max_token_lifetime_s,
                                       revledger **out);
revledger_status revledger_revoke(revledger *ledger, revledger_scope scope,
                                  revledger_bytes tenant, revledger_bytes key, int64_t at);
revledger_status revledger_compact(revledger *ledger, int64_t now);
]]

local dir = assert(arg[1], "usage: test_revledger.lua <scratch dir>")
local counter = 0

local function fresh_path()
  counter = counter + 1
  return string.format("%s/lua-%d.ledger", dir, counter)
end

local function bytes(s)
  local b = ffi.new("revledger_bytes")
  b.ptr = s
  b.len = #s
  return b
end

local Writer = {}
Writer.__index = Writer

local function open_writer(path)
  local out = ffi.new("revledger *[1]")
  local status = C.revledger_open_writer(path, 3600, out)
  assert(status == 0, ffi.string(C.revledger_last_error()))
  return setmetatable({ handle = ffi.gc(out[0], C.revledger_close) }, Writer)
end

function Writer:revoke(scope, tenant, key, at)
  local status = C.revledger_revoke(self.handle, scope, bytes(tenant), bytes(key), at)
  assert(status == 0, ffi.string(C.revledger_last_error()))
end

function Writer:compact(now)
  local status = C.revledger_compact(self.handle, now)
  assert(status == 0, ffi.string(C.revledger_last_error()))
end

-- JWTs: the module reads the payload and never the signature.
local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

local function b64url(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local chars = 2 + (b and 1 or 0) + (c and 1 or 0)
    for j = 1, chars do
      local shift = 18 - 6 * (j - 1)
      local idx = math.floor(n / 2 ^ shift) % 64
      out[#out + 1] = B64:sub(idx + 1, idx + 1)
    end
  end
  return table.concat(out)
end

local function jwt(payload_json)
  return b64url('{"alg":"RS256","typ":"JWT"}') .. "." .. b64url(payload_json) .. "."
         .. b64url("not a signature")
end

local function mapped_count(path)
  local n = 0
  for line in io.lines("/proc/self/maps") do
    if line:find(path, 1, true) then
      n = n + 1
    end
  end
  return n
end

local T = 1700000000
local tests = {}

tests[#tests + 1] = { "open_reader: a missing file is nil and a message", function()
  local ledger, err = revledger.open_reader(dir .. "/missing.ledger")
  assert(ledger == nil)
  assert(type(err) == "string" and err:find("^REVLEDGER_"), err)
  local status
  ledger, err, status = revledger.open_reader(42)
  assert(ledger == nil and err:find("path must be a string"), err)
  assert(status == "REVLEDGER_INVALID_ARGUMENT", status)
  -- a C string would end at the NUL and name another file
  local path = fresh_path()
  open_writer(path)
  assert(revledger.open_reader(path))
  ledger, err = revledger.open_reader(path .. "\0junk")
  assert(ledger == nil and err:find("NUL", 1, true), err)
end }

tests[#tests + 1] = { "check: role rule revokes tokens issued before its cutoff", function()
  local path = fresh_path()
  local w = open_writer(path)
  w:revoke(C.REVLEDGER_SCOPE_ROLE, "acme", "super_admin", T)
  local ledger = assert(revledger.open_reader(path))
  local v = assert(ledger:check { tenant = "acme", sub = "john",
                                  roles = { "billing", "super_admin" }, iat = T - 60 })
  assert(v.revoked == true)
  assert(v.scope == "role", v.scope)
  assert(v.cutoff == T, v.cutoff)
  assert(v.description == "token revoked: role permissions changed at 1700000000",
         v.description)
  v = assert(ledger:check { tenant = "acme", sub = "bruce", roles = { "billing" },
                            iat = T - 60 })
  assert(v.revoked == false and v.scope == nil and v.cutoff == nil)
  v = assert(ledger:check { tenant = "acme", sub = "john", roles = { "super_admin" },
                            iat = T })
  assert(v.revoked == false, "iat == cutoff is not before the cutoff")
  v = assert(ledger:check { tenant = "other", sub = "john", roles = { "super_admin" },
                            iat = T - 60 })
  assert(v.revoked == false, "another tenant")
end }

tests[#tests + 1] = { "check: every optional part of the token is looked up", function()
  local path = fresh_path()
  local w = open_writer(path)
  w:revoke(C.REVLEDGER_SCOPE_CLIENT, "acme", "spa", T)
  w:revoke(C.REVLEDGER_SCOPE_SESSION, "acme", "s-1", T + 10)
  w:revoke(C.REVLEDGER_SCOPE_TOKEN, "acme", "jti-1", T + 3600)
  local ledger = assert(revledger.open_reader(path))
  local base = { tenant = "acme", sub = "mike", iat = T - 1 }
  assert(ledger:check(base).revoked == false)
  local v = assert(ledger:check { tenant = "acme", sub = "mike", client = "spa", iat = T - 1 })
  assert(v.revoked and v.scope == "client")
  v = assert(ledger:check { tenant = "acme", sub = "mike", client = "spa", sid = "s-1",
                            iat = T - 1 })
  assert(v.scope == "session" and v.cutoff == T + 10, "the latest cutoff is named")
  v = assert(ledger:check { tenant = "acme", sub = "mike", jti = "jti-1", iat = T + 99 })
  assert(v.revoked and v.scope == "token" and v.description == "token revoked")
end }

tests[#tests + 1] = { "check: a revoke is seen on the next check, with no reopening", function()
  local path = fresh_path()
  local w = open_writer(path)
  local ledger = assert(revledger.open_reader(path))
  local t = { tenant = "acme", sub = "john", iat = T - 1 }
  assert(ledger:check(t).revoked == false)
  w:revoke(C.REVLEDGER_SCOPE_SUBJECT, "acme", "john", T)
  local v = assert(ledger:check(t))
  assert(v.revoked and v.scope == "subject")
end }

ffi.cdef "int usleep(unsigned int usec);"

-- Checks `t` every 20 ms until `done(v, err)` holds; at most 150 checks (3 s), far fewer
-- than the library's own look at the path (one check in 4093).
local function check_until(ledger, t, done, what)
  for _ = 1, 150 do
    local v, err = ledger:check(t)
    if done(v, err) then
      return v, err
    end
    ffi.C.usleep(20000)
  end
  error("150 checks over 3 s and still not " .. what)
end

tests[#tests + 1] = { "check: a ledger replaced or deleted is noticed within a second", function()
  local path = fresh_path()
  local w = open_writer(path)
  local ledger = assert(revledger.open_reader(path))
  local t = { tenant = "acme", sub = "john", iat = T - 1 }
  assert(ledger:check(t).revoked == false)
  -- another ledger renamed over the path, john revoked in it: read afresh
  local other = fresh_path()
  local w2 = open_writer(other)
  w2:revoke(C.REVLEDGER_SCOPE_SUBJECT, "acme", "john", T)
  w2 = nil
  w = nil
  collectgarbage()
  assert(os.rename(other, path))
  local v = check_until(ledger, t, function(v) return v and v.revoked end, "revoked")
  assert(v.scope == "subject" and v.cutoff == T)
  -- deleted: every check fails (closed) until a ledger is at the path again
  assert(os.remove(path))
  local _, err = check_until(ledger, t, function(v) return v == nil end, "failing")
  assert(err:find("^REVLEDGER_IO"), err)
  v, err = ledger:check(t)
  assert(v == nil and err:find("^REVLEDGER_IO"), tostring(err))
  open_writer(path):revoke(C.REVLEDGER_SCOPE_SUBJECT, "acme", "john", T + 5)
  v = check_until(ledger, t, function(v) return v ~= nil end, "answering")
  assert(v.revoked and v.cutoff == T + 5)
end }

tests[#tests + 1] = { "check: a reader follows a compaction", function()
  local path = fresh_path()
  local w = open_writer(path)
  w:revoke(C.REVLEDGER_SCOPE_SUBJECT, "acme", "john", os.time() + 1)
  local ledger = assert(revledger.open_reader(path))
  local t = { tenant = "acme", sub = "john", iat = os.time() - 1 }
  assert(ledger:check(t).revoked)
  w:compact(os.time())
  w:revoke(C.REVLEDGER_SCOPE_SUBJECT, "acme", "mike", os.time() + 1)
  assert(ledger:check(t).revoked)
  assert(ledger:check { tenant = "acme", sub = "mike", iat = os.time() - 1 }.revoked)
end }

tests[#tests + 1] = { "check: many roles (the scratch buffer grows)", function()
  local path = fresh_path()
  local w = open_writer(path)
  w:revoke(C.REVLEDGER_SCOPE_ROLE, "acme", "role-99", T)
  local ledger = assert(revledger.open_reader(path))
  local roles = {}
  for i = 0, 99 do
    roles[#roles + 1] = "role-" .. i
  end
  local v = assert(ledger:check { tenant = "acme", sub = "x", roles = roles, iat = T - 1 })
  assert(v.revoked and v.scope == "role")
  roles[100] = nil
  v = assert(ledger:check { tenant = "acme", sub = "x", roles = roles, iat = T - 1 })
  assert(v.revoked == false, "role-99 removed")
end }

tests[#tests + 1] = { "check: bad input is nil and a message naming it", function()
  local path = fresh_path()
  open_writer(path)
  local ledger = assert(revledger.open_reader(path))
  local cases = {
    { nil, "needs a table" },
    { { tenant = "acme", sub = "x" }, "iat" },
    { { tenant = "acme", sub = "x", iat = "1700000000" }, "iat" },
    { { tenant = "acme", sub = "x", iat = 0 / 0 }, "iat" },
    { { tenant = "acme", sub = "x", iat = 1 / 0 }, "iat" },
    { { tenant = "acme", sub = "x", iat = 2^60 }, "iat" },
    { { tenant = 7, sub = "x", iat = 1 }, "tenant" },
    { { tenant = "acme", sub = {}, iat = 1 }, "sub" },
    { { tenant = "acme", sub = "x", roles = "admin", iat = 1 }, "roles" },
    { { tenant = "acme", sub = "x", roles = { "a", 5 }, iat = 1 }, "role" },
    -- roles that are not a list 1..n: a role the list's length leaves out could be the
    -- revoked one, so they are refused rather than read in part
    { { tenant = "acme", sub = "x", roles = { [1] = "a", [3] = "admin" }, iat = 1 }, "no holes" },
    { { tenant = "acme", sub = "x", roles = { admin = true }, iat = 1 }, "no holes" },
    { { tenant = "acme", sub = "x", roles = { [0] = "admin" }, iat = 1 }, "no holes" },
    { { tenant = "acme", sub = "x", roles = { "a", admin = "admin" }, iat = 1 }, "no holes" },
    { { tenant = "acme", sub = string.rep("x", 4097), iat = 1 }, "REVLEDGER_INVALID_ARGUMENT" },
  }
  for i, case in ipairs(cases) do
    local v, err, status = ledger:check(case[1])
    assert(v == nil, "case " .. i .. " gave a verdict")
    assert(type(err) == "string" and err:find(case[2], 1, true),
           "case " .. i .. ": " .. tostring(err))
    -- caught here or by the library, the same status: a gateway answers 401 for it
    assert(status == "REVLEDGER_INVALID_ARGUMENT", "case " .. i .. ": " .. tostring(status))
    assert(err:find("^REVLEDGER_INVALID_ARGUMENT: "), err)
  end
end }

tests[#tests + 1] = { "check: a fractional iat is rounded down, as check_jwt reads it", function()
  local path = fresh_path()
  local w = open_writer(path)
  w:revoke(C.REVLEDGER_SCOPE_SUBJECT, "acme", "john", T)
  local ledger = assert(revledger.open_reader(path))
  local claims = assert(revledger.claims("generic"))
  -- T - 0.5 rounds down to T - 1: before the cutoff, revoked; T + 0.5 rounds to T, not
  -- before it: valid
  for _, case in ipairs { { T - 0.5, true }, { T + 0.5, false }, { T - 1, true } } do
    local iat, revoked = case[1], case[2]
    local v = assert(ledger:check { tenant = "acme", sub = "john", iat = iat })
    assert(v.revoked == revoked, "check, iat " .. iat)
    local j = assert(ledger:check_jwt(claims, jwt(string.format(
      '{"tenant":"acme","sub":"john","iat":%.1f}', iat))))
    assert(j.revoked == revoked, "check_jwt, iat " .. iat)
  end
end }

tests[#tests + 1] = { "claims: built-in specs compile, nonsense is refused", function()
  for _, spec in ipairs { "generic", "auth0", "keycloak", "entra",
                          '{"subject": ["/sub"], "tenant": ["/tid"]}' } do
    local claims, err = revledger.claims(spec)
    assert(claims, spec .. ": " .. tostring(err))
  end
  local claims, err = revledger.claims("no-such-provider")
  assert(claims == nil and err:find("^REVLEDGER_INVALID_ARGUMENT"), err)
  claims, err = revledger.claims(nil)
  assert(claims == nil and err:find("spec must be a string"), err)
  claims, err = revledger.claims("generic\0{garbage")
  assert(claims == nil and err:find("NUL", 1, true), err)
end }

tests[#tests + 1] = { "check_jwt: valid, revoked, unreadable", function()
  local path = fresh_path()
  local w = open_writer(path)
  w:revoke(C.REVLEDGER_SCOPE_ROLE, "acme", "super_admin", T)
  local ledger = assert(revledger.open_reader(path))
  local claims = assert(revledger.claims("generic"))
  local john = jwt(string.format(
    '{"tenant":"acme","sub":"john","roles":["super_admin","billing"],"iat":%d}', T - 60))
  local bruce = jwt(string.format(
    '{"tenant":"acme","sub":"bruce","roles":["billing"],"iat":%d}', T - 60))
  local v = assert(ledger:check_jwt(claims, john))
  assert(v.revoked and v.scope == "role" and v.cutoff == T)
  assert(v.description == "token revoked: role permissions changed at 1700000000")
  v = assert(ledger:check_jwt(claims, bruce))
  assert(v.revoked == false)

  local unreadable = {
    "not a jwt",
    "a.!!!.c",
    jwt('{"tenant":"acme","sub":"john"}'),           -- no iat
    jwt('["not", "an", "object"]'),
    jwt('{"sub":"john","iat":"yesterday"}'),
  }
  for i, token in ipairs(unreadable) do
    local r, err = ledger:check_jwt(claims, token)
    assert(r == nil, "unreadable token " .. i .. " gave a verdict")
    assert(err:find("^REVLEDGER_INVALID_ARGUMENT"), err)
  end
  local r, err, status = ledger:check_jwt({}, john)
  assert(r == nil and err:find("revledger.claims"), err)
  assert(status == "REVLEDGER_INVALID_ARGUMENT", status)
  r, err, status = ledger:check_jwt(claims, nil)
  assert(r == nil and err:find("jwt must be a string"), err)
  assert(status == "REVLEDGER_INVALID_ARGUMENT", status)
end }

tests[#tests + 1] = { "close and free: idempotent, then refused", function()
  local path = fresh_path()
  open_writer(path)
  local ledger = assert(revledger.open_reader(path))
  local claims = assert(revledger.claims("generic"))
  ledger:close()
  ledger:close()
  claims:free()
  claims:free()
  local v, err, status = ledger:check { tenant = "a", sub = "b", iat = 1 }
  assert(v == nil and err:find("closed"), err)
  assert(status == "REVLEDGER_INVALID_ARGUMENT", status)
  local ledger2 = assert(revledger.open_reader(path))
  v, err = ledger2:check_jwt(claims, jwt('{"sub":"b","iat":1}'))
  assert(v == nil and err:find("revledger.claims"), err)
end }

tests[#tests + 1] = { "garbage collection closes readers", function()
  local path = fresh_path()
  local w = open_writer(path)
  w:revoke(C.REVLEDGER_SCOPE_GLOBAL, "", "", T)
  collectgarbage()
  local before = mapped_count(path)
  local readers = {}
  for i = 1, 20 do
    readers[i] = assert(revledger.open_reader(path))
    assert(readers[i]:check { sub = "x", iat = T - 1 }.revoked)
  end
  assert(mapped_count(path) >= before + 20, "each reader maps the file")
  readers = nil
  collectgarbage()
  collectgarbage()
  assert(mapped_count(path) == before,
         string.format("mappings left after GC: %d, before: %d", mapped_count(path), before))
end }

tests[#tests + 1] = { "version", function()
  assert(revledger.version():match("^%d+%.%d+%.%d+"), revledger.version())
end }

local failed = 0
for _, t in ipairs(tests) do
  local ok, err = xpcall(t[2], debug.traceback)
  if ok then
    print("ok   " .. t[1])
  else
    failed = failed + 1
    print("FAIL " .. t[1] .. "\n" .. tostring(err))
  end
end
print(string.format("%d tests, %d failed", #tests, failed))
os.exit(failed == 0 and 0 or 1)
