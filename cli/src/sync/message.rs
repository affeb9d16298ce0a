//! The stream entry format (docs/SYNC.md §2): one entry per rule, its fields named
//! `scope`, `tenant`, `key`, `at`, and optionally `reason` and `origin`. Pure functions
//! over byte slices, shared by the publisher and the sync process.

use revledger::{Rule, Scope};

/// Field holding the scope's name: `global`, `tenant`, `subject`, `role`, `client`,
/// `session` or `token`.
pub const FIELD_SCOPE: &[u8] = b"scope";
/// Field holding the tenant bytes (absent or empty for `global`).
pub const FIELD_TENANT: &[u8] = b"tenant";
/// Field holding the key bytes: subject, role, client id, session id or jti (absent or
/// empty for `global` and `tenant`).
pub const FIELD_KEY: &[u8] = b"key";
/// Field holding the cutoff in Unix seconds, as decimal ASCII; for `token`, the `exp`.
pub const FIELD_AT: &[u8] = b"at";
/// Optional field: why the rule was published (for people; the ledger does not keep it).
pub const FIELD_REASON: &[u8] = b"reason";
/// Optional field: who published the rule (for people; the ledger does not keep it).
pub const FIELD_ORIGIN: &[u8] = b"origin";

/// Field naming the key that signed the entry (docs/SYNC.md §5).
pub const FIELD_KID: &[u8] = b"kid";
/// Field holding the entry's Ed25519 signature, base64 (docs/SYNC.md §5).
pub const FIELD_SIG: &[u8] = b"sig";

/// Longest `reason` or `origin` the publisher accepts, in bytes. The sync process ignores
/// both fields, whatever their length.
pub const MAX_NOTE_LEN: usize = 4096;

/// Optional notes published with a rule, for whoever reads the stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Notes<'a> {
    /// Why the rule was published (e.g. "role super_admin lost billing:write").
    pub reason: Option<&'a [u8]>,
    /// Who published it (e.g. "permission-service@host-3").
    pub origin: Option<&'a [u8]>,
}

/// The field/value pairs of the entry that carries `rule` (which must be valid), in
/// the order `scope`, `tenant`, `key`, `at`, then the notes given. `at_text` holds the
/// decimal digits of `rule.at` that the pairs borrow.
pub fn fields<'a>(
    rule: &Rule<'a>,
    notes: &Notes<'a>,
    at_text: &'a str,
) -> Vec<(&'static [u8], &'a [u8])> {
    let mut f: Vec<(&'static [u8], &'a [u8])> = Vec::with_capacity(6);
    f.push((FIELD_SCOPE, rule.scope.name().as_bytes()));
    f.push((FIELD_TENANT, rule.tenant));
    f.push((FIELD_KEY, rule.key));
    f.push((FIELD_AT, at_text.as_bytes()));
    if let Some(r) = notes.reason {
        f.push((FIELD_REASON, r));
    }
    if let Some(o) = notes.origin {
        f.push((FIELD_ORIGIN, o));
    }
    f
}

/// Decimal ASCII integer, optionally negative: `-?[0-9]+`, within `i64`.
pub fn parse_unix(text: &[u8]) -> Option<i64> {
    let digits = text.strip_prefix(b"-").unwrap_or(text);
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(text).ok()?.parse().ok()
}

/// Reads the rule an entry carries from its field/value pairs (borrowing the bytes).
/// The error says what is wrong, for the sync process's log; the entry is then skipped.
/// Unknown fields are ignored (room for later additions); a known field given twice is
/// refused, since the entry would be ambiguous. Never panics.
pub fn parse_fields<'a>(pairs: &[(&'a [u8], &'a [u8])]) -> Result<Rule<'a>, String> {
    parse_entry(pairs).map(|e| e.rule)
}

/// A rule read from an entry, with the signature fields it carried, if any.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    /// The rule.
    pub rule: Rule<'a>,
    /// The `kid` field: which key signed it.
    pub kid: Option<&'a [u8]>,
    /// The `sig` field: the signature, base64.
    pub sig: Option<&'a [u8]>,
}

