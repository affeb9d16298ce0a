//! `publish` and `sync`: the fleet over Redis Streams (docs/SYNC.md), through
//! `revledger_cli::sync`.

use super::bytes::arg_bytes;
use super::commands::{rule_from_args, rule_line};
use super::{CliError, CliResult, KeygenArgs, PublishArgs, SyncArgs};
use crate::sync::ops::{self, SyncMetrics};
use crate::sync::{
    Event, Follower, Notes, Publisher, Scopes, Signer, SyncError, SyncOptions, Trim, TrustedKeys,
};
use revledger::{now_cutoff, unix_now_floor, Error, Ledger, Rule, Scope};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

impl From<SyncError> for CliError {
    fn from(e: SyncError) -> CliError {
        match e {
            SyncError::Ledger(e) => e.into(),
            e => CliError::new(e.to_string()),
        }
    }
}

/// `publish`: one rule, one stream entry.
pub fn publish(a: &PublishArgs) -> CliResult {
    let scope = a.rule.scope;
    let (tenant, key, at) = rule_from_args(&a.rule)?;
    let (at, when) = match at {
        Some(at) => (at, ""),
        None if scope == Scope::Token => {
            return Err(CliError::new(
                "a token rule needs --exp UNIX: the token's exp",
            ))
        }
        None => (now_cutoff(), " (now, rounded up to the next second)"),
    };
    let rule = Rule::new(scope, &tenant, &key, at);
    let stream = arg_bytes("stream", &a.stream, false)?;
    let reason = a
        .reason
        .as_deref()
        .map(|r| arg_bytes("reason", r, false))
        .transpose()?;
    let origin = a
        .origin
        .as_deref()
        .map(|o| arg_bytes("origin", o, false))
        .transpose()?;
    let trim = if a.no_trim {
        Trim::None
    } else {
        Trim::by_age(a.max_token_lifetime, a.leeway)
    };
    // Checked before connecting: a bad rule never reaches the stream.
    trim.check(&rule, unix_now_floor())?;
    let signer = match (&a.sign_key, &a.key_id) {
        (Some(path), Some(kid)) => Some(Signer::from_pem_file(kid, path)?),
        _ => None,
    };
    let mut p = Publisher::connect_with(&a.redis.config(), stream.clone(), trim)?
        .wait_for_replicas(a.wait_replicas, Duration::from_millis(a.wait_timeout_ms));
    if let Some(signer) = signer {
        p = p.sign_with(signer);
    }
    let notes = Notes {
        reason: reason.as_deref(),
        origin: origin.as_deref(),
    };
    let id = p.publish_with_notes(&rule, &notes)?;
    println!(
        "published {}{when} as entry {id} of stream {}",
        rule_line(&rule),
        String::from_utf8_lossy(&stream)
    );
    Ok(ExitCode::SUCCESS)
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for a log line.
fn utc_now() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        now.subsec_millis()
    )
}

