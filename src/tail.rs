//! The tail index: this process's own index of the records the shared index does not hold
//! yet (what the writer appended after it last published its index, or the whole log
//! when no shared index can be trusted). For each scope, the effective (maximum) cutoff
//! of every key, in a concurrent open-addressing table that many threads read without
//! locks while one thread at a time inserts.
//!
//! A slot is 16 bytes: a word packing a 24-bit hash tag with the 40-bit file offset of
//! the rule's payload (whose key bytes decide equality exactly), and the cutoff. The
//! offset is that of the key's newest record with the largest cutoff: a compaction that
//! copies the frames from some offset on as they are lists only the keys whose deciding
//! record lies before it (`Generation::live_rules`). Keys
//! are hashed with the ledger's keyed hash, so crafted names cannot flood one probe
//! sequence. Readers never write: lookups are loads only.

use crate::error::{Error, Result};
use crate::hash::Hasher;
use crate::record::same_bytes;
use crate::rule::Scope;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicI64, AtomicPtr, AtomicU64, AtomicUsize, Ordering};

const OFFSET_BITS: u32 = 40;
const OFFSET_MASK: u64 = (1 << OFFSET_BITS) - 1;
const INITIAL_SLOTS: usize = 64;

/// Where the key bytes of an indexed rule are read from: offset → (tenant, key).
pub(crate) trait KeySource {
    fn keys_at(&self, payload_offset: u64) -> Option<(&[u8], &[u8])>;
}

/// The key bytes a slot word points at; an error (never "no such key") when they cannot
/// be read: a slot is only ever made for a record that was read.
#[inline]
fn keys_of(src: &impl KeySource, word: u64) -> Result<(&[u8], &[u8])> {
    src.keys_at(word & OFFSET_MASK).ok_or_else(|| {
        Error::Internal(format!(
            "the tail index points at offset {} where no rule can be read",
            word & OFFSET_MASK
        ))
    })
}

#[inline]
fn tag_of(hash: u64) -> u64 {
    // Top 24 bits; never 0 so that a used word is never 0.
    ((hash >> OFFSET_BITS) | 1) << OFFSET_BITS
}

struct Slot {
    word: AtomicU64,
    cutoff: AtomicI64,
}

struct Slots {
    mask: usize,
    slots: Box<[Slot]>,
}

impl Slots {
    fn with_capacity(n: usize) -> Box<Slots> {
        let n = n.next_power_of_two().max(INITIAL_SLOTS);
        let slots = (0..n)
            .map(|_| Slot {
                word: AtomicU64::new(0),
                cutoff: AtomicI64::new(0),
            })
            .collect();
        Box::new(Slots { mask: n - 1, slots })
    }
}

/// One scope's table. Reads are lock-free; `insert` needs external single-writer
/// exclusion (the ledger's catch-up lock).
struct KeyTable {
    current: AtomicPtr<Slots>,
    /// Every slot array ever published, kept until the table is dropped so that a
    /// reader still probing an old one never touches freed memory.
    #[allow(clippy::vec_box)] // boxed for stable addresses: readers hold raw pointers
    arrays: Mutex<Vec<Box<Slots>>>,
    len: AtomicUsize,
}

impl KeyTable {
    fn new() -> KeyTable {
        let first = Slots::with_capacity(INITIAL_SLOTS);
        let ptr = &*first as *const Slots as *mut Slots;
        KeyTable {
            current: AtomicPtr::new(ptr),
            arrays: Mutex::new(vec![first]),
            len: AtomicUsize::new(0),
        }
    }

    #[inline]
    fn slots(&self) -> &Slots {
        // SAFETY: `current` always points into a Box owned by `self.arrays`, which only
        // grows and lives as long as `self`.
        unsafe { &*self.current.load(Ordering::Acquire) }
    }

