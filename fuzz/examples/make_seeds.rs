//! Writes the committed seed corpora: real ledgers (whole, torn, damaged, compacted, with
//! their index files, and a format version 1 file) for `open_file`, and real frames and
//! a header for `decode_frame`; and the hand-made inputs of tests/fuzz-regressions that
//! carry version 1 regressions over to version 2.
//! Run: `cargo run --manifest-path fuzz/Cargo.toml --example make_seeds` (from the root).

use revledger::header::{HEADER_LEN, OFF_COMMITTED_LEN, OFF_RETIRED};
use revledger::record::{encode_config, encode_position, encode_rule};
use revledger::{Ledger, Rule, Scope, StreamId, StreamPosition, WriterOptions};
use revledger_fuzz::open_file::{
    Input, FIX_CRCS, FIX_HEADER, FIX_INDEX, KEEP_PREFIX, REAL_INDEX, V1,
};
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

/// An `open_file` input (fuzz/src/open_file.rs): mode, ledger bytes, index bytes.
fn put_open(dir: &Path, name: &str, mode: u8, ledger: &[u8], index: &[u8]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(name), Input::encode(mode, ledger, index)).unwrap();
}

fn index_of(path: &Path) -> Vec<u8> {
    let generation = u64::from_le_bytes(std::fs::read(path).unwrap()[64..72].try_into().unwrap());
    let name = format!(".l.g{generation}.index");
    std::fs::read(path.with_file_name(name)).unwrap()
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let open = root.join("open_file");
    let frames = root.join("decode_frame");
    let regressions = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fuzz-regressions");
    let _ = std::fs::remove_dir_all(&open);

    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("l");
    let small = WriterOptions {
        index_keys: 16,
        ..WriterOptions::default()
    };
    {
        let w = Ledger::open_writer(&path, &WriterOptions::with_lifetime(3600)).unwrap();
        w.revoke_batch(&rules()).unwrap();
        drop(w);
        let w = Ledger::open_writer(
            &path,
            &WriterOptions {
                max_token_lifetime: 7200,
                ..small.clone()
            },
        )
        .unwrap();
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
    let index = index_of(&path);
    put_open(&open, "whole", 0, &whole, &[]);
    put_open(&open, "whole-fix-crcs", FIX_CRCS, &whole, &[]);
    put_open(&open, "whole-keep-prefix", KEEP_PREFIX, &whole, &[]);
    // Its own index, made trusted: slots that point at real records.
    put_open(&open, "whole-index-trusted", FIX_INDEX, &whole, &index);
    // The real index rebuilt by a writer, unchanged (a zero mask) or with a slot and a
    // counter flipped, then trusted.
    put_open(
        &open,
        "real-index-trusted",
        REAL_INDEX | FIX_INDEX,
        &whole,
        &[],
    );
    let mut mask = vec![0u8; 4096 + 64 + 8];
    mask[4096 + 64] = 0x40; // the first slot's offset
    mask[256 + 16] = 1; // keys[Subject]
    put_open(
        &open,
        "real-index-flipped",
        REAL_INDEX | FIX_INDEX,
        &whole,
        &mask,
    );
    put_open(&open, "real-index-untrusted", REAL_INDEX, &whole, &mask);
    put_open(&open, "header-only", 0, &whole[..HEADER_LEN], &[]);
    let mut torn = whole.clone();
    torn.truncate(whole.len() - 13);
    put_open(&open, "torn-tail", 0, &torn, &[]);
    let mut flipped = whole.clone();
    flipped[HEADER_LEN + 40] ^= 0x20;
    put_open(&open, "flipped-middle", 0, &flipped, &[]);
    put_open(
        &open,
        "flipped-middle-keep-prefix",
        KEEP_PREFIX,
        &flipped,
        &[],
    );
    let mut retired = whole.clone();
    retired[OFF_RETIRED] = 1;
    put_open(&open, "retired-at-path", 0, &retired, &[]);
    put_open(
        &regressions,
        "open_file-v2-retired-mark-at-path",
        0,
        &retired,
        &[],
    );
    let mut last_generation = whole.clone();
    last_generation[64..72].copy_from_slice(&u64::MAX.to_le_bytes());
    put_open(&open, "last-generation", FIX_HEADER, &last_generation, &[]);
    put_open(
        &regressions,
        "open_file-v2-generation-overflow-on-compaction",
        FIX_HEADER,
        &last_generation,
        &[],
    );
    {
        let w = Ledger::open_writer(&path, &small).unwrap();
        w.compact(8_000).unwrap();
    }
    let compacted = committed_bytes(&path);
    put_open(&open, "compacted", 0, &compacted, &[]);
    put_open(
        &open,
        "compacted-index-trusted",
        FIX_INDEX,
        &compacted,
        &index_of(&path),
    );
    {
        let w = Ledger::open_writer(&path, &small).unwrap();
        w.revoke(&Rule::new(Scope::Role, b"acme", b"auditor", 9_000))
            .unwrap();
        w.revoke(&Rule::new(Scope::Subject, b"acme", b"john", 9_500))
            .unwrap();
    }
    put_open(
        &open,
        "compacted-then-appended",
        0,
        &committed_bytes(&path),
        &[],
    );
    put_open(
        &open,
        "not-a-ledger",
        0,
        b"hello, this is not a ledger",
        &[],
    );
    // Format version 1 (the writer upgrades it), as is and with its snapshot's checksums
    // fixed after mutation.
    let v1 = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/format-v1.ledger"),
    )
    .unwrap();
    put_open(&open, "v1", V1, &v1, &[]);
    put_open(
        &open,
        "v1-fix-snapshot",
        V1 | FIX_INDEX | FIX_CRCS,
        &v1,
        &[],
    );

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
