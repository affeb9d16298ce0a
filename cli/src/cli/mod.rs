//! Argument parsing and dispatch of the `revledger` command line. Every command is a thin
//! layer over the library's public API; exit codes: 0 ok (`check`: valid), 1 `check`
//! found the token revoked, 2 any error, bad arguments included.

mod bytes;
mod claims;
mod commands;
mod demo;
mod ingest;
mod sync;
mod writer;

use clap::{Args, Parser, Subcommand};
use revledger::Scope;
use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit code of every error, usage errors included.
pub const EXIT_ERROR: u8 = 2;
/// Exit code of `check` for a revoked token.
pub const EXIT_REVOKED: u8 = 1;

/// An error for the user: printed on stderr, exit code 2.
#[derive(Debug)]
pub struct CliError(String);

impl CliError {
    /// An error with this message.
    pub fn new(msg: impl Into<String>) -> CliError {
        CliError(msg.into())
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<revledger::Error> for CliError {
    fn from(e: revledger::Error) -> CliError {
        let hint = match &e {
            revledger::Error::Locked(_) => {
                " (stop the process that writes it, or revoke through it)"
            }
            _ => "",
        };
        CliError(format!("{e}{hint}"))
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> CliError {
        CliError(format!("I/O error: {e}"))
    }
}

/// Result of the command functions.
pub type CliResult<T = ExitCode> = Result<T, CliError>;

const ABOUT: &str = "Instant JWT revocation: an append-only, memory-mapped ledger of \
\"scope S changed at time T\" records.";

const AFTER_HELP: &str = "\
Scopes: global, tenant, subject (sub), role, client (azp), session (sid), token (jti).
A token is revoked when a rule matches one of its claims and its iat is before the rule's
cutoff; a token rule revokes exactly one jti until its exp.

Exit codes: 0 ok (check: valid), 1 check: revoked, 2 error (bad arguments included).

Try `revledger demo` for the whole story in one command.";

#[derive(Parser, Debug)]
#[command(name = "revledger", version, about = ABOUT, after_help = AFTER_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create a new, empty ledger file.
    Create(CreateArgs),
    /// Record one rule: "scope S changed at time T".
    Revoke(RevokeArgs),
    /// Record many rules from lines `scope tenant key at` (a file, or - for stdin).
    RevokeBatch(BatchArgs),
    /// Ask whether a token is revoked (exit 0 valid, 1 revoked, 2 error).
    Check(CheckArgs),
    /// Figures about a ledger: keys, records, bytes, settings.
    Stats(StatsArgs),
    /// Read a ledger end to end without changing it (exit 0 ok, 2 corrupt).
    Verify(VerifyArgs),
    /// Rewrite a ledger with one record per live key, dropping expired rules.
    Compact(CompactArgs),
    /// Print every record, one per line.
    Dump(DumpArgs),
    /// Play the John / Mike / Bruce scenario on a temporary ledger, then time checks.
    Demo(DemoArgs),
    /// Publish one rule to a Redis stream, for every host's `revledger sync` to apply.
    Publish(PublishArgs),
    /// Feed a ledger from a Redis stream: the host's one long-running writer.
    Sync(SyncArgs),
    /// Make an Ed25519 key for signing published rules; print its trusted-keys line.
    Keygen(KeygenArgs),
    /// Receive identity-provider events (SSF/CAEP/RISC, Auth0, Keycloak) over HTTP and
    /// turn them into rules.
    Ingest(IngestArgs),
}

#[derive(Args, Debug)]
#[command(after_help = "\
Writes the private key (PKCS#8 PEM, mode 0600) for `revledger publish --sign-key` (or the
Go and Python publishers), and prints the line to add to the trusted-keys file of every
`revledger sync --trusted-keys`:
  revledger keygen /etc/revledger/iam.key --key-id iam --scopes subject,role,session,token
See docs/SYNC.md §5.")]
struct KeygenArgs {
    /// Where to write the private key (refused if the file exists).
    out: PathBuf,
    /// The key's name, as publishers send it in `kid` ([A-Za-z0-9._@-], up to 64).
    #[arg(long, value_name = "KID")]
    key_id: String,
    /// The scopes the printed line allows: `*` or a list such as `session,token`.
    #[arg(long, value_name = "LIST", default_value = "*")]
    scopes: String,
}

#[derive(Args, Debug)]
struct CreateArgs {
    /// Path of the ledger file to create (it must not exist).
    ledger: PathBuf,
    /// Longest lifetime of the tokens the ledger must cover; 0 means one day.
    #[arg(long, value_name = "SECS", default_value_t = 0)]
    max_token_lifetime: i64,
    /// Clock-skew leeway added to every expiry decision (default 300).
    #[arg(long, value_name = "SECS")]
    leeway: Option<i64>,
    #[command(flatten)]
    writer: writer::WriterArgs,
}

/// When a rule takes effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum At {
    /// The current time rounded up to the next second.
    Now,
    /// Unix seconds.
    Unix(i64),
}

fn parse_at(s: &str) -> Result<At, String> {
    if s.eq_ignore_ascii_case("now") {
        return Ok(At::Now);
    }
    s.parse()
        .map(At::Unix)
        .map_err(|_| format!("{s:?} is neither `now` nor a number of Unix seconds"))
}

fn parse_scope(s: &str) -> Result<Scope, String> {
    Scope::parse(s).ok_or_else(|| {
        format!(
            "unknown scope {s:?}; one of: global, tenant, subject, role, client, session, token"
        )
    })
}

#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  revledger revoke L global
  revledger revoke L tenant --tenant acme
  revledger revoke L role --tenant acme super_admin            # as of now
  revledger revoke L subject --tenant acme john --at 1700000000
  revledger revoke L token --tenant acme 3f2a-jti --exp 1700003600 --sync
  revledger revoke L session --hex --tenant 61636d65 736964  # tenant and key in hex")]
struct RevokeArgs {
    /// Path of the ledger (it must exist: see `create`).
    ledger: PathBuf,
    #[command(flatten)]
    rule: RuleArgs,
    /// Make the record durable (fdatasync) before exiting.
    #[arg(long)]
    sync: bool,
}

/// The rule of `revoke` and `publish`.
#[derive(Args, Debug)]
struct RuleArgs {
    /// global, tenant, subject, role, client, session or token.
    #[arg(value_parser = parse_scope)]
    scope: Scope,
    /// The subject, role, client id, session id or jti (none for global and tenant).
    key: Option<OsString>,
    /// The tenant (none for global; may be empty for single-tenant use).
    #[arg(long, value_name = "T")]
    tenant: Option<OsString>,
    /// Cutoff: tokens issued before it are revoked; `now` (the default) is the current
    /// time rounded up to the next second. For a token rule, the same as --exp.
    #[arg(long, value_name = "UNIX|now", value_parser = parse_at)]
    at: Option<At>,
    /// The revoked token's exp (token scope only): the rule is kept until then.
    #[arg(long, value_name = "UNIX", conflicts_with = "at")]
    exp: Option<i64>,
    /// Tenant and key are given in hex (for bytes that are not UTF-8).
    #[arg(long)]
    hex: bool,
}

#[derive(Args, Debug)]
#[command(after_help = "\
Input: one rule per line, `scope tenant key at`, separated by spaces or tabs; `-` is the
empty string, `\\xNN` any byte (as `dump` prints keys); `at` is Unix seconds or `now`
(the exp for a token rule). Blank lines and lines starting with # are skipped.
  role acme super_admin 1700000000
  tenant offboarded-co - now
  global - - 1700000000
Every line is checked before anything is written.")]
struct BatchArgs {
    /// Path of the ledger (it must exist: see `create`).
    ledger: PathBuf,
    /// File of rules; `-` (the default) reads standard input.
    #[arg(long, short = 'f', value_name = "F|-", default_value = "-")]
    file: PathBuf,
    /// Make the records durable (fdatasync) before exiting.
    #[arg(long)]
    sync: bool,
}

#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  revledger check L --tenant acme --sub john --role super_admin --role billing --iat 1700000000
  revledger check L --claims '{\"tid\":\"acme\",\"sub\":\"john\",\"roles\":[\"billing\"],\"iat\":1700000000}'
  echo \"$CLAIMS_JSON\" | revledger check L --claims - --json
  revledger check L --jwt \"$ACCESS_TOKEN\" --claims-spec keycloak
--claims and --jwt read the token through a claim mapping (--claims-spec): generic (the
default: tenant|tid|org_id, sub, roles+groups+permissions+scope+scp, azp|client_id|appid,
sid, jti|uti, iat), auth0, keycloak, entra, or a JSON object of JSON Pointers such as
'{\"tenant\":[\"/tid\"],\"subject\":[\"/sub\"],\"roles\":[\"/realm_access/roles\"]}' (or @FILE).
--jwt does NOT verify the token's signature: it only decodes its payload.")]
struct CheckArgs {
    /// Path of the ledger.
    ledger: PathBuf,
    /// A JWT payload (a JSON object of claims), or `-` to read it from standard input.
    #[arg(long, value_name = "JSON|-", conflicts_with_all = ["jwt", "tenant", "sub", "role", "client", "sid", "jti", "iat", "hex"])]
    claims: Option<String>,
    /// A compact JWS `header.payload.signature` (an access token), or `-` to read it from
    /// standard input. Its payload is decoded; its signature is NOT verified.
    #[arg(long, value_name = "TOKEN|-", conflicts_with_all = ["tenant", "sub", "role", "client", "sid", "jti", "iat", "hex"])]
    jwt: Option<String>,
    /// The claim mapping for --claims and --jwt: generic (the default), auth0, keycloak,
    /// entra, a JSON pointer spec, or @FILE holding one.
    #[arg(long, value_name = "SPEC")]
    claims_spec: Option<String>,
    /// Tenant (`tenant` / `tid` claim).
    #[arg(long, value_name = "T")]
    tenant: Option<OsString>,
    /// Subject (`sub`).
    #[arg(long, value_name = "S")]
    sub: Option<OsString>,
    /// A role, group, permission or scope the token carries (repeat for each).
    #[arg(long, value_name = "R")]
    role: Vec<OsString>,
    /// Client id (`azp` / `client_id`).
    #[arg(long, value_name = "C")]
    client: Option<OsString>,
    /// Session id (`sid`).
    #[arg(long, value_name = "SID")]
    sid: Option<OsString>,
    /// Token id (`jti`).
    #[arg(long, value_name = "J")]
    jti: Option<OsString>,
    /// Issue time (`iat`), Unix seconds.
    #[arg(
        long,
        value_name = "UNIX",
        required_unless_present_any = ["claims", "jwt"],
        allow_negative_numbers = true
    )]
    iat: Option<i64>,
    /// Byte-string flags are given in hex (for bytes that are not UTF-8).
    #[arg(long)]
    hex: bool,
    /// Print the answer as one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct StatsArgs {
    /// Path of the ledger.
    ledger: PathBuf,
    /// Time used to count expired keys (default: now).
    #[arg(long, value_name = "UNIX")]
    now: Option<i64>,
    /// Print the figures as one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct VerifyArgs {
    /// Path of the ledger.
    ledger: PathBuf,
}

