#!/usr/bin/env python3
"""Where the time of a check goes: instructions per check, by function, counted by
valgrind's callgrind (hardware counters are not available on this VM).

Runs examples/profile_check (a ledger of N live rules, then a loop of checks of valid
tokens with 3 roles whose `iat` is before every scope's newest cutoff, so every key is
probed; and the same for "fresh" tokens issued after every cutoff) twice under
callgrind, with two different numbers of checks, and divides the difference of each
function's instruction count by the difference of checks: what opening the ledger and
building the workload costs cancels out. Writes JSON for benches/report.py.

Usage: python3 benches/profile.py --exe target/release/examples/profile_check \
           --out target/revledger-bench/profile.json [--rules 10000]
"""

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

LINE = re.compile(r"^\s*([\d,]+)\s+(?:\(\s*[\d.]+%\)\s+)?(.+?)\s*$")


def run(exe, rules, checks, variant, work):
    out = Path(work) / f"callgrind.{variant}.{checks}"
    args = [str(rules), str(checks), "3"] + (["fresh"] if variant == "fresh" else [])
    subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", exe, *args],
                   check=True, capture_output=True)
    text = subprocess.run(["callgrind_annotate", "--inclusive=no", "--auto=no", "--threshold=100",
                           str(out)], check=True, capture_output=True, text=True).stdout
    total, funcs = None, {}
    # Only the totals line and the table of functions ("file:function [object]"), which
    # ends at the next rule or blank line; not the source annotations or call counts.
    section = None
    for line in text.splitlines():
        if "file:function" in line:
            section = "functions"
            continue
        if section == "functions" and (not line.strip() or line.startswith("---")):
            if funcs:
                section = "done"
            continue
        if section == "done" or ("PROGRAM TOTALS" not in line and section != "functions"):
            continue
        m = LINE.match(line)
        if not m:
            continue
        count = int(m.group(1).replace(",", ""))
        rest = m.group(2)
        if "PROGRAM TOTALS" in rest:
            total = count
            continue
        rest = re.sub(r"\s+\[[^\]]*\]$", "", rest)  # the object file
        fm = re.match(r"^(.*?[^:]):(?!:)(.*)$", rest)
        name = fm.group(2) if fm else rest
        name = re.sub(r"::h[0-9a-f]{16}$", "", name)
        if fm:
            # Code inlined into a function is counted under the file it came from: keep
            # the file's name (and the crate's, for dependencies), the breakdown's detail.
            path = fm.group(1)
            crate = re.search(r"/registry/src/[^/]+/([^/]+)/", path)
            where = (crate.group(1) + "/" if crate else
                     "std/" if path.startswith("/rustc/") else "") + Path(path).name
            name = f"{name} [{where}]"
        funcs[name] = funcs.get(name, 0) + count
    if total is None:
        sys.exit(f"no PROGRAM TOTALS in callgrind_annotate's output for {out}")
    return total, funcs


def profile(exe, rules, variant, low, high, work):
    t_lo, f_lo = run(exe, rules, low, variant, work)
    t_hi, f_hi = run(exe, rules, high, variant, work)
    n = high - low
    rows = []
    for name in set(f_lo) | set(f_hi):
        per = (f_hi.get(name, 0) - f_lo.get(name, 0)) / n
        if per >= 0.05:
            rows.append({"function": name, "ir_per_check": per})
    rows.sort(key=lambda r: -r["ir_per_check"])
    return {"variant": variant, "rules": rules, "checks": [low, high],
            "ir_per_check": (t_hi - t_lo) / n, "functions": rows}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--exe", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--rules", type=int, default=10_000)
    ap.add_argument("--low", type=int, default=20_000)
    ap.add_argument("--high", type=int, default=120_000)
    args = ap.parse_args()
    version = subprocess.run(["valgrind", "--version"], capture_output=True, text=True).stdout.strip()
    with tempfile.TemporaryDirectory() as work:
        result = {"tool": version, "exe": args.exe,
                  "profiles": [profile(args.exe, args.rules, v, args.low, args.high, work)
                               for v in ("valid", "fresh")]}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    for p in result["profiles"]:
        print(f"{p['variant']}: {p['ir_per_check']:.0f} instructions per check")


if __name__ == "__main__":
    main()
