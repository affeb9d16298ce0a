#!/usr/bin/env bash
# C tests of the C ABI (include/revledger.h), from any directory:
#   bash tests/c/run.sh
# Builds the release library, compiles every tests/c/test_*.c and examples/c/minimal.c
# with strict flags against the committed header, links each once against the static
# library (target/release/librevledger.a) and once against the shared library installed
# by scripts/cinstall into target/c-tests/prefix, runs both, then runs the shared build under
# valgrind memcheck; also builds and runs the C block of README.md. Outputs go to
# target/c-tests/. Ends with "N passed, M failed"
# (N counts every test case run, in every build), and exits non-zero on any failure.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
out="$root/target/c-tests"
cases="$root/tests/vectors/cases.txt"
cc="${CC:-cc}"
cflags=(-std=c11 -Wall -Wextra -Wpedantic -Werror -g -O1 -I"$root/include")
static_libs=("$root/target/release/librevledger.a" -lpthread -ldl -lm)
# The shared library as installed (scripts/cinstall): its soname, librevledger.so.<abi>,
# is a file name that only an installation provides.
prefix="$out/prefix"
shared_libs=(-L"$prefix/lib" -Wl,-rpath,"$prefix/lib" -lrevledger -lpthread)

passed=0
failed=0
pass() { passed=$((passed + $1)); }
fail() {
  failed=$((failed + $1))
  shift
  echo "FAILED: $*"
}

echo "==> cargo build --release --lib"
cargo build --release --lib
for lib in librevledger.a librevledger.so; do
  [ -f "target/release/$lib" ] || { echo "target/release/$lib was not built" >&2; exit 1; }
done
command -v "$cc" >/dev/null || { echo "no C compiler '$cc' (scripts/install-deps installs one)" >&2; exit 1; }

rm -rf "$out"
mkdir -p "$out/static" "$out/shared" "$out/logs"
scripts/cinstall --no-build --prefix "$prefix" >/dev/null

# ---- compile -------------------------------------------------------------------------
tests=()
for src in tests/c/test_*.c; do
  tests+=("$(basename "$src" .c)")