#[derive(Args, Debug)]
struct CompactArgs {
    /// Path of the ledger (compaction needs the writer's lock).
    ledger: PathBuf,
    /// Time against which rules are judged expired (default: now).
    #[arg(long, value_name = "UNIX")]
    now: Option<i64>,
    /// List every dropped rule.
    #[arg(long, short = 'v')]
    verbose: bool,
    /// Repair: when the log is damaged in the middle, keep the records before the damage
    /// and drop everything from it on (valid records after it included), instead of
    /// failing with the offset.
    #[arg(long)]
    keep_valid_prefix: bool,
}

#[derive(Args, Debug)]
#[command(after_help = "\
Text lines: `offset kind scope tenant key at`; keys escaped (`-` empty, `\\xNN` a byte);
a config record (kind `config`) has `-` for scope, tenant and key, and its `at` is the
new max token lifetime; a stream position (kind `position`, written by `revledger sync`)
reads `offset position - STREAM LAST_ID LAST_HEARD`. JSON: one object per line; a key
that is not UTF-8 is given as `tenant_hex` / `key_hex` instead of `tenant` / `key`.")]
struct DumpArgs {
    /// Path of the ledger.
    ledger: PathBuf,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
}

/// Where Redis is and how to reach it: shared by `publish` and `sync` (docs/SYNC.md §6).
#[derive(Args, Debug, Clone)]
struct RedisArgs {
    /// Redis URL: redis://[user[:password]@]host[:port][/db], or rediss:// for TLS (the
    /// server's certificate is always verified). With --sentinel, the host is the name of
    /// the primary as Sentinel knows it: rediss://sync@mymaster/0.
    #[arg(long, value_name = "URL")]
    redis: String,
    /// File holding the Redis user's password (first line); read at each connection,
    /// never logged. Overrides a password in the URL.
    #[arg(long, value_name = "PATH")]
    redis_password_file: Option<PathBuf>,
    /// PEM file of the CA(s) that sign the server's certificate (default: the system's).
    #[arg(long, value_name = "PATH")]
    tls_ca: Option<PathBuf>,
    /// PEM client certificate to present (mutual TLS), with --tls-key.
    #[arg(long, value_name = "PATH", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, value_name = "PATH", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// A Sentinel (host:port or redis[s]://[user:password@]host:port), repeatable or
    /// comma-separated: the primary is asked of them at every connection, so a failover
    /// is followed.
    #[arg(long, value_name = "ADDR", value_delimiter = ',')]
    sentinel: Vec<String>,
    /// Time allowed to connect (TCP, TLS, AUTH), in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 5.0, value_parser = positive_secs)]
    connect_timeout: f64,
    /// Time allowed for each reply, in seconds (sync's blocking reads add their 1 s).
    #[arg(long, value_name = "SECS", default_value_t = 5.0, value_parser = positive_secs)]
    read_timeout: f64,
}

