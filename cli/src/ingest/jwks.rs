//! An SSF transmitter's public keys: a JWKS read from a file or fetched from its
//! `jwks_uri`, kept in memory, fetched again when stale or when a SET names a `kid` it
//! does not hold (a key rotation) — at most once per `jwks_min_refresh_secs`, so SETs
//! with made-up `kid`s cannot turn the receiver into a fetch loop.

use super::event::{Refusal, RefusalKind};
use jsonwebtoken::jwk::{Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};
use parking_lot::RwLock;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Largest JWKS document read or fetched.
const MAX_JWKS_BYTES: usize = 1 << 20;
/// Time allowed to fetch a JWKS.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// One verification key.
pub struct VerifyKey {
    /// Its `kid`, if it has one.
    pub kid: Option<String>,
    /// The algorithm it is restricted to (`alg` of the JWK), if any.
    pub alg: Option<Algorithm>,
    family: AlgorithmFamily,
    curve: Option<jsonwebtoken::jwk::EllipticCurve>,
    /// The key, ready for `jsonwebtoken::decode`.
    pub key: DecodingKey,
}

impl VerifyKey {
    /// Whether a JWS signed with `alg` may be verified with this key.
    pub fn accepts(&self, alg: Algorithm) -> bool {
        use jsonwebtoken::jwk::EllipticCurve as C;
        if self.family != alg.family() || self.alg.is_some_and(|a| a != alg) {
            return false;
        }
        match (alg, &self.curve) {
            (Algorithm::ES256, Some(c)) => *c == C::P256,
            (Algorithm::ES384, Some(c)) => *c == C::P384,
            (Algorithm::EdDSA, Some(c)) => *c == C::Ed25519,
            (_, _) => true,
        }
    }
}

/// The keys of one JWKS document, by `kid`.
#[derive(Default)]
pub struct KeySet {
    keys: Vec<Arc<VerifyKey>>,
    by_kid: HashMap<String, Vec<Arc<VerifyKey>>>,
}

impl KeySet {
    /// Parses a JWKS (`{"keys": [...]}`). Keys that cannot verify a SET (symmetric keys,
    /// encryption keys, unknown key types) are skipped; a document with no usable key is
    /// an error.
    pub fn parse(json: &[u8]) -> Result<KeySet, String> {
        let doc: serde_json::Value =
            serde_json::from_slice(json).map_err(|e| format!("JWKS is not JSON: {e}"))?;
        let keys = doc
            .get("keys")
            .and_then(|k| k.as_array())
            .ok_or("JWKS has no \"keys\" array")?;
        let mut set = KeySet::default();
        for k in keys {
            let Ok(jwk) = serde_json::from_value::<Jwk>(k.clone()) else {
                continue;
            };
            if let Some(key) = verify_key(&jwk) {
                let key = Arc::new(key);
                if let Some(kid) = &key.kid {
                    set.by_kid.entry(kid.clone()).or_default().push(key.clone());
                }
                set.keys.push(key);
            }
        }
        if set.keys.is_empty() {
            return Err("JWKS holds no public signature key (RSA, EC or OKP)".into());
        }
        Ok(set)
    }

    /// The keys that may verify a JWS with this `kid` (any key when it names none) and
    /// `alg`.
    pub fn candidates(&self, kid: Option<&str>, alg: Algorithm) -> Vec<Arc<VerifyKey>> {
        let pool: &[Arc<VerifyKey>] = match kid {
            Some(k) => self.by_kid.get(k).map_or(&[], Vec::as_slice),
            None => &self.keys,
        };
        pool.iter().filter(|k| k.accepts(alg)).cloned().collect()
    }

    /// How many keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

fn verify_key(jwk: &Jwk) -> Option<VerifyKey> {
    use jsonwebtoken::jwk::AlgorithmParameters as P;
    if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
        return None;
    }
    let (family, curve) = match &jwk.algorithm {
        P::RSA(_) => (AlgorithmFamily::Rsa, None),
        P::EllipticCurve(ec) => (AlgorithmFamily::Ec, Some(ec.curve.clone())),
        P::OctetKeyPair(okp) => (AlgorithmFamily::Ed, Some(okp.curve.clone())),
        // A shared secret never verifies a SET here; unknown types are skipped.
        _ => return None,
    };
    let alg = match jwk.common.key_algorithm {
        None => None,
        Some(a) => Some(key_algorithm(a)?),
    };
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some(VerifyKey {
        kid: jwk.common.key_id.clone(),
        alg,
        family,
        curve,
        key,
    })
}

