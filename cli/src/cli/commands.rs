//! The commands other than `demo`: each opens the ledger, calls the library, prints.

use super::bytes::{arg_bytes, escape, to_hex, unescape};
use super::claims::Claims;
use super::{
    At, BatchArgs, CheckArgs, CliError, CliResult, CompactArgs, CreateArgs, DumpArgs, RevokeArgs,
    RuleArgs, StatsArgs, VerifyArgs, EXIT_REVOKED,
};
use revledger::header::{Header, HEADER_LEN, OFF_SYNCED_LEN};
use revledger::record::{decode_frame, frame_len, Frame, Record, FRAME_ALIGN, MAX_PAYLOAD_LEN};
use revledger::{
    now_cutoff, unix_now_floor, ClaimMapping, Ledger, Rule, Scope, Token, Verdict, WriterOptions,
};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::ExitCode;

/// Rules per `revoke_batch` call when reading a batch file.
const BATCH_CHUNK: usize = 65_536;

fn require_ledger(path: &Path) -> CliResult<()> {
    match std::fs::symlink_metadata(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(CliError::new(format!(
            "no ledger at {0} (create one with `revledger create {0}`)",
            path.display()
        ))),
        // Not "no ledger": a directory on the way that this user may not search, say.
        Err(e) => Err(CliError::new(format!(
            "cannot reach {}: {e}",
            path.display()
        ))),
    }
}

/// Opens an existing ledger for writing (never creates one by accident).
pub fn open_writer(path: &Path) -> CliResult<Ledger> {
    require_ledger(path)?;
    Ok(Ledger::open_writer(path, &WriterOptions::default())?)
}

/// Opens an existing ledger read-only.
pub fn open_reader(path: &Path) -> CliResult<Ledger> {
    require_ledger(path)?;
    Ok(Ledger::open_reader(path)?)
}

/// Puts `bytes` into `obj` as `name` (UTF-8) or `name_hex` (anything else).
fn put_bytes(obj: &mut Map<String, Value>, name: &str, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(s) => obj.insert(name.into(), s.into()),
        Err(_) => obj.insert(format!("{name}_hex"), to_hex(bytes).into()),
    };
}

/// `create`: makes a new ledger with the given lifetime and leeway; refuses an existing path.
pub fn create(a: &CreateArgs) -> CliResult {
    if a.ledger.exists() {
        return Err(CliError::new(format!(
            "{} already exists (`revledger stats` shows its settings)",
            a.ledger.display()
        )));
    }
    super::writer::check(&a.writer)?;
    let options = a.writer.options(a.max_token_lifetime, a.leeway);
    let ledger = Ledger::open_writer(&a.ledger, &options)?;
    ledger.sync()?;
    println!(
        "created {}: max token lifetime {} s, leeway {} s",
        a.ledger.display(),
        ledger.max_token_lifetime(),
        ledger.leeway()
    );
    Ok(ExitCode::SUCCESS)
}

/// The rule `revoke` and `publish` take from their arguments: `(tenant, key, at)`, where
/// `at` is `None` for "now". Checks its shape for its scope.
pub fn rule_from_args(a: &RuleArgs) -> CliResult<(Vec<u8>, Vec<u8>, Option<i64>)> {
    let tenant = a
        .tenant
        .as_deref()
        .map(|t| arg_bytes("tenant", t, a.hex))
        .transpose()?;
    let key = a
        .key
        .as_deref()
        .map(|k| arg_bytes("key", k, a.hex))
        .transpose()?;
    let scope = a.scope;
    match scope {
        Scope::Global if tenant.is_some() || key.is_some() => {
            return Err(CliError::new(
                "a global rule takes no --tenant and no key: `revledger revoke LEDGER global`",
            ))
        }
        Scope::Tenant if key.is_some() => return Err(CliError::new(
            "a tenant rule takes --tenant and no key: `revledger revoke LEDGER tenant --tenant T`",
        )),
        Scope::Tenant if tenant.is_none() => {
            return Err(CliError::new(
                "a tenant rule needs --tenant T (--tenant '' for the empty tenant)",
            ))
        }
        s if s.has_key() && key.is_none() => {
            return Err(CliError::new(format!(
                "a {s} rule needs a key: `revledger revoke LEDGER {s} --tenant T KEY`"
            )))
        }
        _ => {}
    }
    if a.exp.is_some() && scope != Scope::Token {
        return Err(CliError::new(format!(
            "--exp is for token rules; a {scope} rule takes --at (its cutoff)"
        )));
    }
    let tenant = tenant.unwrap_or_default();
    let key = key.unwrap_or_default();
    let at = match (scope, a.exp.map(At::Unix).or(a.at)) {
        (Scope::Token, Some(At::Unix(exp))) => Some(exp),
        (Scope::Token, _) => {
            return Err(CliError::new(
                "a token rule needs --exp UNIX: the token's exp (the rule lasts until then)",
            ))
        }
        (_, Some(At::Unix(t))) => Some(t),
        (_, None | Some(At::Now)) => None,
    };
    Rule::new(scope, &tenant, &key, at.unwrap_or(0)).validate()?;
    Ok((tenant, key, at))
}

