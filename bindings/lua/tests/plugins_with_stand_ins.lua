-- Runs the access functions of the Kong and APISIX plugins shown in bindings/lua/README.md
-- under plain LuaJIT, against stand-ins for the few gateway functions they call
-- (kong.request.get_header, kong.response.exit, kong.log.err; apisix.core's
-- schema.check, request.header, response.set_header, log.error). This checks the
-- plugins' own logic and their use of revledger, not Kong or APISIX.
--   luajit plugins_with_stand_ins.lua <kong handler.lua> <apisix plugin.lua> <ledger> <jwt revoked> <jwt valid>
local kong_file, apisix_file, ledger, revoked, valid = unpack(arg)

local header, exited, set_headers
local function reset(token, scheme)
  header = token and ((scheme or "Bearer ") .. token) or nil
  exited, set_headers = nil, {}
end

kong = {
  request = { get_header = function(name) assert(name:lower() == "authorization"); return header end },
  response = { exit = function(status, body, headers)
    exited = { status = status, body = body, headers = headers or {} }
    return exited
  end },
  log = { err = function() end },
}

package.preload["apisix.core"] = function()
  return {
    schema = { check = function(schema, conf) return conf.ledger ~= nil, "ledger is required" end },
    request = { header = function(ctx, name) assert(name == "Authorization"); return header end },
    response = { set_header = function(name, value) set_headers[name] = value end },
    log = { error = function() end },
  }
end

local Kong = dofile(kong_file)
local Apisix = dofile(apisix_file)
local conf = { ledger = ledger, claims = "generic", fail_open = false }

-- Kong
reset(valid); Kong:access(conf); assert(exited == nil, "kong: a valid token passes")
reset(nil); Kong:access(conf); assert(exited == nil, "kong: no token passes")
reset(revoked); Kong:access(conf)
assert(exited and exited.status == 401, "kong: a revoked token gets 401")
assert(exited.headers["WWW-Authenticate"]:find('^Bearer error="invalid_token", error_description="token revoked: '))
reset("garbage"); Kong:access(conf); assert(exited and exited.status == 401, "kong: unreadable")
-- the scheme in any case, spaces or tabs after it: a token seen, never skipped
local SCHEMES = { "bearer ", "BEARER ", "BeArEr  ", "Bearer\t", " Bearer \t " }
for _, scheme in ipairs(SCHEMES) do
  reset(revoked, scheme); Kong:access(conf)
  assert(exited and exited.status == 401, "kong: a revoked token after " .. scheme)
end
reset(valid); Kong:access({ ledger = ledger .. ".missing", claims = "generic" })
assert(exited and exited.status == 503, "kong: fails closed")
reset(valid); Kong:access({ ledger = ledger .. ".missing", claims = "generic", fail_open = true })
assert(exited == nil, "kong: fail_open")

-- APISIX
assert(Apisix.check_schema(conf))
assert(not Apisix.check_schema({ ledger = ledger, claims = "no-such-provider" }))
reset(valid); assert(Apisix.access(conf, {}) == nil, "apisix: a valid token passes")
reset(nil); assert(Apisix.access(conf, {}) == nil, "apisix: no token passes")
reset(revoked)
local status, body = Apisix.access(conf, {})
assert(status == 401 and body.message:find("^token revoked: "), "apisix: revoked")
assert(set_headers["WWW-Authenticate"]:find('^Bearer error="invalid_token"'))
reset("garbage"); assert(Apisix.access(conf, {}) == 401, "apisix: unreadable")
for _, scheme in ipairs(SCHEMES) do
  reset(revoked, scheme)
  assert(Apisix.access(conf, {}) == 401, "apisix: a revoked token after " .. scheme)
end
reset(valid); assert(Apisix.access({ ledger = ledger .. ".missing", claims = "generic" }, {}) == 503)
reset(valid)
assert(Apisix.access({ ledger = ledger .. ".missing", claims = "generic", fail_open = true }, {}) == nil)
print("ok")
