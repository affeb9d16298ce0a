//! The configuration file of `revledger ingest` (TOML; docs/INGEST.md has a complete
//! example per source). Unknown keys are errors, so a misspelt option never silently
//! falls back to a default.

use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The whole file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where events arrive.
    pub server: ServerConfig,
    /// Where Prometheus metrics and the health endpoint are served (optional).
    #[serde(default)]
    pub metrics: Option<MetricsConfig>,
    /// Where rules go.
    pub sink: SinkConfig,
    /// OpenID Shared Signals transmitters (push delivery, RFC 8935), one table each.
    #[serde(default)]
    pub ssf: Vec<SsfConfig>,
    /// Auth0 Log Streams (custom webhook), one table per stream.
    #[serde(default)]
    pub auth0: Vec<Auth0Config>,
    /// Keycloak event webhooks, one table per sender.
    #[serde(default)]
    pub keycloak: Vec<KeycloakConfig>,
}

/// `[server]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address and port to listen on (`0.0.0.0:8443`; port 0 picks a free one).
    pub listen: SocketAddr,
    /// PEM certificate chain: serve HTTPS directly (with `tls_key`). Without both, plain
    /// HTTP: run behind a TLS-terminating proxy (docs/INGEST.md).
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// Largest request body accepted, in bytes (larger: `413`).
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Most connections served at once (more are closed on arrival).
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Time allowed for one request, headers to answer, in seconds (then `408`).
    #[serde(default = "default_request_timeout")]
    pub request_timeout_secs: u64,
    /// Time allowed to drain requests in flight on SIGTERM/SIGINT, in seconds.
    #[serde(default = "default_grace")]
    pub shutdown_grace_secs: u64,
    /// Threads serving requests (default: one per CPU).
    #[serde(default)]
    pub workers: Option<usize>,
}

fn default_max_body() -> usize {
    1 << 20
}
fn default_max_connections() -> usize {
    1024
}
fn default_request_timeout() -> u64 {
    10
}
fn default_grace() -> u64 {
    10
}

/// `[metrics]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address serving `GET /metrics` (Prometheus text format) and `GET /healthz`.
    pub listen: SocketAddr,
}

/// `[sink]`: exactly one of `[sink.ledger]` and `[sink.redis]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    /// Write into a local ledger, as its one writer.
    #[serde(default)]
    pub ledger: Option<LedgerSinkConfig>,
    /// Publish to the Redis stream that `revledger sync` follows on every host.
    #[serde(default)]
    pub redis: Option<RedisSinkConfig>,
    /// How many event ids are remembered to recognise replays.
    #[serde(default = "default_dedup")]
    pub replay_window: usize,
    /// How far ahead of this host's clock an event's time may be, in seconds.
    #[serde(default = "default_max_future")]
    pub max_future_secs: i64,
}

fn default_dedup() -> usize {
    100_000
}
fn default_max_future() -> i64 {
    300
}

/// `[sink.ledger]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerSinkConfig {
    /// Path of the ledger; created when missing.
    pub path: PathBuf,
    /// For a new ledger, the longest token lifetime to cover (0: one day); for an existing
    /// one, 0 keeps it and a larger value raises it.
    #[serde(default)]
    pub max_token_lifetime: i64,
    /// Clock-skew leeway of a new ledger (default 300).
    #[serde(default)]
    pub leeway: Option<i64>,
    /// Make each group of rules durable (fdatasync) before answering (default true).
    #[serde(default = "yes")]
    pub durable: bool,
}

fn yes() -> bool {
    true
}