/// How `revoke` and `publish` describe a rule: `role: tenant acme, role admin, cutoff 5`.
pub fn rule_line(rule: &Rule) -> String {
    let scope = rule.scope;
    let time = if scope == Scope::Token {
        "exp"
    } else {
        "cutoff"
    };
    let what = match scope {
        Scope::Global => String::new(),
        Scope::Tenant => format!("tenant {}, ", escape(rule.tenant)),
        _ => format!(
            "tenant {}, {scope} {}, ",
            escape(rule.tenant),
            escape(rule.key)
        ),
    };
    format!("{scope}: {what}{time} {}", rule.at)
}

/// `revoke`: checks the rule's shape for its scope, writes it, prints it with its time.
pub fn revoke(a: &RevokeArgs) -> CliResult {
    let scope = a.rule.scope;
    // Validate before opening: a bad rule never takes the writer's lock.
    let (tenant, key, at) = rule_from_args(&a.rule)?;
    let ledger = open_writer(&a.ledger)?;
    let (at, when) = match at {
        Some(at) => {
            ledger.revoke(&Rule::new(scope, &tenant, &key, at))?;
            (at, "")
        }
        None => (
            ledger.revoke_now(scope, &tenant, &key)?,
            " (now, rounded up to the next second)",
        ),
    };
    if a.sync {
        ledger.sync()?;
    }
    println!(
        "revoked {}{when}{}",
        rule_line(&Rule::new(scope, &tenant, &key, at)),
        if a.sync { "; synced" } else { "" }
    );
    Ok(ExitCode::SUCCESS)
}

/// One parsed line of a batch.
struct OwnedRule {
    scope: Scope,
    tenant: Vec<u8>,
    key: Vec<u8>,
    at: i64,
}

fn parse_batch_line(line: &str, now: i64) -> Result<OwnedRule, String> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let [scope, tenant, key, at] = fields[..] else {
        return Err(format!(
            "expected 4 fields `scope tenant key at`, found {}",
            fields.len()
        ));
    };
    let scope = super::parse_scope(scope)?;
    let at = match super::parse_at(at)? {
        At::Unix(t) => t,
        At::Now if scope == Scope::Token => {
            return Err("a token rule's time is the token's exp, not `now`".into())
        }
        At::Now => now,
    };
    let r = OwnedRule {
        scope,
        tenant: unescape(tenant)?,
        key: unescape(key)?,
        at,
    };
    Rule::new(r.scope, &r.tenant, &r.key, r.at)
        .validate()
        .map_err(|e| e.to_string())?;
    Ok(r)
}

