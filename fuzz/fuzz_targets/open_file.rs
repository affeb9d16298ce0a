//! A ledger file and its index file made from arbitrary bytes (with fix-ups the first
//! byte picks: valid header and frame CRCs, a trusted index, a real index mutated, a
//! format version 1 file), opened by readers and writers, checked, appended to and
//! compacted. The body and its oracles are in `fuzz/src/open_file.rs`, which
//! tests/faults.rs also runs on every input of tests/fuzz-regressions.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let dir = revledger_fuzz::scratch_dir();
    revledger_fuzz::open_file::run(input, dir.path());
});