/// `[sink.redis]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSinkConfig {
    /// `redis://[user:password@]host:port/[db]` (or `url_file`, a file holding it).
    #[serde(default)]
    pub url: Option<String>,
    /// A file holding the URL (keeps a password out of the configuration).
    #[serde(default)]
    pub url_file: Option<PathBuf>,
    /// A file holding the ACL user's password (overrides one in the URL; re-read at each
    /// reconnection).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// PEM CA certificates for `rediss://` (default: the system's roots).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate for `rediss://` (mutual TLS), with `client_key`.
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    /// PEM private key of `client_cert`.
    #[serde(default)]
    pub client_key: Option<PathBuf>,
    /// Sentinel addresses (`host:port`); the URL's host is then the primary's name.
    #[serde(default)]
    pub sentinels: Vec<String>,
    /// Sign every entry with this Ed25519 key (PKCS#8 PEM, `revledger keygen`), for sync
    /// processes that apply only signed rules (docs/SYNC.md); with `key_id`.
    #[serde(default)]
    pub sign_key: Option<PathBuf>,
    /// The name the sync processes' trusted-keys file gives `sign_key`.
    #[serde(default)]
    pub key_id: Option<String>,
    /// The stream (a Redis key) the hosts' `revledger sync` follow.
    pub stream: String,
    /// Longest token lifetime of the ledgers the stream feeds (trimming by age, and the
    /// lifetime of token rules whose `exp` an event does not give).
    #[serde(default = "default_lifetime")]
    pub max_token_lifetime: i64,
    /// Clock-skew leeway of the trimming.
    #[serde(default = "default_leeway")]
    pub leeway: i64,
}

fn default_lifetime() -> i64 {
    86_400
}
fn default_leeway() -> i64 {
    300
}

/// Requests per second accepted by one source (more: `429`).
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Sustained requests per second.
    pub per_second: u32,
    /// Requests accepted at once above the sustained rate.
    pub burst: u32,
}

impl Default for RateLimit {
    fn default() -> RateLimit {
        RateLimit {
            per_second: 1000,
            burst: 2000,
        }
    }
}

/// A string given inline or read from a file (`name` / `name_file`).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// One `[[ssf]]` table: a transmitter pushing SETs (RFC 8935) to `path`, or polled for
/// them (RFC 8936) at `poll_endpoint`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SsfConfig {
    /// A name for logs and metrics.
    pub name: String,
    /// Push delivery: the URL path this transmitter's stream delivers to (the stream's
    /// `endpoint_url`).
    #[serde(default)]
    pub path: Option<String>,
    /// Poll delivery: the stream's poll endpoint at the transmitter (https, or http on a
    /// loopback address).
    #[serde(default)]
    pub poll_endpoint: Option<String>,
    /// The `Authorization` header value sent to the poll endpoint.
    #[serde(default)]
    pub poll_authorization: Option<String>,
    /// A file holding `poll_authorization`.
    #[serde(default)]
    pub poll_authorization_file: Option<PathBuf>,
    /// Most SETs asked for per poll (`maxEvents`).
    #[serde(default = "default_poll_max_events")]
    pub poll_max_events: u32,
    /// Ask the transmitter to answer at once when it has nothing (`returnImmediately`),
    /// then wait `poll_interval_secs`; by default it holds the request until it has SETs
    /// (long polling), up to `poll_timeout_secs`.
    #[serde(default)]
    pub poll_return_immediately: bool,
    /// Seconds between polls that found nothing (with `poll_return_immediately`).
    #[serde(default = "default_poll_interval")]
    pub poll_interval_secs: u64,
    /// Seconds one poll request may take (a long poll included).
    #[serde(default = "default_poll_timeout")]
    pub poll_timeout_secs: u64,
    /// The transmitter's `iss`, compared exactly.
    pub issuer: String,
    /// The `aud` values this receiver accepts (the SET's `aud` must contain one).
    pub audience: OneOrMany,
    /// A JWKS file holding the transmitter's public keys (re-read on an unknown `kid`).
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// The transmitter's `jwks_uri` (https, or http on a loopback address).
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// PEM CA certificates trusted for `jwks_uri` and `poll_endpoint` instead of the
    /// system's.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Fetched keys are fetched again after this many seconds.
    #[serde(default = "default_jwks_max_age")]
    pub jwks_max_age_secs: u64,
    /// An unknown `kid` fetches the keys again at most this often, in seconds.
    #[serde(default = "default_jwks_min_refresh")]
    pub jwks_min_refresh_secs: u64,
    /// The `Authorization` header value the transmitter sends (the stream's
    /// `delivery.authorization_header`), if it sends one; checked when set.
    #[serde(default)]
    pub authorization: Option<String>,
    /// A file holding `authorization`.
    #[serde(default)]
    pub authorization_file: Option<PathBuf>,
    /// JWS algorithms accepted (default: every asymmetric one; never `none` or HMAC).
    #[serde(default)]
    pub algorithms: Option<Vec<String>>,
    /// Where a rule's tenant key comes from, first present wins: `subject.tenant` (a
    /// complex subject's `tenant`), `subject.iss` (the `iss` of an `iss_sub` or `jwt_id`
    /// subject: the `keycloak` mapping's tenant), `iss` (the SET's issuer), or `=TEXT`
    /// (that text; `=` alone is the empty tenant).
    #[serde(default = "default_tenant_sources")]
    pub tenant: Vec<String>,
    /// Simple subject formats that name a user (their value is the token's subject).
    #[serde(default = "default_subject_formats")]
    pub subject_formats: Vec<String>,
    /// What the bare `opaque` subject of a `session-revoked` event names: `session`,
    /// `subject`, or `session_and_subject` (default: both rules, so either reading
    /// revokes; the CAEP example uses a session id there).
    #[serde(default)]
    pub session_revoked_opaque: OpaqueSession,
    /// Accept subjects that name only a tenant (a `tenant` rule: every token of it).
    #[serde(default)]
    pub allow_tenant_rules: bool,
    /// Requests per second.
    #[serde(default)]
    pub rate: RateLimit,
}