/// [`parse_fields`], keeping the `kid` and `sig` fields (each at most once) for
/// [`super::TrustedKeys::verify`].
pub fn parse_entry<'a>(pairs: &[(&'a [u8], &'a [u8])]) -> Result<Entry<'a>, String> {
    let mut scope = None;
    let mut tenant = None;
    let mut key = None;
    let mut at = None;
    let mut kid = None;
    let mut sig = None;
    for &(name, value) in pairs {
        let slot = match name {
            FIELD_SCOPE => &mut scope,
            FIELD_TENANT => &mut tenant,
            FIELD_KEY => &mut key,
            FIELD_AT => &mut at,
            FIELD_KID => &mut kid,
            FIELD_SIG => &mut sig,
            _ => continue,
        };
        if slot.replace(value).is_some() {
            return Err(format!(
                "field `{}` appears twice",
                String::from_utf8_lossy(name)
            ));
        }
    }
    let scope_text = scope.ok_or("missing field `scope`")?;
    let scope = std::str::from_utf8(scope_text)
        .ok()
        .and_then(Scope::parse)
        .ok_or_else(|| {
            format!(
                "bad scope {:?}: one of global, tenant, subject, role, client, session, token",
                String::from_utf8_lossy(&scope_text[..scope_text.len().min(64)])
            )
        })?;
    let at_text = at.ok_or("missing field `at`")?;
    let at = parse_unix(at_text).ok_or_else(|| {
        format!(
            "field `at` is {:?}, not a whole number of Unix seconds",
            String::from_utf8_lossy(&at_text[..at_text.len().min(64)])
        )
    })?;
    let tenant = match (scope, tenant) {
        (Scope::Global, t) => t.unwrap_or_default(),
        (_, Some(t)) => t,
        (_, None) => return Err(format!("missing field `tenant` (a {scope} rule needs one)")),
    };
    let key = match (scope.has_key(), key) {
        (false, k) => k.unwrap_or_default(),
        (true, Some(k)) => k,
        (true, None) => return Err(format!("missing field `key` (a {scope} rule needs one)")),
    };
    let rule = Rule::new(scope, tenant, key, at);
    rule.validate().map_err(|e| e.to_string())?;
    Ok(Entry { rule, kid, sig })
}

#[cfg(test)]
mod tests {
    use super::*;
    use revledger::MAX_KEY_LEN;

    fn parse<'a>(pairs: &[(&'a str, &'a [u8])]) -> Result<Rule<'a>, String> {
        let p: Vec<(&[u8], &[u8])> = pairs.iter().map(|(n, v)| (n.as_bytes(), *v)).collect();
        parse_fields(&p)
    }

    #[test]
    fn every_scope_round_trips_through_its_fields() {
        let rules = [
            Rule::new(Scope::Global, b"", b"", 1),
            Rule::new(Scope::Tenant, b"acme", b"", 2),
            Rule::new(Scope::Tenant, b"", b"", 3),
            Rule::new(Scope::Subject, b"acme", b"john\xff\x00", 4),
            Rule::new(Scope::Role, b"acme", b"super admin", 5),
            Rule::new(Scope::Client, b"acme", b"spa", -6),
            Rule::new(Scope::Session, b"acme", b"sid-1", 7),
            Rule::new(Scope::Token, b"acme", b"jti-1", i64::MAX),
        ];
        for r in rules {
            let at = r.at.to_string();
            let notes = Notes {
                reason: Some(b"why"),
                origin: Some(b"who"),
            };
            let f = fields(&r, &notes, &at);
            assert_eq!(f.len(), 6);
            assert_eq!(parse_fields(&f), Ok(r));
        }
    }

