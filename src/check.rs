//! The check: which rule, if any, revokes a token (DESIGN.md §2, "A token to check").

use crate::error::Result;
use crate::hash::Hasher;
use crate::rule::{Scope, Token, Verdict};

/// Where the check reads rules from: the shared index and this process's tail index.
pub(crate) trait Rules {
    fn hasher(&self) -> &Hasher;
    /// Per scope (in [`Scope`] order), the largest cutoff of any of its rules, `i64::MIN`
    /// when none; index 0 is the global cutoff.
    fn newest(&self) -> [i64; 7];
    fn has_token_rules(&self) -> bool;
    /// Starts loading the memory a lookup of `hash` in `scope` reads first.
    fn prefetch(&self, scope: Scope, hash: u64);
    /// Effective cutoff of `(scope, tenant, key)`, whose hash is `hash`.
    fn get(&self, scope: Scope, hash: u64, tenant: &[u8], key: &[u8]) -> Result<Option<i64>>;
}

/// Roles whose lookups are prepared (hashed and prefetched) before any is probed.
const PREPARED_ROLES: usize = 16;

/// Answers for `token` from `rules`. The token has been validated.
///
/// A `Token` rule on the token's jti is named first. Otherwise the revoking rule with the
/// latest cutoff is named; scopes are visited from the most specific (Subject, Session,
/// Client, Role, Tenant, Global) and only a strictly later cutoff replaces the one found,
/// which breaks ties in that order. A scope whose newest cutoff is not after `iat` cannot
/// revoke the token and is not probed, so a recent token usually costs no hashing at all.
/// The keys that are probed are all hashed and their filter words prefetched first, so
/// that the cache misses of a large ledger overlap instead of adding up.
#[inline]
pub(crate) fn check(rules: &impl Rules, token: &Token) -> Result<Verdict> {
    let iat = token.issued_at;
    let newest = rules.newest();
    let wants = |scope: Scope| iat < newest[scope as usize];
    let jti = !token.token_id.is_empty() && rules.has_token_rules();
    let sub = !token.subject.is_empty() && wants(Scope::Subject);
    let sid = !token.session.is_empty() && wants(Scope::Session);
    let azp = !token.client.is_empty() && wants(Scope::Client);
    let role = !token.roles.is_empty() && wants(Scope::Role);
    let tenant = wants(Scope::Tenant);
    let global = newest[Scope::Global as usize];
    if !(jti || sub || sid || azp || role || tenant) {
        return Ok(if iat < global {
            Verdict::Revoked {
                scope: Scope::Global,
                cutoff: global,
            }
        } else {
            Verdict::Valid
        });
    }

    let h = rules.hasher();
    let th = h.tenant(token.tenant);
    let prepare = |on: bool, scope: Scope, key: &[u8]| {
        on.then(|| {
            let hash = h.key(scope, th, key);
            rules.prefetch(scope, hash);
            hash
        })
    };
    let jti_hash = prepare(jti, Scope::Token, token.token_id);
    let sub_hash = prepare(sub, Scope::Subject, token.subject);
    let sid_hash = prepare(sid, Scope::Session, token.session);
    let azp_hash = prepare(azp, Scope::Client, token.client);
    let tenant_hash = prepare(tenant, Scope::Tenant, b"");
    let mut role_hashes = [0u64; PREPARED_ROLES];
    if role {
        for (slot, r) in role_hashes.iter_mut().zip(token.roles) {
            *slot = h.key(Scope::Role, th, r);
            rules.prefetch(Scope::Role, *slot);
        }
    }

    if let Some(hash) = jti_hash {
        if let Some(exp) = rules.get(Scope::Token, hash, token.tenant, token.token_id)? {
            return Ok(Verdict::Revoked {
                scope: Scope::Token,
                cutoff: exp,
            });
        }
    }
    let mut best: Option<(Scope, i64)> = None;
    let mut consider = |scope: Scope, cutoff: Option<i64>| {
        if let Some(c) = cutoff {
            if iat < c && best.is_none_or(|(_, b)| c > b) {
                best = Some((scope, c));
            }
        }
    };
    let get = |scope: Scope, hash: Option<u64>, key: &[u8]| match hash {
        Some(hash) => rules.get(scope, hash, token.tenant, key),
        None => Ok(None),
    };
    consider(
        Scope::Subject,
        get(Scope::Subject, sub_hash, token.subject)?,
    );
    consider(
        Scope::Session,
        get(Scope::Session, sid_hash, token.session)?,
    );
    consider(Scope::Client, get(Scope::Client, azp_hash, token.client)?);
    if role {
        let mut role_best: Option<i64> = None;
        for (i, r) in token.roles.iter().enumerate() {
            if r.is_empty() {
                continue;
            }
            let hash = match role_hashes.get(i) {
                Some(&hash) => hash,
                None => h.key(Scope::Role, th, r),
            };
            role_best = role_best.max(rules.get(Scope::Role, hash, token.tenant, r)?);
        }
        consider(Scope::Role, role_best);
    }
    consider(Scope::Tenant, get(Scope::Tenant, tenant_hash, b"")?);
    if iat < global {
        consider(Scope::Global, Some(global));
    }
    Ok(match best {
        Some((scope, cutoff)) => Verdict::Revoked { scope, cutoff },
        None => Verdict::Valid,
    })
}