fn default_poll_max_events() -> u32 {
    100
}
fn default_poll_interval() -> u64 {
    5
}
fn default_poll_timeout() -> u64 {
    60
}
fn default_jwks_max_age() -> u64 {
    3600
}
fn default_jwks_min_refresh() -> u64 {
    10
}
fn default_tenant_sources() -> Vec<String> {
    vec!["subject.tenant".into(), "=".into()]
}
fn default_subject_formats() -> Vec<String> {
    vec!["iss_sub".into(), "opaque".into(), "email".into()]
}

/// See [`SsfConfig::session_revoked_opaque`].
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OpaqueSession {
    /// A session rule.
    Session,
    /// A subject rule.
    Subject,
    /// Both.
    #[default]
    SessionAndSubject,
}

/// A string or an array of strings.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum OneOrMany {
    /// One value.
    One(String),
    /// Several values.
    Many(Vec<String>),
}

impl OneOrMany {
    /// The values.
    pub fn values(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// One `[[auth0]]` table: an Auth0 Log Stream of type Custom Webhook posting to `path`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Auth0Config {
    /// A name for logs and metrics.
    pub name: String,
    /// The URL path of the stream's Payload URL.
    pub path: String,
    /// The stream's Authorization Token: the exact `Authorization` header value.
    #[serde(default)]
    pub authorization: Option<String>,
    /// A file holding `authorization`.
    #[serde(default)]
    pub authorization_file: Option<PathBuf>,
    /// Tenant keys the rules are written for. Tokens with no `org_id` have the empty
    /// tenant (the default, `[""]`); with Auth0 Organizations list every organization id
    /// whose tokens a user- or role-level change must reach.
    #[serde(default = "default_auth0_tenants")]
    pub tenants: Vec<String>,
    /// What a role rule is keyed by: the role's `name` (the default; what an Action puts
    /// in a `…/roles` claim) or its `id` (`rol_…`).
    #[serde(default)]
    pub role_key: RoleKey,
    /// Role ids to names, for log entries that name a role by id only.
    #[serde(default)]
    pub role_names: BTreeMap<String, String>,
    /// Requests per second.
    #[serde(default)]
    pub rate: RateLimit,
}

fn default_auth0_tenants() -> Vec<String> {
    vec![String::new()]
}

/// See [`Auth0Config::role_key`].
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RoleKey {
    /// The role's name.
    #[default]
    Name,
    /// The role's id.
    Id,
}

/// One `[[keycloak]]` table: Keycloak events from the webhook extensions
/// (`ext-event-webhook`, `ext-event-http`), HMAC-signed in `X-Keycloak-Signature`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeycloakConfig {
    /// A name for logs and metrics.
    pub name: String,
    /// The URL path the webhook posts to.
    pub path: String,
    /// The webhook's shared secret.
    #[serde(default)]
    pub secret: Option<String>,
    /// A file holding `secret`.
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// `HmacSHA256` (the default) or `HmacSHA1`, as the webhook is configured.
    #[serde(default = "default_hmac")]
    pub algorithm: String,
    /// The tokens' `iss` for a realm, `{realm}` standing for the realm's name, e.g.
    /// `https://sso.example.com/realms/{realm}`: the `keycloak` mapping's tenant.
    #[serde(default)]
    pub issuer: Option<String>,
    /// Per realm (by name or id): its issuer, when the template does not fit.
    #[serde(default)]
    pub realms: BTreeMap<String, RealmConfig>,
    /// Client UUIDs (as admin events name clients) to client ids (as tokens' `azp` and
    /// `resource_access` name them), for client-role events.
    #[serde(default)]
    pub clients: BTreeMap<String, String>,
    /// Map an admin's "sign out all active sessions" of a realm (`logout-all`) to a tenant
    /// rule: every token of the realm (default false: such events are refused).
    #[serde(default)]
    pub allow_tenant_rules: bool,
    /// Requests per second.
    #[serde(default)]
    pub rate: RateLimit,
}

