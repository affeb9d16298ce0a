//! The token to check, owned: built from flags or from a JSON object of JWT claims.

use revledger::Token;
use serde_json::{Map, Value};

/// The claims `check` looks at, owning their bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Claims {
    pub tenant: Vec<u8>,
    pub subject: Vec<u8>,
    pub roles: Vec<Vec<u8>>,
    pub client: Vec<u8>,
    pub session: Vec<u8>,
    pub token_id: Vec<u8>,
    pub issued_at: i64,
}

impl Claims {
    /// Calls `f` with the borrowed [`Token`] view of these claims.
    pub fn with_token<R>(&self, f: impl FnOnce(&Token) -> R) -> R {
        let roles: Vec<&[u8]> = self.roles.iter().map(Vec::as_slice).collect();
        f(&Token {
            tenant: &self.tenant,
            subject: &self.subject,
            roles: &roles,
            client: &self.client,
            session: &self.session,
            token_id: &self.token_id,
            issued_at: self.issued_at,
        })
    }

    /// Reads a JSON object of JWT claims:
    /// - tenant: `tenant` or `tid`;
    /// - subject: `sub`;
    /// - entitlements: the union of `roles`, `groups`, `permissions` and `scope` (and
    ///   `scp`), each an array of strings or one space-separated string;
    /// - client: `azp` or `client_id`; session: `sid`; token id: `jti`;
    /// - `iat`: required, a number of Unix seconds (a fraction is rounded down, which can
    ///   only make the token count as older: fail closed).
    pub fn from_json(text: &str) -> Result<Claims, String> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| format!("claims are not valid JSON: {e}"))?;
        let obj = value
            .as_object()
            .ok_or("claims must be a JSON object, like {\"sub\":\"john\",\"iat\":1700000000}")?;
        let mut c = Claims {
            tenant: string_claim(obj, &["tenant", "tid"])?,
            subject: string_claim(obj, &["sub"])?,
            client: string_claim(obj, &["azp", "client_id"])?,
            session: string_claim(obj, &["sid"])?,
            token_id: string_claim(obj, &["jti"])?,
            ..Claims::default()
        };
        for name in ["roles", "groups", "permissions", "scope", "scp"] {
            match obj.get(name) {
                None | Some(Value::Null) => {}
                Some(Value::String(s)) => c
                    .roles
                    .extend(s.split_whitespace().map(|r| r.as_bytes().to_vec())),
                Some(Value::Array(items)) => {
                    for item in items {
                        let r = item.as_str().ok_or_else(|| {
                            format!("claim {name:?}: every entry must be a string, found {item}")
                        })?;
                        c.roles.push(r.as_bytes().to_vec());
                    }
                }
                Some(other) => {
                    return Err(format!(
                        "claim {name:?} must be an array of strings or a space-separated \
                         string, found {other}"
                    ))
                }
            }
        }
        c.roles.sort();
        c.roles.dedup();
        c.issued_at = match obj.get("iat") {
            None | Some(Value::Null) => {
                return Err("claims have no \"iat\": the issue time decides revocation".into())
            }
            Some(Value::Number(n)) => match (n.as_i64(), n.as_f64()) {
                (Some(i), _) => i,
                (None, Some(f)) if f.is_finite() && f.abs() < 9.0e18 => f.floor() as i64,
                _ => return Err(format!("claim \"iat\" {n} is out of range")),
            },
            Some(other) => {
                return Err(format!(
                    "claim \"iat\" must be a number of Unix seconds, found {other}"
                ))
            }
        };
        Ok(c)
    }
}

/// The first of `names` present (as a string) in `obj`; empty when none is.
fn string_claim(obj: &Map<String, Value>, names: &[&str]) -> Result<Vec<u8>, String> {
    for name in names {
        match obj.get(*name) {
            None | Some(Value::Null) => continue,
            Some(Value::String(s)) => return Ok(s.as_bytes().to_vec()),
            Some(other) => return Err(format!("claim {name:?} must be a string, found {other}")),
        }
    }
    Ok(Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roles(c: &Claims) -> Vec<&str> {
        c.roles
            .iter()
            .map(|r| std::str::from_utf8(r).unwrap())
            .collect()
    }

    #[test]
    fn reads_every_claim_and_its_aliases() {
        let c = Claims::from_json(
            r#"{"tid":"acme","sub":"john","roles":["super_admin","billing"],
                "groups":"ops eng","azp":"spa","sid":"s1","jti":"j1","iat":1700000000}"#,
        )
        .unwrap();
        assert_eq!(c.tenant, b"acme");
        assert_eq!(c.subject, b"john");
        assert_eq!(roles(&c), ["billing", "eng", "ops", "super_admin"]);
        assert_eq!(c.client, b"spa");
        assert_eq!(c.session, b"s1");
        assert_eq!(c.token_id, b"j1");
        assert_eq!(c.issued_at, 1_700_000_000);
        let c = Claims::from_json(r#"{"tenant":"t","client_id":"app","iat":5.9}"#).unwrap();
        assert_eq!(
            (c.tenant.as_slice(), c.client.as_slice()),
            (&b"t"[..], &b"app"[..])
        );
        assert_eq!(c.issued_at, 5);
    }

    #[test]
    fn space_separated_scope_string_is_split() {
        let c = Claims::from_json(r#"{"scope":"read  write\tadmin","iat":1}"#).unwrap();
        assert_eq!(roles(&c), ["admin", "read", "write"]);
    }

    #[test]
    fn refuses_misshapen_claims() {
        for (json, needle) in [
            ("[1]", "JSON object"),
            ("{", "not valid JSON"),
            (r#"{"sub":"x"}"#, "no \"iat\""),
            (r#"{"iat":"1"}"#, "must be a number"),
            (r#"{"iat":1,"sub":5}"#, "\"sub\" must be a string"),
            (r#"{"iat":1,"roles":[1]}"#, "every entry must be a string"),
            (r#"{"iat":1,"roles":{}}"#, "array of strings"),
            (r#"{"iat":1e300}"#, "out of range"),
        ] {
            let err = Claims::from_json(json).unwrap_err();
            assert!(err.contains(needle), "{json}: {err}");
        }
    }
}
