//! `revledger ingest` benchmark (issue 14, DESIGN.md §5: ≥ 5,000 signed events/s
//! verified and applied; from an event's arrival to its rule committed, p99 ≤ 5 ms).
//!
//! A release `revledger ingest` process writes a ledger; this process is the transmitter
//! (keys made by jwcrypto, SETs signed here with jsonwebtoken before the clock starts)
//! and a gateway (a reader of the ledger):
//!
//! - throughput: `THROUGHPUT_SETS` distinct SETs (one subject each) POSTed over 64
//!   keep-alive connections, ES256 and RS256, the ledger durable (one fdatasync per
//!   group of requests, the default) and not; every `202` means the rule was committed.
//!   Beside it, in the same run, the baseline: verifying the same SETs in this process,
//!   one thread, nothing else (jsonwebtoken on aws-lc-rs);
//! - latency: `TRIALS` SETs sent one at a time; from just before the request is written
//!   to (a) the `202` and (b) a reader checking the ledger in a loop answering `revoked`,
//!   p50 / p99, durable ledger and not;
//! - the disk: write + fdatasync of 64 bytes, p50 / p99, at the start of the run (the
//!   machine is shared: a busy disk explains slow durable figures).
//!
//! Needs python3 with jwcrypto (scripts/install-deps); without it the benchmark says so
//! and stops. Results: stdout and `target/revledger-bench/ingest.json`.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use revledger::{Ledger, Token};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const BIN: &str = env!("CARGO_BIN_EXE_revledger");
const THROUGHPUT_SETS: usize = 4000;
const CONNECTIONS: usize = 64;
const TRIALS: usize = 1000;
const ISS: &str = "https://idp.example.com/";
const AUD: &str = "https://gateway.example.com/ssf";
const EVENT: &str = "https://schemas.openid.net/secevent/caep/event-type/credential-change";

struct Ingest {
    child: Child,
    addr: String,
    ledger: PathBuf,
}

