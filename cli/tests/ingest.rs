//! `revledger ingest` as a running process, fed over real HTTP with what others wrote:
//! Security Event Tokens built from the examples of the CAEP 1.0 and RISC 1.0
//! specifications and signed by jwcrypto (Python) at test time, keys served as a JWKS
//! file or from a `jwks_uri`; then the next check of a token says revoked.
//!
//! Needs python3 with jwcrypto (scripts/install-deps installs it).

use revledger::{ClaimMapping, Ledger, Scope, Verdict};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const BIN: &str = env!("CARGO_BIN_EXE_revledger");
const DEADLINE: Duration = Duration::from_secs(30);
const ISS: &str = "https://idp.example.com/123456789/";
const AUD: &str = "https://sp.example.com/caep";
const CAEP: &str = "https://schemas.openid.net/secevent/caep/event-type/";
const RISC: &str = "https://schemas.openid.net/secevent/risc/event-type/";
const SSF: &str = "https://schemas.openid.net/secevent/ssf/event-type/";

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// An HTTP client; rustls with ring, trusting `roots` (the receiver is plain HTTP unless a
/// test serves TLS).
fn http_with(roots: rustls::RootCertStore) -> reqwest::blocking::Client {
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    reqwest::blocking::Client::builder()
        .tls_backend_preconfigured(tls)
        .build()
        .unwrap()
}

fn http() -> reqwest::blocking::Client {
    http_with(rustls::RootCertStore::empty())
}

fn jose() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ingest/jose.py")
}

/// Keys made by jwcrypto in a fresh directory.
struct Keys {
    dir: tempfile::TempDir,
}