fn default_hmac() -> String {
    "HmacSHA256".into()
}

/// `[keycloak.realms.NAME]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RealmConfig {
    /// The realm's tokens' `iss`.
    pub issuer: String,
}

/// An error in the configuration, naming the file and what is wrong.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

fn err<T>(msg: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError(msg.into()))
}

/// JWS algorithms an SSF transmitter may sign with (asymmetric only).
pub const ASYMMETRIC_ALGORITHMS: [&str; 9] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

/// Subject identifier formats that can name a user.
pub const USER_FORMATS: [&str; 7] = [
    "iss_sub",
    "opaque",
    "email",
    "phone_number",
    "account",
    "uri",
    "did",
];

impl Config {
    /// Reads and checks the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("cannot read {}: {e}", path.display())))?;
        Config::parse(&text).map_err(|e| ConfigError(format!("{}: {e}", path.display())))
    }

    /// Parses and checks a configuration (paths in it are used as given).
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// The consistency checks that serde cannot express.
    fn validate(&self) -> Result<(), ConfigError> {
        let s = &self.server;
        if s.tls_cert.is_some() != s.tls_key.is_some() {
            return err("[server] tls_cert and tls_key go together");
        }
        if s.max_body_bytes == 0 || s.max_connections == 0 || s.request_timeout_secs == 0 {
            return err(
                "[server] max_body_bytes, max_connections and request_timeout_secs must be > 0",
            );
        }
        if s.workers == Some(0) {
            return err("[server] workers must be > 0");
        }
        match (&self.sink.ledger, &self.sink.redis) {
            (Some(_), Some(_)) | (None, None) => {
                return err("[sink] needs exactly one of [sink.ledger] and [sink.redis]")
            }
            (Some(l), None) if l.max_token_lifetime < 0 => {
                return err("[sink.ledger] max_token_lifetime must be >= 0")
            }
            (None, Some(r)) => {
                if r.url.is_some() == r.url_file.is_some() {
                    return err("[sink.redis] needs exactly one of url and url_file");
                }
                if r.max_token_lifetime <= 0 || r.leeway < 0 {
                    return err("[sink.redis] needs max_token_lifetime > 0 and leeway >= 0");
                }
                if r.stream.is_empty() {
                    return err("[sink.redis] stream must not be empty");
                }
                if r.sign_key.is_some() != r.key_id.is_some() {
                    return err("[sink.redis] sign_key and key_id go together");
                }
                if r.client_cert.is_some() != r.client_key.is_some() {
                    return err("[sink.redis] client_cert and client_key go together");
                }
            }
            _ => {}
        }
        if self.sink.max_future_secs < 0 {
            return err("[sink] max_future_secs must be >= 0");
        }
        // The stream's publisher refuses a cutoff more than `leeway` ahead (it would be
        // trimmed while it still matters, docs/SYNC.md §3): a larger max_future_secs lets
        // such a rule pass the mapping and then fail its whole write group with 503, which
        // the sender retries for ever, instead of the 400 it should get.
        if let Some(r) = &self.sink.redis {
            if self.sink.max_future_secs > r.leeway {
                return err(format!(
                    "[sink] max_future_secs ({}) must not exceed [sink.redis] leeway ({}): \
                     the stream refuses cutoffs further ahead",
                    self.sink.max_future_secs, r.leeway
                ));
            }
        }
        if self.ssf.is_empty() && self.auth0.is_empty() && self.keycloak.is_empty() {
            return err("no source: add at least one [[ssf]], [[auth0]] or [[keycloak]] table");
        }
        let mut names = HashSet::new();
        let mut paths = HashSet::new();
        let mut source = |kind: &str, name: &str, path: Option<&str>, rate: &RateLimit| {
            if name.is_empty() || !names.insert(name.to_string()) {
                return err(format!("[[{kind}]] name {name:?} is empty or used twice"));
            }
            let Some(path) = path else { return Ok(()) };
            if !path.starts_with('/') || !paths.insert(path.to_string()) {
                return err(format!(
                    "[[{kind}]] {name}: path {path:?} must start with / and be unique"
                ));
            }
            if rate.per_second == 0 || rate.burst == 0 {
                return err(format!(
                    "[[{kind}]] {name}: rate needs per_second and burst > 0"
                ));
            }
            Ok(())
        };
        for t in &self.ssf {
            source("ssf", &t.name, t.path.as_deref(), &t.rate)?;
        }
        for t in &self.auth0 {
            source("auth0", &t.name, Some(&t.path), &t.rate)?;
        }
        for t in &self.keycloak {
            source("keycloak", &t.name, Some(&t.path), &t.rate)?;
        }
        for t in &self.ssf {
            t.validate()?;
        }
        for t in &self.auth0 {
            let what = format!("[[auth0]] {}", t.name);
            one_secret(
                &what,
                "authorization",
                &t.authorization,
                &t.authorization_file,
            )?;
            if t.tenants.is_empty() {
                return err(format!(
                    "{what}: tenants must list at least one tenant (\"\" for none)"
                ));
            }
        }
        for t in &self.keycloak {
            let what = format!("[[keycloak]] {}", t.name);
            one_secret(&what, "secret", &t.secret, &t.secret_file)?;
            if !matches!(t.algorithm.as_str(), "HmacSHA256" | "HmacSHA1") {
                return err(format!(
                    "{what}: algorithm {:?} is not HmacSHA256 or HmacSHA1",
                    t.algorithm
                ));
            }
            match &t.issuer {
                Some(i) if !i.contains("{realm}") => {
                    return err(format!(
                        "{what}: issuer {i:?} has no {{realm}} (use [keycloak.realms.NAME] for fixed issuers)"
                    ))
                }
                None if t.realms.is_empty() => {
                    return err(format!(
                        "{what}: needs issuer = \"https://HOST/realms/{{realm}}\" or [keycloak.realms.NAME] tables"
                    ))
                }
                _ => {}
            }
        }
        Ok(())
    }
}

