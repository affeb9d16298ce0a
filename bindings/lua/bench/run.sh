#!/usr/bin/env bash
# The per-check cost of the LuaJIT module beside the plain C call (same process, ledger
# handle, token, JWT): builds bench/check.c as a shared object over
# target/release/librevledger.so, then runs bench/check.lua under luajit.
#   bindings/lua/bench/run.sh [rules] [rounds]
set -euo pipefail
cd "$(dirname "$0")/../../.."
root=$(pwd)
[ -f target/release/librevledger.so ] || cargo build --release --lib
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cc -O2 -std=c11 -Wall -Wextra -Werror -fPIC -shared -Iinclude bindings/lua/bench/check.c \
  -L target/release -lrevledger -Wl,-rpath,"$root/target/release" -o "$work/libbenchcheck.so"
jwt=$(python3 - <<'PY'
import base64, json
b = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()
print(".".join([b({"alg": "RS256", "typ": "JWT"}),
                b({"iss": "https://idp.example/realms/acme", "tenant": "acme",
                   "sub": "3f2b8c1e-5d0a-4c1b-9a7e-2b9d6f1e0c44", "azp": "web-app",
                   "sid": "0e8c2a6d-1f3b-4d5e-8a9c-7b6d5e4f3a2b",
                   "jti": "9a8b7c6d-5e4f-3a2b-1c0d-e9f8a7b6c5d4",
                   "roles": ["billing", "reports", "editor"], "iat": 1699999000,
                   "exp": 1700002600, "aud": "api", "scope": "openid profile email"}),
                "c2lnbmF0dXJl"]))
PY
)
LUA_PATH="$root/bindings/lua/?.lua;;" REVLEDGER_LIB="$root/target/release/librevledger.so" \
  luajit bindings/lua/bench/check.lua "$work/libbenchcheck.so" "$work/bench.ledger" \
  "${1:-10000}" "$jwt" "${2:-7}"