impl Keys {
    fn new() -> Keys {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("python3")
            .arg(jose())
            .arg("keys")
            .arg(dir.path())
            .output()
            .expect("python3 (scripts/install-deps installs it with jwcrypto)");
        assert!(
            out.status.success(),
            "jose.py keys: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Keys { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Signs each `(kid, alg, claims, typ)` with jwcrypto.
    fn sign(&self, reqs: &[Value]) -> Vec<String> {
        let mut child = Command::new("python3")
            .arg(jose())
            .arg("sign")
            .arg(self.path("private.json"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = String::new();
        for r in reqs {
            input.push_str(&r.to_string());
            input.push('\n');
        }
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "jose.py sign: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let tokens: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
        assert_eq!(tokens.len(), reqs.len());
        tokens
    }

    fn sign_one(&self, kid: &str, alg: &str, claims: &Value) -> String {
        self.sign(&[json!({"kid": kid, "alg": alg, "claims": claims})])
            .remove(0)
    }
}

/// A running `revledger ingest`.
struct Ingest {
    child: Child,
    addr: SocketAddr,
    metrics: Option<SocketAddr>,
    logs: Arc<Mutex<Vec<String>>>,
    /// Reads stderr into `logs` until the process closes it.
    reader: Option<std::thread::JoinHandle<()>>,
    ledger: PathBuf,
    _dir: tempfile::TempDir,
}

impl Ingest {
    /// Starts it with `sources` (TOML tables) and a ledger sink in a fresh directory.
    fn start(sources: &str) -> Ingest {
        Ingest::start_with(sources, "", "")
    }

    fn start_with(sources: &str, server_extra: &str, top: &str) -> Ingest {
        Ingest::start_full(sources, server_extra, top, None)
    }

    /// With `sink` (a `[sink.…]` table) instead of a local ledger.
    fn start_full(sources: &str, server_extra: &str, top: &str, sink: Option<&str>) -> Ingest {
        let dir = tempfile::tempdir().unwrap();
        let ledger = dir.path().join("revocations.ledger");
        let sink = match sink {
            Some(s) => s.to_string(),
            None => format!(
                "[sink.ledger]\npath = \"{}\"\nmax_token_lifetime = 3600\n",
                ledger.display()
            ),
        };
        let config = format!(
            "{top}\n[server]\nlisten = \"127.0.0.1:0\"\n{server_extra}\n\
             [metrics]\nlisten = \"127.0.0.1:0\"\n{sink}{sources}"
        );
        let path = dir.path().join("ingest.toml");
        std::fs::write(&path, config).unwrap();
        let mut child = Command::new(BIN)
            .args(["ingest", "--log-format", "json", "-v", "--config"])
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let sink = logs.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    let msg = v["message"].as_str().unwrap_or("");
                    if msg == "listening" || msg == "metrics and health" {
                        let _ = tx.send((
                            msg.to_string(),
                            v["addr"].as_str().unwrap_or("").to_string(),
                        ));
                    }
                }
                sink.lock().unwrap().push(line);
            }
        });
        let mut addr = None;
        let mut metrics = None;
        let start = Instant::now();
        while addr.is_none() || metrics.is_none() {
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok((m, a)) if m == "listening" => addr = Some(a.parse().unwrap()),
                Ok((_, a)) => metrics = Some(a.parse().unwrap()),
                Err(_) => {
                    if let Some(status) = child.try_wait().unwrap() {
                        panic!("ingest exited {status}: {:#?}", logs.lock().unwrap());
                    }
                    assert!(
                        start.elapsed() < DEADLINE,
                        "ingest did not start: {:#?}",
                        logs.lock().unwrap()
                    );
                }
            }
        }
        Ingest {
            child,
            addr: addr.unwrap(),
            metrics,
            logs,
            reader: Some(reader),
            ledger,
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn post(
        &self,
        path: &str,
        content_type: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, String) {
        let mut req = http()
            .post(self.url(path))
            .header("content-type", content_type)
            .body(body.to_vec());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().expect("POST to ingest");
        let status = resp.status().as_u16();
        (status, resp.text().unwrap_or_default())
    }

    fn post_set(&self, token: &str) -> (u16, String) {
        self.post("/ssf", "application/secevent+jwt", &[], token.as_bytes())
    }

    fn get_metrics(&self) -> String {
        http()
            .get(format!("http://{}/metrics", self.metrics.unwrap()))
            .send()
            .unwrap()
            .text()
            .unwrap()
    }

    fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    /// SIGTERM, then waits for the exit.
    fn stop(&mut self) -> ExitStatus {
        // SAFETY: kill(2) on the pid of a child this test spawned and has not reaped.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let start = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                if let Some(r) = self.reader.take() {
                    r.join().unwrap(); // every log line is in `logs`
                }
                return s;
            }
            assert!(start.elapsed() < DEADLINE, "ingest did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The next check of a token with these JWT claims, through a claim mapping of
/// DESIGN.md §7 (`generic`, `auth0`, `keycloak`), as a gateway does it.
fn check(ledger: &Path, mapping: &str, claims: &Value) -> Verdict {
    let reader = Ledger::open_reader(ledger).unwrap();
    let mapping = ClaimMapping::new(mapping).unwrap();
    reader
        .check_claims(&mapping, claims.to_string().as_bytes())
        .unwrap()
}

fn revoked(scope: Scope, cutoff: i64) -> Verdict {
    Verdict::Revoked { scope, cutoff }
}

fn records(ledger: &Path) -> usize {
    let out = Command::new(BIN).arg("dump").arg(ledger).output().unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.split_whitespace().nth(1) == Some("rule"))
        .count()
}

fn ssf_source(keys: &Keys, extra: &str) -> String {
    format!(
        "[[ssf]]\nname = \"idp\"\npath = \"/ssf\"\nissuer = \"{ISS}\"\naudience = \"{AUD}\"\n\
         jwks_file = \"{}\"\n{extra}\n",
        keys.path("jwks.json").display()
    )
}

/// A SET in the shape of the CAEP/RISC examples, at the current time.
fn set(jti: &str, sub_id: Value, event: String, payload: Value) -> Value {
    json!({
        "iss": ISS,
        "jti": jti,
        "iat": now(),
        "aud": AUD,
        "txn": "8675309",
        "sub_id": sub_id,
        "events": { event: payload }
    })
}

#[test]
fn caep_and_risc_examples_signed_in_python_revoke_the_next_check() {
    let keys = Keys::new();
    let ingest = Ingest::start(&ssf_source(&keys, ""));
    let t = now() - 30; // the events happened 30 s ago
    let signed_at = now(); // the SETs' iat is at least this
    let examples = [
        // CAEP session-revoked, complex subject: session + user + tenant.
        set(
            "s-1",
            json!({"format": "complex",
                   "session": {"format": "opaque", "id": "dMTlD|1600802906337.16|16008.16"},
                   "user": {"format": "iss_sub", "iss": ISS, "sub": "99beb27c-c1c2-4955-882a-e0dc4996fcbc"},
                   "tenant": {"format": "opaque", "id": "123456789"}}),
            format!("{CAEP}session-revoked"),
            json!({"initiating_entity": "policy",
                   "reason_admin": {"en": "Landspeed Policy Violation: C076E82F"},
                   "reason_user": {"en": "Access attempt from multiple regions.",
                                   "es-410": "Intento de acceso desde varias regiones."},
                   "event_timestamp": t}),
        ),
        // CAEP session-revoked, complex subject: user + device + tenant (no session).
        set(
            "s-2",
            json!({"format": "complex",
                   "user": {"format": "iss_sub", "iss": ISS, "sub": "jane.smith@example.com"},
                   "device": {"format": "iss_sub", "iss": ISS, "sub": "e9297990-14d2-42ec-a4a9-4036db86509a"},
                   "tenant": {"format": "opaque", "id": "123456789"}}),
            format!("{CAEP}session-revoked"),
            json!({"initiating_entity": "policy", "event_timestamp": t}),
        ),
        // CAEP token-claims-change, jwt_id subject.
        set(
            "s-3",
            json!({"format": "jwt_id", "iss": ISS, "jti": "f61t6e20zdo3px56gepu8rzlsp4c1dpc0fx7"}),
            format!("{CAEP}token-claims-change"),
            json!({"event_timestamp": t, "claims": {"role": "ro-admin"}}),
        ),
        // CAEP credential-change, iss_sub subject.
        set(
            "s-4",
            json!({"format": "iss_sub", "iss": ISS, "sub": "joe@example.com"}),
            format!("{CAEP}credential-change"),
            json!({"credential_type": "fido2-roaming", "change_type": "create",
                   "fido2_aaguid": "accced6a-63f5-490a-9eea-e59bc1896cfc",
                   "friendly_name": "Jane's USB authenticator", "initiating_entity": "user",
                   "reason_admin": {"en": "User self-enrollment"}, "event_timestamp": t}),
        ),
        // CAEP assurance-level-change, no event_timestamp: the SET's iat.
        set(
            "s-5",
            json!({"format": "iss_sub", "iss": ISS, "sub": "amy@example.com"}),
            format!("{CAEP}assurance-level-change"),
            json!({"namespace": "NIST-AAL", "current_level": "nist-aal2",
                   "previous_level": "nist-aal1", "change_direction": "increase",
                   "initiating_entity": "user"}),
        ),
        // RISC account-disabled, email subject.
        set(
            "s-6",
            json!({"format": "email", "email": "john.doe@example.com"}),
            format!("{RISC}account-disabled"),
            json!({"reason": "hijacking"}),
        ),
        // RISC credential-compromise, iss_sub subject.
        set(
            "s-7",
            json!({"format": "iss_sub", "iss": ISS, "sub": "joe.smith@example.com"}),
            format!("{RISC}credential-compromise"),
            json!({"credential_type": "password", "event_timestamp": t}),
        ),
    ];
    // ES256 and RS256, as a transmitter would sign.
    let reqs: Vec<Value> = examples
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let (kid, alg) = if i % 2 == 0 {
                ("es-1", "ES256")
            } else {
                ("rs-1", "RS256")
            };
            json!({"kid": kid, "alg": alg, "claims": c})
        })
        .collect();
    for token in keys.sign(&reqs) {
        let (status, body) = ingest.post_set(&token);
        assert_eq!(status, 202, "{body}\n{}", ingest.logs());
    }
    let l = &ingest.ledger;
    let before = t - 1;
    let after = t + 1;
    let generic = |claims: Value| check(l, "generic", &claims);
    // Session of s-1: that session's tokens go, the user's other sessions stay.
    assert_eq!(
        generic(
            json!({"tid": "123456789", "sub": "99beb27c-c1c2-4955-882a-e0dc4996fcbc",
                       "sid": "dMTlD|1600802906337.16|16008.16", "iat": before})
        ),
        revoked(Scope::Session, t + 1)
    );
    assert_eq!(
        generic(
            json!({"tid": "123456789", "sub": "99beb27c-c1c2-4955-882a-e0dc4996fcbc",
                       "sid": "other-session", "iat": before})
        ),
        Verdict::Valid
    );
    // A token issued in the same second as the event counts as issued before it.
    let sid = "dMTlD|1600802906337.16|16008.16";
    assert!(generic(json!({"tid": "123456789", "sub": "x", "sid": sid, "iat": t})).is_revoked());
    assert_eq!(
        generic(json!({"tid": "123456789", "sub": "x", "sid": sid, "iat": after})),
        Verdict::Valid,
        "issued after the change"
    );
    // s-2: the user, in tenant 123456789 (and only there).
    assert_eq!(
        generic(json!({"tid": "123456789", "sub": "jane.smith@example.com", "iat": before})),
        revoked(Scope::Subject, t + 1)
    );
    assert_eq!(
        generic(json!({"tid": "other", "sub": "jane.smith@example.com", "iat": before})),
        Verdict::Valid
    );
    // s-3: exactly that token, whatever its iat.
    assert!(matches!(
        generic(json!({"sub": "u", "jti": "f61t6e20zdo3px56gepu8rzlsp4c1dpc0fx7", "iat": now()})),
        Verdict::Revoked {
            scope: Scope::Token,
            ..
        }
    ));
    // s-4, s-7: the subject, as of the event.
    for sub in ["joe@example.com", "joe.smith@example.com"] {
        assert_eq!(
            generic(json!({"sub": sub, "iat": before})),
            revoked(Scope::Subject, t + 1),
            "{sub}"
        );
        assert_eq!(
            generic(json!({"sub": sub, "iat": after})),
            Verdict::Valid,
            "{sub}"
        );
    }
    // s-5, s-6 have no event_timestamp: the SET's iat (now) is the cutoff.
    for sub in ["amy@example.com", "john.doe@example.com"] {
        assert!(
            generic(json!({"sub": sub, "iat": signed_at - 1})).is_revoked(),
            "{sub}"
        );
        assert_eq!(
            generic(json!({"sub": sub, "iat": now() + 5})),
            Verdict::Valid,
            "{sub}"
        );
    }
    let m = ingest.get_metrics();
    assert!(
        m.contains(r#"revledger_ingest_events_total{kind="ssf",source="idp",outcome="applied"} 7"#),
        "{m}"
    );
    assert!(
        m.contains(r#"revledger_ingest_requests_total{kind="ssf",source="idp",code="202"} 7"#),
        "{m}"
    );
}

#[test]
fn bad_sets_get_the_rfc_8935_errors_and_change_nothing() {
    let keys = Keys::new();
    let other = Keys::new(); // same kids, other keys
    let ingest = Ingest::start_with(&ssf_source(&keys, ""), "max_body_bytes = 4096", "");
    let good = set(
        "b-1",
        json!({"format": "iss_sub", "iss": ISS, "sub": "mallory"}),
        format!("{CAEP}credential-change"),
        json!({"credential_type": "password", "change_type": "update"}),
    );
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = good.clone();
        f(&mut c);
        c
    };
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "bad signature",
            other.sign_one("es-1", "ES256", &good),
            "authentication_failed",
        ),
        (
            "unknown kid",
            keys.sign_one("es-2", "ES256", &good),
            "invalid_key",
        ),
        (
            "wrong issuer",
            keys.sign_one(
                "es-1",
                "ES256",
                &with(&|c| c["iss"] = json!("https://evil.example.com/")),
            ),
            "invalid_issuer",
        ),
        (
            "wrong audience",
            keys.sign_one(
                "es-1",
                "ES256",
                &with(&|c| c["aud"] = json!("https://other.example.com/")),
            ),
            "invalid_audience",
        ),
        (
            "typ JWT",
            keys.sign(&[json!({"kid": "es-1", "alg": "ES256", "claims": good, "typ": "JWT"})])
                .remove(0),
            "invalid_request",
        ),
        (
            "no typ",
            keys.sign(&[json!({"kid": "es-1", "alg": "ES256", "claims": good, "typ": null})])
                .remove(0),
            "invalid_request",
        ),
        (
            "no subject",
            keys.sign_one(
                "es-1",
                "ES256",
                &with(&|c| {
                    c.as_object_mut().unwrap().remove("sub_id");
                }),
            ),
            "invalid_request",
        ),
        (
            "unmappable subject",
            keys.sign_one(
                "es-1",
                "ES256",
                &with(&|c| {
                    c["sub_id"] =
                        json!({"format": "complex", "device": {"format": "opaque", "id": "d"}})
                }),
            ),
            "invalid_request",
        ),
        (
            "tenant-wide",
            keys.sign_one(
                "es-1",
                "ES256",
                &with(&|c| {
                    c["sub_id"] =
                        json!({"format": "complex", "tenant": {"format": "opaque", "id": "t"}})
                }),
            ),
            "access_denied",
        ),
        (
            "far future",
            keys.sign_one(
                "es-1",
                "ES256",
                &with(&|c| {
                    c["events"][format!("{CAEP}credential-change")]["event_timestamp"] =
                        json!(now() + 86_400)
                }),
            ),
            "invalid_request",
        ),
        ("not a JWS", "hello".to_string(), "invalid_request"),
        // alg none, hand-made (no library signs it): refused before any key is looked up,
        // as an algorithm not accepted (docs/INGEST.md), like one the JWS library does not
        // know at all.
        (
            "alg none",
            format!(
                "eyJhbGciOiJub25lIiwidHlwIjoic2VjZXZlbnQrand0In0.{}.",
                base64url(good.to_string().as_bytes())
            ),
            "invalid_key",
        ),
        (
            "alg ES256K",
            format!(
                "{}.{}.c2ln",
                base64url(br#"{"alg":"ES256K","typ":"secevent+jwt","kid":"es-1"}"#),
                base64url(good.to_string().as_bytes())
            ),
            "invalid_key",
        ),
        (
            "a header that is not JSON",
            format!(
                "bm90IGpzb24.{}.c2ln",
                base64url(good.to_string().as_bytes())
            ),
            "invalid_request",
        ),
    ];
    for (what, token, code) in cases {
        let (status, body) = ingest.post_set(&token);
        assert_eq!(status, 400, "{what}: {body}");
        let v: Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{what}: {e}: {body}"));
        assert_eq!(v["err"], code, "{what}: {body}");
        assert!(
            v["description"].as_str().is_some_and(|d| !d.is_empty()),
            "{what}: {body}"
        );
    }
    let token = keys.sign_one("es-1", "ES256", &good);
    let (status, body) = ingest.post("/ssf", "application/json", &[], token.as_bytes());
    assert_eq!(
        (
            status,
            serde_json::from_str::<Value>(&body).unwrap()["err"].as_str()
        ),
        (400, Some("invalid_request"))
    );
    let (status, _) = ingest.post_set(&"x".repeat(5000));
    assert_eq!(status, 413, "the body limit");
    let (status, _) = ingest.post(
        "/nowhere",
        "application/secevent+jwt",
        &[],
        token.as_bytes(),
    );
    assert_eq!(status, 404);
    assert_eq!(records(&ingest.ledger), 0, "nothing applied");
    let m = ingest.get_metrics();
    assert!(
        m.contains(
            r#"revledger_ingest_events_total{kind="ssf",source="idp",outcome="refused"} 15"#
        ),
        "{m}"
    );
    // The good one still goes through.
    assert_eq!(ingest.post_set(&token).0, 202);
    assert_eq!(records(&ingest.ledger), 1);
}