done
[ ${#tests[@]} -gt 0 ] || { echo "no tests/c/test_*.c found" >&2; exit 1; }

built=()
echo "==> compiling ${#tests[@]} tests and the example ($cc ${cflags[*]})"
for t in "${tests[@]}" minimal; do
  if [ "$t" = minimal ]; then src=examples/c/minimal.c; else src="tests/c/$t.c"; fi
  ok=1
  "$cc" "${cflags[@]}" "$src" -o "$out/static/$t" "${static_libs[@]}" || ok=0
  "$cc" "${cflags[@]}" "$src" -o "$out/shared/$t" "${shared_libs[@]}" || ok=0
  if [ $ok = 1 ]; then built+=("$t"); else fail 1 "$src does not compile"; fi
done

# The shared build really loads the installed librevledger.so.<abi>, through its rpath.
for t in "${built[@]}"; do
  deps=$(LD_LIBRARY_PATH= ldd "$out/shared/$t" || true)
  if [[ "$deps" != *"librevledger.so."*" => $prefix/lib/librevledger.so."* ]]; then
    fail 1 "$out/shared/$t does not load $prefix/lib/librevledger.so.*"
  fi
  deps=$(ldd "$out/static/$t" || true)
  if [[ "$deps" == *librevledger* ]]; then
    fail 1 "$out/static/$t is not statically linked"
  fi
done

# ---- run -----------------------------------------------------------------------------
# run_suite LABEL LOG SECONDS COMMAND...: runs one test executable (killed after SECONDS:
# a hang is a failure, not a stuck CI) and adds up its RESULT line. A non-zero exit with
# no failed case (a crash, a valgrind error, the time limit) counts as one failure.
run_suite() {
  local label=$1 log=$2 limit=$3
  shift 3
  local rc=0
  timeout --kill-after=10 "$limit" "$@" >"$log" 2>&1 || rc=$?
  grep -v '^RESULT ' "$log" | sed "s/^/  [$label] /" || true
  local result p f
  result=$(grep '^RESULT ' "$log" | tail -n 1 || true)
  if [ -z "$result" ]; then
    fail 1 "$label: no result (exit status $rc)"
    return
  fi
  read -r _ p f <<<"$result"
  pass "$p"
  if [ "$f" -gt 0 ]; then
    fail "$f" "$label: $f failed"
  elif [ $rc -ne 0 ]; then
    fail 1 "$label: exit status $rc with every case passing (see $log)"
  fi
}

# test_claims reads provider-shaped tokens signed by PyJWT at test time.
tokens="$out/signed-tokens.txt"
echo "==> signing provider-shaped tokens with PyJWT (tests/claims/sign.py)"
python3 tests/claims/sign.py --format lines >"$tokens" ||
  fail 1 "tests/claims/sign.py (scripts/install-deps installs PyJWT and cryptography)"

args_for() {
  if [ "$1" = test_vectors ]; then echo "$cases"; fi
  if [ "$1" = test_claims ]; then echo "$tokens"; fi
}

for kind in static shared; do
  echo "==> $kind library"
  for t in "${built[@]}"; do
    [ "$t" = minimal ] && continue
    # shellcheck disable=SC2046
    run_suite "$kind $t" "$out/logs/$kind-$t.log" 300 env LD_LIBRARY_PATH= "$out/$kind/$t" $(args_for "$t")
  done
done

if command -v valgrind >/dev/null; then
  echo "==> shared library under valgrind memcheck"
  for t in "${built[@]}"; do
    [ "$t" = minimal ] && continue
    # shellcheck disable=SC2046
    # REVLEDGER_TEST_YIELD: spinning threads yield (valgrind runs one thread at a time).
    run_suite "valgrind $t" "$out/logs/valgrind-$t.log" 1200 \
      env REVLEDGER_TEST_YIELD=1 valgrind --tool=memcheck --leak-check=full --errors-for-leak-kinds=definite,indirect \
      --error-exitcode=1 --log-file="$out/logs/valgrind-$t.%p.txt" \
      "$out/shared/$t" $(args_for "$t")
    if grep -lE 'ERROR SUMMARY: [1-9]' "$out/logs/valgrind-$t".*.txt >/dev/null 2>&1; then
      for f in $(grep -lE 'ERROR SUMMARY: [1-9]' "$out/logs/valgrind-$t".*.txt); do
        echo "---- $f"
        cat "$f"
      done
    fi
  done
  valgrind_ran=1
else
  echo "==> valgrind is not installed: SKIPPING the memcheck run (scripts/install-deps installs it)"
  valgrind_ran=0
fi

# ---- the example -----------------------------------------------------------------------
if [[ " ${built[*]} " == *" minimal "* ]]; then
  echo "==> examples/c/minimal.c"
  expected='john: revoked (role changed at 1700000000)
mike: revoked (role changed at 1700000000)
bruce: valid
john: valid'
  tmp=$(mktemp -d /tmp/revledger-example-XXXXXX)
  trap 'rm -rf "$tmp"' EXIT
  runs=(static shared)
  [ "$valgrind_ran" = 1 ] && runs+=(valgrind)
  for kind in "${runs[@]}"; do
    rm -f "$tmp/acme.ledger"
    if [ "$kind" = valgrind ]; then
      cmd=(valgrind --tool=memcheck --leak-check=full --errors-for-leak-kinds=definite,indirect
        --error-exitcode=1 --log-file="$out/logs/valgrind-minimal.txt" "$out/shared/minimal")
    else
      cmd=(env LD_LIBRARY_PATH= "$out/$kind/minimal")
    fi
    rc=0
    got=$(timeout --kill-after=10 300 "${cmd[@]}" "$tmp/acme.ledger" 2>&1) || rc=$?
    if [ $rc -eq 0 ] && [ "$got" = "$expected" ]; then
      echo "  [$kind minimal] ok   example output as expected"
      pass 1
    else
      echo "  [$kind minimal] FAIL exit status $rc, output:"
      printf '%s\n' "$got" | sed 's/^/    /'
      [ "$kind" = valgrind ] && cat "$out/logs/valgrind-minimal.txt"
      fail 1 "example ($kind)"
    fi
  done
fi

# ---- the README's C block --------------------------------------------------------------
# The first ```c block after "## C" in README.md, with a main that runs it: it must build
# under the same flags and find John's token revoked.
echo "==> README.md C block"
readme_c="$out/readme.c"
awk '/^## C$/ { in_c = 1; next } /^## / { in_c = 0 }
     in_c && /^```c$/ { code = 1; next } code && /^```$/ { exit } code { print }' README.md >"$readme_c"
if [ -s "$readme_c" ]; then
  printf '\nint main(int argc, char **argv) { return argc > 1 && john_is_revoked(argv[1]) == 1 ? 0 : 1; }\n' >>"$readme_c"
  readme_tmp=$(mktemp -d /tmp/revledger-readme-XXXXXX)
  if "$cc" "${cflags[@]}" "$readme_c" -o "$out/static/readme" "${static_libs[@]}" &&
    timeout --kill-after=10 300 "$out/static/readme" "$readme_tmp/acme.ledger"; then
    echo "  [static readme] ok   README.md's C block builds and finds John revoked"
    pass 1
  else
    fail 1 "README.md's C block ($readme_c)"
  fi
  rm -rf "$readme_tmp"
else
  fail 1 "README.md has no C block under '## C'"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
