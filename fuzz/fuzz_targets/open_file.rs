//! A ledger opened from arbitrary file bytes, by a reader and by a writer, then used.
//!
//! The first input byte picks fix-ups (valid static header, valid frame CRCs, valid
//! snapshot checksums, a committed length covering the file, `keep_valid_prefix`) so that the fuzzer reaches
//! recovery, the index and checks instead of stopping at checksums. Oracles: no panic
//! and no out-of-bounds read on any content; every answer equals the reference model
//! built from the records the same handle reports; a reader's records are a prefix of
//! the writer's; a rule revoked after recovery is seen by both; compaction that drops
//! nothing changes no answer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use revledger::header::{HEADER_LEN, OFF_COMMITTED_LEN};
use revledger::record::Record;
use revledger::{Ledger, Rule, Scope, Token, Verdict, WriterOptions};
use revledger_fuzz::{
    fix_frame_crcs, fix_header, fix_snapshot_crcs, log_start, token_for, Model, OwnedRule,
};

const FIX_HEADER: u8 = 1;
const FIX_CRCS: u8 = 2;
const COMMIT_ALL: u8 = 4;
const KEEP_PREFIX: u8 = 8;
const FIX_SNAPSHOT: u8 = 16;
/// Checks per handle, to bound the time one input takes.
const MAX_RULES_CHECKED: usize = 48;

fn records(l: &Ledger) -> revledger::Result<Vec<OwnedRule>> {
    let mut out = Vec::new();
    l.for_each_record(|_, r| {
        if let Record::Rule(r) = r {
            out.push(OwnedRule::of(&r));
        }
    })?;
    Ok(out)
}

/// Every answer of `l` about the keys of `rules` (and a stranger) matches the model.
/// An error is allowed (a reader that found damage fails closed), a wrong verdict is not.
///
/// Not `strict` when the fuzzer rewrote a snapshot and its checksums were recomputed:
/// a snapshot's derived fields (newest cutoff per scope, probe limits, overflow bits)
/// can then contradict its entries, as a forged file may; only safety is checked.
fn agree(l: &Ledger, rules: &[OwnedRule], model: &Model, strict: bool) {
    for r in rules.iter().take(MAX_RULES_CHECKED) {
        let roles: [&[u8]; 2] = [&r.key, b"stranger-role"];
        for iat in [r.at.saturating_sub(1), r.at, i64::MIN, i64::MAX] {
            let t = token_for(r, &roles, iat);
            if let Ok(v) = l.check(&t) {
                if strict {
                    assert_eq!(v, model.check(&t), "rule {r:?}, iat {iat}");
                }
            }
        }
    }
    let stranger = Token {
        tenant: b"no such tenant",
        subject: b"nobody",
        issued_at: i64::MAX,
        ..Token::default()
    };
    if let Ok(v) = l.check(&stranger) {
        if strict {
            assert_eq!(v, model.check(&stranger));
        }
    }
}

fn model_of(rules: &[OwnedRule]) -> Model {
    let mut m = Model::default();
    for r in rules {
        m.apply(&r.rule());
    }
    m
}

fuzz_target!(|input: &[u8]| {
    let Some((&mode, bytes)) = input.split_first() else {
        return;
    };
    let mut file = bytes.to_vec();
    let strict = mode & FIX_SNAPSHOT == 0;
    if mode & (FIX_HEADER | FIX_CRCS | COMMIT_ALL | FIX_SNAPSHOT) != 0 && file.len() < HEADER_LEN {
        file.resize(HEADER_LEN, 0);
    }
    if mode & FIX_CRCS != 0 {
        let start = log_start(&file);
        fix_frame_crcs(&mut file, start);
    }
    if mode & FIX_SNAPSHOT != 0 {
        fix_snapshot_crcs(&mut file);
    }
    if mode & COMMIT_ALL != 0 {
        let end = file.len() as u64;
        file[OFF_COMMITTED_LEN..OFF_COMMITTED_LEN + 8].copy_from_slice(&end.to_le_bytes());
    }
    if mode & FIX_HEADER != 0 {
        fix_header(&mut file);
    }

    let dir = revledger_fuzz::scratch_dir();
    let path = dir.path().join("l");
    std::fs::write(&path, &file).expect("write the input file");

    // A reader on the bytes as they are.
    let reader = Ledger::open_reader(&path).ok();
    let mut read_rules = None;
    if let Some(r) = &reader {
        let _ = r.stats(0);
        if let Ok(rules) = records(r) {
            agree(r, &rules, &model_of(&rules), strict);
            read_rules = Some(rules);
        }
    }

    // A writer: recovery, then appends, compaction and a reopening.
    let options = WriterOptions {
        keep_valid_prefix: mode & KEEP_PREFIX != 0,
        ..WriterOptions::default()
    };
    let Ok(writer) = Ledger::open_writer(&path, &options) else {
        return;
    };
    let rules = match records(&writer) {
        Ok(rules) => rules,
        // The snapshot section is checked lazily (block by block, entry by entry): a
        // hostile one with valid checksums opens and fails closed when it is read.
        Err(revledger::Error::Corrupt { .. }) => {
            let _ = writer.revoke(&Rule::new(Scope::Subject, b"t", b"k", 1));
            let _ = writer.check(&Token::default());
            let _ = writer.compact(i64::MIN);
            return;
        }
        Err(e) => panic!("a writer that opened cannot list its records: {e}"),
    };
    if let Some(read) = &read_rules {
        if !options.keep_valid_prefix {
            assert!(
                rules.len() >= read.len() && rules[..read.len()] == read[..],
                "the reader's records are not a prefix of the writer's"
            );
        }
    }
    let mut model = model_of(&rules);
    agree(&writer, &rules, &model, strict);

    let fresh = OwnedRule {
        scope: Scope::Subject,
        tenant: b"fuzz-tenant".to_vec(),
        key: b"fuzz-subject".to_vec(),
        at: 1_000,
    };
    if writer.revoke(&fresh.rule()).is_ok() {
        model.apply(&fresh.rule());
        let t = token_for(&fresh, &[], 999);
        let v = writer.check(&t);
        if strict {
            assert_eq!(v.expect("writer check"), model.check(&t));
        }
        if let Some(r) = &reader {
            if let Ok(v) = r.check(&t) {
                assert!(!strict || v.is_revoked(), "reader missed a commit: {v:?}");
            }
        }
    }
    let _ = writer.sync();

    // Compaction at the dawn of time drops nothing and changes no answer.
    let mut all = rules;
    all.push(fresh);
    if writer.compact(i64::MIN).is_ok() {
        agree(&writer, &all, &model, strict);
        if let Some(r) = &reader {
            agree(r, &all, &model, strict);
        }
    }
    let _ = writer.revoke(&Rule::new(Scope::Global, b"", b"", 5));
    model.apply(&Rule::new(Scope::Global, b"", b"", 5));
    drop(writer);
    if let Ok(again) = Ledger::open_reader(&path) {
        let t = Token {
            issued_at: 4,
            ..Token::default()
        };
        if let Ok(v) = again.check(&t) {
            if strict {
                assert_eq!(v, model.check(&t));
                assert_ne!(v, Verdict::Valid);
            }
        }
        agree(&again, &all, &model, strict);
    }
});
