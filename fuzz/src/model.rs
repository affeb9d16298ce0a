//! The plain reference model of DESIGN.md §2 that the fuzz targets (and the replay of
//! tests/fuzz-regressions in tests/faults.rs, which includes this file) compare
//! revledger's answers with, and an owned rule.

use revledger::{Rule, Scope, Token, Verdict};
use std::collections::HashMap;

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
