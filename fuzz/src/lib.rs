//! Helpers shared by the fuzz targets: a scratch directory on tmpfs, fix-ups that let the
//! fuzzer get past checksums, and the plain reference model of DESIGN.md §2 that the
//! targets compare revledger's answers with.

use revledger::header::{FORMAT_VERSION, HEADER_LEN, MAGIC, STATIC_CRC_LEN};
use revledger::record::{FRAME_ALIGN, FRAME_HEADER_LEN, MAX_PAYLOAD_LEN, PAYLOAD_HEADER_LEN};
use revledger::{Rule, Scope, Token, Verdict};
use std::collections::HashMap;
use std::path::Path;

/// A scratch directory, on tmpfs when there is one (fsync is free there).
pub fn scratch_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(d) = tempfile::Builder::new()
            .prefix("revledger-fuzz")
            .tempdir_in(shm)
        {
            return d;
        }
    }
    tempfile::tempdir().expect("a temporary directory")
}

/// Makes the static half of the header valid (magic, version, length, flags, CRC),
/// keeping every other byte the fuzzer chose. `file` must be at least `HEADER_LEN` long.
pub fn fix_header(file: &mut [u8]) {
    file[0..8].copy_from_slice(&MAGIC);
    file[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    file[12..16].copy_from_slice(&(HEADER_LEN as u32).to_le_bytes());
    file[16..20].copy_from_slice(&0u32.to_le_bytes());
    let crc = crc32fast::hash(&file[..STATIC_CRC_LEN]);
    file[STATIC_CRC_LEN..STATIC_CRC_LEN + 4].copy_from_slice(&crc.to_le_bytes());
}

/// Rewrites the CRC of every frame whose length field is in range, walking the log as a
/// reader would (and skipping 8 bytes where no frame fits), so that the fuzzer reaches
/// payload decoding and the index instead of stopping at checksums.
pub fn fix_frame_crcs(file: &mut [u8], from: usize) {
    let mut at = from;
    while at + FRAME_HEADER_LEN <= file.len() {
        let len = u32::from_le_bytes(file[at..at + 4].try_into().unwrap()) as usize;
        let total = (FRAME_HEADER_LEN + len).next_multiple_of(FRAME_ALIGN);
        if (PAYLOAD_HEADER_LEN..=MAX_PAYLOAD_LEN).contains(&len) && at + total <= file.len() {
            let mut h = crc32fast::Hasher::new();
            h.update(&file[at..at + 4]);
            h.update(&file[at + FRAME_HEADER_LEN..at + FRAME_HEADER_LEN + len]);
            file[at + 4..at + 8].copy_from_slice(&h.finalize().to_le_bytes());
            at += total;
        } else {
            at += FRAME_ALIGN;
        }
    }
}

/// Recomputes the checksums of the snapshot section (docs/FORMAT.md §4) that the static
/// header points to, when its own bounds are consistent: the block CRCs, the CRC of
/// CRCs, the snapshot header's CRC, then block 0's (which covers that header). Lets the
/// fuzzer reach the snapshot's bounds checks and lookups with hostile tables and offsets.
pub fn fix_snapshot_crcs(file: &mut [u8]) {
    const BLOCK: usize = 4096;
    const H_BLOCKS: usize = 8;
    const H_CRCS_OFF: usize = 40;
    const H_CRCS_CRC: usize = 48;
    const H_CRC: usize = 508;
    let le = |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap());
    if file.len() < HEADER_LEN {
        return;
    }
    let (off, len) = (le(file, 72) as usize, le(file, 80) as usize);
    let Some(s) = off.checked_add(len).and_then(|end| file.get_mut(off..end)) else {
        return;
    };
    if s.len() < 512 {
        return;
    }
    let n_blocks = u32::from_le_bytes(s[H_BLOCKS..H_BLOCKS + 4].try_into().unwrap()) as usize;
    let crcs_off = le(s, H_CRCS_OFF) as usize;
    if crcs_off < 512
        || !crcs_off.is_multiple_of(4)
        || n_blocks != crcs_off.div_ceil(BLOCK)
        || crcs_off.checked_add(n_blocks * 4) != Some(s.len())
    {
        return;
    }
    let mut crcs = vec![0u32; n_blocks];
    for (i, c) in crcs.iter_mut().enumerate().skip(1) {
        *c = crc32fast::hash(&s[i * BLOCK..((i + 1) * BLOCK).min(crcs_off)]);
    }
    let mut h = crc32fast::Hasher::new();
    for c in &crcs[1..] {
        h.update(&c.to_le_bytes());
    }
    s[H_CRCS_CRC..H_CRCS_CRC + 4].copy_from_slice(&h.finalize().to_le_bytes());
    let hcrc = crc32fast::hash(&s[..H_CRC]);
    s[H_CRC..H_CRC + 4].copy_from_slice(&hcrc.to_le_bytes());
    crcs[0] = crc32fast::hash(&s[..BLOCK.min(crcs_off)]);
    for (i, c) in crcs.iter().enumerate() {
        s[crcs_off + i * 4..crcs_off + i * 4 + 4].copy_from_slice(&c.to_le_bytes());
    }
}

