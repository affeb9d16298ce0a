//! Publishing rules: one `XADD` per rule, trimming the stream by age on the way.

use super::message::{fields, Notes, FIELD_KID, FIELD_SIG, MAX_NOTE_LEN};
use super::{RedisConfig, Result, Signer, SyncError};
use revledger::Error;
use revledger::StreamId;
use revledger::{Rule, Scope};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Time allowed to connect to Redis, and for each command of a publisher.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);

/// How a publisher keeps the stream bounded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trim {
    /// Never trim (something else keeps the stream bounded).
    None,
    /// Each `XADD` drops the entries added more than `max_token_lifetime + leeway`
    /// seconds ago (`XADD … MINID`): every rule they carry has stopped mattering, so a host
    /// catching up from the beginning reads exactly the rules that can still revoke a
    /// live token. `max_token_lifetime` must be at least that of every ledger fed from
    /// the stream.
    ByAge {
        /// Longest lifetime of a token, in seconds.
        max_token_lifetime: i64,
        /// Clock-skew leeway, in seconds (the ledgers' default is 300).
        leeway: i64,
    },
}

impl Trim {
    /// [`Trim::ByAge`] with these settings.
    pub fn by_age(max_token_lifetime: i64, leeway: i64) -> Trim {
        Trim::ByAge {
            max_token_lifetime,
            leeway,
        }
    }

    /// The `MINID` threshold (milliseconds) for an `XADD` at `now_ms`, if any.
    pub fn min_id_ms(&self, now_ms: u64) -> Option<u64> {
        match *self {
            Trim::None => None,
            Trim::ByAge {
                max_token_lifetime,
                leeway,
            } => {
                let keep_ms = (max_token_lifetime.max(0) as u64)
                    .saturating_add(leeway.max(0) as u64)
                    .saturating_mul(1000);
                Some(now_ms.saturating_sub(keep_ms))
            }
        }
    }

    /// Refuses a rule the trimming would drop from the stream while it still matters: a
    /// cutoff more than `leeway` in the future, or a token rule whose `exp` lies further
    /// ahead than a token can live.
    pub fn check(&self, rule: &Rule, now: i64) -> revledger::Result<()> {
        let Trim::ByAge {
            max_token_lifetime,
            leeway,
        } = *self
        else {
            return Ok(());
        };
        let (limit, what) = match rule.scope {
            Scope::Token => (
                now.saturating_add(max_token_lifetime)
                    .saturating_add(leeway),
                "a token rule's exp more than max token lifetime + leeway ahead",
            ),
            _ => (
                now.saturating_add(leeway),
                "a cutoff more than leeway ahead",
            ),
        };
        if rule.at > limit {
            return Err(Error::InvalidArgument(format!(
                "{what} ({} > {limit}) would be trimmed from the stream (entries are kept \
                 max token lifetime + leeway = {} s) while it still matters",
                rule.at,
                max_token_lifetime.saturating_add(leeway)
            )));
        }
        Ok(())
    }