impl Drop for Ingest {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn start(dir: &Path, name: &str, durable: bool) -> Ingest {
    let ledger = dir.join(format!("{name}.ledger"));
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nmax_connections = 4096\n\
             [sink.ledger]\npath = \"{}\"\nmax_token_lifetime = 3600\ndurable = {durable}\n\
             [[ssf]]\nname = \"bench\"\npath = \"/ssf\"\nissuer = \"{ISS}\"\naudience = \"{AUD}\"\n\
             jwks_file = \"{}\"\nrate = {{ per_second = 1000000, burst = 1000000 }}\n",
            ledger.display(),
            dir.join("jwks.json").display()
        ),
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .args(["ingest", "--log-format", "json", "--config"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("revledger ingest");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("ingest exited before listening")
            .unwrap();
        let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
        if v["message"] == "listening" {
            break v["addr"].as_str().unwrap().to_string();
        }
    };
    // Keep draining the log (one line per rule) so the process never blocks on it.
    std::thread::spawn(move || for _ in lines {});
    Ingest {
        child,
        addr,
        ledger,
    }
}

fn claims(jti: &str, sub: &str, t: i64) -> Value {
    json!({
        "iss": ISS, "aud": AUD, "iat": now(), "jti": jti,
        "sub_id": {"format": "iss_sub", "iss": ISS, "sub": sub},
        "events": {EVENT: {"credential_type": "password", "change_type": "update", "event_timestamp": t}}
    })
}

fn sign(key: &EncodingKey, alg: Algorithm, kid: &str, claims: &Value) -> String {
    let mut h = Header::new(alg);
    h.kid = Some(kid.into());
    h.typ = Some("secevent+jwt".into());
    jsonwebtoken::encode(&h, claims, key).unwrap()
}

fn client() -> reqwest::Client {
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .pool_max_idle_per_host(CONNECTIONS)
        .build()
        .unwrap()
}

/// write(64 bytes) + fdatasync, 200 times, in `dir`: how busy the disk is during this
/// run (DESIGN.md §5 quotes ≈ 75 µs p50 for this machine kind when quiet).
fn fdatasync_probe(dir: &Path) -> Vec<Duration> {
    use std::io::Write;
    let path = dir.join("fdatasync-probe");
    let mut f = std::fs::File::create(&path).unwrap();
    let mut times: Vec<Duration> = (0..200)
        .map(|_| {
            f.write_all(&[0u8; 64]).unwrap();
            let t = Instant::now();
            f.sync_data().unwrap();
            t.elapsed()
        })
        .collect();
    drop(f);
    let _ = std::fs::remove_file(&path);
    times.sort();
    times
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// POSTs every SET over `CONNECTIONS` connections; returns the wall time and each
/// request's time to its `202`.
fn blast(
    rt: &tokio::runtime::Runtime,
    url: &str,
    sets: &Arc<Vec<String>>,
) -> (Duration, Vec<Duration>) {
    let client = client();
    let next = Arc::new(AtomicUsize::new(0));
    let times = Arc::new(Mutex::new(Vec::with_capacity(sets.len())));
    let start = Instant::now();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..CONNECTIONS {
            let (client, next, times, sets, url) = (
                client.clone(),
                next.clone(),
                times.clone(),
                sets.clone(),
                url.to_string(),
            );
            tasks.push(tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(set) = sets.get(i) else { break };
                    let t0 = Instant::now();
                    let resp = client
                        .post(&url)
                        .header("content-type", "application/secevent+jwt")
                        .body(set.clone())
                        .send()
                        .await
                        .expect("POST");
                    assert_eq!(
                        resp.status().as_u16(),
                        202,
                        "{}",
                        resp.text().await.unwrap_or_default()
                    );
                    mine.push(t0.elapsed());
                }
                times.lock().unwrap().extend(mine);
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    let took = start.elapsed();
    let mut times = Arc::try_unwrap(times).unwrap().into_inner().unwrap();
    times.sort();
    (took, times)
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let jose = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ingest/jose.py");
    match Command::new("python3")
        .arg(&jose)
        .arg("keys")
        .arg(dir.path())
        .status()
    {
        Ok(s) if s.success() => {}
        _ => {
            println!(
                "ingest benchmark skipped: python3 with jwcrypto is needed (scripts/install-deps)"
            );
            return;
        }
    }
    let es =
        EncodingKey::from_ec_pem(&std::fs::read(dir.path().join("es-1.pem")).unwrap()).unwrap();
    let rs =
        EncodingKey::from_rsa_pem(&std::fs::read(dir.path().join("rs-1.pem")).unwrap()).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let t = now() - 60;
    let mut results = serde_json::Map::new();
    let mut lines = Vec::new();
    let probe = fdatasync_probe(dir.path());
    results.insert(
        "fdatasync_64_bytes_us".into(),
        json!({"p50": us(percentile(&probe, 0.5)), "p99": us(percentile(&probe, 0.99))}),
    );
    lines.push(format!(
        "the disk during this run: write + fdatasync of 64 bytes p50 {:.0} us, p99 {:.0} us \
         (DESIGN.md §5: about 75 us p50 when the machine is quiet)",
        us(percentile(&probe, 0.5)),
        us(percentile(&probe, 0.99))
    ));

    // Baseline keys: the public halves, as the receiver holds them.
    let jwks: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("jwks.json")).unwrap()).unwrap();
    let public = |kid: &str| {
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(
            jwks["keys"]
                .as_array()
                .unwrap()
                .iter()
                .find(|k| k["kid"] == kid)
                .unwrap()
                .clone(),
        )
        .unwrap();
        DecodingKey::from_jwk(&jwk).unwrap()
    };

    for (alg, key, kid) in [
        (Algorithm::ES256, &es, "es-1"),
        (Algorithm::RS256, &rs, "rs-1"),
    ] {
        let name = format!("{alg:?}");
        let sets: Arc<Vec<String>> = Arc::new(
            (0..THROUGHPUT_SETS)
                .map(|i| {
                    sign(
                        key,
                        alg,
                        kid,
                        &claims(&format!("{name}-{i}"), &format!("{name}-user-{i}"), t),
                    )
                })
                .collect(),
        );
        // Baseline: verification alone, one thread.
        let dk = public(kid);
        let mut v = Validation::new(alg);
        v.validate_exp = false;
        v.validate_aud = false;
        v.required_spec_claims.clear();
        let start = Instant::now();
        for s in sets.iter() {
            jsonwebtoken::decode::<Value>(s, &dk, &v).unwrap();
        }
        let verify_rate = sets.len() as f64 / start.elapsed().as_secs_f64();
        for durable in [true, false] {
            let ingest = start_named(dir.path(), &name, durable);
            let url = format!("http://{}/ssf", ingest.addr);
            let (took, times) = blast(&rt, &url, &sets);
            let rate = sets.len() as f64 / took.as_secs_f64();
            let reader = Ledger::open_reader(&ingest.ledger).unwrap();
            assert_eq!(
                reader.stats(now()).unwrap().live_keys,
                sets.len() as u64,
                "every rule committed"
            );
            let key = format!("{name}_{}", if durable { "durable" } else { "not_durable" });
            results.insert(
                key.clone(),
                json!({
                    "sets_per_second": rate,
                    "ratio_to_goal_5000": rate / 5000.0,
                    "verify_only_one_thread_per_second": verify_rate,
                    "ratio_to_verify_only": rate / verify_rate,
                    "request_to_202_under_load_us": {"p50": us(percentile(&times, 0.5)), "p99": us(percentile(&times, 0.99))},
                }),
            );
            lines.push(format!(
                "{key}: {rate:.0} SETs/s verified and applied ({:.2}x the 5,000/s goal; verification alone, \
                 one thread: {verify_rate:.0}/s, ratio {:.2}); under load, request to 202 p50 {:.0} us, p99 {:.0} us",
                rate / 5000.0,
                rate / verify_rate,
                us(percentile(&times, 0.5)),
                us(percentile(&times, 0.99)),
            ));
        }
    }

    // Latency, one event at a time, with a reader of the ledger checking in a loop.
    for durable in [true, false] {
        let (to_revoked, to_202) = latency(&rt, dir.path(), &es, t, durable);
        let mode = if durable { "durable" } else { "not_durable" };
        results.insert(
            format!("latency_es256_{mode}_us"),
            json!({
                "trials": TRIALS,
                "request_to_reader_revoked": {"p50": us(percentile(&to_revoked, 0.5)), "p99": us(percentile(&to_revoked, 0.99)), "max": us(*to_revoked.last().unwrap())},
                "request_to_202": {"p50": us(percentile(&to_202, 0.5)), "p99": us(percentile(&to_202, 0.99))},
                "goal_p99_us": 5000,
            }),
        );
        lines.push(format!(
            "latency (ES256, {mode}, one at a time, {TRIALS} trials): request written -> a reader's check \
             says revoked: p50 {:.0} us, p99 {:.0} us, max {:.0} us; request -> 202: p50 {:.0} us, p99 {:.0} us \
             (goal: p99 <= 5000 us)",
            us(percentile(&to_revoked, 0.5)),
            us(percentile(&to_revoked, 0.99)),
            us(*to_revoked.last().unwrap()),
            us(percentile(&to_202, 0.5)),
            us(percentile(&to_202, 0.99)),
        ));
    }
    for l in &lines {
        println!("ingest: {l}");
    }
    let out: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/revledger-bench");
    if std::fs::create_dir_all(&out).is_ok() {
        let file = out.join("ingest.json");
        let mut doc = serde_json::Map::new();
        doc.insert("benchmark".into(), "ingest".into());
        doc.insert("sets".into(), THROUGHPUT_SETS.into());
        doc.insert("connections".into(), CONNECTIONS.into());
        doc.extend(results);
        match std::fs::write(&file, format!("{:#}\n", Value::Object(doc))) {
            Ok(()) => println!("results: {}", file.display()),
            Err(e) => eprintln!("could not write {}: {e}", file.display()),
        }
    }
}

/// `TRIALS` SETs one at a time: from just before each request to a reader's `revoked`, and
/// to the `202` (both sorted).
fn latency(
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    es: &EncodingKey,
    t: i64,
    durable: bool,
) -> (Vec<Duration>, Vec<Duration>) {
    let ingest = start_named(dir, "latency", durable);
    let url = format!("http://{}/ssf", ingest.addr);
    let sets: Vec<String> = (0..TRIALS)
        .map(|i| {
            sign(
                es,
                Algorithm::ES256,
                "es-1",
                &claims(&format!("lat-{i}"), &format!("lat-user-{i}"), t),
            )
        })
        .collect();
    let reader = Arc::new(Ledger::open_reader(&ingest.ledger).unwrap());
    let target = Arc::new(AtomicUsize::new(usize::MAX));
    let seen = Arc::new(Mutex::new(vec![None::<Instant>; TRIALS]));
    let spinner = {
        let (reader, target, seen) = (reader.clone(), target.clone(), seen.clone());
        std::thread::spawn(move || loop {
            let i = target.load(Ordering::Acquire);
            if i == usize::MAX - 1 {
                return;
            }
            if i < TRIALS && seen.lock().unwrap()[i].is_none() {
                let sub = format!("lat-user-{i}");
                let token = Token {
                    subject: sub.as_bytes(),
                    issued_at: t - 1,
                    ..Token::default()
                };
                if reader.check(&token).unwrap().is_revoked() {
                    seen.lock().unwrap()[i] = Some(Instant::now());
                }
            }
            // Checking in a loop, but leaving the CPU to others between checks: the
            // machine has two cores.
            std::thread::yield_now();
        })
    };
    let client = client();
    let mut to_202 = Vec::with_capacity(TRIALS);
    let mut to_revoked = Vec::with_capacity(TRIALS);
    rt.block_on(async {
        for (i, set) in sets.iter().enumerate() {
            target.store(i, Ordering::Release);
            let t0 = Instant::now();
            let resp = client
                .post(&url)
                .header("content-type", "application/secevent+jwt")
                .body(set.clone())
                .send()
                .await
                .unwrap();
            let answered = t0.elapsed();
            assert_eq!(resp.status().as_u16(), 202);
            let deadline = Instant::now() + Duration::from_secs(5);
            let seen_at = loop {
                if let Some(at) = seen.lock().unwrap()[i] {
                    break at;
                }
                assert!(Instant::now() < deadline, "the reader never saw rule {i}");
                tokio::task::yield_now().await;
            };
            to_202.push(answered);
            to_revoked.push(seen_at - t0);
        }
    });
    target.store(usize::MAX - 1, Ordering::Release);
    spinner.join().unwrap();
    to_202.sort();
    to_revoked.sort();
    (to_revoked, to_202)
}

fn start_named(dir: &Path, name: &str, durable: bool) -> Ingest {
    start(
        dir,
        &format!("{name}-{}", if durable { "durable" } else { "fast" }),
        durable,
    )
}