/// Where the log starts according to the (possibly hostile) header, if in the file.
pub fn log_start(file: &[u8]) -> usize {
    if file.len() < HEADER_LEN {
        return HEADER_LEN;
    }
    let v = u64::from_le_bytes(file[88..96].try_into().unwrap());
    if v >= HEADER_LEN as u64 && v <= file.len() as u64 {
        v as usize
    } else {
        HEADER_LEN
    }
}

/// Owned copy of a rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedRule {
    pub scope: Scope,
    pub tenant: Vec<u8>,
    pub key: Vec<u8>,
    pub at: i64,
}

impl OwnedRule {
    pub fn of(r: &Rule) -> OwnedRule {
        OwnedRule {
            scope: r.scope,
            tenant: r.tenant.to_vec(),
            key: r.key.to_vec(),
            at: r.at,
        }
    }

    pub fn rule(&self) -> Rule<'_> {
        Rule::new(self.scope, &self.tenant, &self.key, self.at)
    }
}

/// The reference model: the maximum cutoff per (scope, tenant, key), answered the way
/// DESIGN.md §2 words it, with none of revledger's shortcuts.
#[derive(Default, Clone, Debug)]
pub struct Model {
    pub keys: HashMap<(Scope, Vec<u8>, Vec<u8>), i64>,
}

const RANK: [Scope; 6] = [
    Scope::Subject,
    Scope::Session,
    Scope::Client,
    Scope::Role,
    Scope::Tenant,
    Scope::Global,
];

impl Model {
    pub fn apply(&mut self, r: &Rule) {
        let e = self
            .keys
            .entry((r.scope, r.tenant.to_vec(), r.key.to_vec()))
            .or_insert(i64::MIN);
        *e = (*e).max(r.at);
    }

    /// What compaction at `now` drops: every rule that can no longer revoke an
    /// unexpired token.
    pub fn compact(&mut self, now: i64, lifetime: i64, leeway: i64) {
        self.keys.retain(|(scope, _, _), at| {
            let expired = match scope {
                Scope::Token => at.saturating_add(leeway) < now,
                _ => at.saturating_add(lifetime).saturating_add(leeway) < now,
            };
            !expired
        });
    }

    pub fn check(&self, t: &Token) -> Verdict {
        let get = |s: Scope, tenant: &[u8], key: &[u8]| {
            self.keys.get(&(s, tenant.to_vec(), key.to_vec())).copied()
        };
        if !t.token_id.is_empty() {
            if let Some(exp) = get(Scope::Token, t.tenant, t.token_id) {
                return Verdict::Revoked {
                    scope: Scope::Token,
                    cutoff: exp,
                };
            }
        }
        let mut cands: Vec<(Scope, i64)> = Vec::new();
        let mut add = |s: Scope, c: Option<i64>| {
            if let Some(c) = c {
                if t.issued_at < c {
                    cands.push((s, c));
                }
            }
        };
        if !t.subject.is_empty() {
            add(Scope::Subject, get(Scope::Subject, t.tenant, t.subject));
        }
        if !t.session.is_empty() {
            add(Scope::Session, get(Scope::Session, t.tenant, t.session));
        }
        if !t.client.is_empty() {
            add(Scope::Client, get(Scope::Client, t.tenant, t.client));
        }
        for r in t.roles {
            if !r.is_empty() {
                add(Scope::Role, get(Scope::Role, t.tenant, r));
            }
        }
        add(Scope::Tenant, get(Scope::Tenant, t.tenant, b""));
        add(Scope::Global, get(Scope::Global, b"", b""));
        let rank = |s: Scope| RANK.iter().position(|x| *x == s).unwrap_or(RANK.len());
        cands.sort_by_key(|(s, c)| (std::cmp::Reverse(*c), rank(*s)));
        match cands.first() {
            Some(&(scope, cutoff)) => Verdict::Revoked { scope, cutoff },
            None => Verdict::Valid,
        }
    }
}

/// A token that the rule `r` is about, issued at `iat`: the rule's key sits in the
/// field its scope reads.
pub fn token_for<'a>(r: &'a OwnedRule, roles: &'a [&'a [u8]], iat: i64) -> Token<'a> {
    let mut t = Token {
        tenant: &r.tenant,
        issued_at: iat,
        ..Token::default()
    };
    match r.scope {
        Scope::Global | Scope::Tenant => {}
        Scope::Subject => t.subject = &r.key,
        Scope::Role => t.roles = roles,
        Scope::Client => t.client = &r.key,
        Scope::Session => t.session = &r.key,
        Scope::Token => t.token_id = &r.key,
    }
    t
}