fn positive_secs(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= 86_400.0 => Ok(v),
        _ => Err(format!("{s:?} is not a number of seconds in (0, 86400]")),
    }
}

impl RedisArgs {
    fn config(&self) -> crate::sync::RedisConfig {
        let mut c = crate::sync::RedisConfig::new(self.redis.clone());
        c.password_file = self.redis_password_file.clone();
        c.ca_file = self.tls_ca.clone();
        c.client_cert = self.tls_cert.clone();
        c.client_key = self.tls_key.clone();
        c.sentinels = self.sentinel.clone();
        c.connect_timeout = std::time::Duration::from_secs_f64(self.connect_timeout);
        c.read_timeout = std::time::Duration::from_secs_f64(self.read_timeout);
        c
    }
}

#[derive(Args, Debug)]
#[command(after_help = "\
The rule takes the arguments of `revledger revoke` (without the ledger). Examples:
  revledger publish --redis redis://10.0.0.5:6379/ --stream revocations role --tenant acme super_admin
  revledger publish --redis URL --stream revocations subject --tenant acme john --at 1700000000 \\
      --reason 'roles changed' --origin iam
  revledger publish --redis URL --stream revocations token --tenant acme 3f2a-jti --exp 1700003600
Each XADD also trims the stream by age (MINID now - max token lifetime - leeway), so a
host catching up from the beginning reads exactly the rules that can still matter; the
lifetime must be at least that of every ledger the stream feeds. Format: docs/SYNC.md.")]
struct PublishArgs {
    #[command(flatten)]
    rule: RuleArgs,
    #[command(flatten)]
    redis: RedisArgs,
    /// Name of the stream (a Redis key).
    #[arg(long, value_name = "NAME")]
    stream: OsString,
    /// Sign the entry with this Ed25519 key (PKCS#8 PEM, from `revledger keygen` or
    /// `openssl genpkey -algorithm ed25519`), with --key-id.
    #[arg(long, value_name = "PATH", requires = "key_id")]
    sign_key: Option<PathBuf>,
    /// The name of --sign-key that sync processes trust.
    #[arg(long, value_name = "KID", requires = "sign_key")]
    key_id: Option<String>,
    /// Wait until this many replicas acknowledge the entry (WAIT) before reporting
    /// success; fewer is an error (exit 2): publish again. Makes a publish that returned
    /// survive a failover.
    #[arg(long, value_name = "N", default_value_t = 0)]
    wait_replicas: usize,
    /// How long to wait for --wait-replicas, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    wait_timeout_ms: u64,
    /// Why the rule was published (kept in the stream entry, not in ledgers).
    #[arg(long, value_name = "TEXT")]
    reason: Option<OsString>,
    /// Who published it (kept in the stream entry, not in ledgers).
    #[arg(long, value_name = "TEXT")]
    origin: Option<OsString>,
    /// Trim entries older than this plus the leeway; at least the max token lifetime of
    /// every ledger fed from the stream.
    #[arg(long, value_name = "SECS", default_value_t = 86_400)]
    max_token_lifetime: i64,
    /// Clock-skew leeway of the trimming.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    leeway: i64,
    /// Do not trim the stream.
    #[arg(long, conflicts_with_all = ["max_token_lifetime", "leeway"])]
    no_trim: bool,
}

