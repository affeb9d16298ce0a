#!/usr/bin/env bash
# The C install (scripts/cinstall), as a user meets it, from any directory:
#   bash tests/install.sh
# Installs the release library into a temporary prefix and checks the layout (versioned
# shared library, soname, symlinks, static library, header, revledger.pc), that the
# shared library exports exactly the functions of the header, that the versions of the
# crate, header, .pc and library agree; builds and runs examples/c/minimal.c with
# `cc $(pkg-config --cflags --libs revledger)` (shared) and, from a staticlib-only prefix
# (`--library-type staticlib`, as with cargo cinstall), with
# `pkg-config --static --cflags --libs revledger`; then runs the Go package's tests
# against the prefix (`go test -tags revledger_pkgconfig`); installs the command line with
# `cargo install --locked --path cli` and runs it. Ends with "N passed, M failed".
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
cc="${CC:-cc}"
cflags=(-std=c11 -Wall -Wextra -Wpedantic -Werror)
for tool in "$cc" pkg-config nm readelf; do
  command -v "$tool" >/dev/null || { echo "$tool is missing (scripts/install-deps installs it)" >&2; exit 1; }
done

passed=0
failed=0
ok() { echo "  ok   $*"; passed=$((passed + 1)); }
bad() { echo "  FAIL $*"; failed=$((failed + 1)); }
check() { # check DESCRIPTION COMMAND...: one case, passing when COMMAND succeeds
  local what=$1
  shift
  if "$@"; then ok "$what"; else bad "$what"; fi
}

