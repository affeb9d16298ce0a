//! Where rules go: a local ledger (this process is its one writer) or the Redis stream
//! that `revledger sync` follows on every host. One thread owns the ledger or the
//! connection; requests hand it their rules and wait for the commit. Whatever has queued
//! up while it wrote is written next as one group (one `revoke_batch` and one `sync`, or
//! one pipeline): group commit, so durability costs one fdatasync per group, not per
//! event.

use super::config::SinkConfig;
use super::event::OwnedRule;
use crate::sync::{Publisher, RedisConfig, Signer, Trim};
use revledger::{unix_now_floor, Ledger, WriterOptions};
use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Most deliveries written as one group.
const MAX_GROUP: usize = 1024;
/// Deliveries waiting for the writer before senders wait too.
const QUEUE: usize = 4096;

/// A write that failed (the sender is answered `503` and retries).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SinkError(pub String);

impl fmt::Display for SinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SinkError {}

struct Job {
    rules: Vec<OwnedRule>,
    done: oneshot::Sender<Result<(), SinkError>>,
}

enum Target {
    Ledger { ledger: Arc<Ledger>, durable: bool },
    Redis(Box<Publisher>),
}

impl Target {
    fn write(&mut self, rules: &[revledger::Rule<'_>]) -> Result<(), SinkError> {
        match self {
            Target::Ledger { ledger, durable } => {
                ledger
                    .revoke_batch(rules)
                    .map_err(|e| SinkError(format!("ledger {}: {e}", ledger.path().display())))?;
                if *durable {
                    ledger.sync().map_err(|e| {
                        SinkError(format!("ledger {}: {e}", ledger.path().display()))
                    })?;
                }
                Ok(())
            }
            Target::Redis(p) => {
                let owned: Vec<revledger::Rule<'_>> = rules.to_vec();
                p.publish_batch(&owned)
                    .map(|_| ())
                    .map_err(|e| SinkError(format!("redis: {e}")))
            }
        }
    }
}

/// The writer and what the sources need to know about it.
pub struct Sink {
    tx: parking_lot::Mutex<Option<mpsc::Sender<Job>>>,
    worker: parking_lot::Mutex<Option<std::thread::JoinHandle<()>>>,
    ledger: Option<Arc<Ledger>>,
    token_lifetime: i64,
    describe: String,
    replays: parking_lot::Mutex<ReplayWindow>,
}

impl Sink {
    /// Opens the ledger (creating it when missing) or connects to Redis, and starts the
    /// writer thread.
    pub fn open(config: &SinkConfig) -> Result<Sink, SinkError> {
        let (target, ledger, token_lifetime, describe) = match (&config.ledger, &config.redis) {
            (Some(l), _) => {
                let options = WriterOptions {
                    max_token_lifetime: l.max_token_lifetime,
                    leeway: l.leeway,
                    ..WriterOptions::default()
                };
                let ledger = match Ledger::open_writer(&l.path, &options) {
                    Ok(ledger) => Arc::new(ledger),
                    Err(revledger::Error::Locked(p)) => {
                        return Err(SinkError(format!(
                            "ledger {} is locked by another writer (a `revledger sync`, or a \
                             program revoking through it): one writer per ledger; publish to \
                             the stream instead ([sink.redis])",
                            p.display()
                        )))
                    }
                    Err(e) => return Err(SinkError(format!("ledger {}: {e}", l.path.display()))),
                };
                let lifetime = ledger.max_token_lifetime() + ledger.leeway();
                let describe = format!("ledger {}", l.path.display());
                (
                    Target::Ledger {
                        ledger: ledger.clone(),
                        durable: l.durable,
                    },
                    Some(ledger),
                    lifetime,
                    describe,
                )
            }
            (None, Some(r)) => {
                let url = match (&r.url, &r.url_file) {
                    (Some(u), _) => u.clone(),
                    (None, Some(f)) => std::fs::read_to_string(f)
                        .map_err(|e| SinkError(format!("cannot read {}: {e}", f.display())))?
                        .trim()
                        .to_string(),
                    (None, None) => return Err(SinkError("[sink.redis] has no url".into())),
                };
                let trim = Trim::by_age(r.max_token_lifetime, r.leeway);
                let mut redis = RedisConfig::new(url);
                redis.password_file = r.password_file.clone();
                redis.ca_file = r.ca_file.clone();
                redis.client_cert = r.client_cert.clone();
                redis.client_key = r.client_key.clone();
                redis.sentinels = r.sentinels.clone();
                let describe = format!("stream {} on {}", r.stream, redis.describe());
                let fail =
                    |e: &dyn fmt::Display| SinkError(format!("redis {}: {e}", redis.describe()));
                redis.validate().map_err(|e| fail(&e))?;
                let mut p = Publisher::connect_with(&redis, r.stream.as_bytes(), trim)
                    .map_err(|e| fail(&e))?;
                if let (Some(key), Some(kid)) = (&r.sign_key, &r.key_id) {
                    let signer = Signer::from_pem_file(kid, key)
                        .map_err(|e| SinkError(format!("sign_key {}: {e}", key.display())))?;
                    p = p.sign_with(signer);
                }
                (
                    Target::Redis(Box::new(p)),
                    None,
                    r.max_token_lifetime + r.leeway,
                    describe,
                )
            }
            (None, None) => return Err(SinkError("[sink] names no ledger and no stream".into())),
        };
        let (tx, rx) = mpsc::channel(QUEUE);
        let worker = std::thread::Builder::new()
            .name("revledger-ingest-writer".into())
            .spawn(move || write_loop(target, rx))
            .map_err(|e| SinkError(format!("cannot start the writer thread: {e}")))?;
        Ok(Sink {
            tx: parking_lot::Mutex::new(Some(tx)),
            worker: parking_lot::Mutex::new(Some(worker)),
            ledger,
            token_lifetime,
            describe,
            replays: parking_lot::Mutex::new(ReplayWindow::new(config.replay_window)),
        })
    }

