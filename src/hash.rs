//! The per-ledger keyed hash that places every key in the index.
//!
//! rapidhash V3 (micro variant) with secrets derived from the ledger's random seed, so
//! crafted names cannot be made to collide without the seed. The file records the hash of
//! a fixed test vector ([`Hasher::check_value`]): a build whose hash function differs (a
//! dependency upgrade) would miss every key of an existing index and answer "valid" for
//! every token, so such a build refuses the file instead (`Incompatible`).

use crate::rule::Scope;
use rapidhash::v3::{rapidhash_v3_nano_inline, RapidSecrets};

/// The per-ledger keyed hash.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Hasher {
    tenant: RapidSecrets,
    key: RapidSecrets,
}

/// Mixes the scope into a key's hash.
const SCOPE_MIX: u64 = 0x9E37_79B9_7F4A_7C15;

/// The 128-bit product of `a` and `b`, folded to 64 bits (the "mum" of wyhash and
/// rapidhash): every bit of each input moves about half the bits of the result.
#[inline(always)]
fn fold(a: u64, b: u64) -> u64 {
    let r = u128::from(a) * u128::from(b);
    (r as u64) ^ ((r >> 64) as u64)
}

impl Hasher {
    pub(crate) fn new(seed: [u8; 16]) -> Hasher {
        let (a, b) = seed.split_at(8);
        let word = |s: &[u8]| u64::from_le_bytes(s.try_into().unwrap_or([0; 8]));
        Hasher {
            tenant: RapidSecrets::seed(word(a)),
            key: RapidSecrets::seed(word(b)),
        }
    }

    /// Hash of the tenant alone; every key of a token is hashed on top of it.
    #[inline(always)]
    pub(crate) fn tenant(&self, tenant: &[u8]) -> u64 {
        rapidhash_v3_nano_inline::<true, false>(tenant, &self.tenant)
    }

    /// Hash of `(scope, tenant, key)` given the tenant's hash: the key's own keyed hash
    /// (rapidhash V3 nano, no final avalanche) folded with the tenant's hash and the
    /// scope. Chaining through the tenant hash keeps `("a","bc")` and `("ab","c")` apart
    /// (equality is exact anyway); hashing the key with the ledger's fixed secrets keeps
    /// the work per key to one pass over its bytes and two multiplications.
    #[inline(always)]
    pub(crate) fn key(&self, scope: Scope, tenant_hash: u64, key: &[u8]) -> u64 {
        let k = rapidhash_v3_nano_inline::<false, false>(key, &self.key);
        fold(
            k ^ (scope as u64 + 1).wrapping_mul(SCOPE_MIX),
            tenant_hash ^ self.key.seed,
        )
    }

    /// The hash of `(scope, tenant, key)`.
    #[inline]
    pub(crate) fn full(&self, scope: Scope, tenant: &[u8], key: &[u8]) -> u64 {
        self.key(scope, self.tenant(tenant), key)
    }

    /// The hash of a fixed test vector, recorded in every file: equal values mean this
    /// build places keys where the build that wrote the file did.
    pub(crate) fn check_value(&self) -> u64 {
        self.full(
            Scope::Role,
            b"revledger hash check",
            b"tenant/role \x00\xff",
        ) ^ self.full(Scope::Subject, b"", b"a")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_value_depends_on_the_seed_and_is_stable() {
        let a = Hasher::new([1; 16]);
        assert_eq!(a.check_value(), Hasher::new([1; 16]).check_value());
        assert_ne!(a.check_value(), Hasher::new([2; 16]).check_value());
    }

    #[test]
    fn tenant_and_key_are_chained_not_concatenated() {
        let h = Hasher::new([7; 16]);
        assert_ne!(
            h.full(Scope::Subject, b"a", b"bc"),
            h.full(Scope::Subject, b"ab", b"c")
        );
        assert_ne!(
            h.full(Scope::Subject, b"a", b"b"),
            h.full(Scope::Role, b"a", b"b")
        );
    }
}