    /// The slot of `(tenant, key)`, if the table holds it.
    #[inline]
    fn find(
        &self,
        hash: u64,
        tenant: &[u8],
        key: &[u8],
        src: &impl KeySource,
    ) -> Result<Option<&Slot>> {
        if self.len.load(Ordering::Acquire) == 0 {
            return Ok(None); // most tables of a reader with a shared index
        }
        let t = self.slots();
        let tag = tag_of(hash);
        let mut i = hash as usize & t.mask;
        loop {
            let slot = &t.slots[i];
            let word = slot.word.load(Ordering::Acquire);
            if word == 0 {
                return Ok(None);
            }
            if word & !OFFSET_MASK == tag {
                let (tn, k) = keys_of(src, word)?;
                if same_bytes(tn, tenant) && same_bytes(k, key) {
                    return Ok(Some(slot));
                }
            }
            i = (i + 1) & t.mask;
        }
    }

    /// Raises the cutoff of `(tenant, key)` to at least `at`, adding the key if new; a
    /// record whose cutoff is at least the key's becomes the one its slot points at.
    /// Caller holds the single-inserter lock.
    #[allow(clippy::too_many_arguments)]
    fn upsert(
        &self,
        hasher: &Hasher,
        scope: Scope,
        hash: u64,
        payload_offset: u64,
        tenant: &[u8],
        key: &[u8],
        at: i64,
        src: &impl KeySource,
    ) -> Result<()> {
        let t = self.slots();
        let tag = tag_of(hash);
        let mut i = hash as usize & t.mask;
        loop {
            let slot = &t.slots[i];
            let word = slot.word.load(Ordering::Acquire);
            if word == 0 {
                slot.cutoff.store(at, Ordering::Relaxed);
                slot.word.store(tag | payload_offset, Ordering::Release);
                let len = self.len.fetch_add(1, Ordering::Relaxed) + 1;
                if len * 4 > (t.mask + 1) * 3 {
                    self.grow(hasher, scope, src)?;
                }
                return Ok(());
            }
            if word & !OFFSET_MASK == tag {
                let (tn, k) = keys_of(src, word)?;
                if same_bytes(tn, tenant) && same_bytes(k, key) {
                    // Only this thread writes the slot (the single-inserter lock). The
                    // word first: whoever reads the new cutoff, then the word, reads this
                    // record or a later one (`TailIndex::deciding`).
                    if at >= slot.cutoff.load(Ordering::Relaxed) {
                        slot.word.store(tag | payload_offset, Ordering::Release);
                        slot.cutoff.store(at, Ordering::Release);
                    }
                    return Ok(());
                }
            }
            i = (i + 1) & t.mask;
        }
    }

    fn grow(&self, hasher: &Hasher, scope: Scope, src: &impl KeySource) -> Result<()> {
        let old = self.slots();
        let new = Slots::with_capacity((old.mask + 1) * 2);
        for slot in old.slots.iter() {
            let word = slot.word.load(Ordering::Acquire);
            if word == 0 {
                continue;
            }
            let (tenant, key) = keys_of(src, word)?;
            let hash = hasher.key(scope, hasher.tenant(tenant), key);
            let mut i = hash as usize & new.mask;
            while new.slots[i].word.load(Ordering::Relaxed) != 0 {
                i = (i + 1) & new.mask;
            }
            new.slots[i]
                .cutoff
                .store(slot.cutoff.load(Ordering::Acquire), Ordering::Relaxed);
            new.slots[i].word.store(word, Ordering::Relaxed);
        }
        let ptr = &*new as *const Slots as *mut Slots;
        self.arrays.lock().push(new);
        self.current.store(ptr, Ordering::Release);
        Ok(())
    }

    fn for_each(&self, mut f: impl FnMut(i64, u64)) {
        for slot in self.slots().slots.iter() {
            if slot.word.load(Ordering::Acquire) != 0 {
                let cutoff = slot.cutoff.load(Ordering::Acquire);
                let word = slot.word.load(Ordering::Acquire);
                f(cutoff, word & OFFSET_MASK);
            }
        }
    }

    fn memory_bytes(&self) -> usize {
        self.arrays
            .lock()
            .iter()
            .map(|a| a.slots.len() * std::mem::size_of::<Slot>())
            .sum()
    }
}