tmp=$(mktemp -d /tmp/revledger-install-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
prefix="$tmp/prefix"
static_prefix="$tmp/static-prefix"

echo "==> scripts/cinstall --prefix $prefix"
scripts/cinstall --prefix "$prefix"
scripts/cinstall --no-build --prefix "$static_prefix" --library-type staticlib >/dev/null

version=$(sed -n 's/^#define REVLEDGER_VERSION_STRING "\(.*\)"$/\1/p' include/revledger.h)
[[ "$version" =~ ^([0-9]+)\.([0-9]+)\.[0-9]+$ ]] || { echo "no REVLEDGER_VERSION_STRING in include/revledger.h" >&2; exit 1; }
if [ "${BASH_REMATCH[1]}" = 0 ]; then abi="0.${BASH_REMATCH[2]}"; else abi=${BASH_REMATCH[1]}; fi
lib="$prefix/lib"

echo "==> layout"
check "lib/librevledger.so.$version is a regular file" test -f "$lib/librevledger.so.$version" -a ! -L "$lib/librevledger.so.$version"
check "lib/librevledger.so.$abi -> librevledger.so.$version" test "$(readlink "$lib/librevledger.so.$abi")" = "librevledger.so.$version"
check "lib/librevledger.so -> librevledger.so.$version" test "$(readlink "$lib/librevledger.so")" = "librevledger.so.$version"
soname=$(readelf -d "$lib/librevledger.so.$version" | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')
check "soname is librevledger.so.$abi (got '$soname')" test "$soname" = "librevledger.so.$abi"
check "lib/librevledger.a" test -f "$lib/librevledger.a"
check "include/revledger/revledger.h is the repository's header" cmp -s include/revledger.h "$prefix/include/revledger/revledger.h"
check "staticlib-only prefix has no shared library" test ! -e "$static_prefix/lib/librevledger.so"

echo "==> exported symbols"
header_fns=$(sed 's|/\*.*\*/||' include/revledger.h | grep -oE '\brevledger_[a-z_]+ *\(' | tr -d ' (' | sort -u)
exported=$(nm -D --defined-only "$lib/librevledger.so.$version" | awk '{print $3}' | sed 's/@.*//' | sort -u)
stray=$(comm -13 <(echo "$header_fns") <(echo "$exported"))
missing=$(comm -23 <(echo "$header_fns") <(echo "$exported"))
check "the shared library exports only revledger_* functions (extra: ${stray:-none})" test -z "$stray"
check "every function of the header is exported (missing: ${missing:-none})" test -z "$missing"
check "the header declares at least 15 functions" test "$(echo "$header_fns" | wc -l)" -ge 15

echo "==> pkg-config"
# PKG_CONFIG_PATH is set per command, never exported: cargo build scripts watch it (a
# changed value rebuilds aws-lc-sys for the `cargo install` below).
pkg-config() { PKG_CONFIG_PATH="$pcdir" command pkg-config "$@"; }
pcdir="$lib/pkgconfig"
check "pkg-config --modversion revledger = $version" test "$(pkg-config --modversion revledger)" = "$version"
words() { echo $("$@"); } # pkg-config's output without its trailing space
check "Cflags: -I<prefix>/include/revledger" test "$(words pkg-config --cflags revledger)" = "-I$prefix/include/revledger"
check "Libs: -L<prefix>/lib -lrevledger" test "$(words pkg-config --libs revledger)" = "-L$lib -lrevledger"
private=$(pkg-config --static --libs revledger)
check "Libs.private names -lpthread -ldl -lm ($private)" bash -c '[[ " $1 " == *" -lpthread "* && " $1 " == *" -ldl "* && " $1 " == *" -lm "* ]]' _ "$private"

# A program that prints what it was compiled against and what it loaded.
cat >"$tmp/version.c" <<'EOF'
#include <revledger.h>
#include <stdio.h>
#include <string.h>
int main(void) {
  char header[64];
  snprintf(header, sizeof header, "%d.%d.%d", REVLEDGER_VERSION_MAJOR, REVLEDGER_VERSION_MINOR,
           REVLEDGER_VERSION_PATCH);
  printf("%s %s %s\n", header, REVLEDGER_VERSION_STRING, revledger_version());
  return strcmp(header, revledger_version()) != 0;
}
EOF
expected='john: revoked (role changed at 1700000000)
mike: revoked (role changed at 1700000000)
bruce: valid
john: valid'

echo "==> cc \$(pkg-config --cflags --libs revledger): the shared library"
# shellcheck disable=SC2046
if "$cc" "${cflags[@]}" examples/c/minimal.c -o "$tmp/minimal-shared" $(pkg-config --cflags --libs revledger) &&
  "$cc" "${cflags[@]}" "$tmp/version.c" -o "$tmp/version-shared" $(pkg-config --cflags --libs revledger); then
  ok "examples/c/minimal.c and version.c build"
  deps=$(LD_LIBRARY_PATH="$lib" ldd "$tmp/minimal-shared")
  check "the program loads librevledger.so.$abi from the prefix" \
    bash -c '[[ "$1" == *"librevledger.so.$2 => $3/librevledger.so.$2 "* ]]' _ "$deps" "$abi" "$lib"
  got=$(LD_LIBRARY_PATH="$lib" "$tmp/minimal-shared" "$tmp/shared.ledger" 2>&1) || true
  check "minimal (shared) prints the §1 verdicts" test "$got" = "$expected"
  got=$(LD_LIBRARY_PATH="$lib" "$tmp/version-shared" 2>&1) || true
  check "header macros, REVLEDGER_VERSION_STRING and revledger_version() agree ($got)" test "$got" = "$version $version $version"
else
  bad "programs do not build against the installed shared library"
fi

echo "==> cc \$(pkg-config --static --cflags --libs revledger): the static library"
pcdir="$static_prefix/lib/pkgconfig"
# shellcheck disable=SC2046
if "$cc" "${cflags[@]}" examples/c/minimal.c -o "$tmp/minimal-static" $(pkg-config --static --cflags --libs revledger); then
  ok "examples/c/minimal.c builds with Libs.private"
  check "the program does not load librevledger at run time" bash -c '! ldd "$1" | grep -q librevledger' _ "$tmp/minimal-static"
  got=$(env -u LD_LIBRARY_PATH "$tmp/minimal-static" "$tmp/static.ledger" 2>&1) || true
  check "minimal (static) prints the §1 verdicts" test "$got" = "$expected"
else
  bad "examples/c/minimal.c does not build against the installed static library"
fi

echo "==> Go against the prefix: go test -tags revledger_pkgconfig"
if command -v go >/dev/null; then
  pcdir="$lib/pkgconfig"
  # Go's build cache does not notice a changed .pc or installed header: a define naming
  # this installation makes the package compile (and run pkg-config) afresh.
  stamp=$(cat "$lib/pkgconfig/revledger.pc" "$prefix/include/revledger/revledger.h" | cksum | cut -d' ' -f1)
  if (cd bindings/go && CGO_CFLAGS="${CGO_CFLAGS:--O2 -g} -DREVLEDGER_INSTALL_STAMP=$stamp" \
    PKG_CONFIG_PATH="$pcdir" LD_LIBRARY_PATH="$lib" go test -count=1 -tags revledger_pkgconfig ./...); then
    ok "the Go package's tests pass against the installed shared library"
  else
    bad "go test -tags revledger_pkgconfig"
  fi
  if (cd bindings/go && PKG_CONFIG_PATH="$pcdir" go list -tags revledger_pkgconfig -f '{{join .CgoPkgConfig " "}}' . | grep -qx revledger); then
    ok "with the tag, cgo takes its flags from pkg-config (revledger)"
  else
    bad "the revledger_pkgconfig build does not use '#cgo pkg-config: revledger'"
  fi
else
  bad "go is not installed (scripts/install-deps installs it)"
fi

echo "==> the command line: cargo install --locked --path cli"
# CARGO_TARGET_DIR: reuse the release build instead of a fresh one in a temporary directory.
if CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}" cargo install --quiet --locked --path cli --root "$tmp/cli"; then
  got=$("$tmp/cli/bin/revledger" --version 2>&1) || true
  check "the installed revledger says its version ($got)" test "$got" = "revledger $version"
  "$tmp/cli/bin/revledger" create "$tmp/cli.ledger" --max-token-lifetime 3600 >/dev/null &&
    "$tmp/cli/bin/revledger" revoke "$tmp/cli.ledger" role --tenant acme super_admin --at 2000 >/dev/null
  rc=0
  "$tmp/cli/bin/revledger" check "$tmp/cli.ledger" --tenant acme --sub john --role super_admin --iat 1999 >/dev/null || rc=$?
  check "the installed revledger revokes and checks (exit $rc: revoked)" test "$rc" = 1
else
  bad "cargo install --locked --path cli"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
