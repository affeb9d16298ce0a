//! The token to check, owned: built from flags, or read from a JWT payload or a compact
//! JWS through the library's claim mappings (`revledger::ClaimMapping`, DESIGN §7): the
//! command line reads tokens exactly as gateways do.

use revledger::{ClaimMapping, Token};

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

    fn of(t: &Token) -> Claims {
        Claims {
            tenant: t.tenant.to_vec(),
            subject: t.subject.to_vec(),
            roles: t.roles.iter().map(|r| r.to_vec()).collect(),
            client: t.client.to_vec(),
            session: t.session.to_vec(),
            token_id: t.token_id.to_vec(),
            issued_at: t.issued_at,
        }
    }

    /// Reads a JWT payload (a JSON object) through `mapping`.
    pub fn from_payload(mapping: &ClaimMapping, json: &[u8]) -> revledger::Result<Claims> {
        mapping.with_claims(json, Claims::of)
    }

    /// Reads the payload of a compact JWS through `mapping`; the signature is not verified.
    pub fn from_jwt(mapping: &ClaimMapping, jwt: &[u8]) -> revledger::Result<Claims> {
        mapping.with_jwt(jwt, Claims::of)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_through_the_library_mapping() {
        let generic = ClaimMapping::new("generic").unwrap();
        let c = Claims::from_payload(
            &generic,
            br#"{"tid":"acme","sub":"john","roles":["super_admin"],"scope":"a b","iat":7}"#,
        )
        .unwrap();
        assert_eq!(c.tenant, b"acme");
        assert_eq!(c.roles, [&b"super_admin"[..], b"a", b"b"]);
        assert_eq!(c.issued_at, 7);
        let e = Claims::from_payload(&generic, br#"{"sub":1,"iat":1}"#).unwrap_err();
        assert!(
            e.to_string().contains("claim \"sub\" must be a string"),
            "{e}"
        );
        // {"sub":"x","iat":1}
        let jwt = b"e30.eyJzdWIiOiJ4IiwiaWF0IjoxfQ.c2ln";
        assert_eq!(Claims::from_jwt(&generic, jwt).unwrap().subject, b"x");
    }
}
