-- revledger: instant JWT revocation for OpenResty, Kong and APISIX (LuaJIT FFI).
--
-- A thin module over the C ABI of librevledger (include/revledger.h), in the manner
-- of Kong's atc-router: the declarations below are the header's, the library is
-- found by a search of package.cpath, and every C handle is owned by a Lua object
-- through ffi.gc.
--
--   local revledger = require "revledger"
--   local ledger = assert(revledger.open_reader("/var/lib/revledger/acme.ledger"))
--   local claims = assert(revledger.claims("keycloak"))
--   local v, err = ledger:check_jwt(claims, jwt)   -- the signature is NOT verified
--   if not v then ... end                           -- could not check: fail closed
--   if v.revoked then ... 401, v.description ... end
--
-- check_jwt decodes the token's payload without verifying its signature: call it
-- after the plugin or module that verifies the token, never instead of it.
--
-- The shared library is, in this order: the file named by the environment variable
-- REVLEDGER_LIB; librevledger.so in a directory of package.cpath (in nginx:
-- lua_package_cpath "/opt/revledger/lib/?.so;;"); the system's library path.
--
-- Handles are not shared across nginx workers: open the reader in each worker
-- (init_worker_by_lua*, or lazily at the first request), never in the master.

local ffi = require "ffi"

local C_DECLARATIONS = [[
typedef enum {
  REVLEDGER_OK = 0,
  REVLEDGER_INVALID_ARGUMENT,
  REVLEDGER_IO,
  REVLEDGER_CORRUPT,
  REVLEDGER_LOCKED,
  REVLEDGER_READ_ONLY,
  REVLEDGER_INCOMPATIBLE,
  REVLEDGER_INTERNAL,
} revledger_status;

typedef enum {
  REVLEDGER_SCOPE_GLOBAL = 0,
  REVLEDGER_SCOPE_TENANT,
  REVLEDGER_SCOPE_SUBJECT,
  REVLEDGER_SCOPE_ROLE,
  REVLEDGER_SCOPE_CLIENT,
  REVLEDGER_SCOPE_SESSION,
  REVLEDGER_SCOPE_TOKEN,
} revledger_scope;

typedef struct revledger revledger;

typedef struct revledger_claims revledger_claims;

typedef struct {
  const uint8_t *ptr;
  size_t len;
} revledger_bytes;

typedef struct {
  revledger_bytes tenant;
  revledger_bytes subject;
  revledger_bytes client;
  revledger_bytes session;
  revledger_bytes token_id;
  const revledger_bytes *roles;
  size_t roles_len;
  int64_t issued_at;
} revledger_token;

typedef struct {
  bool revoked;
  revledger_scope scope;
  int64_t cutoff;
} revledger_verdict;

revledger_status revledger_open_reader(const char *path, revledger **out);

void revledger_close(revledger *ledger);

revledger_status revledger_check(const revledger *ledger,
                                 const revledger_token *token,
                                 revledger_verdict *out);

revledger_status revledger_claims_new(const char *spec, revledger_claims **out);

void revledger_claims_free(revledger_claims *claims);

revledger_status revledger_check_jwt(const revledger *ledger,
                                     const revledger_claims *claims,
                                     revledger_bytes jwt,
                                     revledger_verdict *out);

revledger_status revledger_check_jwt_ptr(const revledger *ledger,
                                         const revledger_claims *claims,
                                         const uint8_t *jwt,
                                         size_t jwt_len,
                                         revledger_verdict *out);

revledger_status revledger_refresh(const revledger *ledger);

const char *revledger_last_error(void);

const char *revledger_status_name(uint32_t status);

const char *revledger_version(void);
]]

ffi.cdef(C_DECLARATIONS)

local ffi_new, ffi_gc, ffi_string = ffi.new, ffi.gc, ffi.string
local type, tonumber, setmetatable, getmetatable = type, tonumber, setmetatable, getmetatable
local string_format = string.format
local math_floor = math.floor

-- Whole seconds of the clock, read without a system call: nginx's cached time in
-- OpenResty, else time(2) (a vDSO call that LuaJIT compiles), else os.time.
local now_seconds
if ngx and ngx.time then
  now_seconds = ngx.time
elseif pcall(ffi.cdef, "int64_t time(int64_t *tloc);") then
  local libc = ffi.C
  now_seconds = function() return tonumber(libc.time(nil)) end
else
  now_seconds = os.time
end

local LIBRARY_NAME = "librevledger.so"

local function load_library()
  local explicit = os.getenv("REVLEDGER_LIB")
  if explicit and explicit ~= "" then
    return ffi.load(explicit)
  end
  for template in package.cpath:gmatch("[^;]+") do
    local dir = template:match("^(.*/)")
    if dir then
      local path = dir .. LIBRARY_NAME
      local f = io.open(path, "rb")
      if f then
        f:close()
        return ffi.load(path)
      end
    end
  end
  local ok, lib = pcall(ffi.load, "revledger")
  if ok then
    return lib
  end
  error(string_format("revledger: %s not found in REVLEDGER_LIB, package.cpath (%s) "
                      .. "or the system library path (%s)", LIBRARY_NAME, package.cpath,
                      tostring(lib)), 2)
