//! The check: which rule, if any, revokes a token (DESIGN.md §2, "A token to check").

use crate::index::{Index, KeySource};
use crate::rule::{Scope, Token, Verdict};

/// Answers for `token` from `index`. The token has been validated.
///
/// A `Token` rule on the token's jti is named first. Otherwise the revoking rule with the
/// latest cutoff is named; scopes are visited from the most specific (Subject, Session,
/// Client, Role, Tenant, Global) and only a strictly later cutoff replaces the one found,
/// which breaks ties in that order. A scope whose newest cutoff is not after `iat` cannot
/// revoke the token and is not probed, so a recent token usually costs no hashing at all.
#[inline]
pub(crate) fn check(index: &Index, src: &impl KeySource, token: &Token) -> Verdict {
    let iat = token.issued_at;
    let wants = |scope: Scope| iat < index.newest(scope);
    let jti = !token.token_id.is_empty() && index.has_token_rules();
    let keyed = wants(Scope::Subject)
        || wants(Scope::Session)
        || wants(Scope::Client)
        || wants(Scope::Role)
        || wants(Scope::Tenant);
    let tenant_hash = if jti || keyed {
        index.hasher().tenant(token.tenant)
    } else {
        0
    };

    if jti {
        if let Some(exp) = index.get(Scope::Token, tenant_hash, token.tenant, token.token_id, src) {
            return Verdict::Revoked {
                scope: Scope::Token,
                cutoff: exp,
            };
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
    let single = |scope: Scope, key: &[u8]| {
        if key.is_empty() && scope != Scope::Tenant || !wants(scope) {
            return None;
        }
        index.get(scope, tenant_hash, token.tenant, key, src)
    };
    consider(Scope::Subject, single(Scope::Subject, token.subject));
    consider(Scope::Session, single(Scope::Session, token.session));
    consider(Scope::Client, single(Scope::Client, token.client));
    if wants(Scope::Role) {
        let mut role_best: Option<i64> = None;
        for role in token.roles {
            if role.is_empty() {
                continue;
            }
            if let Some(c) = index.get(Scope::Role, tenant_hash, token.tenant, role, src) {
                role_best = role_best.max(Some(c));
            }
        }
        consider(Scope::Role, role_best);
    }
    consider(Scope::Tenant, single(Scope::Tenant, b""));
    if wants(Scope::Global) {
        consider(Scope::Global, index.global());
    }
    match best {
        Some((scope, cutoff)) => Verdict::Revoked { scope, cutoff },
        None => Verdict::Valid,
    }
}
