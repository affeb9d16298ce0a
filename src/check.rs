//! The check: which rule, if any, revokes a token (DESIGN.md §2, "A token to check").

use crate::error::LeanResult;
use crate::hash::Hasher;
use crate::rule::{Scope, Token, Verdict};

/// Where the check reads rules from: the shared index and this process's tail index.
pub(crate) trait Rules {
    fn hasher(&self) -> &Hasher;
    /// Per scope (in [`Scope`] order), the largest cutoff of any of its rules, `i64::MIN`
    /// when none; index 0 is the global cutoff.
    fn newest(&self) -> [i64; 7];
    fn has_token_rules(&self) -> bool;
    /// Starts loading the memory a lookup of `hash` reads first.
    fn prefetch(&self, hash: u64);
    /// Whether a key whose hash is `hash` may have a rule (false: certainly not). Cheap:
    /// every key a token probes asks this first.
    fn may_hold(&self, hash: u64) -> bool;
    /// Effective cutoff of `(scope, tenant, key)`, whose hash is `hash`; asked only for a
    /// key that [`may_hold`](Rules::may_hold) let through.
    fn get(&self, hash: u64, scope: Scope, tenant: &[u8], key: &[u8]) -> LeanResult<Option<i64>>;
}

/// Roles whose lookups are prepared (hashed and prefetched) before any is probed.
const PREPARED_ROLES: usize = 16;

/// The verdict of the latest cutoff found so far; scopes are visited from the most
/// specific and only a strictly later cutoff replaces the one found, which breaks ties
/// in the order Subject, Session, Client, Role, Tenant, Global.
#[derive(Clone, Copy)]
struct Best {
    iat: i64,
    scope: Scope,
    cutoff: i64,
}

impl Best {
    #[inline(always)]
    fn consider(&mut self, scope: Scope, cutoff: Option<i64>) {
        if let Some(c) = cutoff {
            if self.iat < c && c > self.cutoff {
                self.scope = scope;
                self.cutoff = c;
            }
        }
    }

    #[inline(always)]
    fn verdict(self) -> Verdict {
        if self.cutoff == i64::MIN {
            Verdict::Valid
        } else {
            Verdict::Revoked {
                scope: self.scope,
                cutoff: self.cutoff,
            }
        }
    }
}

/// Answers for `token` from `rules`. The token has been validated.
///
/// A `Token` rule on the token's jti is named first. Otherwise the revoking rule with the
/// latest cutoff is named (ties to the most specific scope). A scope whose newest cutoff
/// is not after `iat` cannot revoke the token and is not probed, so a recent token
/// usually costs no hashing at all. The keys that are probed are all hashed and their
/// filter words prefetched first (one pass over the token), so that the cache misses of
/// a large ledger overlap instead of adding up.
#[inline(always)]
pub(crate) fn check<R: Rules>(rules: &R, token: &Token) -> LeanResult<Verdict> {
    let iat = token.issued_at;
    let newest = rules.newest();
    let wants = |scope: Scope| iat < newest[scope as usize];
    let jti = !token.token_id.is_empty() && rules.has_token_rules();
    let sub = !token.subject.is_empty() && wants(Scope::Subject);
    let sid = !token.session.is_empty() && wants(Scope::Session);
    let azp = !token.client.is_empty() && wants(Scope::Client);
    let role = !token.roles.is_empty() && wants(Scope::Role);
    let tenant = wants(Scope::Tenant);
    let mut best = Best {
        iat,
        scope: Scope::Global,
        cutoff: i64::MIN,
    };
    if !(sub || sid || azp || role || tenant) {
        // Every scope the token has is older than its iat (a token issued after every
        // cutoff): only a `Token` rule can revoke it, and only its jti is looked up.
        if jti {
            if let Some(exp) = token_rule(rules, token)? {
                return Ok(Verdict::Revoked {
                    scope: Scope::Token,
                    cutoff: exp,
                });
            }
        }
        best.consider(Scope::Global, Some(newest[Scope::Global as usize]));
        return Ok(best.verdict());
    }

    let h = rules.hasher();
    let th = h.tenant(token.tenant);
    let hash = |on: bool, scope: Scope, key: &[u8]| -> u64 {
        if on {
            let k = h.key(scope, th, key);
            rules.prefetch(k);
            k
        } else {
            0
        }
    };
    let get = |hash: u64, scope: Scope, key: &[u8]| lookup(rules, hash, scope, token.tenant, key);
    let jti_hash = hash(jti, Scope::Token, token.token_id);
    let sub_hash = hash(sub, Scope::Subject, token.subject);
    let sid_hash = hash(sid, Scope::Session, token.session);
    let azp_hash = hash(azp, Scope::Client, token.client);
    let tenant_hash = hash(tenant, Scope::Tenant, b"");
    let mut role_hashes = [0u64; PREPARED_ROLES];
    if role {
        for (slot, r) in role_hashes.iter_mut().zip(token.roles) {
            *slot = hash(true, Scope::Role, r);
        }
    }

    if jti {
        if let Some(exp) = get(jti_hash, Scope::Token, token.token_id)? {
            return Ok(Verdict::Revoked {
                scope: Scope::Token,
                cutoff: exp,
            });
        }
    }
    if sub {
        best.consider(
            Scope::Subject,
            get(sub_hash, Scope::Subject, token.subject)?,
        );
    }
    if sid {
        best.consider(
            Scope::Session,
            get(sid_hash, Scope::Session, token.session)?,
        );
    }
    if azp {
        best.consider(Scope::Client, get(azp_hash, Scope::Client, token.client)?);
    }
    if role {
        for (i, r) in token.roles.iter().enumerate() {
            if r.is_empty() {
                continue;
            }
            let k = match role_hashes.get(i) {
                Some(&k) => k,
                None => h.key(Scope::Role, th, r),
            };
            best.consider(Scope::Role, get(k, Scope::Role, r)?);
        }
    }
    if tenant {
        best.consider(Scope::Tenant, get(tenant_hash, Scope::Tenant, b"")?);
    }
    best.consider(Scope::Global, Some(newest[Scope::Global as usize]));
    Ok(best.verdict())
}

/// The cutoff of a `Token` rule on the token's jti, for a token that needs no other
/// lookup. Out of line: inlined, it made the full check's path longer.
#[inline(never)]
fn token_rule<R: Rules>(rules: &R, token: &Token) -> LeanResult<Option<i64>> {
    let h = rules.hasher();
    let k = h.key(Scope::Token, h.tenant(token.tenant), token.token_id);
    lookup(rules, k, Scope::Token, token.tenant, token.token_id)
}

/// The effective cutoff of `(scope, tenant, key)`, whose hash is `hash`: the filter is
/// asked first, the table only past it.
#[inline(always)]
fn lookup<R: Rules>(
    rules: &R,
    hash: u64,
    scope: Scope,
    tenant: &[u8],
    key: &[u8],
) -> LeanResult<Option<i64>> {
    if rules.may_hold(hash) {
        rules.get(hash, scope, tenant, key)
    } else {
        Ok(None)
    }
}