    fn validate(&self) -> revledger::Result<()> {
        match *self {
            Trim::ByAge {
                max_token_lifetime,
                leeway,
            } if max_token_lifetime <= 0 || leeway < 0 => Err(Error::InvalidArgument(
                "trimming by age needs max_token_lifetime > 0 and leeway >= 0".into(),
            )),
            _ => Ok(()),
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A connection to Redis that publishes rules to one stream, one entry per rule
/// (docs/SYNC.md §2). When the connection breaks (or lands on a replica after a
/// failover), the next publish connects again — asking the sentinels anew, if any — and
/// sends once more: an entry published twice changes no answer (rules are idempotent).
pub struct Publisher {
    redis: RedisConfig,
    conn: redis::Connection,
    stream: Vec<u8>,
    trim: Trim,
    wait: Option<(usize, Duration)>,
    signer: Option<Signer>,
}

impl Publisher {
    /// Connects to the Redis at `url` (`redis://[user:password@]host:port/[db]` or
    /// `rediss://…`, the server verified against the system's roots) to publish to
    /// `stream`. [`Publisher::connect_with`] takes every setting.
    pub fn connect(url: &str, stream: impl Into<Vec<u8>>, trim: Trim) -> Result<Publisher> {
        let mut redis = RedisConfig::new(url);
        redis.connect_timeout = PUBLISH_TIMEOUT;
        redis.read_timeout = PUBLISH_TIMEOUT;
        Publisher::connect_with(&redis, stream, trim)
    }

    /// Connects to the Redis `redis` describes (TLS, ACL user, password file, Sentinel,
    /// timeouts) to publish to `stream`.
    pub fn connect_with(
        redis: &RedisConfig,
        stream: impl Into<Vec<u8>>,
        trim: Trim,
    ) -> Result<Publisher> {
        let stream = stream.into();
        revledger::StreamPosition::new(stream.clone(), StreamId::ZERO, 0).validate()?;
        trim.validate()?;
        let (conn, _) = redis.connect()?;
        Ok(Publisher {
            redis: redis.clone(),
            conn,
            stream,
            trim,
            wait: None,
            signer: None,
        })
    }

    /// After each publish, waits until `replicas` replicas acknowledge the entry (`WAIT`),
    /// at most `timeout`; fewer is an error ([`SyncError::NotReplicated`]) that the caller
    /// retries. Replication being asynchronous, an entry only the primary acknowledged can
    /// be lost in a failover; with this, a publish that returned survives one.
    pub fn wait_for_replicas(mut self, replicas: usize, timeout: Duration) -> Publisher {
        self.wait = (replicas > 0).then_some((replicas, timeout));
        self
    }

    /// Signs every entry with `signer` (fields `kid` and `sig`, docs/SYNC.md §5), for sync
    /// processes that apply only rules signed by keys they trust.
    pub fn sign_with(mut self, signer: Signer) -> Publisher {
        self.signer = Some(signer);
        self
    }

    /// Runs `query` on the connection; when the connection broke, or reached a server
    /// that can no longer take writes (a primary turned replica by a failover), connects
    /// again and runs it once more.
    fn with_retry<T>(
        &mut self,
        mut query: impl FnMut(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T> {
        match query(&mut self.conn) {
            Err(e) if must_reconnect(&e) => {
                self.conn = self.redis.connect()?.0;
                Ok(query(&mut self.conn)?)
            }
            other => Ok(other?),
        }
    }

    /// The stream this publisher writes to.
    pub fn stream(&self) -> &[u8] {
        &self.stream
    }

    fn command(&self, rule: &Rule, notes: &Notes, now_ms: u64) -> Result<redis::Cmd> {
        rule.validate()?;
        self.trim.check(rule, (now_ms / 1000) as i64)?;
        for (name, note) in [("reason", notes.reason), ("origin", notes.origin)] {
            if note.is_some_and(|n| n.len() > MAX_NOTE_LEN) {
                return Err(SyncError::Ledger(Error::InvalidArgument(format!(
                    "{name} is longer than {MAX_NOTE_LEN} bytes"
                ))));
            }
        }
        let at = rule.at.to_string();
        let mut cmd = redis::cmd("XADD");
        cmd.arg(&self.stream[..]);
        if let Some(min) = self.trim.min_id_ms(now_ms) {
            cmd.arg("MINID").arg(min.to_string());
        }
        cmd.arg("*");
        for (name, value) in fields(rule, notes, &at) {
            cmd.arg(name).arg(value);
        }
        if let Some(s) = &self.signer {
            cmd.arg(FIELD_KID)
                .arg(s.kid())
                .arg(FIELD_SIG)
                .arg(s.sign(&self.stream, rule));
        }
        Ok(cmd)
    }

    /// The `WAIT` that follows the entries, if any.
    fn wait_cmd(&self) -> Option<redis::Cmd> {
        let (n, timeout) = self.wait?;
        let mut cmd = redis::cmd("WAIT");
        cmd.arg(n).arg(timeout.as_millis().max(1) as u64);
        Some(cmd)
    }

    /// Publishes `rule` and returns the id Redis gave its entry. Returns once Redis has
    /// the entry (in memory; with [`Publisher::wait_for_replicas`], on that many replicas
    /// too; disk follows Redis's own settings).
    pub fn publish(&mut self, rule: &Rule) -> Result<StreamId> {
        self.publish_with_notes(rule, &Notes::default())
    }

    /// Publishes `rule` with a `reason` and/or an `origin`.
    pub fn publish_with_notes(&mut self, rule: &Rule, notes: &Notes) -> Result<StreamId> {
        let cmd = self.command(rule, notes, now_ms())?;
        let mut ids = self.send(std::slice::from_ref(&cmd))?;
        Ok(ids.remove(0))
    }

    /// Publishes every rule of `rules` in one round trip (a pipeline), in order; all are
    /// checked first, so a bad rule publishes nothing. Returns the entries' ids.
    pub fn publish_batch(&mut self, rules: &[Rule]) -> Result<Vec<StreamId>> {
        let now = now_ms();
        let mut cmds = Vec::with_capacity(rules.len());
        for (i, r) in rules.iter().enumerate() {
            let cmd = self
                .command(r, &Notes::default(), now)
                .map_err(|e| match e {
                    SyncError::Ledger(e) => SyncError::Ledger(Error::InvalidArgument(format!(
                        "rule {i} of the batch: {e}"
                    ))),
                    e => e,
                })?;
            cmds.push(cmd);
        }
        if rules.is_empty() {
            return Ok(Vec::new());
        }
        self.send(&cmds)
    }

    /// Sends the `XADD`s (and the `WAIT`) in one pipeline; returns the entries' ids.
    fn send(&mut self, cmds: &[redis::Cmd]) -> Result<Vec<StreamId>> {
        let mut pipe = redis::pipe();
        for c in cmds {
            pipe.add_command(c.clone());
        }
        let wait = self.wait;
        if let Some(w) = self.wait_cmd() {
            pipe.add_command(w);
        }
        let mut replies: Vec<redis::Value> = self.with_retry(|c| pipe.query(c))?;
        let acked = match wait {
            Some(_) => replies.pop(),
            None => None,
        };
        let ids = replies.iter().map(entry_id).collect::<Result<Vec<_>>>()?;
        if let (Some((wanted, _)), Some(acked)) = (wait, acked) {
            let acked = match acked {
                redis::Value::Int(n) => n.max(0) as usize,
                other => {
                    return Err(SyncError::Protocol(format!(
                        "WAIT answered {other:?}, not a number"
                    )))
                }
            };
            if acked < wanted {
                return Err(SyncError::NotReplicated {
                    last_id: ids.last().copied().unwrap_or(StreamId::ZERO),
                    acked,
                    wanted,
                });
            }
        }
        Ok(ids)
    }
}

/// Whether an error calls for a new connection: the old one broke, or reached a server
/// that is no longer the primary.
pub(crate) fn must_reconnect(e: &redis::RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_timeout()
        || e.code()
            .is_some_and(|c| c == "READONLY" || c == "MASTERDOWN")
}

fn entry_id(reply: &redis::Value) -> Result<StreamId> {
    match reply {
        redis::Value::BulkString(b) => StreamId::parse(b),
        redis::Value::SimpleString(s) => StreamId::parse(s.as_bytes()),
        _ => None,
    }
    .ok_or_else(|| SyncError::Protocol(format!("XADD answered {reply:?}, not an entry id")))
}

/// Publishes one rule to `stream` on the Redis at `url` (a connection per call; keep a
/// [`Publisher`] to publish many).
pub fn publish(url: &str, stream: &[u8], trim: Trim, rule: &Rule) -> Result<StreamId> {
    Publisher::connect(url, stream, trim)?.publish(rule)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trimming_by_age_keeps_lifetime_plus_leeway() {
        let t = Trim::by_age(3600, 300);
        assert_eq!(t.min_id_ms(10_000_000), Some(10_000_000 - 3_900_000));
        assert_eq!(t.min_id_ms(5), Some(0));
        assert_eq!(Trim::None.min_id_ms(10_000_000), None);
        assert!(Trim::by_age(0, 300).validate().is_err());
        assert!(Trim::by_age(60, -1).validate().is_err());
    }

    #[test]
    fn rules_the_trimming_would_drop_early_are_refused() {
        let t = Trim::by_age(3600, 300);
        let now = 1_000_000;
        let cut = |at| Rule::new(Scope::Role, b"t", b"r", at);
        assert!(t.check(&cut(now + 1), now).is_ok());
        assert!(t.check(&cut(now + 300), now).is_ok());
        assert!(t.check(&cut(now + 301), now).is_err());
        assert!(t.check(&cut(now - 10_000), now).is_ok());
        let tok = |exp| Rule::new(Scope::Token, b"t", b"j", exp);
        assert!(t.check(&tok(now + 3900), now).is_ok());
        assert!(t.check(&tok(now + 3901), now).is_err());
        assert!(Trim::None.check(&cut(i64::MAX), now).is_ok());
    }
}
