//! The check: which rule, if any, revokes a token (DESIGN.md §2, "A token to check").

use crate::error::Result;
use crate::index::Hasher;
use crate::rule::{Scope, Token, Verdict};

/// Where the check reads rules from: the snapshot and the index of the log after it.
pub(crate) trait Rules {
    fn hasher(&self) -> &Hasher;
    /// Largest cutoff of any rule of `scope`, `i64::MIN` when none.
    fn newest(&self, scope: Scope) -> i64;
    fn has_token_rules(&self) -> bool;
    fn global(&self) -> Option<i64>;
    /// Effective cutoff of `(scope, tenant, key)`; `tenant_hash` is `hasher().tenant(tenant)`.
    fn get(&self, scope: Scope, tenant_hash: u64, tenant: &[u8], key: &[u8])
        -> Result<Option<i64>>;
}

/// Answers for `token` from `rules`. The token has been validated.
///
/// A `Token` rule on the token's jti is named first. Otherwise the revoking rule with the
/// latest cutoff is named; scopes are visited from the most specific (Subject, Session,
/// Client, Role, Tenant, Global) and only a strictly later cutoff replaces the one found,
/// which breaks ties in that order. A scope whose newest cutoff is not after `iat` cannot
/// revoke the token and is not probed, so a recent token usually costs no hashing at all.
#[inline]
pub(crate) fn check(rules: &impl Rules, token: &Token) -> Result<Verdict> {
    let iat = token.issued_at;
    let wants = |scope: Scope| iat < rules.newest(scope);
    let jti = !token.token_id.is_empty() && rules.has_token_rules();
    let keyed = wants(Scope::Subject)
        || wants(Scope::Session)
        || wants(Scope::Client)
        || wants(Scope::Role)
        || wants(Scope::Tenant);
    let tenant_hash = if jti || keyed {
        rules.hasher().tenant(token.tenant)
    } else {
        0
    };

    if jti {
        if let Some(exp) = rules.get(Scope::Token, tenant_hash, token.tenant, token.token_id)? {
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
    let single = |scope: Scope, key: &[u8]| -> Result<Option<i64>> {
        if key.is_empty() && scope != Scope::Tenant || !wants(scope) {
            return Ok(None);
        }
        rules.get(scope, tenant_hash, token.tenant, key)
    };
    consider(Scope::Subject, single(Scope::Subject, token.subject)?);
    consider(Scope::Session, single(Scope::Session, token.session)?);
    consider(Scope::Client, single(Scope::Client, token.client)?);
    if wants(Scope::Role) {
        let mut role_best: Option<i64> = None;
        for role in token.roles {
            if role.is_empty() {
                continue;
            }
            if let Some(c) = rules.get(Scope::Role, tenant_hash, token.tenant, role)? {
                role_best = role_best.max(Some(c));
            }
        }
        consider(Scope::Role, role_best);
    }
    consider(Scope::Tenant, single(Scope::Tenant, b"")?);
    if wants(Scope::Global) {
        consider(Scope::Global, rules.global());
    }
    Ok(match best {
        Some((scope, cutoff)) => Verdict::Revoked { scope, cutoff },
        None => Verdict::Valid,
    })
}