#[derive(Args, Debug)]
#[command(after_help = "\
Runs until killed. Reads the stream from the position recorded in the ledger (from the
beginning for a new ledger, which it creates), appends each batch of rules together with
the new position in one write and syncs it, so a restart after a crash, kill -9
included, goes on with nothing lost. When nothing arrives it still records, about once a
second, that it heard from Redis (`revledger stats` shows it; gateways read it through
revledger_freshness). When Redis is unreachable it retries with backoff, says so on
stderr, and the ledger keeps answering. One sync per ledger: a second one exits with 2.
  revledger sync --redis redis://10.0.0.5:6379/ --stream revocations /var/lib/revledger/acme.ledger")]
struct SyncArgs {
    /// Path of the ledger; created when missing.
    ledger: PathBuf,
    #[command(flatten)]
    redis: RedisArgs,
    /// Name of the stream (a Redis key).
    #[arg(long, value_name = "NAME")]
    stream: OsString,
    /// Acknowledge that the ledger was resynced after it was marked degraded (skipped or
    /// refused entries, a stream trimmed past its position): clear the mark, log it, and
    /// go on following. Only after the resync of docs/SYNC.md §5.
    #[arg(long)]
    resolve: bool,
    /// Apply only entries signed by a key of this file (lines `<kid> <base64 public key>
    /// <scopes>`, docs/SYNC.md §5); refuse, log and count the others.
    #[arg(long, value_name = "PATH")]
    trusted_keys: Option<PathBuf>,
    /// On every (re)connection, read again the entries of this many seconds before the
    /// ledger's position (catches entries a failover reordered; reading twice is harmless).
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    rewind: u64,
    /// Most entries read, appended and synced at a time.
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = clap::value_parser!(usize))]
    batch: usize,
    /// Also compact the ledger this often, in the sync loop; 0 (default): never (the
    /// writer compacts in the background on its own policy, see --compaction).
    #[arg(long, value_name = "SECS", default_value_t = 0)]
    compact_every: u64,
    /// For a new ledger, the longest token lifetime to cover (0: one day); for an existing
    /// one, 0 keeps it and a larger value raises it.
    #[arg(long, value_name = "SECS", default_value_t = 0)]
    max_token_lifetime: i64,
    /// Clock-skew leeway of a new ledger (default 300).
    #[arg(long, value_name = "SECS")]
    leeway: Option<i64>,
    /// Also log every heartbeat.
    #[arg(long, short = 'v')]
    verbose: bool,
    /// Serve Prometheus metrics on /metrics and health on /healthz at this address
    /// (e.g. 127.0.0.1:9464; docs/OPERATIONS.md). Off when not given.
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<std::net::SocketAddr>,
    /// /healthz answers 503 once the ledger last heard from its stream longer ago.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    health_max_age: u64,
    /// Log lines as text (`revledger sync: <time> <event>`) or as one JSON object each
    /// (`{"ts":…,"level":…,"event":…,"msg":…,…}`).
    #[arg(long, value_name = "FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    #[command(flatten)]
    writer: writer::WriterArgs,
}