/// `revoke-batch`: parses and validates every line, then appends them in large batches.
pub fn revoke_batch(a: &BatchArgs) -> CliResult {
    let input: Box<dyn Read> = if a.file.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(
            File::open(&a.file)
                .map_err(|e| CliError::new(format!("cannot open {}: {e}", a.file.display())))?,
        )
    };
    let source = if a.file.as_os_str() == "-" {
        "stdin".to_string()
    } else {
        a.file.display().to_string()
    };
    let now = now_cutoff();
    let mut rules = Vec::new();
    let mut reader = BufReader::new(input);
    let mut raw = Vec::new();
    let mut line_no = 0;
    loop {
        raw.clear();
        let n = reader
            .read_until(b'\n', &mut raw)
            .map_err(|e| CliError::new(format!("reading {source}: {e}")))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        let line = std::str::from_utf8(&raw).map_err(|_| {
            CliError::new(format!(
                "{source} line {line_no}: not UTF-8 (write other bytes as \\xNN)"
            ))
        })?;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        rules.push(
            parse_batch_line(line, now)
                .map_err(|why| CliError::new(format!("{source} line {line_no}: {why}")))?,
        );
    }
    let ledger = open_writer(&a.ledger)?;
    let mut written = 0;
    for chunk in rules.chunks(BATCH_CHUNK) {
        let batch: Vec<Rule> = chunk
            .iter()
            .map(|r| Rule::new(r.scope, &r.tenant, &r.key, r.at))
            .collect();
        ledger.revoke_batch(&batch).map_err(|e| {
            CliError::new(format!(
                "{e} (after {written} of {} rules were recorded; running the batch again \
                 is harmless: records are idempotent)",
                rules.len()
            ))
        })?;
        written += batch.len();
    }
    if a.sync {
        ledger.sync()?;
    }
    println!(
        "revoked {written} rules from {source}{}",
        if a.sync { "; synced" } else { "" }
    );
    Ok(ExitCode::SUCCESS)
}

fn claims_from_flags(a: &CheckArgs) -> CliResult<Claims> {
    let one = |name: &str, v: &Option<std::ffi::OsString>| -> CliResult<Vec<u8>> {
        v.as_deref()
            .map(|v| arg_bytes(name, v, a.hex))
            .transpose()
            .map(Option::unwrap_or_default)
    };
    Ok(Claims {
        tenant: one("tenant", &a.tenant)?,
        subject: one("sub", &a.sub)?,
        roles: a
            .role
            .iter()
            .map(|r| arg_bytes("role", r, a.hex))
            .collect::<CliResult<_>>()?,
        client: one("client", &a.client)?,
        session: one("sid", &a.sid)?,
        token_id: one("jti", &a.jti)?,
        issued_at: a
            .iat
            .ok_or_else(|| CliError::new("--iat UNIX is required (or --claims)"))?,
    })
}

/// The key of the rule behind `verdict`, found from the token's own claims: for a role
/// rule, the role whose rule decides (the verdict names only the scope).
pub fn deciding_key(ledger: &Ledger, c: &Claims, verdict: Verdict) -> CliResult<Vec<u8>> {
    let Verdict::Revoked { scope, cutoff } = verdict else {
        return Ok(Vec::new());
    };
    Ok(match scope {
        Scope::Global => Vec::new(),
        Scope::Tenant => c.tenant.clone(),
        Scope::Subject => c.subject.clone(),
        Scope::Client => c.client.clone(),
        Scope::Session => c.session.clone(),
        Scope::Token => c.token_id.clone(),
        Scope::Role => {
            for role in &c.roles {
                let one: &[&[u8]] = &[role];
                let probe = Token {
                    tenant: &c.tenant,
                    roles: one,
                    issued_at: c.issued_at,
                    ..Token::default()
                };
                if ledger.check(&probe)? == (Verdict::Revoked { scope, cutoff }) {
                    return Ok(role.clone());
                }
            }
            Vec::new()
        }
    })
}

/// `revoked: role changed at 1700000001 (role super_admin)`; `valid`.
pub fn verdict_line(verdict: Verdict, key: &[u8]) -> String {
    match verdict {
        Verdict::Valid => "valid".into(),
        Verdict::Revoked {
            scope: Scope::Token,
            cutoff,
        } => format!(
            "revoked: token {} (rule kept until its exp {cutoff})",
            escape(key)
        ),
        Verdict::Revoked {
            scope: Scope::Global,
            cutoff,
        } => format!("revoked: global changed at {cutoff}"),
        Verdict::Revoked { scope, cutoff } => {
            format!(
                "revoked: {scope} changed at {cutoff} ({scope} {})",
                escape(key)
            )
        }
    }
}

