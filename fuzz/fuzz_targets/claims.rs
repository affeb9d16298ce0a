//! Claim mappings: arbitrary bytes as a JWT payload (or as a compact JWS around one, or as
//! a pointer spec and a payload). Never a panic; every refusal is `InvalidArgument`; a
//! token read is within the limits, and the same when read again. For the built-in
//! mappings, a payload that serde_json reads as JSON without duplicate member names must
//! give what the reference model of tests/claims_model/model.rs gives (DESIGN.md §7's
//! table over serde_json's tree): the same token, or a refusal naming a claim the model
//! found wrong.
//!
//! Input: byte 0 chooses; bits 0–1 the built-in mapping (`generic`, `auth0`, `keycloak`,
//! `entra`), bit 2 a compact JWS (`h.<base64url>.s`) instead of the bare payload, bit 3 a
//! pointer spec: the rest is `spec NUL payload`.
#![no_main]

#[path = "../../tests/claims_model/model.rs"]
#[allow(dead_code)]
mod model;

use libfuzzer_sys::fuzz_target;
use revledger::{ClaimMapping, Error, MAX_KEY_LEN, MAX_ROLES};
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use std::collections::HashSet;
use std::fmt;

const BUILTINS: [&str; 4] = ["generic", "auth0", "keycloak", "entra"];

fuzz_target!(|input: &[u8]| {
    let Some((&mode, rest)) = input.split_first() else {
        return;
    };
    let (mapping, name, payload) = if mode & 8 != 0 {
        let Some(nul) = rest.iter().position(|&b| b == 0) else {
            return;
        };
        let Ok(spec) = std::str::from_utf8(&rest[..nul]) else {
            return;
        };
        match ClaimMapping::new(spec) {
            Ok(m) => (m, None, &rest[nul + 1..]),
            Err(e) => {
                assert!(
                    matches!(e, Error::InvalidArgument(_)),
                    "spec refused: {e:?}"
                );
                return;
            }
        }
    } else {
        let name = BUILTINS[(mode & 3) as usize];
        (ClaimMapping::new(name).unwrap(), Some(name), rest)
    };
    let jwt = (mode & 4 != 0).then(|| {
        format!(
            "h.{}.s",
            base64_simd::URL_SAFE_NO_PAD.encode_to_string(payload)
        )
    });
    let read = || match &jwt {
        Some(jwt) => read_jwt(&mapping, jwt.as_bytes()),
        None => model::read(&mapping, payload),
    };
    let (got, again) = (read(), read());
    match (&got, &again) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "read twice"),
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "refused twice"),
        _ => panic!("not the same answer twice: {got:?} then {again:?}"),
    }
    match &got {
        Ok(t) => {
            assert!(t.roles.len() <= MAX_ROLES);
            assert!(t
                .roles
                .iter()
                .all(|r| !r.is_empty() && r.len() <= MAX_KEY_LEN));
            for s in [&t.tenant, &t.subject, &t.client, &t.session, &t.token_id] {
                assert!(s.len() <= MAX_KEY_LEN);
            }
        }
        Err(e) => assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}"),
    }

    // The oracle: built-in mappings on JSON that serde_json reads, without duplicates.
    let Some(name) = name else {
        return;
    };
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(payload) else {
        return;
    };
    if serde_json::from_slice::<NoDuplicates>(payload).is_err() {
        return;
    }
    let want = model::expected(&model::spec(name), &value);
    let text = String::from_utf8_lossy(payload);
    match (want, got) {
        (Ok(want), Ok(got)) => assert_eq!(got, want, "{name} reading {text}"),
        (Err(claims), Err(Error::InvalidArgument(message))) => assert!(
            model::names_one_of(&message, &claims),
            "{name} reading {text}: the error {message:?} names none of {claims:?}"
        ),
        (want, got) => panic!("{name} reading {text}: read {got:?}, the model says {want:?}"),
    }
});

fn read_jwt(mapping: &ClaimMapping, jwt: &[u8]) -> Result<model::Read, Error> {
    revledger::claims::jwt_payload(jwt).and_then(|json| model::read(mapping, &json))
}

/// Deserializes only JSON whose objects have no member name twice (serde_json's tree
/// keeps the last of them; the reader refuses a single-valued claim found twice).
struct NoDuplicates;

impl<'de> Deserialize<'de> for NoDuplicates {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NoDuplicatesVisitor)
    }
}

struct NoDuplicatesVisitor;

impl<'de> Visitor<'de> for NoDuplicatesVisitor {
    type Value = NoDuplicates;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("JSON without duplicate member names")
    }
    fn visit_bool<E>(self, _: bool) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_i64<E>(self, _: i64) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_u64<E>(self, _: u64) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_f64<E>(self, _: f64) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_str<E>(self, _: &str) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_unit<E>(self) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<NoDuplicates, A::Error> {
        while seq.next_element::<NoDuplicates>()?.is_some() {}
        Ok(NoDuplicates)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NoDuplicates, A::Error> {
        let mut seen = HashSet::new();
        while let Some(name) = map.next_key::<String>()? {
            if !seen.insert(name) {
                return Err(serde::de::Error::custom("a member name appears twice"));
            }
            map.next_value::<NoDuplicates>()?;
        }
        Ok(NoDuplicates)
    }
}
