//! Signed rules (docs/SYNC.md §5): a publisher signs each entry with an Ed25519 key; a
//! sync process given trusted public keys applies only entries signed by one of them,
//! for the scopes that key may publish. Anyone who can append to the stream can then
//! no longer revoke everyone.
//!
//! What is signed is the rule and the stream's name, in a fixed byte layout that Go
//! (`crypto/ed25519`) and Python (`cryptography`) build the same way:
//!
//! ```text
//! "revledger-rule-v1" 0x00
//! u32 LE stream length, stream bytes
//! u8 scope (0 global … 6 token, the revledger_scope values)
//! u32 LE tenant length, tenant bytes
//! u32 LE key length, key bytes
//! i64 LE at
//! ```
//!
//! The entry carries the key's name in `kid` and the 64-byte signature in `sig`, base64
//! (RFC 4648 §4, padded).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use revledger::{Error, Rule, Scope};
use std::collections::HashMap;
use std::fmt;
use std::path::Path;

/// Prefix of every signed message: the format's name and version, then a zero byte.
pub const DOMAIN: &[u8] = b"revledger-rule-v1\0";
/// Longest key name (`kid`), in bytes.
pub const MAX_KID_LEN: usize = 64;
/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410), before the 32 key bytes.
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// The bytes a publisher signs for `rule` published to `stream`.
pub fn signed_message(stream: &[u8], rule: &Rule) -> Vec<u8> {
    let mut m =
        Vec::with_capacity(DOMAIN.len() + 21 + stream.len() + rule.tenant.len() + rule.key.len());
    m.extend_from_slice(DOMAIN);
    for (i, part) in [stream, rule.tenant, rule.key].into_iter().enumerate() {
        if i == 1 {
            m.push(rule.scope as u8);
        }
        m.extend_from_slice(&(part.len() as u32).to_le_bytes());
        m.extend_from_slice(part);
    }
    m.extend_from_slice(&rule.at.to_le_bytes());
    m
}

fn check_kid(kid: &str) -> revledger::Result<()> {
    let ok = !kid.is_empty()
        && kid.len() <= MAX_KID_LEN
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-@".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "key name {kid:?}: 1 to {MAX_KID_LEN} of A-Z a-z 0-9 . _ - @"
        )))
    }
}

/// A publisher's signing key and the name (`kid`) the sync processes know it by.
#[derive(Clone)]
pub struct Signer {
    kid: String,
    key: SigningKey,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("kid", &self.kid)
            .field("public_key", &self.public_key_base64())
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// A signer of `key` named `kid` (`[A-Za-z0-9._@-]{1,64}`).
    pub fn new(kid: &str, key: SigningKey) -> revledger::Result<Signer> {
        check_kid(kid)?;
        Ok(Signer {
            kid: kid.to_string(),
            key,
        })
    }

    /// A new random key named `kid`.
    pub fn generate(kid: &str) -> revledger::Result<Signer> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed)
            .map_err(|e| Error::InvalidArgument(format!("no randomness for a key: {e}")))?;
        Signer::new(kid, SigningKey::from_bytes(&seed))
    }

    /// The key in a PKCS#8 PEM file (`-----BEGIN PRIVATE KEY-----`, as `openssl genpkey
    /// -algorithm ed25519` writes), named `kid`. The error names the file, never its bytes.
    pub fn from_pem_file(kid: &str, path: &Path) -> revledger::Result<Signer> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::InvalidArgument(format!("signing key {}: {e}", path.display())))?;
        let key = SigningKey::from_pkcs8_pem(&text).map_err(|e| {
            Error::InvalidArgument(format!(
                "signing key {}: not an Ed25519 PKCS#8 PEM private key ({e})",
                path.display()
            ))
        })?;
        Signer::new(kid, key)
    }

    /// The key as a PKCS#8 PEM document, for a key file.
    pub fn to_pem(&self) -> String {
        self.key
            .to_pkcs8_pem(Default::default())
            .map(|z| z.to_string())
            .unwrap_or_default()
    }

    /// The key's name.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key, base64 of its 32 bytes: the second column of a trusted-keys line.
    pub fn public_key_base64(&self) -> String {
        B64.encode(self.key.verifying_key().as_bytes())
    }

    /// The `sig` field for `rule` published to `stream`.
    pub fn sign(&self, stream: &[u8], rule: &Rule) -> String {
        B64.encode(self.key.sign(&signed_message(stream, rule)).to_bytes())
    }
}