#[derive(Args, Debug)]
#[command(after_help = "\
Runs until SIGTERM or SIGINT, then stops accepting, drains the requests in flight and
commits what is queued. The configuration file (TOML) names the listener, the sink (a
local ledger, or the Redis stream `revledger sync` follows) and the sources; docs/INGEST.md
has a complete example per source.
  revledger ingest --config /etc/revledger/ingest.toml --check-config
  revledger ingest --config /etc/revledger/ingest.toml --metrics-listen 127.0.0.1:9187")]
struct IngestArgs {
    /// The configuration file.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: PathBuf,
    /// Check the configuration (and the files it names) and exit: 0 if good, 2 if not.
    #[arg(long)]
    check_config: bool,
    /// Serve GET /metrics (Prometheus) and GET /healthz on this address (overrides
    /// [metrics] listen).
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<std::net::SocketAddr>,
    /// Log lines as text or as one JSON object each.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Also log each ignored or replayed event.
    #[arg(long, short = 'v')]
    verbose: bool,
}

/// `--log-format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// `2025-01-01T00:00:00Z INFO message key=value ...`
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Args, Debug)]
struct DemoArgs {
    /// How many checks each timing runs.
    #[arg(long, value_name = "N", default_value_t = 1_000_000)]
    checks: u64,
    /// Rules in the timing ledger.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    rules: u32,
}