end

local C = load_library()

local _M = { _VERSION = "0.1.0" }

--- The loaded library (ffi.load), with the declarations above; for tests and for
--- callers that need a function this module does not wrap.
_M.C = C

-- Longest key and most roles the library accepts (MAX_KEY_LEN, MAX_ROLES).
_M.MAX_KEY_LEN = 4096
_M.MAX_ROLES = 4096

local SCOPE_NAMES = {
  [0] = "global", "tenant", "subject", "role", "client", "session", "token",
}

-- Scratch C objects, reused by every call: LuaJIT runs one Lua state per nginx worker
-- and nothing here yields between filling them and the C call.
local handle_out = ffi_new("revledger *[1]")
local claims_out = ffi_new("revledger_claims *[1]")
local verdict_buf = ffi_new("revledger_verdict")
local token_buf = ffi_new("revledger_token")
local roles_cap = 16
local roles_buf = ffi_new("revledger_bytes[?]", roles_cap)

-- nil, "<STATUS_NAME>: <message>", "<STATUS_NAME>"
local function failure(status)
  local name = ffi_string(C.revledger_status_name(status))
  return nil, string_format("%s: %s", name, ffi_string(C.revledger_last_error())), name
end

-- The same three values for a mistake caught here, before the library is called: the
-- status the C ABI gives for it, so that a gateway tells an unreadable token (401) from
-- a ledger that cannot answer (503) whoever caught it.
local function refuse(fmt, ...)
  local name = "REVLEDGER_INVALID_ARGUMENT"
  return nil, name .. ": " .. string_format(fmt, ...), name
end

local function verdict_table(v)
  if not v.revoked then
    return { revoked = false, description = "token is valid" }
  end
  local scope = SCOPE_NAMES[tonumber(v.scope)]
  local cutoff = tonumber(v.cutoff)
  local description
  if scope == "token" then
    description = "token revoked"
  else
    description = string_format("token revoked: %s permissions changed at %d", scope, cutoff)
  end
  return { revoked = true, scope = scope, cutoff = cutoff, description = description }
end

local Ledger = {}
Ledger.__index = Ledger

local Claims = {}
Claims.__index = Claims

--- Opens the ledger at `path` read-only. Returns a ledger, or nil, a message and the
--- status name.
function _M.open_reader(path)
  if type(path) ~= "string" then
    return refuse("revledger.open_reader: path must be a string")
  end
  if path:find("\0", 1, true) then
    -- a C string would end at the NUL and name another file
    return refuse("revledger.open_reader: path contains a NUL byte")
  end
  local status = C.revledger_open_reader(path, handle_out)
  if status ~= 0 then
    return failure(status)
  end
  local handle = ffi_gc(handle_out[0], C.revledger_close)
  handle_out[0] = nil
  return setmetatable({ handle = handle, path = path, verified = now_seconds() }, Ledger)
end

-- The reader's handle for a check. Once a second it makes sure that the file it reads is
-- still the ledger at the path (the library looks when the kernel notices a change there,
-- else on one check in thousands): a ledger deleted, replaced by another file or damaged
-- is opened afresh from the path, and while that fails every check fails (closed).
local function current_handle(self)
  local handle = self.handle
  if handle == nil then
    return refuse("revledger: the ledger is closed")
  end
  local now = now_seconds()
  if now == self.verified then
    return handle
  end
  self.verified = now
  if C.revledger_refresh(handle) == 0 then
    return handle
  end
  local status = C.revledger_open_reader(self.path, handle_out)
  if status ~= 0 then
    return failure(status)
  end
  local fresh = ffi_gc(handle_out[0], C.revledger_close)
  handle_out[0] = nil
  self.handle = fresh
  ffi_gc(handle, nil)
  C.revledger_close(handle)
  return fresh
end

--- Compiles a claim mapping (DESIGN.md §7): "generic", "auth0", "keycloak", "entra",
--- or a JSON object of JSON Pointers. Returns a mapping, or nil, a message and the
--- status name.
function _M.claims(spec)
  if type(spec) ~= "string" then
    return refuse("revledger.claims: spec must be a string")
  end
  if spec:find("\0", 1, true) then
    return refuse("revledger.claims: spec contains a NUL byte")
  end
  local status = C.revledger_claims_new(spec, claims_out)
  if status ~= 0 then
    return failure(status)
  end
  local handle = ffi_gc(claims_out[0], C.revledger_claims_free)
  claims_out[0] = nil
  return setmetatable({ handle = handle, spec = spec }, Claims)
end