    #[test]
    fn optional_and_unknown_fields_are_ignored_and_aliases_accepted() {
        let r = parse(&[
            ("v", b"2"),
            ("scope", b"SID"),
            ("origin", b"x"),
            ("tenant", b"t"),
            ("key", b"s"),
            ("at", b"10"),
        ])
        .unwrap();
        assert_eq!(r, Rule::new(Scope::Session, b"t", b"s", 10));
        let g = parse(&[("scope", b"global"), ("at", b"10")]).unwrap();
        assert_eq!(g, Rule::new(Scope::Global, b"", b"", 10));
        let t = parse(&[("scope", b"tenant"), ("tenant", b"acme"), ("at", b"10")]).unwrap();
        assert_eq!(t, Rule::new(Scope::Tenant, b"acme", b"", 10));
    }

    #[test]
    fn malformed_entries_are_refused_with_a_reason() {
        let long = vec![b'k'; MAX_KEY_LEN + 1];
        type Case<'a> = (Vec<(&'a str, &'a [u8])>, &'a str);
        let cases: Vec<Case> = vec![
            (
                vec![("tenant", b"t"), ("key", b"k"), ("at", b"1")],
                "missing field `scope`",
            ),
            (
                vec![("scope", b"role"), ("tenant", b"t"), ("key", b"k")],
                "missing field `at`",
            ),
            (
                vec![("scope", b"role"), ("key", b"k"), ("at", b"1")],
                "missing field `tenant`",
            ),
            (
                vec![("scope", b"role"), ("tenant", b"t"), ("at", b"1")],
                "missing field `key`",
            ),
            (
                vec![
                    ("scope", b"admin"),
                    ("tenant", b"t"),
                    ("key", b"k"),
                    ("at", b"1"),
                ],
                "bad scope",
            ),
            (
                vec![
                    ("scope", b"\xff"),
                    ("tenant", b"t"),
                    ("key", b"k"),
                    ("at", b"1"),
                ],
                "bad scope",
            ),
            (
                vec![
                    ("scope", b"role"),
                    ("tenant", b"t"),
                    ("key", b"k"),
                    ("at", b"soon"),
                ],
                "not a whole number",
            ),
            (
                vec![
                    ("scope", b"role"),
                    ("tenant", b"t"),
                    ("key", b"k"),
                    ("at", b"1.5"),
                ],
                "not a whole number",
            ),
            (
                vec![
                    ("scope", b"role"),
                    ("tenant", b"t"),
                    ("key", b"k"),
                    ("at", b""),
                ],
                "not a whole number",
            ),
            (
                vec![
                    ("scope", b"role"),
                    ("tenant", b"t"),
                    ("key", b"k"),
                    ("at", b"99999999999999999999"),
                ],
                "not a whole number",
            ),
            (
                vec![
                    ("scope", b"role"),
                    ("tenant", b"t"),
                    ("key", &long),
                    ("at", b"1"),
                ],
                "limit is 4096",
            ),
            (
                vec![
                    ("scope", b"role"),
                    ("tenant", b"t"),
                    ("key", b""),
                    ("at", b"1"),
                ],
                "non-empty",
            ),
            (
                vec![
                    ("scope", b"tenant"),
                    ("tenant", b"t"),
                    ("key", b"k"),
                    ("at", b"1"),
                ],
                "no key",
            ),
            (
                vec![("scope", b"global"), ("tenant", b"t"), ("at", b"1")],
                "no tenant",
            ),
            (
                vec![
                    ("scope", b"role"),
                    ("scope", b"role"),
                    ("tenant", b"t"),
                    ("key", b"k"),
                    ("at", b"1"),
                ],
                "twice",
            ),
        ];
        for (pairs, want) in cases {
            let err = parse(&pairs).unwrap_err();
            assert!(err.contains(want), "{pairs:?}: {err:?} lacks {want:?}");
        }
    }

    #[test]
    fn unix_times_are_plain_decimal_integers() {
        assert_eq!(parse_unix(b"0"), Some(0));
        assert_eq!(parse_unix(b"-12"), Some(-12));
        assert_eq!(parse_unix(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_unix(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [
            &b"+1"[..],
            b" 1",
            b"1 ",
            b"-",
            b"0x10",
            b"9223372036854775808",
            b"1e3",
        ] {
            assert_eq!(parse_unix(bad), None, "{bad:?}");
        }
    }
}