    /// Commits `rules` (with whatever else is queued), returning once they are visible to
    /// readers (and durable when so configured) or published.
    pub async fn apply(&self, rules: Vec<OwnedRule>) -> Result<(), SinkError> {
        if rules.is_empty() {
            return Ok(());
        }
        let tx = self
            .tx
            .lock()
            .clone()
            .ok_or_else(|| SinkError("shutting down".into()))?;
        let (done, wait) = oneshot::channel();
        tx.send(Job { rules, done })
            .await
            .map_err(|_| SinkError("the writer has stopped".into()))?;
        wait.await
            .map_err(|_| SinkError("the writer has stopped".into()))?
    }

    /// Seconds a token rule whose `exp` is unknown is kept: the longest token lifetime
    /// plus the leeway.
    pub fn token_lifetime(&self) -> i64 {
        self.token_lifetime
    }

    /// The exp given to a token rule whose event does not say it, as of now.
    pub fn token_rule_exp(&self) -> i64 {
        unix_now_floor().saturating_add(self.token_lifetime)
    }

    /// The ledger written, when the sink is one.
    pub fn ledger(&self) -> Option<&Arc<Ledger>> {
        self.ledger.as_ref()
    }

    /// What the sink is, for logs.
    pub fn describe(&self) -> &str {
        &self.describe
    }

    /// Whether the event `id` of `source` was applied already.
    pub fn seen(&self, source: &str, id: &str) -> bool {
        self.replays.lock().contains(&replay_key(source, id))
    }

    /// Records that the events `ids` of `source` were applied.
    pub fn remember<'a>(&self, source: &str, ids: impl IntoIterator<Item = &'a str>) {
        let mut r = self.replays.lock();
        for id in ids {
            r.insert(replay_key(source, id));
        }
    }

    /// Stops the writer after it has written everything queued (and synced the ledger);
    /// later [`Sink::apply`] calls fail. Blocks until then.
    pub fn close(&self) {
        self.tx.lock().take();
        let worker = self.worker.lock().take();
        if let Some(w) = worker {
            let _ = w.join();
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.close();
    }
}

fn replay_key(source: &str, id: &str) -> String {
    format!("{source}\u{0}{id}")
}

fn write_loop(mut target: Target, mut rx: mpsc::Receiver<Job>) {
    while let Some(first) = rx.blocking_recv() {
        let mut jobs = vec![first];
        while jobs.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let rules: Vec<revledger::Rule<'_>> = jobs
            .iter()
            .flat_map(|j| j.rules.iter().map(OwnedRule::as_rule))
            .collect();
        let result = target.write(&rules);
        drop(rules);
        for j in jobs {
            let _ = j.done.send(result.clone());
        }
    }
    if let Target::Ledger { ledger, .. } = &target {
        if let Err(e) = ledger.sync() {
            tracing::error!(error = %e, "final sync of the ledger failed");
        }
    }
}

/// The last `capacity` event ids applied, oldest forgotten first.
struct ReplayWindow {
    capacity: usize,
    set: HashSet<String>,
    order: VecDeque<String>,
}

impl ReplayWindow {
    fn new(capacity: usize) -> ReplayWindow {
        ReplayWindow {
            capacity,
            set: HashSet::new(),
            order: VecDeque::new(),
        }
    }

    fn contains(&self, key: &str) -> bool {
        self.set.contains(key)
    }

    fn insert(&mut self, key: String) {
        if self.capacity == 0 || self.set.contains(&key) {
            return;
        }
        if self.order.len() == self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        self.set.insert(key.clone());
        self.order.push_back(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::config::LedgerSinkConfig;
    use revledger::{Scope, Token};

    #[test]
    fn the_replay_window_forgets_the_oldest() {
        let mut w = ReplayWindow::new(2);
        w.insert("a".into());
        w.insert("b".into());
        w.insert("a".into());
        assert!(w.contains("a") && w.contains("b"));
        w.insert("c".into());
        assert!(!w.contains("a") && w.contains("b") && w.contains("c"));
        let mut off = ReplayWindow::new(0);
        off.insert("a".into());
        assert!(!off.contains("a"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_deliveries_are_committed_in_groups() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l");
        let config = SinkConfig {
            ledger: Some(LedgerSinkConfig {
                path: path.clone(),
                max_token_lifetime: 3600,
                leeway: None,
                durable: true,
            }),
            redis: None,
            replay_window: 10,
            max_future_secs: 300,
        };
        let sink = Arc::new(Sink::open(&config).unwrap());
        assert_eq!(sink.token_lifetime(), 3900);
        let mut tasks = Vec::new();
        for i in 0..200u32 {
            let sink = sink.clone();
            tasks.push(tokio::spawn(async move {
                let user = format!("user-{i}");
                sink.apply(vec![OwnedRule::new(
                    Scope::Subject,
                    b"acme",
                    user.as_bytes(),
                    1000,
                )])
                .await
            }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let reader = Ledger::open_reader(&path).unwrap();
        for i in [0u32, 57, 199] {
            let user = format!("user-{i}");
            let t = Token {
                tenant: b"acme",
                subject: user.as_bytes(),
                issued_at: 999,
                ..Token::default()
            };
            assert!(reader.check(&t).unwrap().is_revoked(), "{user}");
        }
        assert!(
            Ledger::open_writer(&path, &WriterOptions::with_lifetime(3600)).is_err(),
            "still held"
        );
        drop(sink);
        assert!(
            Ledger::open_writer(&path, &WriterOptions::with_lifetime(3600)).is_ok(),
            "closed"
        );
    }
}
