#!/usr/bin/env bash
# The per-check cost of the LuaJIT module beside the plain C call (same ledger, token,
# JWT): builds bench/check.c against target/release/librevledger.a, creates a ledger of
# 10k rules, runs the C loop, then bench/check.lua under luajit.
#   bindings/lua/bench/run.sh [rules]
set -euo pipefail
cd "$(dirname "$0")/../../.."
root=$(pwd)
rules=${1:-10000}
[ -f target/release/librevledger.a ] || cargo build --release --lib
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cc -O2 -std=c11 -Wall -Wextra -Werror -Iinclude bindings/lua/bench/check.c \
  target/release/librevledger.a -lpthread -ldl -lm -o "$work/check"
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
echo "ledger of $rules rules; JWT of ${#jwt} bytes; best of 5 rounds"
{
  "$work/check" "$work/bench.ledger" "$rules" "$jwt"
  LUA_PATH="$root/bindings/lua/?.lua;;" REVLEDGER_LIB="$root/target/release/librevledger.so" \
    luajit bindings/lua/bench/check.lua "$work/bench.ledger" "$jwt"
} | tee "$work/out"
awk '/^C   revledger_check /{c=$3} /^C   revledger_check_jwt /{cj=$3}
     /^Lua ledger:check\(t\)/{l=$3} /^Lua ledger:check_jwt/{lj=$4}
     END {printf "the module over the plain C call: check %+.1f ns, check_jwt %+.1f ns\n", l-c, lj-cj}' \
  "$work/out"