fn key_algorithm(a: KeyAlgorithm) -> Option<Algorithm> {
    Some(match a {
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

/// Where the keys come from.
pub enum KeySource {
    /// A JWKS file.
    File(PathBuf),
    /// A `jwks_uri`.
    Uri {
        /// The URL.
        url: String,
        /// The HTTPS client (ring-based rustls, system or configured roots).
        client: reqwest::Client,
    },
}

impl KeySource {
    /// A source fetching `url`, trusting the PEM certificates of `ca_file` or, without
    /// one, the system's roots.
    pub fn uri(url: &str, ca_file: Option<&Path>) -> Result<KeySource, String> {
        Ok(KeySource::Uri {
            url: url.to_string(),
            client: https_client(ca_file, FETCH_TIMEOUT)?,
        })
    }

    async fn load(&self) -> Result<KeySet, String> {
        match self {
            KeySource::File(path) => {
                let bytes = tokio::fs::read(path)
                    .await
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                if bytes.len() > MAX_JWKS_BYTES {
                    return Err(format!(
                        "{} is larger than {MAX_JWKS_BYTES} bytes",
                        path.display()
                    ));
                }
                KeySet::parse(&bytes).map_err(|e| format!("{}: {e}", path.display()))
            }
            KeySource::Uri { url, client } => {
                let mut resp = client
                    .get(url)
                    .header("accept", "application/json, application/jwk-set+json")
                    .send()
                    .await
                    .map_err(|e| format!("GET {url}: {e}"))?;
                if !resp.status().is_success() {
                    return Err(format!("GET {url}: {}", resp.status()));
                }
                let mut body = Vec::new();
                while let Some(chunk) = resp.chunk().await.map_err(|e| format!("GET {url}: {e}"))? {
                    body.extend_from_slice(&chunk);
                    if body.len() > MAX_JWKS_BYTES {
                        return Err(format!("GET {url}: larger than {MAX_JWKS_BYTES} bytes"));
                    }
                }
                KeySet::parse(&body).map_err(|e| format!("{url}: {e}"))
            }
        }
    }

    /// For logs.
    pub fn describe(&self) -> String {
        match self {
            KeySource::File(p) => p.display().to_string(),
            KeySource::Uri { url, .. } => url.clone(),
        }
    }
}

/// An HTTPS client for a transmitter's endpoints: rustls with ring (chosen here, not the
/// process default), trusting the PEM certificates of `ca_file` or, without one, the
/// system's roots; no proxy; `timeout` per request.
pub fn https_client(ca_file: Option<&Path>, timeout: Duration) -> Result<reqwest::Client, String> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            use rustls::pki_types::pem::PemObject;
            let certs = rustls::pki_types::CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            for cert in certs {
                let cert = cert.map_err(|e| format!("{}: {e}", path.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert); // a malformed system certificate is skipped
            }
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::limited(3))
        .no_proxy()
        .build()
        .map_err(|e| format!("HTTP client: {e}"))
}

/// A transmitter's keys, refreshed as the module doc says.
pub struct KeyStore {
    source: KeySource,
    current: RwLock<(Arc<KeySet>, Option<Instant>)>,
    last_attempt: tokio::sync::Mutex<Option<Instant>>,
    min_refresh: Duration,
    max_age: Duration,
}

/// The result of a load, for the caller's logs and metrics.
pub enum Loaded {
    /// This many keys.
    Ok(usize),
    /// The error; the previous keys stay in use.
    Failed(String),
    /// Not attempted: the last attempt was too recent.
    Skipped,
}

impl KeyStore {
    /// A store that holds no key until [`KeyStore::refresh`] loads some.
    pub fn new(source: KeySource, min_refresh: Duration, max_age: Duration) -> KeyStore {
        KeyStore {
            source,
            current: RwLock::new((Arc::new(KeySet::default()), None)),
            last_attempt: tokio::sync::Mutex::new(None),
            min_refresh,
            max_age,
        }
    }

    /// Where the keys come from.
    pub fn source(&self) -> &KeySource {
        &self.source
    }

    /// The keys in use.
    pub fn current(&self) -> Arc<KeySet> {
        self.current.read().0.clone()
    }

    fn is_stale(&self) -> bool {
        self.current
            .read()
            .1
            .is_none_or(|at| at.elapsed() >= self.max_age)
    }

    /// Loads the keys again unless the last attempt is less than `min_refresh` old
    /// (concurrent callers wait for one load). A failed load keeps the keys in use.
    pub async fn refresh(&self, force: bool) -> Loaded {
        let mut last = self.last_attempt.lock().await;
        if !force && last.is_some_and(|at| at.elapsed() < self.min_refresh) {
            return Loaded::Skipped;
        }
        *last = Some(Instant::now());
        match self.source.load().await {
            Ok(set) => {
                let n = set.len();
                *self.current.write() = (Arc::new(set), Some(Instant::now()));
                Loaded::Ok(n)
            }
            Err(e) => Loaded::Failed(e),
        }
    }

    /// The keys that may verify a JWS with this `kid` and `alg`, loading the keys again
    /// when they are stale or the `kid` is unknown (`on_load` hears of every load).
    pub async fn candidates(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
        on_load: &(dyn Fn(&Loaded) + Sync),
    ) -> Result<Vec<Arc<VerifyKey>>, Refusal> {
        if self.is_stale() {
            let l = self.refresh(false).await;
            on_load(&l);
        }
        let found = self.current().candidates(kid, alg);
        if !found.is_empty() {
            return Ok(found);
        }
        let l = self.refresh(false).await;
        on_load(&l);
        let found = self.current().candidates(kid, alg);
        if found.is_empty() {
            return Err(Refusal::new(
                RefusalKind::InvalidKey,
                match kid {
                    Some(k) => format!(
                        "no {alg:?} key with kid {k:?} in {}",
                        self.source.describe()
                    ),
                    None => format!("no {alg:?} key in {}", self.source.describe()),
                },
            ));
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 7517 Appendix A.1 public keys.
    const RFC7517_A1: &str = r#"{"keys":[
      {"kty":"EC","crv":"P-256","x":"MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4",
       "y":"4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM","use":"enc","kid":"1"},
      {"kty":"RSA","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
       "e":"AQAB","alg":"RS256","kid":"2011-04-29"},
      {"kty":"oct","k":"GawgguFyGrWKav7AX4VKUg","kid":"hmac"},
      {"kty":"XYZ","kid":"unknown"}
    ]}"#;

    #[test]
    fn only_public_signature_keys_are_kept() {
        let set = KeySet::parse(RFC7517_A1.as_bytes()).unwrap();
        assert_eq!(
            set.len(),
            1,
            "the enc EC key, the oct key and the unknown type are skipped"
        );
        assert_eq!(
            set.candidates(Some("2011-04-29"), Algorithm::RS256).len(),
            1
        );
        assert_eq!(set.candidates(None, Algorithm::RS256).len(), 1);
        assert!(
            set.candidates(Some("2011-04-29"), Algorithm::RS384)
                .is_empty(),
            "alg pinned"
        );
        assert!(set
            .candidates(Some("2011-04-29"), Algorithm::ES256)
            .is_empty());
        assert!(set.candidates(Some("hmac"), Algorithm::HS256).is_empty());
        assert!(set.candidates(Some("other"), Algorithm::RS256).is_empty());
    }

    #[test]
    fn documents_without_usable_keys_are_errors() {
        for doc in [
            "",
            "{}",
            r#"{"keys":{}}"#,
            r#"{"keys":[{"kty":"oct","k":"AA"}]}"#,
        ] {
            assert!(KeySet::parse(doc.as_bytes()).is_err(), "{doc}");
        }
    }
}