/// The token a mapping read, for `check --json`: byte strings as text, or `<name>_hex`.
fn token_json(c: &Claims) -> Value {
    let mut t = Map::new();
    put_bytes(&mut t, "tenant", &c.tenant);
    put_bytes(&mut t, "subject", &c.subject);
    let roles: Vec<Value> = c
        .roles
        .iter()
        .map(|r| match std::str::from_utf8(r) {
            Ok(s) => s.into(),
            Err(_) => format!("hex:{}", to_hex(r)).into(),
        })
        .collect();
    t.insert("roles".into(), roles.into());
    put_bytes(&mut t, "client", &c.client);
    put_bytes(&mut t, "session", &c.session);
    put_bytes(&mut t, "token_id", &c.token_id);
    t.insert("iat".into(), c.issued_at.into());
    Value::Object(t)
}

/// The claim mapping of `check --claims-spec` (default `generic`); `@FILE` reads it.
fn claim_mapping(spec: Option<&str>) -> CliResult<ClaimMapping> {
    let spec = match spec {
        None => return Ok(ClaimMapping::new("generic")?),
        Some(s) => s,
    };
    let text = match spec.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| CliError::new(format!("reading the claim mapping {path}: {e}")))?,
        None => spec.to_owned(),
    };
    Ok(ClaimMapping::new(&text)?)
}

/// The argument, or standard input for `-`.
fn arg_or_stdin(value: &str, what: &str) -> CliResult<String> {
    if value != "-" {
        return Ok(value.to_owned());
    }
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .map_err(|e| CliError::new(format!("reading {what} from stdin: {e}")))?;
    Ok(text)
}

/// `check`: the verdict for a token given by flags, a JWT payload or a JWT (read through
/// the library's claim mapping, the same code gateways run); exit 0 valid, 1 revoked.
pub fn check(a: &CheckArgs) -> CliResult {
    let ledger;
    let (claims, verdict) = match (&a.claims, &a.jwt) {
        (Some(json), _) => {
            let mapping = claim_mapping(a.claims_spec.as_deref())?;
            let json = arg_or_stdin(json, "claims")?;
            ledger = open_reader(&a.ledger)?;
            let verdict = ledger.check_claims(&mapping, json.as_bytes())?;
            (Claims::from_payload(&mapping, json.as_bytes())?, verdict)
        }
        (None, Some(jwt)) => {
            let mapping = claim_mapping(a.claims_spec.as_deref())?;
            let jwt = arg_or_stdin(jwt, "the JWT")?;
            let jwt = jwt.trim();
            ledger = open_reader(&a.ledger)?;
            let verdict = ledger.check_jwt(&mapping, jwt.as_bytes())?;
            (Claims::from_jwt(&mapping, jwt.as_bytes())?, verdict)
        }
        (None, None) => {
            if a.claims_spec.is_some() {
                return Err(CliError::new(
                    "--claims-spec reads --claims or --jwt; give one of them",
                ));
            }
            let claims = claims_from_flags(a)?;
            ledger = open_reader(&a.ledger)?;
            let verdict = claims.with_token(|t| ledger.check(t))?;
            (claims, verdict)
        }
    };
    let key = deciding_key(&ledger, &claims, verdict)?;
    if a.json {
        let mut obj = Map::new();
        obj.insert("revoked".into(), verdict.is_revoked().into());
        if let Verdict::Revoked { scope, cutoff } = verdict {
            obj.insert("scope".into(), scope.name().into());
            obj.insert("cutoff".into(), cutoff.into());
            if scope != Scope::Global {
                put_bytes(&mut obj, "key", &key);
            }
        }
        obj.insert("description".into(), verdict.description().into());
        if a.claims.is_some() || a.jwt.is_some() {
            obj.insert("token".into(), token_json(&claims));
        }
        println!("{}", Value::Object(obj));
    } else {
        println!("{}", verdict_line(verdict, &key));
    }
    Ok(if verdict.is_revoked() {
        ExitCode::from(EXIT_REVOKED)
    } else {
        ExitCode::SUCCESS
    })
}