/// Scopes as a bit set (bit n: the scope whose number is n).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scopes(u8);

impl Scopes {
    /// Every scope.
    pub const ALL: Scopes = Scopes(0x7f);

    /// Whether `scope` is in the set.
    pub fn allows(self, scope: Scope) -> bool {
        self.0 & (1 << scope as u8) != 0
    }

    /// `*` (every scope) or names separated by commas: `session,token`.
    pub fn parse(text: &str) -> Result<Scopes, String> {
        if text == "*" {
            return Ok(Scopes::ALL);
        }
        let mut bits = 0u8;
        for name in text.split(',') {
            let s = Scope::parse(name.trim())
                .ok_or_else(|| format!("{name:?} is not a scope (global, tenant, subject, role, client, session, token, or * for all)"))?;
            bits |= 1 << s as u8;
        }
        Ok(Scopes(bits))
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == Scopes::ALL {
            return f.write_str("*");
        }
        let names: Vec<&str> = (0..7u8)
            .filter_map(Scope::from_u8)
            .filter(|s| self.allows(*s))
            .map(Scope::name)
            .collect();
        f.write_str(&names.join(","))
    }
}

/// The public keys a sync process trusts, each with the scopes it may publish.
#[derive(Clone, Debug, Default)]
pub struct TrustedKeys {
    keys: HashMap<String, (VerifyingKey, Scopes)>,
}