impl SsfConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let what = format!("[[ssf]] {}", self.name);
        if self.issuer.is_empty() {
            return err(format!("{what}: issuer must not be empty"));
        }
        match (&self.path, &self.poll_endpoint) {
            (Some(_), Some(_)) | (None, None) => {
                return err(format!(
                    "{what}: needs exactly one of path (push delivery) and poll_endpoint (poll delivery)"
                ))
            }
            (None, Some(url)) => {
                check_transmitter_url(url).map_err(|e| ConfigError(format!("{what}: poll_endpoint: {e}")))?;
                if self.poll_max_events == 0 || self.poll_interval_secs == 0 || self.poll_timeout_secs == 0 {
                    return err(format!(
                        "{what}: poll_max_events, poll_interval_secs and poll_timeout_secs must be > 0"
                    ));
                }
                if self.poll_authorization.is_some() && self.poll_authorization_file.is_some() {
                    return err(format!(
                        "{what}: poll_authorization and poll_authorization_file exclude each other"
                    ));
                }
            }
            (Some(_), None) => {}
        }
        if self.audience.values().iter().all(String::is_empty) {
            return err(format!("{what}: audience must name this receiver"));
        }
        match (&self.jwks_file, &self.jwks_uri) {
            (Some(_), Some(_)) | (None, None) => {
                return err(format!(
                    "{what}: needs exactly one of jwks_file and jwks_uri"
                ))
            }
            (None, Some(uri)) => check_transmitter_url(uri)
                .map_err(|e| ConfigError(format!("{what}: jwks_uri: {e}")))?,
            _ => {}
        }
        if self.jwks_min_refresh_secs == 0 || self.jwks_max_age_secs == 0 {
            return err(format!(
                "{what}: jwks_min_refresh_secs and jwks_max_age_secs must be > 0"
            ));
        }
        if self.authorization.is_some() && self.authorization_file.is_some() {
            return err(format!(
                "{what}: authorization and authorization_file exclude each other"
            ));
        }
        for a in self.algorithms.iter().flatten() {
            if !ASYMMETRIC_ALGORITHMS.contains(&a.as_str()) {
                return err(format!(
                    "{what}: algorithm {a:?} is not one of {}",
                    ASYMMETRIC_ALGORITHMS.join(", ")
                ));
            }
        }
        if self.algorithms.as_ref().is_some_and(Vec::is_empty) {
            return err(format!("{what}: algorithms must not be empty"));
        }
        if self.tenant.is_empty() {
            return err(format!(
                "{what}: tenant must list at least one source (\"=\" for the empty tenant)"
            ));
        }
        for t in &self.tenant {
            if !(t.starts_with('=')
                || matches!(t.as_str(), "subject.tenant" | "subject.iss" | "iss"))
            {
                return err(format!(
                    "{what}: tenant source {t:?} is not subject.tenant, subject.iss, iss or =TEXT"
                ));
            }
        }
        for f in &self.subject_formats {
            if !USER_FORMATS.contains(&f.as_str()) {
                return err(format!(
                    "{what}: subject format {f:?} is not one of {}",
                    USER_FORMATS.join(", ")
                ));
            }
        }
        Ok(())
    }
}