/// The effective cutoff of every key of every scope.
pub(crate) struct TailIndex {
    hasher: Hasher,
    global: AtomicI64,
    /// Payload offset of the Global record that set `global` (as a slot's offset).
    global_offset: AtomicU64,
    /// Tables for Tenant..=Token, at `scope as usize - 1`.
    tables: [KeyTable; 6],
    /// Per scope, the largest cutoff of any of its rules (`i64::MIN` when none): a token
    /// issued at or after it cannot be revoked by that scope, so it is not probed.
    newest: [AtomicI64; 7],
}

impl TailIndex {
    pub(crate) fn new(hasher: Hasher) -> TailIndex {
        TailIndex {
            hasher,
            global: AtomicI64::new(i64::MIN),
            global_offset: AtomicU64::new(0),
            tables: std::array::from_fn(|_| KeyTable::new()),
            newest: std::array::from_fn(|_| AtomicI64::new(i64::MIN)),
        }
    }

    fn table(&self, scope: Scope) -> &KeyTable {
        &self.tables[scope as usize - 1]
    }

    /// Applies one rule record (its payload at `payload_offset`). Caller holds the
    /// single-inserter lock and has made the payload readable through `src`.
    pub(crate) fn apply(
        &self,
        scope: Scope,
        tenant: &[u8],
        key: &[u8],
        at: i64,
        payload_offset: u64,
        src: &impl KeySource,
    ) -> Result<()> {
        self.newest[scope as usize].fetch_max(at, Ordering::AcqRel);
        if scope == Scope::Global {
            // As a slot: the offset first, so that a reader of both never pairs a cutoff
            // with an earlier record than the one that set it.
            if at >= self.global.load(Ordering::Relaxed) {
                self.global_offset.store(payload_offset, Ordering::Release);
                self.global.store(at, Ordering::Release);
            }
            return Ok(());
        }
        let hash = self.hasher.key(scope, self.hasher.tenant(tenant), key);
        self.table(scope).upsert(
            &self.hasher,
            scope,
            hash,
            payload_offset,
            tenant,
            key,
            at,
            src,
        )
    }

    /// Largest cutoff of any rule of `scope`, `i64::MIN` when it has none.
    #[inline]
    pub(crate) fn newest(&self, scope: Scope) -> i64 {
        self.newest[scope as usize].load(Ordering::Acquire)
    }

    /// Whether any `Token` rule exists (their times are `exp`, not cutoffs).
    #[inline]
    pub(crate) fn has_token_rules(&self) -> bool {
        self.table(Scope::Token).len.load(Ordering::Acquire) != 0
    }

    /// Effective cutoff of the global rule.
    #[inline]
    pub(crate) fn global(&self) -> Option<i64> {
        let g = self.global.load(Ordering::Acquire);
        (g != i64::MIN).then_some(g)
    }

    /// Effective cutoff of `(scope, tenant, key)`; `hash` is `hasher().key(..)` of it.
    #[inline]
    pub(crate) fn get_hashed(
        &self,
        scope: Scope,
        hash: u64,
        tenant: &[u8],
        key: &[u8],
        src: &impl KeySource,
    ) -> Result<Option<i64>> {
        if scope == Scope::Global {
            return Ok(self.global());
        }
        Ok(self
            .table(scope)
            .find(hash, tenant, key, src)?
            .map(|slot| slot.cutoff.load(Ordering::Acquire)))
    }

    /// As `get_hashed`, with the payload offset of the record that decided the cutoff:
    /// one whose cutoff is the one returned, or a later record of the key with a cutoff
    /// at least as large (set while this ran).
    pub(crate) fn deciding(
        &self,
        scope: Scope,
        hash: u64,
        tenant: &[u8],
        key: &[u8],
        src: &impl KeySource,
    ) -> Result<Option<(i64, u64)>> {
        if scope == Scope::Global {
            return Ok(self.global_deciding());
        }
        let Some(slot) = self.table(scope).find(hash, tenant, key, src)? else {
            return Ok(None);
        };
        // The cutoff, then the word: the inserter stores them the other way round.
        let cutoff = slot.cutoff.load(Ordering::Acquire);
        let word = slot.word.load(Ordering::Acquire);
        Ok(Some((cutoff, word & OFFSET_MASK)))
    }