impl TrustedKeys {
    /// Reads a trusted-keys file: one key a line, `<kid> <public key> <scopes>`, blank
    /// lines and `#` comments ignored. The public key is base64 of its 32 bytes, or of the
    /// DER SubjectPublicKeyInfo (the body of `openssl pkey -pubout`); scopes are `*` or a
    /// comma-separated list (`session,token`).
    pub fn from_file(path: &Path) -> revledger::Result<TrustedKeys> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::InvalidArgument(format!("trusted keys {}: {e}", path.display())))?;
        TrustedKeys::parse(&text)
            .map_err(|e| Error::InvalidArgument(format!("trusted keys {}: {e}", path.display())))
    }

    /// Parses the text of a trusted-keys file (see [`TrustedKeys::from_file`]).
    pub fn parse(text: &str) -> Result<TrustedKeys, String> {
        let mut keys = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let at = |e: String| format!("line {}: {e}", n + 1);
            let cols: Vec<&str> = line.split_whitespace().collect();
            let [kid, key, scopes] = cols[..] else {
                return Err(at("want `<kid> <base64 public key> <scopes>`".into()));
            };
            check_kid(kid).map_err(|e| at(e.to_string()))?;
            let raw = B64
                .decode(key)
                .map_err(|e| at(format!("public key is not base64: {e}")))?;
            let bytes: &[u8] = match raw.len() {
                32 => &raw,
                44 if raw[..12] == SPKI_PREFIX => &raw[12..],
                l => return Err(at(format!("public key of {l} bytes: want an Ed25519 key (32 bytes, or its 44-byte DER SubjectPublicKeyInfo)"))),
            };
            let vk = VerifyingKey::from_bytes(bytes.try_into().expect("32 bytes"))
                .map_err(|e| at(format!("not an Ed25519 public key: {e}")))?;
            let scopes = Scopes::parse(scopes).map_err(at)?;
            if keys.insert(kid.to_string(), (vk, scopes)).is_some() {
                return Err(at(format!("key {kid:?} appears twice")));
            }
        }
        if keys.is_empty() {
            return Err("no key: a sync process that trusts no key could apply nothing".into());
        }
        Ok(TrustedKeys { keys })
    }

    /// Adds `signer`'s public key with these scopes (for tests and embedding).
    pub fn insert(&mut self, signer: &Signer, scopes: Scopes) {
        self.keys
            .insert(signer.kid.clone(), (signer.key.verifying_key(), scopes));
    }

    /// How many keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Accepts `rule` read from `stream` if `kid` names a trusted key allowed its scope
    /// and `sig` is that key's signature of it; otherwise says why not.
    pub fn verify(
        &self,
        stream: &[u8],
        rule: &Rule,
        kid: Option<&[u8]>,
        sig: Option<&[u8]>,
    ) -> Result<(), String> {
        let c = self.candidate(stream, rule, kid, sig)?;
        c.key
            .verify(&c.message, &c.signature)
            .map_err(|_| format!("bad signature for key {:?}", c.kid))?;
        c.scope_check(rule)
    }

    /// Verifies many entries at once (`(rule, kid, sig)`, read from `stream`): one
    /// batched Ed25519 verification (about twice as fast per signature) when every
    /// signature holds, entry by entry otherwise to name the bad ones.
    pub fn verify_many(&self, stream: &[u8], entries: &[SignedRule]) -> Vec<Result<(), String>> {
        let cands: Vec<Result<Candidate, String>> = entries
            .iter()
            .map(|(r, k, s)| self.candidate(stream, r, *k, *s))
            .collect();
        let ok: Vec<&Candidate> = cands.iter().filter_map(|c| c.as_ref().ok()).collect();
        let batch_holds = ok.len() > 1 && {
            let msgs: Vec<&[u8]> = ok.iter().map(|c| c.message.as_slice()).collect();
            let sigs: Vec<Signature> = ok.iter().map(|c| c.signature).collect();
            let keys: Vec<VerifyingKey> = ok.iter().map(|c| c.key).collect();
            ed25519_dalek::verify_batch(&msgs, &sigs, &keys).is_ok()
        };
        cands
            .into_iter()
            .zip(entries)
            .map(|(c, (rule, _, _))| {
                let c = c?;
                if !batch_holds {
                    c.key
                        .verify(&c.message, &c.signature)
                        .map_err(|_| format!("bad signature for key {:?}", c.kid))?;
                }
                c.scope_check(rule)
            })
            .collect()
    }

    /// The key, message and signature to verify for an entry, or why there is none.
    fn candidate(
        &self,
        stream: &[u8],
        rule: &Rule,
        kid: Option<&[u8]>,
        sig: Option<&[u8]>,
    ) -> Result<Candidate, String> {
        let (Some(kid), Some(sig)) = (kid, sig) else {
            return Err("unsigned entry (no `kid` and `sig` fields)".into());
        };
        let kid_text = String::from_utf8_lossy(&kid[..kid.len().min(MAX_KID_LEN)]).into_owned();
        let Some((vk, scopes)) = std::str::from_utf8(kid).ok().and_then(|k| self.keys.get(k))
        else {
            return Err(format!("signed by an unknown key {kid_text:?}"));
        };
        let signature = B64
            .decode(sig)
            .ok()
            .and_then(|b| Signature::from_slice(&b).ok())
            .ok_or_else(|| format!("signature of key {kid_text:?} is not 64 bytes of base64"))?;
        Ok(Candidate {
            kid: kid_text,
            key: *vk,
            scopes: *scopes,
            message: signed_message(stream, rule),
            signature,
        })
    }
}

/// A rule as read from an entry, with its `kid` and `sig` fields (if any).
pub type SignedRule<'a> = (Rule<'a>, Option<&'a [u8]>, Option<&'a [u8]>);

/// One entry's signature to check.
struct Candidate {
    kid: String,
    key: VerifyingKey,
    scopes: Scopes,
    message: Vec<u8>,
    signature: Signature,
}