--- The library's version, e.g. "0.1.0".
function _M.version()
  return ffi_string(C.revledger_version())
end

--- Releases the mapping now instead of at garbage collection. Idempotent.
function Claims:free()
  local handle = self.handle
  if handle ~= nil then
    self.handle = nil
    ffi_gc(handle, nil)
    C.revledger_claims_free(handle)
  end
end

--- Closes the reader now instead of at garbage collection. Idempotent.
function Ledger:close()
  local handle = self.handle
  if handle ~= nil then
    self.handle = nil
    ffi_gc(handle, nil)
    C.revledger_close(handle)
  end
end

--- Is the compact JWS `jwt` ("header.payload.signature") revoked? Its payload is read
--- through `claims`; its signature is NOT verified. Returns
--- {revoked=, scope=, cutoff=, description=}, or nil, a message and the status name:
--- "REVLEDGER_INVALID_ARGUMENT" for a token that cannot be read (bad encoding, no
--- iat, a claim of the wrong type: answer 401 invalid_token); any other status means
--- the ledger could not answer (fail closed: 503, or let through by choice).
function Ledger:check_jwt(claims, jwt)
  local handle, why, status_name = current_handle(self)
  if handle == nil then
    return nil, why, status_name
  end
  if getmetatable(claims) ~= Claims or claims.handle == nil then
    return refuse("revledger: check_jwt needs a mapping from revledger.claims()")
  end
  if type(jwt) ~= "string" then
    return refuse("revledger: check_jwt: jwt must be a string")
  end
  -- the pointer-and-length form: LuaJIT compiles no call that passes a struct by value
  local status = C.revledger_check_jwt_ptr(handle, claims.handle, jwt, #jwt, verdict_buf)
  if status ~= 0 then
    return failure(status)
  end
  return verdict_table(verdict_buf)
end

local function set_bytes(field, value, name)
  if value == nil then
    field.ptr = nil
    field.len = 0
    return true
  end
  if type(value) ~= "string" then
    return refuse("revledger: check: %s must be a string or nil", name)
  end
  field.ptr = value
  field.len = #value
  return true
end

--- Is the token described by `t` revoked? `t` has tenant, sub, roles (a list),
--- client, sid, jti (strings; nil = absent) and iat (Unix seconds; a fraction is
--- rounded down). Returns {revoked=, scope=, cutoff=, description=}, or nil, a message
--- and the status name, as check_jwt.
function Ledger:check(t)
  local handle, why, status_name = current_handle(self)
  if handle == nil then
    return nil, why, status_name
  end
  if type(t) ~= "table" then
    return refuse("revledger: check needs a table")
  end
  local iat = t.iat
  -- NaN fails both comparisons; a fraction is rounded down, as check_jwt reads a JWT's
  -- iat (an older iat can only revoke more)
  if type(iat) ~= "number" or not (iat <= 2^53 and iat >= -2^53) then
    return refuse("revledger: check: iat must be a number of Unix seconds")
  end
  iat = math_floor(iat)
  local tok = token_buf
  local ok, err, status = set_bytes(tok.tenant, t.tenant, "tenant")
  if ok then ok, err, status = set_bytes(tok.subject, t.sub, "sub") end
  if ok then ok, err, status = set_bytes(tok.client, t.client, "client") end
  if ok then ok, err, status = set_bytes(tok.session, t.sid, "sid") end
  if ok then ok, err, status = set_bytes(tok.token_id, t.jti, "jti") end
  if not ok then
    return nil, err, status
  end

  local roles = t.roles
  local n = 0
  if roles ~= nil then
    if type(roles) ~= "table" then
      return refuse("revledger: check: roles must be a list of strings or nil")
    end
    n = #roles
    -- a list without holes and nothing else: a role skipped here could be the revoked one
    local count = 0
    for k in pairs(roles) do
      if type(k) ~= "number" or k < 1 or k > n or k % 1 ~= 0 then
        return refuse("revledger: check: roles must be a list of strings (keys 1..n, no holes)")
      end
      count = count + 1
    end
    if count ~= n then
      return refuse("revledger: check: roles must be a list of strings (keys 1..n, no holes)")
    end
    if n > roles_cap then
      if n > _M.MAX_ROLES then
        return refuse("revledger: check: %d roles; the limit is %d", n, _M.MAX_ROLES)
      end
      roles_cap = n
      roles_buf = ffi_new("revledger_bytes[?]", roles_cap)
    end
    for i = 1, n do
      ok, err, status = set_bytes(roles_buf[i - 1], roles[i], "each role")
      if not ok then
        return nil, err, status
      end
    end
  end
  tok.roles = roles_buf
  tok.roles_len = n
  tok.issued_at = iat

  local status = C.revledger_check(handle, tok, verdict_buf)
  if status ~= 0 then
    return failure(status)
  end
  return verdict_table(verdict_buf)
end

return _M