/// `stats`: the ledger's figures, as aligned text or one JSON object.
pub fn stats(a: &StatsArgs) -> CliResult {
    let ledger = open_reader(&a.ledger)?;
    let now = a.now.unwrap_or_else(unix_now_floor);
    let s = ledger.stats(now)?;
    let record_bytes = s.log_bytes.saturating_sub(HEADER_LEN as u64);
    let per_rule = |bytes: u64, n: u64| if n == 0 { 0.0 } else { bytes as f64 / n as f64 };
    let bytes_per_rule = per_rule(record_bytes, s.rule_records);
    let index_per_key = per_rule(s.index_bytes, s.live_keys);
    let position = ledger.stream_position()?;
    if a.json {
        let stream = match &position {
            Some(p) => {
                let mut obj = Map::new();
                put_bytes(&mut obj, "name", &p.stream);
                obj.insert("last_id".into(), p.last_id.to_string().into());
                obj.insert("last_heard".into(), p.last_heard.into());
                obj.insert("age_s".into(), p.age(unix_now_floor()).into());
                obj.insert("degraded".into(), p.degraded.into());
                obj.insert(
                    "degraded_reasons".into(),
                    crate::sync::degraded_reasons(p.degraded).into(),
                );
                Value::Object(obj)
            }
            None => Value::Null,
        };
        let v = json!({
            "ledger": a.ledger.display().to_string(),
            "live_keys": s.live_keys,
            "rule_records": s.rule_records,
            "compacted_keys": s.compacted_keys,
            "shared_index": s.shared_index,
            "index_epoch": s.index_epoch,
            "tail_bytes": s.tail_bytes,
            "background_error": s.background_error,
            "expired_keys": s.expired_keys,
            "bytes_per_rule": bytes_per_rule,
            "log_bytes": s.log_bytes,
            "file_bytes": s.file_bytes,
            "index_bytes": s.index_bytes,
            "index_bytes_per_key": index_per_key,
            "max_token_lifetime": s.max_token_lifetime,
            "leeway": s.leeway,
            "generation": s.generation,
            "dropped_bytes": s.dropped_bytes,
            "stream": stream,
        });
        println!("{v}");
        return Ok(ExitCode::SUCCESS);
    }
    let stream = match &position {
        Some(p) => format!(
            "{} up to entry {}; last heard at {} ({} s ago){}",
            escape(&p.stream),
            p.last_id,
            p.last_heard,
            p.age(unix_now_floor()),
            if p.degraded == 0 {
                String::new()
            } else {
                format!(
                    "; DEGRADED: {} (resync, then `revledger sync --resolve`: docs/SYNC.md §5)",
                    crate::sync::degraded_reasons(p.degraded).join(", ")
                )
            }
        ),
        None => "none (not fed by `revledger sync`)".to_string(),
    };
    let rows: [(&str, String); 14] = [
        ("ledger", a.ledger.display().to_string()),
        ("live keys", s.live_keys.to_string()),
        ("rule records", s.rule_records.to_string()),
        (
            "compacted keys",
            format!(
                "{} (rules written by the last compaction)",
                s.compacted_keys
            ),
        ),
        (
            "expired keys",
            format!("{} (as of {now}; compaction drops them)", s.expired_keys),
        ),
        (
            "bytes per rule",
            format!("{bytes_per_rule:.1} (bytes after the header / rules stored)"),
        ),
        ("log bytes", s.log_bytes.to_string()),
        ("file bytes", s.file_bytes.to_string()),
        (
            "index bytes",
            format!("{} ({index_per_key:.1} per live key)", s.index_bytes),
        ),
        ("max token lifetime", format!("{} s", s.max_token_lifetime)),
        ("leeway", format!("{} s", s.leeway)),
        ("generation", s.generation.to_string()),
        ("dropped bytes", s.dropped_bytes.to_string()),
        ("stream", stream),
    ];
    for (name, value) in rows {
        println!("{name:<20}{value}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads a file in windows, so that `verify` scans ledgers of any size in little memory.
struct Window {
    file: File,
    len: u64,
    base: u64,
    buf: Vec<u8>,
}

impl Window {
    const CHUNK: usize = 1 << 20;

    /// The bytes from `at`: at least `want` of them, or up to the end of the file.
    fn at(&mut self, at: u64, want: usize) -> std::io::Result<&[u8]> {
        let at = at.min(self.len);
        let end = at.saturating_add(want as u64).min(self.len);
        if at < self.base || end > self.base + self.buf.len() as u64 {
            let n = (Self::CHUNK.max(want) as u64).min(self.len - at) as usize;
            self.buf.resize(n, 0);
            self.file.read_exact_at(&mut self.buf, at)?;
            self.base = at;
        }
        Ok(&self.buf[(at - self.base) as usize..])
    }
}

/// What lies past the committed end of the log, as the next writer's recovery will
/// judge it.
enum Tail {
    /// Only zeros: nothing to cut.
    Clean,
    /// Valid records past the committed end (a writer crashed between writing and
    /// publishing, or is appending now): the next writer keeps them.
    Unpublished { records: u64, bytes: u64 },
    /// An incomplete or damaged record with nothing valid after it: the next writer cuts
    /// `bytes` bytes at `offset`.
    Torn {
        offset: u64,
        bytes: u64,
        why: String,
    },
}

fn read_u64_at(file: &File, offset: usize) -> std::io::Result<u64> {
    let mut b = [0u8; 8];
    file.read_exact_at(&mut b, offset as u64)?;
    Ok(u64::from_le_bytes(b))
}

/// Scans the whole file as the writer's recovery does (docs/FORMAT.md §5): frames from
/// the start of the log (after the header, or the snapshot section), until zeros or a
/// bad frame; then judges what follows. `committed_end` is
/// where the committed log ends, as a reader found it.
fn scan_tail(path: &Path, committed_end: u64) -> CliResult<Tail> {
    let file =
        File::open(path).map_err(|e| CliError::new(format!("opening {}: {e}", path.display())))?;
    let len = file.metadata()?.len();
    let mut head = [0u8; HEADER_LEN];
    file.read_exact_at(&mut head, 0)?;
    let header = Header::decode(&head)?;
    let synced = read_u64_at(&file, OFF_SYNCED_LEN)?;
    let mut w = Window {
        file,
        len,
        base: 0,
        buf: Vec::new(),
    };
    let max_frame = frame_len(MAX_PAYLOAD_LEN);
    let mut at = header.log_start;
    let mut records_past = 0;
    let stop = loop {
        if at >= len {
            break None;
        }
        match decode_frame(w.at(at, max_frame)?) {
            Frame::Valid { next, .. } => {
                if at >= committed_end {
                    records_past += 1;
                }
                at += next as u64;
            }
            Frame::End => break Some("zero bytes where a record should be"),
            Frame::Invalid(why) => break Some(why),
        }
    };
    let end = at;
    if let Some(why) = stop {
        let garbage_end = last_nonzero_end(&mut w, end)?;
        judge_garbage(&mut w, end, garbage_end, synced, why)?;
        if garbage_end > end {
            return Ok(Tail::Torn {
                offset: end,
                bytes: garbage_end - end,
                why: why.to_string(),
            });
        }
    }
    Ok(if end > committed_end {
        Tail::Unpublished {
            records: records_past,
            bytes: end - committed_end,
        }
    } else {
        Tail::Clean
    })
}

/// End (8-aligned) of the last non-zero byte at or after `from`.
fn last_nonzero_end(w: &mut Window, from: u64) -> std::io::Result<u64> {
    let mut last = from;
    let mut at = from;
    while at < w.len {
        let chunk = w.at(at, Window::CHUNK)?;
        let n = chunk.len().min(Window::CHUNK);
        if let Some(p) = chunk[..n].iter().rposition(|&b| b != 0) {
            last = at + p as u64 + 1;
        }
        at += n as u64;
    }
    Ok(last
        .next_multiple_of(FRAME_ALIGN as u64)
        .min(w.len)
        .max(from))
}

/// Fails when the bytes from `end` (where the valid log stops, for `why`) to
/// `garbage_end` are corruption rather than a torn tail: a valid record follows them, or
/// they lie below the end of the log that was made durable.
fn judge_garbage(
    w: &mut Window,
    end: u64,
    garbage_end: u64,
    synced: u64,
    why: &str,
) -> CliResult<()> {
    let max_frame = frame_len(MAX_PAYLOAD_LEN);
    let mut at = (end + FRAME_ALIGN as u64).next_multiple_of(FRAME_ALIGN as u64);
    while at + 8 <= garbage_end {
        let bytes = w.at(at, max_frame)?;
        let window = &bytes[..bytes.len().min((garbage_end - at) as usize)];
        if window[..8].iter().any(|&b| b != 0)
            && matches!(decode_frame(window), Frame::Valid { .. })
        {
            return Err(CliError::new(format!(
                "ledger corrupt at byte offset {end}: {why}, followed by a valid record at offset {at}"
            )));
        }
        at += FRAME_ALIGN as u64;
    }
    if end < synced {
        return Err(CliError::new(format!(
            "ledger corrupt at byte offset {end}: {why}, below the synced end of the log ({synced})"
        )));
    }
    Ok(())
}

/// `verify`: reads everything without changing anything; fails (exit 2) on corruption.
pub fn verify(a: &VerifyArgs) -> CliResult {
    let failed = |e: CliError| {
        let hint = if e.to_string().contains("corrupt") {
            format!(
                " (`revledger compact {} --keep-valid-prefix` keeps the records before the \
                 damage and drops the rest)",
                a.ledger.display()
            )
        } else {
            String::new()
        };
        CliError::new(format!("{e}; verify failed{hint}"))
    };
    let ledger = open_reader(&a.ledger).map_err(failed)?;
    let mut per_scope = [0u64; 7];
    let mut configs = 0u64;
    let mut positions = 0u64;
    ledger.for_each_record(|_, record| match record {
        Record::Rule(r) => per_scope[r.scope as usize] += 1,
        Record::Config { .. } => configs += 1,
        Record::Position { .. } => positions += 1,
    })?;
    let s = ledger.stats(unix_now_floor())?;
    let tail = scan_tail(&a.ledger, s.log_bytes).map_err(failed)?;
    let scopes: Vec<String> = Scope::ALL
        .iter()
        .filter(|sc| per_scope[**sc as usize] > 0)
        .map(|sc| format!("{sc} {}", per_scope[*sc as usize]))
        .collect();
    let rows = [
        ("ledger", a.ledger.display().to_string()),
        ("generation", s.generation.to_string()),
        (
            "records",
            format!(
                "{} rules ({}; {} written by the last compaction), {configs} config, \
                 {positions} stream position",
                s.rule_records,
                if scopes.is_empty() {
                    "none".to_string()
                } else {
                    scopes.join(", ")
                },
                s.compacted_keys
            ),
        ),
        ("live keys", s.live_keys.to_string()),
        ("log bytes", s.log_bytes.to_string()),
        (
            "torn tail",
            if s.dropped_bytes > 0 {
                format!(
                    "{} bytes of the committed log cut (a crash tore the last write)",
                    s.dropped_bytes
                )
            } else {
                "none in the committed log".to_string()
            },
        ),
        (
            "past the end",
            match &tail {
                Tail::Clean => "zeros only".to_string(),
                Tail::Unpublished { records, bytes } => format!(
                    "{records} valid records ({bytes} bytes) not yet published: a writer \
                     is appending, or crashed; the next writer keeps them"
                ),
                Tail::Torn { offset, bytes, why } => format!(
                    "torn tail of {bytes} bytes at offset {offset} ({why}): the next writer \
                     cuts it off"
                ),
            },
        ),
    ];
    for (name, value) in rows {
        println!("{name:<14}{value}");
    }
    println!("ok");
    Ok(ExitCode::SUCCESS)
}

/// `compact`: rewrites the ledger as of `--now`, listing what it dropped with `-v`.
pub fn compact(a: &CompactArgs) -> CliResult {
    require_ledger(&a.ledger)?;
    let options = WriterOptions {
        keep_valid_prefix: a.keep_valid_prefix,
        ..WriterOptions::default()
    };
    let ledger = Ledger::open_writer(&a.ledger, &options).map_err(|e| match e {
        revledger::Error::Corrupt { .. } => CliError::new(format!(
            "{e} (`revledger compact {} --keep-valid-prefix` keeps the records before it \
             and drops the rest)",
            a.ledger.display()
        )),
        e => e.into(),
    })?;
    let now = a.now.unwrap_or_else(unix_now_floor);
    let cut = ledger.stats(now)?.dropped_bytes;
    if cut > 0 {
        println!(
            "cut {cut} bytes of damaged or torn records off the end of the log before compacting"
        );
    }
    let mut dropped = Vec::new();
    if a.verbose {
        let mut cutoffs: HashMap<(Scope, Vec<u8>, Vec<u8>), i64> = HashMap::new();
        ledger.for_each_record(|_, record| {
            if let Record::Rule(r) = record {
                let at = cutoffs
                    .entry((r.scope, r.tenant.to_vec(), r.key.to_vec()))
                    .or_insert(r.at);
                *at = (*at).max(r.at);
            }
        })?;
        dropped = cutoffs
            .into_iter()
            .filter(|((scope, _, _), at)| ledger.is_expired(*scope, *at, now))
            .collect();
        dropped.sort();
    }
    let before = ledger.stats(now)?.generation;
    let c = ledger.compact(now)?;
    println!(
        "compacted {} as of {now}: generation {before} -> {}",
        a.ledger.display(),
        before + 1
    );
    let rows = [
        ("records before", c.records_before.to_string()),
        ("rules kept", format!("{} (one per live key)", c.rules_kept)),
        (
            "keys dropped",
            format!(
                "{} (every token they could revoke has expired)",
                c.keys_dropped
            ),
        ),
        ("bytes before", c.bytes_before.to_string()),
        ("bytes after", c.bytes_after.to_string()),
    ];
    for (name, value) in rows {
        println!("  {name:<16}{value}");
    }
    for ((scope, tenant, key), at) in dropped {
        println!(
            "  dropped {scope} {} {} {at}",
            escape(&tenant),
            escape(&key)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `dump`: one line (or JSON object) per record, in file order.
pub fn dump(a: &DumpArgs) -> CliResult {
    let ledger = open_reader(&a.ledger)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut failed: Option<std::io::Error> = None;
    ledger.for_each_record(|offset, record| {
        if failed.is_some() {
            return;
        }
        let kind = "rule";
        let line = if a.json {
            let mut obj = Map::new();
            obj.insert("offset".into(), offset.into());
            match record {
                Record::Rule(r) => {
                    obj.insert("kind".into(), kind.into());
                    obj.insert("scope".into(), r.scope.name().into());
                    put_bytes(&mut obj, "tenant", r.tenant);
                    put_bytes(&mut obj, "key", r.key);
                    obj.insert("at".into(), r.at.into());
                }
                Record::Config { max_token_lifetime } => {
                    obj.insert("kind".into(), "config".into());
                    obj.insert("max_token_lifetime".into(), max_token_lifetime.into());
                }
                Record::Position {
                    stream,
                    last_id,
                    last_heard,
                    degraded,
                } => {
                    obj.insert("kind".into(), "position".into());
                    put_bytes(&mut obj, "stream", stream);
                    obj.insert("last_id".into(), last_id.to_string().into());
                    obj.insert("last_heard".into(), last_heard.into());
                    obj.insert("degraded".into(), degraded.into());
                }
            }
            Value::Object(obj).to_string()
        } else {
            match record {
                Record::Rule(r) => format!(
                    "{offset:>10} {kind:<8} {:<8} {} {} {}",
                    r.scope.name(),
                    escape(r.tenant),
                    escape(r.key),
                    r.at
                ),
                Record::Config { max_token_lifetime } => {
                    format!(
                        "{offset:>10} {:<8} {:<8} - - {max_token_lifetime}",
                        "config", "-"
                    )
                }
                Record::Position {
                    stream,
                    last_id,
                    last_heard,
                    degraded,
                } => format!(
                    "{offset:>10} {:<8} {:<8} {} {last_id} {last_heard}{}",
                    "position",
                    "-",
                    escape(stream),
                    if degraded == 0 {
                        String::new()
                    } else {
                        format!(" degraded={degraded}")
                    }
                ),
            }
        };
        if let Err(e) = writeln!(out, "{line}") {
            failed = Some(e);
        }
    })?;
    let result = match failed {
        Some(e) => Err(e),
        None => out.flush(),
    };
    match result {
        Ok(()) => Ok(ExitCode::SUCCESS),
        // `revledger dump L | head`: the reader went away; not an error of ours.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(e) => Err(CliError::new(format!("writing the dump: {e}"))),
    }
}