/// `sync`: the long-running single writer of the host's ledger, fed from the stream.
pub fn sync(a: &SyncArgs) -> CliResult {
    let stream = arg_bytes("stream", &a.stream, false)?;
    // Settings that cannot work are refused before the ledger is opened: opening creates
    // a missing one, with this command's lifetime, which a corrected command could not
    // lower.
    a.redis.config().validate()?;
    let created = !a.ledger.exists();
    super::writer::check(&a.writer)?;
    let options = a.writer.options(a.max_token_lifetime, a.leeway);
    let ledger = match Ledger::open_writer(&a.ledger, &options) {
        Ok(l) => l,
        Err(Error::Locked(p)) => {
            return Err(CliError::new(format!(
                "ledger {} is locked by another writer: another `revledger sync` (or a \
                 program revoking through it) already feeds it; one sync per ledger",
                p.display()
            )))
        }
        Err(e) => return Err(e.into()),
    };
    let json = a.log_format == "json";
    let log = |line: &dyn std::fmt::Display| {
        if json {
            let v = serde_json::json!({"ts": utc_now(), "level": "info", "event": "note", "msg": line.to_string()});
            eprintln!("{v}");
        } else {
            eprintln!("revledger sync: {} {line}", utc_now());
        }
    };
    let log_event = |e: &Event| {
        if json {
            eprintln!("{}", event_json(e));
        } else {
            eprintln!("revledger sync: {} {e}", utc_now());
        }
    };
    if created {
        log(&format_args!(
            "created ledger {} (max token lifetime {} s, leeway {} s)",
            a.ledger.display(),
            ledger.max_token_lifetime(),
            ledger.leeway()
        ));
    }
    let mut opts = SyncOptions::with_redis(a.redis.config(), stream);
    opts.rewind = Duration::from_secs(a.rewind);
    if let Some(path) = &a.trusted_keys {
        let keys = TrustedKeys::from_file(path)?;
        log(&format_args!(
            "applying only entries signed by the {} key(s) of {}",
            keys.len(),
            path.display()
        ));
        opts.trusted = Some(std::sync::Arc::new(keys));
    }
    opts.batch = a.batch;
    opts.compact_every = (a.compact_every > 0).then(|| Duration::from_secs(a.compact_every));
    let mut follower = Follower::new(&ledger, opts)?;
    let p = follower.position();
    log(&format_args!(
        "following stream {} into {} from entry {}{}",
        String::from_utf8_lossy(&p.stream),
        a.ledger.display(),
        p.last_id,
        if p.last_heard > 0 {
            format!(" (last heard at {})", p.last_heard)
        } else {
            String::new()
        }
    ));
    if p.degraded != 0 {
        let reasons = crate::sync::degraded_reasons(p.degraded).join("; ");
        if !a.resolve {
            log(&format_args!(
                "error: the ledger is DEGRADED ({reasons}); gateways checking freshness treat \
                 it as stale. Resync it, then restart with --resolve (docs/SYNC.md §5)"
            ));
        }
    }
    if a.resolve {
        let was = follower.resolve(&mut |e: &Event| log_event(e))?;
        if was == 0 {
            log(&"--resolve: the ledger was not degraded; nothing to resolve");
        }
    }
    let metrics = std::sync::Arc::new(SyncMetrics::new());
    if let Some(addr) = a.metrics_listen {
        let reader = Ledger::open_reader(&a.ledger)?;
        let bound = ops::serve(
            addr,
            metrics.clone(),
            reader,
            Duration::from_secs(a.health_max_age),
        )
        .map_err(|e| CliError::new(format!("cannot serve metrics on {addr}: {e}")))?;
        log(&format_args!(
            "metrics on http://{bound}/metrics, health on http://{bound}/healthz"
        ));
    }
    let verbose = a.verbose;
    let stop = AtomicBool::new(false); // runs until killed; every batch is synced
    follower.run(&stop, &mut |e: &Event| {
        metrics.observe(e);
        if verbose || !matches!(e, Event::Heartbeat { .. }) {
            log_event(e);
        }
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `keygen`: a new signing key in a PEM file, and its trusted-keys line on stdout.
pub fn keygen(a: &KeygenArgs) -> CliResult {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let scopes = Scopes::parse(&a.scopes).map_err(CliError::new)?;
    let signer = Signer::generate(&a.key_id)?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&a.out)
        .map_err(|e| CliError::new(format!("{}: {e}", a.out.display())))?;
    f.write_all(signer.to_pem().as_bytes())?;
    f.sync_all()?;
    println!("{} {} {scopes}", signer.kid(), signer.public_key_base64());
    Ok(ExitCode::SUCCESS)
}

/// One JSON log line for an event: time, level, kind, the text, and its figures.
fn event_json(e: &Event) -> serde_json::Value {
    use serde_json::json;
    let (level, kind, extra) = match e {
        Event::Connected { from, .. } => ("info", "connected", json!({"from": from.to_string()})),
        Event::NewStream { .. } => ("warn", "new_stream", json!({})),
        Event::StreamMissing { position } => (
            "warn",
            "stream_missing",
            json!({"position": position.to_string()}),
        ),
        Event::StreamReset {
            position,
            last_generated,
        } => (
            "warn",
            "stream_reset",
            json!({"position": position.to_string(), "last_generated": last_generated.to_string()}),
        ),
        Event::TrimmedPast {
            position,
            max_deleted,
            lost,
        } => (
            if *lost { "error" } else { "warn" },
            "trimmed_past",
            json!({"position": position.to_string(), "gone_up_to": max_deleted.to_string(), "lost": lost}),
        ),
        Event::Degraded { bits } => ("error", "degraded", json!({"bits": bits})),
        Event::Resolved { was } => ("warn", "resolved", json!({"was": was})),
        Event::Applied {
            rules,
            skipped,
            refused,
            lag_ms,
            last_id,
        } => (
            "info",
            "applied",
            json!({"rules": rules, "skipped": skipped, "refused": refused, "lag_ms": lag_ms, "last_id": last_id.to_string()}),
        ),
        Event::Skipped { id, .. } => ("error", "skipped", json!({"id": id.to_string()})),
        Event::Refused { id, .. } => ("error", "refused", json!({"id": id.to_string()})),
        Event::Unreachable {
            retry_in, attempt, ..
        } => (
            "warn",
            "unreachable",
            json!({"retry_in_ms": retry_in.as_millis() as u64, "attempt": attempt}),
        ),
        Event::Heartbeat { last_heard } => {
            ("debug", "heartbeat", json!({"last_heard": last_heard}))
        }
        Event::Compacted { stats, micros } => (
            "info",
            "compacted",
            json!({"rules_kept": stats.rules_kept, "bytes_after": stats.bytes_after, "micros": micros}),
        ),
    };
    let mut v = json!({"ts": utc_now(), "level": level, "event": kind, "msg": e.to_string()});
    if let (Some(o), serde_json::Value::Object(x)) = (v.as_object_mut(), extra) {
        o.extend(x);
    }
    v
}