/// Parses the arguments, runs the command, and turns the outcome into an exit code.
pub fn main() -> ExitCode {
    exit_on_stdout_errors();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(EXIT_ERROR)
            } else {
                ExitCode::SUCCESS // --help, --version
            };
        }
    };
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("revledger: error: {e}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// `println!` panics when standard output cannot be written (a full disk, a closed
/// pipe: `revledger stats l > /dev/full`, `revledger verify l | head -1`): such a panic
/// becomes the documented exit status 2 and one line on stderr, not exit 101 and a
/// panic message.
fn exit_on_stdout_errors() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied());
        if let Some(why) = message.and_then(|m| m.strip_prefix("failed printing to stdout: ")) {
            eprintln!("revledger: error: cannot write to standard output: {why}");
            std::process::exit(i32::from(EXIT_ERROR));
        }
        default_hook(info);
    }));
}

fn run(command: Command) -> CliResult {
    match command {
        Command::Create(a) => commands::create(&a),
        Command::Revoke(a) => commands::revoke(&a),
        Command::RevokeBatch(a) => commands::revoke_batch(&a),
        Command::Check(a) => commands::check(&a),
        Command::Stats(a) => commands::stats(&a),
        Command::Verify(a) => commands::verify(&a),
        Command::Compact(a) => commands::compact(&a),
        Command::Dump(a) => commands::dump(&a),
        Command::Demo(a) => demo::run(&a),
        Command::Publish(a) => sync::publish(&a),
        Command::Sync(a) => sync::sync(&a),
        Command::Keygen(a) => sync::keygen(&a),
        Command::Ingest(a) => ingest::ingest(&a),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn at_parses_now_and_numbers_only() {
        assert_eq!(parse_at("now"), Ok(At::Now));
        assert_eq!(parse_at("-5"), Ok(At::Unix(-5)));
        assert!(parse_at("yesterday").is_err());
    }
}