impl Candidate {
    fn scope_check(&self, rule: &Rule) -> Result<(), String> {
        if self.scopes.allows(rule.scope) {
            Ok(())
        } else {
            Err(format!(
                "key {:?} may publish {} rules, not {}",
                self.kid, self.scopes, rule.scope
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signed_message_is_the_documented_layout() {
        let r = Rule::new(Scope::Role, b"acme", b"admin", -2);
        let m = signed_message(b"s", &r);
        let mut want = b"revledger-rule-v1\0".to_vec();
        want.extend_from_slice(&[1, 0, 0, 0, b's', 3, 4, 0, 0, 0]);
        want.extend_from_slice(b"acme");
        want.extend_from_slice(&[5, 0, 0, 0]);
        want.extend_from_slice(b"admin");
        want.extend_from_slice(&(-2i64).to_le_bytes());
        assert_eq!(m, want);
    }

    #[test]
    fn signatures_verify_and_everything_else_is_refused_with_a_reason() {
        let iam = Signer::generate("iam").unwrap();
        let logout = Signer::generate("logout-svc").unwrap();
        let stranger = Signer::generate("iam").unwrap();
        let text = format!(
            "# trusted publishers\n\niam {} *\nlogout-svc {} session,token  # logouts only\n",
            iam.public_key_base64(),
            logout.public_key_base64()
        );
        let keys = TrustedKeys::parse(&text).unwrap();
        assert_eq!(keys.len(), 2);
        let g = Rule::new(Scope::Global, b"", b"", 10);
        let s = Rule::new(Scope::Session, b"acme", b"sid-1", 10);
        let ok = |signer: &Signer, r: &Rule, stream: &[u8]| {
            let sig = signer.sign(stream, r);
            keys.verify(
                b"rev",
                r,
                Some(signer.kid().as_bytes()),
                Some(sig.as_bytes()),
            )
        };
        assert_eq!(ok(&iam, &g, b"rev"), Ok(()));
        assert_eq!(ok(&logout, &s, b"rev"), Ok(()));
        assert!(ok(&logout, &g, b"rev")
            .unwrap_err()
            .contains("may publish session,token rules, not global"));
        assert!(ok(&stranger, &g, b"rev")
            .unwrap_err()
            .contains("bad signature"));
        assert!(ok(&iam, &g, b"other-stream")
            .unwrap_err()
            .contains("bad signature"));
        let sig = iam.sign(b"rev", &g);
        let other = Rule::new(Scope::Global, b"", b"", 11);
        assert!(keys
            .verify(b"rev", &other, Some(b"iam"), Some(sig.as_bytes()))
            .unwrap_err()
            .contains("bad signature"));
        assert!(keys
            .verify(b"rev", &g, None, None)
            .unwrap_err()
            .contains("unsigned"));
        assert!(keys
            .verify(b"rev", &g, Some(b"who"), Some(sig.as_bytes()))
            .unwrap_err()
            .contains("unknown key"));
        assert!(keys
            .verify(b"rev", &g, Some(b"iam"), Some(b"!!"))
            .unwrap_err()
            .contains("64 bytes"));
    }

    #[test]
    fn keys_round_trip_through_pem_and_spki_and_bad_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let s = Signer::generate("k1").unwrap();
        let pem = dir.path().join("k1.pem");
        std::fs::write(&pem, s.to_pem()).unwrap();
        let back = Signer::from_pem_file("k1", &pem).unwrap();
        assert_eq!(back.public_key_base64(), s.public_key_base64());
        let mut spki = SPKI_PREFIX.to_vec();
        spki.extend_from_slice(&B64.decode(s.public_key_base64()).unwrap());
        let keys = TrustedKeys::parse(&format!("k1 {} role", B64.encode(&spki))).unwrap();
        let r = Rule::new(Scope::Role, b"t", b"r", 1);
        assert!(keys
            .verify(b"x", &r, Some(b"k1"), Some(s.sign(b"x", &r).as_bytes()))
            .is_ok());
        for bad in [
            "",
            "k1 AAAA *",
            "k1 not-base64! *",
            &format!("k1 {} admin", s.public_key_base64()),
            &format!("k1 {}", s.public_key_base64()),
            &format!("k1 {0} *\nk1 {0} *", s.public_key_base64()),
            &format!("bad/kid {} *", s.public_key_base64()),
        ] {
            assert!(TrustedKeys::parse(bad).is_err(), "{bad:?}");
        }
        std::fs::write(&pem, "garbage").unwrap();
        assert!(Signer::from_pem_file("k1", &pem)
            .unwrap_err()
            .to_string()
            .contains("PKCS#8"));
        assert!(Signer::generate("").is_err());
        assert!(!format!("{s:?}").contains(&s.to_pem()));
        assert_eq!(
            Scopes::parse("session,token").unwrap().to_string(),
            "session,token"
        );
    }
}