    pub(crate) fn global_deciding(&self) -> Option<(i64, u64)> {
        let g = self.global.load(Ordering::Acquire);
        let offset = self.global_offset.load(Ordering::Acquire);
        (g != i64::MIN).then_some((g, offset))
    }

    /// Visits every indexed key: scope, cutoff, and the payload offset of the record that
    /// decided it (as `deciding`).
    pub(crate) fn for_each(&self, mut f: impl FnMut(Scope, i64, u64)) {
        if let Some((g, offset)) = self.global_deciding() {
            f(Scope::Global, g, offset);
        }
        for s in &Scope::ALL[1..] {
            self.table(*s).for_each(|cutoff, off| f(*s, cutoff, off));
        }
    }

    /// Bytes of slot arrays held (current and retired).
    pub(crate) fn memory_bytes(&self) -> usize {
        self.tables.iter().map(KeyTable::memory_bytes).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{decode_frame, encode_rule, Frame, Record};
    use crate::rule::Rule;

    /// A log in a Vec, standing in for the mapped file.
    struct VecLog(Vec<u8>);
    impl KeySource for VecLog {
        fn keys_at(&self, off: u64) -> Option<(&[u8], &[u8])> {
            crate::record::rule_keys_at(self.0.get(off as usize..)?)
        }
    }

    fn build(rules: &[Rule]) -> (TailIndex, VecLog) {
        let mut log = VecLog(vec![0; 8]);
        let mut offsets = Vec::new();
        for r in rules {
            offsets.push(log.0.len() as u64 + 8);
            encode_rule(&mut log.0, r);
        }
        let index = TailIndex::new(Hasher::new([3; 16]));
        for off in offsets {
            let Frame::Valid {
                record: Record::Rule(r),
                ..
            } = decode_frame(&log.0[off as usize - 8..])
            else {
                panic!("bad frame")
            };
            index
                .apply(r.scope, r.tenant, r.key, r.at, off, &log)
                .unwrap();
        }
        (index, log)
    }

    #[test]
    fn max_cutoff_wins_and_keys_are_exact() {
        let (ix, log) = build(&[
            Rule::new(Scope::Subject, b"a", b"bc", 10),
            Rule::new(Scope::Subject, b"a", b"bc", 5),
            Rule::new(Scope::Subject, b"ab", b"c", 7),
        ]);
        let get = |s: Scope, t: &[u8], k: &[u8]| {
            let h = ix.hasher.key(s, ix.hasher.tenant(t), k);
            ix.get_hashed(s, h, t, k, &log).unwrap()
        };
        assert_eq!(get(Scope::Subject, b"a", b"bc"), Some(10));
        assert_eq!(get(Scope::Subject, b"ab", b"c"), Some(7));
        assert_eq!(get(Scope::Role, b"a", b"bc"), None);
        assert_eq!(ix.newest(Scope::Subject), 10);
        assert_eq!(ix.newest(Scope::Role), i64::MIN);
    }

    #[test]
    fn growth_keeps_every_key() {
        let names: Vec<Vec<u8>> = (0..5000)
            .map(|i| format!("user-{i}").into_bytes())
            .collect();
        let rules: Vec<Rule> = names
            .iter()
            .enumerate()
            .map(|(i, n)| Rule::new(Scope::Subject, b"t", n, i as i64))
            .collect();
        let (ix, log) = build(&rules);
        let get = |k: &[u8]| {
            let h = ix.hasher.key(Scope::Subject, ix.hasher.tenant(b"t"), k);
            ix.get_hashed(Scope::Subject, h, b"t", k, &log).unwrap()
        };
        for (i, n) in names.iter().enumerate() {
            assert_eq!(get(n), Some(i as i64));
        }
        assert_eq!(get(b"user-5000"), None);
    }
}