fn base64url(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

#[test]
fn replays_and_reordering_change_nothing() {
    let keys = Keys::new();
    let ingest = Ingest::start(&ssf_source(&keys, ""));
    let t = now() - 100;
    let event = |jti: &str, ts: i64| {
        keys.sign_one(
            "es-1",
            "ES256",
            &set(
                jti,
                json!({"format": "opaque", "id": "user-7"}),
                format!("{RISC}account-purged"),
                json!({"event_timestamp": ts}),
            ),
        )
    };
    let later = event("r-later", t + 50);
    let earlier = event("r-earlier", t);
    assert_eq!(ingest.post_set(&later).0, 202);
    assert_eq!(
        ingest.post_set(&earlier).0,
        202,
        "arrives second, happened first"
    );
    let n = records(&ingest.ledger);
    for _ in 0..3 {
        assert_eq!(ingest.post_set(&later).0, 202, "a replay is acknowledged");
    }
    assert_eq!(records(&ingest.ledger), n, "replays are not written again");
    assert_eq!(
        check(
            &ingest.ledger,
            "generic",
            &json!({"sub": "user-7", "iat": t + 40})
        ),
        revoked(Scope::Subject, t + 51),
        "the latest cutoff wins, whatever the order"
    );
    let m = ingest.get_metrics();
    assert!(m.contains(r#"outcome="duplicate"} 3"#), "{m}");
}

/// Serves a JWKS that the test can replace, counting the fetches.
struct JwksServer {
    addr: SocketAddr,
    body: Arc<Mutex<String>>,
    fetches: Arc<Mutex<usize>>,
}

impl JwksServer {
    fn start(body: String) -> JwksServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let body = Arc::new(Mutex::new(body));
        let fetches = Arc::new(Mutex::new(0));
        let (b, f) = (body.clone(), fetches.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { continue };
                let mut buf = [0u8; 4096];
                let mut req = Vec::new();
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                *f.lock().unwrap() += 1;
                let body = b.lock().unwrap().clone();
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        JwksServer {
            addr,
            body,
            fetches,
        }
    }
}

#[test]
fn keys_come_from_the_jwks_uri_and_a_rotation_is_picked_up() {
    let keys = Keys::new();
    let server = JwksServer::start(std::fs::read_to_string(keys.path("jwks.json")).unwrap());
    let source = format!(
        "[[ssf]]\nname = \"idp\"\npath = \"/ssf\"\nissuer = \"{ISS}\"\naudience = [\"other\", \"{AUD}\"]\n\
         jwks_uri = \"http://{}/jwks\"\njwks_min_refresh_secs = 1\n",
        server.addr
    );
    let ingest = Ingest::start(&source);
    assert_eq!(*server.fetches.lock().unwrap(), 1, "fetched at start");
    let claims = |jti: &str| {
        set(
            jti,
            json!({"format": "opaque", "id": "u"}),
            format!("{CAEP}credential-change"),
            json!({}),
        )
    };
    assert_eq!(
        ingest
            .post_set(&keys.sign_one("es-1", "ES256", &claims("k-1")))
            .0,
        202
    );
    assert_eq!(*server.fetches.lock().unwrap(), 1, "cached");
    // The transmitter rotates to es-2: the first SET signed with it fetches the keys again.
    *server.body.lock().unwrap() = std::fs::read_to_string(keys.path("jwks-rotated.json")).unwrap();
    let start = Instant::now();
    loop {
        let (status, body) = ingest.post_set(&keys.sign_one("es-2", "ES256", &claims("k-2")));
        if status == 202 {
            break;
        }
        // Within jwks_min_refresh_secs of the last fetch the kid stays unknown.
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap()["err"],
            "invalid_key",
            "{body}"
        );
        assert!(
            start.elapsed() < DEADLINE,
            "the rotation was never picked up"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(*server.fetches.lock().unwrap() >= 2);
    // es-1 was rotated out.
    let (status, body) = ingest.post_set(&keys.sign_one("es-1", "ES256", &claims("k-3")));
    assert_eq!(
        (
            status,
            serde_json::from_str::<Value>(&body).unwrap()["err"].as_str()
        ),
        (400, Some("invalid_key"))
    );
    let fetches = *server.fetches.lock().unwrap();
    // Made-up kids do not turn the receiver into a fetch loop.
    let reqs: Vec<Value> = (0..20)
        .map(|i| json!({"kid": "es-2", "header_kid": format!("made-up-{i}"), "alg": "ES256", "claims": claims("k-x")}))
        .collect();
    let tokens = keys.sign(&reqs);
    let start = Instant::now();
    for token in &tokens {
        assert_eq!(ingest.post_set(token).0, 400);
    }
    let elapsed = start.elapsed().as_secs() as usize;
    assert!(
        *server.fetches.lock().unwrap() <= fetches + 1 + elapsed,
        "at most one fetch per jwks_min_refresh_secs"
    );
    assert!(ingest
        .get_metrics()
        .contains("revledger_ingest_jwks_fetches_total"));
}

#[test]
fn verification_events_are_acknowledged_and_counted() {
    let keys = Keys::new();
    let ingest = Ingest::start(&ssf_source(&keys, ""));
    let claims = json!({
        "jti": "123456", "iss": ISS, "aud": AUD, "iat": now(),
        "sub_id": {"format": "opaque", "id": "f67e39a0a4d34d56b3aa1bc4cff0069f"},
        "events": { format!("{SSF}verification"): {"state": "VGhpcyBpcyBhbiBleGFtcGxlIHN0YXRlIHZhbHVlLgo="} }
    });
    assert_eq!(
        ingest.post_set(&keys.sign_one("rs-1", "RS256", &claims)).0,
        202
    );
    assert_eq!(records(&ingest.ledger), 0);
    let m = ingest.get_metrics();
    assert!(
        m.contains(r#"revledger_ingest_ssf_verifications_total{kind="ssf",source="idp"} 1"#),
        "{m}"
    );
    assert!(ingest
        .logs()
        .contains("VGhpcyBpcyBhbiBleGFtcGxlIHN0YXRlIHZhbHVlLgo="));
}

#[test]
fn bearer_token_rate_limit_health_and_graceful_shutdown() {
    let keys = Keys::new();
    let mut ingest = Ingest::start(&ssf_source(
        &keys,
        "authorization = \"Bearer s3cret\"\nrate = { per_second = 1, burst = 3 }",
    ));
    let token = keys.sign_one(
        "es-1",
        "ES256",
        &set(
            "h-1",
            json!({"format": "opaque", "id": "u"}),
            format!("{CAEP}credential-change"),
            json!({}),
        ),
    );
    let (status, body) = ingest.post_set(&token);
    assert_eq!(
        (
            status,
            serde_json::from_str::<Value>(&body).unwrap()["err"].as_str()
        ),
        (400, Some("authentication_failed"))
    );
    let auth = [("authorization", "Bearer s3cret")];
    assert_eq!(
        ingest
            .post("/ssf", "application/secevent+jwt", &auth, token.as_bytes())
            .0,
        202
    );
    let statuses: Vec<u16> = (0..5)
        .map(|_| {
            ingest
                .post("/ssf", "application/secevent+jwt", &auth, token.as_bytes())
                .0
        })
        .collect();
    assert!(statuses.contains(&429), "{statuses:?}");
    let health = http()
        .get(format!("http://{}/healthz", ingest.metrics.unwrap()))
        .send()
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);
    let status = ingest.stop();
    assert!(status.success(), "{status}: {}", ingest.logs());
    assert!(ingest.logs().contains("\"stopped\""), "{}", ingest.logs());
}

#[test]
fn https_directly_with_rustls() {
    let keys = Keys::new();
    let out = Command::new("python3")
        .arg(jose())
        .arg("cert")
        .arg(keys.dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cert = keys.path("cert.pem");
    let ingest = Ingest::start_with(
        &ssf_source(&keys, ""),
        &format!(
            "tls_cert = \"{}\"\ntls_key = \"{}\"",
            cert.display(),
            keys.path("key.pem").display()
        ),
        "",
    );
    let token = keys.sign_one(
        "es-1",
        "ES256",
        &set(
            "t-1",
            json!({"format": "opaque", "id": "u"}),
            format!("{CAEP}credential-change"),
            json!({}),
        ),
    );
    let mut roots = rustls::RootCertStore::empty();
    {
        use rustls::pki_types::pem::PemObject;
        for c in rustls::pki_types::CertificateDer::pem_file_iter(&cert).unwrap() {
            roots.add(c.unwrap()).unwrap();
        }
    }
    let client = http_with(roots);
    let resp = client
        .post(format!("https://localhost:{}/ssf", ingest.addr.port()))
        .header("content-type", "application/secevent+jwt")
        .body(token.clone())
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    // Plain HTTP to the TLS port gets nothing useful.
    assert!(http()
        .post(ingest.url("/ssf"))
        .header("content-type", "application/secevent+jwt")
        .body(token)
        .send()
        .is_err());
}

#[test]
fn check_config_names_what_is_wrong() {
    let keys = Keys::new();
    let dir = tempfile::tempdir().unwrap();
    let good = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[sink.ledger]\npath = \"{}\"\n{}",
        dir.path().join("l").display(),
        ssf_source(&keys, "")
    );
    let path = dir.path().join("c.toml");
    std::fs::write(&path, &good).unwrap();
    let out = Command::new(BIN)
        .args(["ingest", "--check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("configuration OK"));
    assert!(!dir.path().join("l").exists(), "checking creates no ledger");
    for (bad, needle) in [
        (good.replace("jwks.json", "missing.json"), "missing.json"),
        (good.replace("[[ssf]]", "[[sff]]"), "unknown field"),
        (good.replace("audience", "audiences"), "unknown field"),
    ] {
        std::fs::write(&path, bad).unwrap();
        let out = Command::new(BIN)
            .args(["ingest", "--check-config", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{needle}: {err}");
    }
}

/// The hex HMAC of `body`, computed by Python's `hmac` module.
fn python_hmac(secret: &str, algorithm: &str, body: &[u8]) -> String {
    let mut child = Command::new("python3")
        .arg(jose())
        .args(["hmac", secret, algorithm])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(body).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn iso(t: i64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(t as u64 * 1000 + 575))
        .to_string()
}

/// A Management API operation as Auth0's log stream delivers it (shape of Auth0's `sapi`
/// log entries).
fn sapi(log_id: &str, t: i64, method: &str, path: &str, body: Value) -> Value {
    json!({"log_id": log_id, "data": {
        "date": iso(t), "type": "sapi", "description": "Management API operation",
        "client_id": "360yuN1BXP4u3tBChK5VOgekgGJ7CwLL", "client_name": "", "ip": "35.167.74.121",
        "user_agent": "Mozilla/5.0",
        "details": {
            "request": {"method": method, "path": path, "query": {}, "userAgent": "Mozilla/5.0",
                        "body": body, "channel": "https://manage.auth0.com/", "ip": "35.167.74.121",
                        "auth": {"user": {"user_id": "auth0|6181ce2b0f293a006d158194",
                                          "name": "neo.theone@gmail.com", "email": "neo.theone@gmail.com"},
                                 "strategy": "jwt", "credentials": {"jti": "08eb25a1ae7ae2bea404571e84634806"}}},
            "response": {"statusCode": 204, "body": {}}
        },
        "user_id": "auth0|6181ce2b0f293a006d158194", "log_id": log_id
    }})
}

#[test]
fn auth0_log_stream_batches_revoke_users_and_roles_through_the_auth0_mapping() {
    let ingest = Ingest::start(
        "[[auth0]]\nname = \"tenant-a\"\npath = \"/auth0\"\nauthorization = \"Bearer 7e5f\"\n\
         tenants = [\"\", \"org_abc\"]\n[auth0.role_names]\nrol_4Ff0 = \"admin\"\n",
    );
    let t = now() - 20;
    let login = json!({"log_id": "900201", "data": {"date": iso(t), "type": "s",
        "connection": "Username-Password-Authentication", "client_id": "aI61p8I8aFjmYRliLWgvM9ev97kCCNDB",
        "client_name": "Default App", "ip": "81.2.69.143", "details": {"session_id": "m5Sg"},
        "user_id": "auth0|618223a4e3f49e006948565c", "user_name": "dev@test.com", "log_id": "900201"}});
    let batch = [
        login,
        sapi(
            "900202",
            t,
            "post",
            "/api/v2/users/auth0%7C123/roles",
            json!({"roles": ["rol_4Ff0"]}),
        ),
        sapi(
            "900203",
            t,
            "delete",
            "/api/v2/roles/rol_4Ff0/permissions",
            json!({"permissions": [{"resource_server_identifier": "https://api.example.com",
                                     "permission_name": "delete:reports"}]}),
        ),
        sapi(
            "900204",
            t,
            "post",
            "/api/v2/log-streams",
            json!({"name": "Postdump"}),
        ),
    ];
    // JSON Lines, the stream's default content format.
    let body: String = batch.iter().map(|e| format!("{e}\n")).collect();
    let auth = [("authorization", "Bearer 7e5f")];
    let (status, answer) = ingest.post(
        "/auth0",
        "application/json",
        &[("authorization", "Bearer nope")],
        body.as_bytes(),
    );
    assert_eq!(status, 401, "{answer}");
    assert_eq!(records(&ingest.ledger), 0);
    let (status, answer) = ingest.post("/auth0", "application/json", &auth, body.as_bytes());
    assert_eq!(status, 200, "{answer}");
    let a: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(
        (a["applied"].as_u64(), a["ignored"].as_u64()),
        (Some(2), Some(2)),
        "{a}"
    );
    let auth0 = |claims: Value| check(&ingest.ledger, "auth0", &claims);
    let (before, after) = (t - 1, t + 1);
    assert_eq!(
        auth0(json!({"sub": "auth0|123", "iat": before})),
        revoked(Scope::Subject, t + 1)
    );
    assert_eq!(
        auth0(json!({"sub": "auth0|123", "org_id": "org_abc", "iat": before})),
        revoked(Scope::Subject, t + 1)
    );
    assert_eq!(
        auth0(json!({"sub": "auth0|123", "iat": after})),
        Verdict::Valid
    );
    // The role's holders (an Action's namespaced roles claim) and the removed permission.
    assert_eq!(
        auth0(json!({"sub": "auth0|9", "https://example.com/roles": ["admin"], "iat": before})),
        revoked(Scope::Role, t + 1)
    );
    assert_eq!(
        auth0(
            json!({"sub": "auth0|9", "permissions": ["read:reports", "delete:reports"], "iat": before})
        ),
        revoked(Scope::Role, t + 1)
    );
    assert_eq!(
        auth0(json!({"sub": "auth0|9", "permissions": ["read:reports"], "iat": before})),
        Verdict::Valid
    );
    // A replayed batch is acknowledged and not written again.
    let n = records(&ingest.ledger);
    let (status, answer) = ingest.post("/auth0", "application/json", &auth, body.as_bytes());
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&answer).unwrap()["duplicates"],
        4
    );
    assert_eq!(records(&ingest.ledger), n);
    // An entry that cannot be mapped refuses the whole batch (a JSON array this time).
    let bad = json!([
        sapi(
            "900301",
            t,
            "delete",
            "/api/v2/users/auth0%7C777",
            json!({})
        ),
        sapi(
            "900302",
            t,
            "delete",
            "/api/v2/roles/rol_unknown",
            json!({})
        ),
    ]);
    let (status, answer) = ingest.post(
        "/auth0",
        "application/json",
        &auth,
        bad.to_string().as_bytes(),
    );
    assert_eq!(status, 400, "{answer}");
    assert!(answer.contains("role_names"), "{answer}");
    assert_eq!(
        records(&ingest.ledger),
        n,
        "nothing of a refused batch is applied"
    );
    assert_eq!(
        auth0(json!({"sub": "auth0|777", "iat": before})),
        Verdict::Valid
    );
    let m = ingest.get_metrics();
    assert!(
        m.contains(
            r#"revledger_ingest_events_total{kind="auth0",source="tenant-a",outcome="ignored"} 2"#
        ),
        "{m}"
    );
    assert!(
        m.contains(
            r#"revledger_ingest_events_total{kind="auth0",source="tenant-a",outcome="refused"} 2"#
        ),
        "{m}"
    );
}

const KC_ISS: &str = "http://localhost:8080/realms/acme";
const KC_CLIENT: &str = "6b1d5d5e-aaaa-4bbb-8ccc-000000000001";

/// An admin event as phasetwo's ext-event-webhook sends it.
fn kc_admin(
    id: &str,
    t: i64,
    resource: &str,
    op: &str,
    path: &str,
    representation: Value,
) -> Value {
    json!({
        "time": t * 1000 + 484, "realmId": "f3b3c8d6-0c1d-4c38-9d2e-5a3f5cbe1ed1", "realmName": "acme",
        "authDetails": {"realmId": "master", "clientId": "security-admin-console",
                        "userId": "2b8e6a4c-3d1f-4c5e-9a7b-1f2e3d4c5b6a", "ipAddress": "172.18.0.1",
                        "username": "admin"},
        "resourceType": resource, "operationType": op, "resourcePath": path,
        "representation": representation.to_string(), "details": {},
        "id": id, "uid": format!("{id}-send"), "type": format!("admin.{resource}-{op}")
    })
}

#[test]
fn keycloak_webhook_events_revoke_through_the_keycloak_mapping() {
    let ingest = Ingest::start(&format!(
        "[[keycloak]]\nname = \"sso\"\npath = \"/keycloak\"\nsecret = \"whsec-1\"\n\
         issuer = \"http://localhost:8080/realms/{{realm}}\"\n\
         [keycloak.clients]\n\"{KC_CLIENT}\" = \"orders-api\"\n"
    ));
    let t = now() - 20;
    let user = "6a2e0f5c-1111-4222-8333-444455556666";
    let events = [
        kc_admin(
            "e1",
            t,
            "REALM_ROLE_MAPPING",
            "DELETE",
            &format!("users/{user}/role-mappings/realm"),
            json!([{"id": "0c0c", "name": "super_admin", "composite": false, "clientRole": false,
                         "containerId": "f3b3c8d6-0c1d-4c38-9d2e-5a3f5cbe1ed1"}]),
        ),
        kc_admin(
            "e2",
            t,
            "CLIENT_ROLE",
            "UPDATE",
            &format!("clients/{KC_CLIENT}/roles/refund"),
            json!({"id": "0d0d", "name": "refund", "description": "may refund", "composite": false,
                        "clientRole": true, "containerId": KC_CLIENT}),
        ),
        kc_admin(
            "e3",
            t,
            "REALM_ROLE",
            "DELETE",
            "roles/ops:oncall",
            json!(null),
        ),
        json!({"time": t * 1000 + 12, "realmId": "f3b3c8d6-0c1d-4c38-9d2e-5a3f5cbe1ed1", "realmName": "acme",
               "type": "access.LOGOUT", "id": "e4", "uid": "e4-send",
               "authDetails": {"realmId": "acme", "clientId": "account-console",
                               "userId": "7b7b", "sessionId": "a7f3c1d2-session", "ipAddress": "172.18.0.1"},
               "details": {"redirect_uri": "http://localhost:3000/"}}),
    ];
    for e in &events {
        let body = e.to_string();
        let sig = python_hmac("whsec-1", "HmacSHA256", body.as_bytes());
        let (status, answer) = ingest.post(
            "/keycloak",
            "application/json",
            &[("x-keycloak-signature", &sig)],
            body.as_bytes(),
        );
        assert_eq!(status, 200, "{answer}\n{}", ingest.logs());
    }
    let kc = |claims: Value| check(&ingest.ledger, "keycloak", &claims);
    let before = t - 1;
    assert_eq!(
        kc(json!({"iss": KC_ISS, "sub": user, "iat": before})),
        revoked(Scope::Subject, t + 1)
    );
    assert_eq!(
        kc(json!({"iss": "http://localhost:8080/realms/other", "sub": user, "iat": before})),
        Verdict::Valid
    );
    assert_eq!(
        kc(
            json!({"iss": KC_ISS, "sub": "u9", "resource_access": {"orders-api": {"roles": ["refund"]}}, "iat": before})
        ),
        revoked(Scope::Role, t + 1)
    );
    assert_eq!(
        kc(
            json!({"iss": KC_ISS, "sub": "u9", "realm_access": {"roles": ["ops:oncall"]}, "iat": before})
        ),
        revoked(Scope::Role, t + 1)
    );
    // The client role `oncall` of a client `ops` is another key than the realm role `ops:oncall`.
    assert_eq!(
        kc(
            json!({"iss": KC_ISS, "sub": "u9", "resource_access": {"ops": {"roles": ["oncall"]}}, "iat": before})
        ),
        Verdict::Valid
    );
    assert_eq!(
        kc(json!({"iss": KC_ISS, "sub": "7b7b", "sid": "a7f3c1d2-session", "iat": before})),
        revoked(Scope::Session, t + 1)
    );
    assert_eq!(
        kc(json!({"iss": KC_ISS, "sub": "7b7b", "sid": "another", "iat": before})),
        Verdict::Valid
    );
    // A bad or missing signature: 401, nothing applied.
    let n = records(&ingest.ledger);
    let e = kc_admin("e5", t, "USER", "DELETE", "users/1d1d", json!(null)).to_string();
    let sig = python_hmac("wrong", "HmacSHA256", e.as_bytes());
    assert_eq!(
        ingest
            .post(
                "/keycloak",
                "application/json",
                &[("x-keycloak-signature", &sig)],
                e.as_bytes()
            )
            .0,
        401
    );
    assert_eq!(
        ingest
            .post("/keycloak", "application/json", &[], e.as_bytes())
            .0,
        401
    );
    assert_eq!(records(&ingest.ledger), n);
    // An unknown client: refused with the reason.
    let e = kc_admin(
        "e6",
        t,
        "CLIENT_ROLE",
        "DELETE",
        "clients/0000/roles/x",
        json!(null),
    )
    .to_string();
    let sig = python_hmac("whsec-1", "HmacSHA256", e.as_bytes());
    let (status, answer) = ingest.post(
        "/keycloak",
        "application/json",
        &[("x-keycloak-signature", &sig)],
        e.as_bytes(),
    );
    assert_eq!(status, 400);
    assert!(answer.contains("keycloak.clients"), "{answer}");
    assert_eq!(records(&ingest.ledger), n);
}

#[test]
fn keycloak_hmac_sha1_as_configured() {
    let ingest = Ingest::start(
        "[[keycloak]]\nname = \"legacy\"\npath = \"/kc\"\nsecret = \"old\"\nalgorithm = \"HmacSHA1\"\n\
         [keycloak.realms.acme]\nissuer = \"https://sso.example.com/auth/realms/acme\"\n",
    );
    let t = now() - 5;
    let e = kc_admin(
        "s1",
        t,
        "USER",
        "UPDATE",
        "users/9a9a",
        json!({"id": "9a9a", "username": "bob", "enabled": false}),
    )
    .to_string();
    let sha256 = python_hmac("old", "HmacSHA256", e.as_bytes());
    assert_eq!(
        ingest
            .post(
                "/kc",
                "application/json",
                &[("x-keycloak-signature", &sha256)],
                e.as_bytes()
            )
            .0,
        401
    );
    let sha1 = python_hmac("old", "HmacSHA1", e.as_bytes());
    assert_eq!(
        ingest
            .post(
                "/kc",
                "application/json",
                &[("x-keycloak-signature", &sha1)],
                e.as_bytes()
            )
            .0,
        200
    );
    assert_eq!(
        check(
            &ingest.ledger,
            "keycloak",
            &json!({"iss": "https://sso.example.com/auth/realms/acme", "sub": "9a9a", "iat": t - 1})
        ),
        revoked(Scope::Subject, t + 1)
    );
}

/// A transmitter's RFC 8936 poll endpoint: answers the first poll with `sets`, later ones
/// with nothing, and keeps every request body it received.
struct PollTransmitter {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Value>>>,
}

impl PollTransmitter {
    fn start(sets: Vec<(String, String)>) -> PollTransmitter {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        std::thread::spawn(move || {
            let mut pending: Option<Vec<(String, String)>> = Some(sets);
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { continue };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let body = loop {
                    match s.read(&mut chunk) {
                        Ok(0) | Err(_) => break None,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + len {
                        break Some(buf[end + 4..end + 4 + len].to_vec());
                    }
                };
                let Some(body) = body else { continue };
                let mut req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let head = String::from_utf8_lossy(&buf).to_string();
                let authorization = head
                    .lines()
                    .find_map(|l| {
                        l.split_once(':')
                            .filter(|(k, _)| k.eq_ignore_ascii_case("authorization"))
                    })
                    .map(|(_, v)| v.trim().to_string());
                req["_authorization"] = json!(authorization);
                let max = req["maxEvents"].as_u64().unwrap_or(0);
                seen.lock().unwrap().push(req);
                let sets: serde_json::Map<String, Value> = match (max, pending.take()) {
                    (0, p) => {
                        pending = p;
                        serde_json::Map::new()
                    }
                    (_, Some(p)) => p.into_iter().map(|(j, t)| (j, json!(t))).collect(),
                    (_, None) => serde_json::Map::new(),
                };
                let answer = json!({"sets": sets, "moreAvailable": false}).to_string();
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                    answer.len()
                );
            }
        });
        PollTransmitter { addr, requests }
    }
}

#[test]
fn poll_delivery_applies_acknowledges_and_reports_errors() {
    let keys = Keys::new();
    let t = now() - 10;
    let good = set(
        "p-1",
        json!({"format": "iss_sub", "iss": ISS, "sub": "polled-user"}),
        format!("{RISC}account-disabled"),
        json!({"event_timestamp": t}),
    );
    let mut wrong_aud = good.clone();
    wrong_aud["jti"] = json!("p-2");
    wrong_aud["aud"] = json!("https://someone-else.example.com/");
    let tokens = keys.sign(&[
        json!({"kid": "es-1", "alg": "ES256", "claims": good}),
        json!({"kid": "rs-1", "alg": "RS256", "claims": wrong_aud}),
    ]);
    let transmitter = PollTransmitter::start(vec![
        ("p-1".into(), tokens[0].clone()),
        ("p-2".into(), tokens[1].clone()),
    ]);
    let mut ingest = Ingest::start(&format!(
        "[[ssf]]\nname = \"polled\"\nissuer = \"{ISS}\"\naudience = \"{AUD}\"\njwks_file = \"{}\"\n\
         poll_endpoint = \"http://{}/poll\"\npoll_authorization = \"Bearer r3c\"\n\
         poll_return_immediately = true\npoll_interval_secs = 1\n",
        keys.path("jwks.json").display(),
        transmitter.addr
    ));
    let start = Instant::now();
    let acked = loop {
        let reqs = transmitter.requests.lock().unwrap().clone();
        if let Some(r) = reqs
            .iter()
            .find(|r| r["ack"].as_array().is_some_and(|a| !a.is_empty()))
        {
            break r.clone();
        }
        assert!(
            start.elapsed() < DEADLINE,
            "no acknowledgement: {reqs:?}\n{}",
            ingest.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(acked["ack"], json!(["p-1"]));
    assert_eq!(
        acked["setErrs"]["p-2"]["err"], "invalid_audience",
        "{acked}"
    );
    assert_eq!(acked["returnImmediately"], true);
    assert_eq!(acked["_authorization"], "Bearer r3c");
    assert_eq!(
        check(
            &ingest.ledger,
            "generic",
            &json!({"sub": "polled-user", "iat": t - 1})
        ),
        revoked(Scope::Subject, t + 1)
    );
    assert!(ingest.stop().success());
    let first = transmitter.requests.lock().unwrap()[0].clone();
    assert_eq!(
        (first["ack"].clone(), first["maxEvents"].clone()),
        (json!([]), json!(100))
    );
}

/// Kills the child when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `redis-server` of our own on a free loopback port; `None` (said on stderr) when it is
/// not installed and `CI` is not set (with `CI` set, a missing redis-server fails).
fn redis_server(test: &str) -> Option<(Killed, String)> {
    let installed = Command::new("redis-server")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !installed {
        assert!(
            std::env::var_os("CI").is_none(),
            "redis-server is not installed and CI is set (scripts/install-deps installs it)"
        );
        let _ = writeln!(
            std::io::stderr(),
            "skipping {test}: redis-server is not installed"
        );
        return None;
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < DEADLINE, "redis-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Some((Killed(child), format!("redis://127.0.0.1:{port}/")))
}

#[test]
fn rules_published_to_the_stream_reach_every_host_through_sync_signed() {
    let Some((_redis, url)) =
        redis_server("rules_published_to_the_stream_reach_every_host_through_sync_signed")
    else {
        return;
    };
    let keys = Keys::new();
    let dir = tempfile::tempdir().unwrap();
    // The key ingest signs with, and the sync processes' trusted-keys file.
    let key = dir.path().join("ingest.key");
    let out = Command::new(BIN)
        .arg("keygen")
        .arg(&key)
        .args([
            "--key-id",
            "ingest",
            "--scopes",
            "subject,session,role,token",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let trusted = dir.path().join("trusted-keys");
    std::fs::write(&trusted, &out.stdout).unwrap();
    let ingest = Ingest::start_full(
        &ssf_source(&keys, ""),
        "",
        "",
        Some(&format!(
            "[sink.redis]\nurl = \"{url}\"\nstream = \"revocations\"\nmax_token_lifetime = 3600\n\
             sign_key = \"{}\"\nkey_id = \"ingest\"\n",
            key.display()
        )),
    );
    // Two hosts, each with its own sync process and ledger.
    let hosts: Vec<(PathBuf, Killed)> = (0..2)
        .map(|i| {
            let ledger = dir.path().join(format!("host-{i}.ledger"));
            let child = Command::new(BIN)
                .args([
                    "sync",
                    "--redis",
                    &url,
                    "--stream",
                    "revocations",
                    "--compact-every",
                    "0",
                ])
                .arg("--trusted-keys")
                .arg(&trusted)
                .arg(&ledger)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            (ledger, Killed(child))
        })
        .collect();
    let t = now() - 15;
    let token = keys.sign_one(
        "es-1",
        "ES256",
        &set(
            "x-1",
            json!({"format": "complex",
                           "session": {"format": "opaque", "id": "sess-42"},
                           "tenant": {"format": "opaque", "id": "acme"}}),
            format!("{CAEP}session-revoked"),
            json!({"event_timestamp": t}),
        ),
    );
    let (status, body) = ingest.post_set(&token);
    assert_eq!(status, 202, "{body}\n{}", ingest.logs());
    for (ledger, _) in &hosts {
        let start = Instant::now();
        loop {
            if let Ok(reader) = Ledger::open_reader(ledger) {
                let v = reader
                    .check_claims(
                        &ClaimMapping::new("generic").unwrap(),
                        json!({"tid": "acme", "sub": "u", "sid": "sess-42", "iat": t - 1})
                            .to_string()
                            .as_bytes(),
                    )
                    .unwrap();
                if v == revoked(Scope::Session, t + 1) {
                    break;
                }
            }
            assert!(
                start.elapsed() < DEADLINE,
                "{} never saw the rule",
                ledger.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    assert!(!ingest.ledger.exists(), "no local ledger with a Redis sink");
}