fn one_secret(
    what: &str,
    name: &str,
    inline: &Option<String>,
    file: &Option<PathBuf>,
) -> Result<(), ConfigError> {
    match (inline, file) {
        (Some(_), Some(_)) | (None, None) => err(format!(
            "{what}: needs exactly one of {name} and {name}_file"
        )),
        (Some(s), None) if s.is_empty() => err(format!("{what}: {name} must not be empty")),
        _ => Ok(()),
    }
}

/// Reads a secret given inline or in a file (trailing newline dropped); `None` when
/// neither is given.
pub fn read_secret(
    inline: &Option<String>,
    file: &Option<PathBuf>,
) -> Result<Option<Secret>, ConfigError> {
    if let Some(s) = inline {
        return Ok(Some(Secret(s.clone())));
    }
    let Some(path) = file else { return Ok(None) };
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("cannot read secret file {}: {e}", path.display())))?;
    let s = text.trim_end_matches(['\n', '\r']).to_string();
    if s.is_empty() {
        return err(format!("secret file {} is empty", path.display()));
    }
    Ok(Some(Secret(s)))
}

/// A transmitter's URL (`jwks_uri`, `poll_endpoint`) must be https, or http to a loopback
/// address (a test or a local proxy).
pub fn check_transmitter_url(uri: &str) -> Result<(), String> {
    let lower = uri.to_ascii_lowercase();
    if lower.starts_with("https://") {
        return Ok(());
    }
    if let Some(rest) = lower.strip_prefix("http://") {
        let host = rest.split(['/', '?', '#']).next().unwrap_or("");
        let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
        let host = match host.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or(""),
            None => host.split(':').next().unwrap_or(""),
        };
        let loopback = host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if loopback {
            return Ok(());
        }
    }
    Err(format!(
        "{uri:?} must be https (http only to a loopback address)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        [server]
        listen = "127.0.0.1:0"
        [sink.ledger]
        path = "/tmp/x.ledger"
        [[ssf]]
        name = "idp"
        path = "/ssf"
        issuer = "https://idp.example.com/"
        audience = "https://rp.example.com/"
        jwks_file = "/tmp/jwks.json"
    "#;

    #[test]
    fn a_minimal_file_gets_the_documented_defaults() {
        let c = Config::parse(MINIMAL).unwrap();
        assert_eq!(c.server.max_body_bytes, 1 << 20);
        assert_eq!(c.sink.max_future_secs, 300);
        assert!(c.sink.ledger.as_ref().unwrap().durable);
        let t = &c.ssf[0];
        assert_eq!(t.tenant, ["subject.tenant", "="]);
        assert_eq!(t.subject_formats, ["iss_sub", "opaque", "email"]);
        assert_eq!(t.session_revoked_opaque, OpaqueSession::SessionAndSubject);
        assert!(!t.allow_tenant_rules);
        assert_eq!(t.rate, RateLimit::default());
    }

    #[test]
    fn mistakes_are_named() {
        for (edit, needle) in [
            (
                MINIMAL.replace("[sink.ledger]", "[sink.redis]\nstream = \"s\""),
                "url",
            ),
            (
                MINIMAL.replace("path = \"/ssf\"", "path = \"ssf\""),
                "must start with /",
            ),
            (
                MINIMAL.replace("jwks_file = \"/tmp/jwks.json\"", ""),
                "jwks_file and jwks_uri",
            ),
            (
                MINIMAL.replace(
                    "jwks_file = \"/tmp/jwks.json\"",
                    "jwks_uri = \"http://idp.example.com/k\"",
                ),
                "must be https",
            ),
            (
                MINIMAL.replace("name = \"idp\"", "name = \"idp\"\nalgorithms = [\"HS256\"]"),
                "HS256",
            ),
            (
                MINIMAL.replace("name = \"idp\"", "name = \"idp\"\ntenant = [\"sub\"]"),
                "tenant source",
            ),
            (
                MINIMAL.replace("name = \"idp\"", "name = \"idp\"\nisuer = \"x\""),
                "unknown field",
            ),
            (MINIMAL.replace("listen", "lisen"), "unknown field"),
            (
                MINIMAL.replace(
                    "[sink.ledger]\n        path = \"/tmp/x.ledger\"",
                    "[sink]\nmax_future_secs = 301\n[sink.redis]\nurl = \"redis://127.0.0.1/\"\nstream = \"s\"\n\
                     max_token_lifetime = 3600",
                ),
                "must not exceed [sink.redis] leeway (300)",
            ),
        ] {
            let e = Config::parse(&edit).unwrap_err().to_string();
            assert!(e.contains(needle), "expected {needle:?} in {e}");
        }
    }

    #[test]
    fn transmitter_urls_are_https_or_loopback_http() {
        assert!(check_transmitter_url("https://idp.example.com/jwks").is_ok());
        assert!(check_transmitter_url("http://127.0.0.1:8080/jwks").is_ok());
        assert!(check_transmitter_url("http://[::1]:8080/jwks").is_ok());
        assert!(check_transmitter_url("http://localhost/jwks").is_ok());
        assert!(check_transmitter_url("http://127.0.0.1.evil.com/jwks").is_err());
        assert!(check_transmitter_url("http://user@10.0.0.1/jwks").is_err());
        assert!(check_transmitter_url("ftp://x").is_err());
    }

    /// Every TOML example of docs/INGEST.md parses: the general one with each source's.
    #[test]
    fn the_documented_examples_parse() {
        let doc = include_str!("../../../docs/INGEST.md");
        let blocks: Vec<&str> = doc
            .split("```toml\n")
            .skip(1)
            .map(|b| b.split("```").next().unwrap())
            .collect();
        assert!(blocks.len() >= 4, "the general example and one per source");
        let general = blocks[0];
        for source in &blocks[1..] {
            let c = Config::parse(&format!("{general}\n{source}"))
                .unwrap_or_else(|e| panic!("{e}\n{source}"));
            assert_eq!(c.ssf.len() + c.auth0.len() + c.keycloak.len(), 1);
        }
    }

    #[test]
    fn secrets_never_print() {
        assert_eq!(format!("{:?}", Secret("hunter2".into())), "Secret(***)");
    }
}
