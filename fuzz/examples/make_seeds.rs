//! Writes the committed seed corpora: real ledgers (whole, torn, damaged, compacted) for
//! `open_file`, and real frames and a header for `decode_frame`.
//! Run: `cargo run --manifest-path fuzz/Cargo.toml --example make_seeds` (from the root).

use revledger::header::{HEADER_LEN, OFF_COMMITTED_LEN};
use revledger::record::{encode_config, encode_position, encode_rule};
use revledger::{Ledger, Rule, Scope, StreamId, StreamPosition, WriterOptions};
use std::path::Path;

fn rules() -> Vec<Rule<'static>> {
    vec![
        Rule::new(Scope::Global, b"", b"", 100),
        Rule::new(Scope::Tenant, b"acme", b"", 200),
        Rule::new(Scope::Subject, b"acme", b"john", 300),
        Rule::new(Scope::Role, b"acme", b"super_admin", 400),
        Rule::new(Scope::Client, b"acme", b"spa", 500),
        Rule::new(Scope::Session, b"acme", b"sid-1", 600),
        Rule::new(Scope::Token, b"acme", b"jti-1", 700),
        Rule::new(Scope::Subject, b"", b"\x00\xff", 800),
        Rule::new(Scope::Subject, b"acme", b"john", 250),
    ]
}

/// The file trimmed to the end of its committed log (the rest is preallocated zeros).
fn committed_bytes(path: &Path) -> Vec<u8> {
    let mut b = std::fs::read(path).unwrap();
    let end = u64::from_le_bytes(
        b[OFF_COMMITTED_LEN..OFF_COMMITTED_LEN + 8]
            .try_into()
            .unwrap(),
    );
    b.truncate(end as usize);
    b
}

fn put(dir: &Path, name: &str, mode: u8, bytes: &[u8]) {
    std::fs::create_dir_all(dir).unwrap();
    let mut v = vec![mode];
    v.extend_from_slice(bytes);
    std::fs::write(dir.join(name), v).unwrap();
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let open = root.join("open_file");
    let frames = root.join("decode_frame");

    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("l");
    {
        let w = Ledger::open_writer(&path, &WriterOptions::with_lifetime(3600)).unwrap();
        w.revoke_batch(&rules()).unwrap();
        drop(w);
        let w = Ledger::open_writer(&path, &WriterOptions::with_lifetime(7200)).unwrap();
        let position = StreamPosition::new(
            &b"revocations"[..],
            StreamId::new(1_700_000_000_000, 3),
            1_700_000_001,
        );
        w.revoke_batch_at_position(&[Rule::new(Scope::Client, b"acme", b"cli", 900)], &position)
            .unwrap();
        w.sync().unwrap();
    }
    let whole = committed_bytes(&path);
    put(&open, "whole", 0, &whole);
    put(&open, "whole-fix-crcs", 2, &whole);
    put(&open, "whole-keep-prefix", 8, &whole);
    put(&open, "header-only", 0, &whole[..HEADER_LEN]);
    let mut torn = whole.clone();
    torn.truncate(whole.len() - 13);
    put(&open, "torn-tail", 0, &torn);
    let mut flipped = whole.clone();
    flipped[HEADER_LEN + 40] ^= 0x20;
    put(&open, "flipped-middle", 0, &flipped);
    put(&open, "flipped-middle-keep-prefix", 8, &flipped);
    {
        let w = Ledger::open_writer(&path, &WriterOptions::default()).unwrap();
        w.compact(8_000).unwrap();
    }
    let compacted = committed_bytes(&path);
    put(&open, "compacted", 0, &compacted);
    put(&open, "compacted-fix-snapshot", 16 | 2, &compacted);
    {
        let w = Ledger::open_writer(&path, &WriterOptions::default()).unwrap();
        w.revoke(&Rule::new(Scope::Role, b"acme", b"auditor", 9_000))
            .unwrap();
        w.revoke(&Rule::new(Scope::Subject, b"acme", b"john", 9_500))
            .unwrap();
    }
    put(&open, "compacted-then-appended", 0, &committed_bytes(&path));
    put(&open, "not-a-ledger", 0, b"hello, this is not a ledger");

    for (i, r) in rules().iter().enumerate() {
        let mut v = Vec::new();
        encode_rule(&mut v, r);
        put(&frames, &format!("rule-{i}"), 0, &v);
    }
    let mut v = Vec::new();
    encode_config(&mut v, 7200);
    put(&frames, "config", 0, &v);
    let mut v = Vec::new();
    encode_position(
        &mut v,
        &StreamPosition::new(&b"revocations"[..], StreamId::new(5, 7), 9),
    );
    put(&frames, "position", 0, &v);
    put(&frames, "zeros", 0, &[0; 16]);
    put(&frames, "header", 0, &whole[..HEADER_LEN]);
    println!("seeds written under {}", root.display());
}
