//! The HTTP side: one listener for the sources (HTTPS with rustls, or plain HTTP behind a
//! proxy), one for `/metrics` and `/healthz`; bounded bodies, connections, request time
//! and rate; SIGTERM/SIGINT stop accepting, drain the requests in flight, and let the
//! writer commit (and sync) what is queued before the process exits.

use super::auth0::{self, Auth0Policy};
use super::config::{read_secret, Config, ConfigError, RateLimit, SsfConfig};
use super::event::{check_rules, MappedEvent, Refusal, RefusalKind};
use super::jwks::{https_client, KeySet, KeySource, KeyStore, Loaded};
use super::keycloak::{self, Hmac, KeycloakPolicy};
use super::metrics::{Metrics, Outcome, SourceLabels};
use super::sink::Sink;
use super::ssf::{self, SetPolicy};
use super::ssf_poll::{self, PollSettings};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use revledger::unix_now_floor;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tracing::{debug, error, info, warn};

/// Time allowed for a client's request headers, and for a TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the receiver could not start or stopped.
#[derive(Debug)]
pub struct IngestError(pub String);

impl fmt::Display for IngestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for IngestError {}

impl From<ConfigError> for IngestError {
    fn from(e: ConfigError) -> IngestError {
        IngestError(e.0)
    }
}

enum SourceImpl {
    Ssf {
        policy: Arc<SetPolicy>,
        authorization: Option<String>,
        keys: Arc<KeyStore>,
    },
    Auth0 {
        policy: Auth0Policy,
        authorization: String,
    },
    Keycloak {
        policy: KeycloakPolicy,
        secret: String,
        hmac: Hmac,
    },
}

struct Source {
    labels: SourceLabels,
    /// Where it pushes to; `None` for a polled transmitter.
    path: Option<String>,
    limiter: DefaultDirectRateLimiter,
    imp: SourceImpl,
}

pub(super) struct Shared {
    sink: Sink,
    metrics: Metrics,
    max_future: i64,
}

fn limiter(rate: &RateLimit) -> DefaultDirectRateLimiter {
    let per_second = NonZeroU32::new(rate.per_second).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(rate.burst).unwrap_or(NonZeroU32::MIN);
    RateLimiter::direct(Quota::per_second(per_second).allow_burst(burst))
}

fn key_source(t: &SsfConfig) -> Result<KeySource, ConfigError> {
    match (&t.jwks_file, &t.jwks_uri) {
        (Some(f), _) => Ok(KeySource::File(f.clone())),
        (None, Some(u)) => KeySource::uri(u, t.ca_file.as_deref())
            .map_err(|e| ConfigError(format!("[[ssf]] {}: {e}", t.name))),
        (None, None) => Err(ConfigError(format!("[[ssf]] {}: no keys", t.name))),
    }
}

/// The poll settings of a polled transmitter, by its index among the sources.
type Polls = Vec<(usize, PollSettings)>;

/// Builds the sources of `config` (reading secret files), with the poll settings of the
/// polled ones. `token_lifetime` is the sink's.
fn sources(config: &Config, token_lifetime: i64) -> Result<(Vec<Source>, Polls), ConfigError> {
    let mut out = Vec::new();
    let mut polls = Vec::new();
    for t in &config.ssf {
        let authorization = read_secret(&t.authorization, &t.authorization_file)?.map(|s| s.0);
        if let Some(endpoint) = &t.poll_endpoint {
            let what = |e: String| ConfigError(format!("[[ssf]] {}: poll_endpoint: {e}", t.name));
            polls.push((
                out.len(),
                PollSettings {
                    endpoint: endpoint.clone(),
                    authorization: read_secret(&t.poll_authorization, &t.poll_authorization_file)?
                        .map(|s| s.0),
                    max_events: t.poll_max_events,
                    return_immediately: t.poll_return_immediately,
                    interval: Duration::from_secs(t.poll_interval_secs),
                    client: https_client(
                        t.ca_file.as_deref(),
                        Duration::from_secs(t.poll_timeout_secs),
                    )
                    .map_err(what)?,
                },
            ));
        }
        out.push(Source {
            labels: SourceLabels {
                kind: "ssf".into(),
                source: t.name.clone(),
            },
            path: t.path.clone(),
            limiter: limiter(&t.rate),
            imp: SourceImpl::Ssf {
                policy: Arc::new(SetPolicy::from_config(t, token_lifetime)),
                authorization,
                keys: Arc::new(KeyStore::new(
                    key_source(t)?,
                    Duration::from_secs(t.jwks_min_refresh_secs),
                    Duration::from_secs(t.jwks_max_age_secs),
                )),
            },
        });
    }
    for t in &config.auth0 {
        let authorization = read_secret(&t.authorization, &t.authorization_file)?
            .ok_or_else(|| ConfigError(format!("[[auth0]] {}: no authorization", t.name)))?;
        out.push(Source {
            labels: SourceLabels {
                kind: "auth0".into(),
                source: t.name.clone(),
            },
            path: Some(t.path.clone()),
            limiter: limiter(&t.rate),
            imp: SourceImpl::Auth0 {
                policy: Auth0Policy::from_config(t),
                authorization: authorization.0,
            },
        });
    }
    for t in &config.keycloak {
        let secret = read_secret(&t.secret, &t.secret_file)?
            .ok_or_else(|| ConfigError(format!("[[keycloak]] {}: no secret", t.name)))?;
        out.push(Source {
            labels: SourceLabels {
                kind: "keycloak".into(),
                source: t.name.clone(),
            },
            path: Some(t.path.clone()),
            limiter: limiter(&t.rate),
            imp: SourceImpl::Keycloak {
                policy: KeycloakPolicy::from_config(t),
                secret: secret.0,
                hmac: if t.algorithm == "HmacSHA1" {
                    Hmac::Sha1
                } else {
                    Hmac::Sha256
                },
            },
        });
    }
    Ok((out, polls))
}

/// `--check-config`: parses the file and reads everything it names that can be read
/// without side effects (secret files, JWKS files, the TLS certificate and key). Returns
/// a summary.
pub fn check_config(path: &Path) -> Result<String, IngestError> {
    let config = Config::load(path)?;
    if let (Some(c), Some(k)) = (&config.server.tls_cert, &config.server.tls_key) {
        tls_config(c, k)?;
    }
    let (sources, _) = sources(&config, 0)?;
    for t in &config.ssf {
        if let Some(f) = &t.jwks_file {
            let bytes = std::fs::read(f).map_err(|e| {
                IngestError(format!(
                    "[[ssf]] {}: cannot read {}: {e}",
                    t.name,
                    f.display()
                ))
            })?;
            KeySet::parse(&bytes)
                .map_err(|e| IngestError(format!("[[ssf]] {}: {}: {e}", t.name, f.display())))?;
        }
    }
    let sink = match (&config.sink.ledger, &config.sink.redis) {
        (Some(l), _) => format!("ledger {}", l.path.display()),
        (_, Some(r)) => format!("redis stream {}", r.stream),
        _ => unreachable!("validated"),
    };
    let list: Vec<String> = sources
        .iter()
        .map(|s| match &s.path {
            Some(p) => format!("{} {} at {p}", s.labels.kind, s.labels.source),
            None => format!("{} {} (polled)", s.labels.kind, s.labels.source),
        })
        .collect();
    Ok(format!(
        "configuration OK: listen {}{}, {} source(s): {}; rules to {sink}",
        config.server.listen,
        if config.server.tls_cert.is_some() {
            " (TLS)"
        } else {
            ""
        },
        list.len(),
        list.join(", ")
    ))
}

fn tls_config(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, IngestError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| IngestError(format!("tls_cert {}: {e}", cert.display())))?;
    if certs.is_empty() {
        return Err(IngestError(format!(
            "tls_cert {}: no certificate",
            cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| IngestError(format!("tls_key {}: {e}", key.display())))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| IngestError(e.to_string()))?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| IngestError(format!("tls_cert/tls_key: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Runs the receiver until `shutdown` resolves, then drains and stops. `metrics_listen`
/// overrides `[metrics] listen`.
pub async fn run(
    config: Config,
    metrics_listen: Option<SocketAddr>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), IngestError> {
    let tls = match (&config.server.tls_cert, &config.server.tls_key) {
        (Some(c), Some(k)) => Some(tokio_rustls::TlsAcceptor::from(Arc::new(tls_config(c, k)?))),
        _ => None,
    };
    let sink = tokio::task::spawn_blocking({
        let c = config.sink.clone();
        move || Sink::open(&c)
    })
    .await
    .map_err(|e| IngestError(e.to_string()))?
    .map_err(|e| IngestError(e.to_string()))?;
    info!(sink = sink.describe(), "writing rules");
    let (sources, polls) = sources(&config, sink.token_lifetime())?;
    let shared = Arc::new(Shared {
        sink,
        metrics: Metrics::new(),
        max_future: config.sink.max_future_secs,
    });
    let sources: Vec<Arc<Source>> = sources.into_iter().map(Arc::new).collect();
    for s in &sources {
        let SourceImpl::Ssf { keys, .. } = &s.imp else {
            continue;
        };
        let loaded = keys.refresh(true).await;
        report_load(&shared.metrics, &s.labels, keys, &loaded);
        if let (Loaded::Failed(e), KeySource::File(_)) = (&loaded, keys.source()) {
            return Err(IngestError(format!("[[ssf]] {}: {e}", s.labels.source)));
        }
    }

    let mut app = Router::new();
    for s in &sources {
        let Some(path) = &s.path else { continue };
        info!(kind = %s.labels.kind, source = %s.labels.source, path = %path, "source");
        app = app.route(path, post(receive).with_state((shared.clone(), s.clone())));
    }
    let app = app
        .layer(DefaultBodyLimit::max(config.server.max_body_bytes))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(config.server.request_timeout_secs),
        ));

    let listener = TcpListener::bind(config.server.listen)
        .await
        .map_err(|e| IngestError(format!("cannot listen on {}: {e}", config.server.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| IngestError(e.to_string()))?;
    info!(addr = %addr, tls = tls.is_some(), "listening");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });

    let mut poll_tasks = Vec::new();
    for (i, settings) in polls {
        let s = &sources[i];
        let SourceImpl::Ssf { policy, keys, .. } = &s.imp else {
            continue;
        };
        poll_tasks.push(tokio::spawn(ssf_poll::run(
            shared.clone(),
            s.labels.clone(),
            policy.clone(),
            keys.clone(),
            settings,
            stop_rx.clone(),
        )));
    }

    let metrics_task = match metrics_listen.or(config.metrics.as_ref().map(|m| m.listen)) {
        Some(maddr) => {
            let l = TcpListener::bind(maddr)
                .await
                .map_err(|e| IngestError(format!("cannot listen on {maddr} (metrics): {e}")))?;
            info!(addr = %l.local_addr().map_err(|e| IngestError(e.to_string()))?, "metrics and health");
            let router = Router::new()
                .route("/metrics", get(metrics))
                .route("/healthz", get(health))
                .with_state(shared.clone());
            let mut stop = stop_rx.clone();
            Some(tokio::spawn(async move {
                let _ = axum::serve(l, router)
                    .with_graceful_shutdown(async move {
                        let _ = stop.wait_for(|s| *s).await;
                    })
                    .await;
            }))
        }
        None => None,
    };

    serve(listener, app, tls, &config, stop_rx).await;
    for t in poll_tasks {
        let _ = t.await;
    }
    if let Some(t) = metrics_task {
        let _ = t.await;
    }
    drop(sources);
    // Requests cut off by the grace period still hold the writer: it stops anyway, after
    // committing what is queued (their senders get 503 or a closed connection, and retry).
    tokio::task::spawn_blocking(move || shared.sink.close())
        .await
        .map_err(|e| IngestError(e.to_string()))?;
    info!("stopped");
    Ok(())
}

async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    config: &Config,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HANDSHAKE_TIMEOUT);
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(config.server.max_connections));
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.wait_for(|s| *s) => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            debug!(%peer, "connection limit reached: closing");
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let result = match tls {
                Some(acceptor) => {
                    let stream =
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => {
                                debug!(%peer, error = %e, "TLS handshake failed");
                                return;
                            }
                            Err(_) => return,
                        };
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    watcher.watch(conn.into_owned()).await
                }
                None => {
                    let conn = builder.serve_connection(TokioIo::new(tcp), service);
                    watcher.watch(conn.into_owned()).await
                }
            };
            if let Err(e) = result {
                debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    let grace = Duration::from_secs(config.server.shutdown_grace_secs);
    info!(
        connections = graceful.count(),
        "stopping: draining requests in flight"
    );
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        warn!("requests still in flight after the grace period: closing them");
    }
}

fn report_load(metrics: &Metrics, labels: &SourceLabels, keys: &KeyStore, loaded: &Loaded) {
    match loaded {
        Loaded::Ok(n) => {
            metrics.jwks_fetch(labels, true);
            info!(source = %labels.source, keys = n, from = %keys.source().describe(), "transmitter keys loaded");
        }
        Loaded::Failed(e) => {
            metrics.jwks_fetch(labels, false);
            warn!(source = %labels.source, error = %e, "transmitter keys could not be loaded; keeping the previous ones");
        }
        Loaded::Skipped => {}
    }
}

async fn receive(
    State((shared, source)): State<(Arc<Shared>, Arc<Source>)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let arrived = Instant::now();
    let response = deliver(&shared, &source, &headers, &body, arrived).await;
    shared
        .metrics
        .request(&source.labels, response.status().as_u16());
    response
}

async fn deliver(
    shared: &Shared,
    source: &Source,
    headers: &HeaderMap,
    body: &[u8],
    arrived: Instant,
) -> Response {
    let labels = &source.labels;
    if source.limiter.check().is_err() {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, HeaderValue::from_static("1"))],
            "rate limit reached\n",
        )
            .into_response();
    }
    let now = unix_now_floor();
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let mapped = match &source.imp {
        SourceImpl::Ssf {
            policy,
            authorization,
            keys,
        } => {
            match ssf::check_request(
                text("content-type"),
                text("authorization"),
                authorization.as_deref(),
            ) {
                Ok(()) => ssf_events(shared, labels, policy, keys, body, now).await,
                Err(r) => Err(r),
            }
        }
        SourceImpl::Auth0 {
            policy,
            authorization,
        } => {
            let presented = text("authorization").unwrap_or("");
            if super::secret_eq(presented.as_bytes(), authorization.as_bytes()) {
                auth0::map_batch(body, policy)
            } else {
                Err(Refusal::new(
                    RefusalKind::AuthenticationFailed,
                    "the Authorization header is missing or is not the stream's token",
                ))
            }
        }
        SourceImpl::Keycloak {
            policy,
            secret,
            hmac,
        } => {
            keycloak::verify_signature(text("x-keycloak-signature"), body, secret.as_bytes(), *hmac)
                .and_then(|()| keycloak::map_body(body, policy))
        }
    };
    let summary = match commit(shared, labels, mapped, now, arrived).await {
        Ok(s) => s,
        Err(Failure::Refused(refusal)) => return refuse(&source.imp, &refusal),
        Err(Failure::Sink(e)) => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("rules not committed: {e}\n"),
            )
                .into_response()
        }
    };
    match source.imp {
        SourceImpl::Ssf { .. } => StatusCode::ACCEPTED.into_response(),
        _ => {
            let summary = serde_json::json!({
                "applied": summary.applied,
                "ignored": summary.ignored,
                "duplicates": summary.duplicates,
                "rules": summary.rules,
            });
            (
                StatusCode::OK,
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                summary.to_string(),
            )
                .into_response()
        }
    }
}

/// Verifies a SET with the transmitter's keys and maps it (counting and logging a
/// verification event).
pub(super) async fn ssf_events(
    shared: &Shared,
    labels: &SourceLabels,
    policy: &SetPolicy,
    keys: &KeyStore,
    token: &[u8],
    now: i64,
) -> Result<Vec<MappedEvent>, Refusal> {
    let on_load = |l: &Loaded| report_load(&shared.metrics, labels, keys, l);
    let claims = ssf::verify_token(token, policy, keys, &on_load).await?;
    let (events, notes) = ssf::map_set(&claims, policy, now)?;
    if let Some(state) = notes.verification {
        shared.metrics.verification(labels);
        info!(source = %labels.source, state = %state, "SSF verification event received");
    }
    Ok(events)
}

/// What a delivery came to.
pub(super) struct Summary {
    applied: u64,
    ignored: u64,
    duplicates: u64,
    rules: usize,
}

/// Why a delivery was not committed.
pub(super) enum Failure {
    /// Nothing of it can be applied (answered 4xx: the sender should not retry as is).
    Refused(Refusal),
    /// The ledger or the stream failed (answered 503: the sender retries).
    Sink(super::sink::SinkError),
}

/// The common end of every delivery: checks the rules, leaves out replayed events,
/// commits the rest in one write (or refuses everything), then counts and logs.
pub(super) async fn commit(
    shared: &Shared,
    labels: &SourceLabels,
    mapped: Result<Vec<MappedEvent>, Refusal>,
    now: i64,
    arrived: Instant,
) -> Result<Summary, Failure> {
    let events = match mapped.and_then(|events| {
        let rules: Vec<_> = events
            .iter()
            .flat_map(|e| e.rules.iter().cloned())
            .collect();
        check_rules(&rules, now, shared.max_future).map(|()| events)
    }) {
        Ok(events) => events,
        Err(refusal) => {
            shared.metrics.events(labels, Outcome::Refused, 1);
            warn!(kind = %labels.kind, source = %labels.source, reason = %refusal, "delivery refused; nothing applied");
            return Err(Failure::Refused(refusal));
        }
    };
    let (fresh, duplicates): (Vec<MappedEvent>, Vec<MappedEvent>) =
        events.into_iter().partition(|e| {
            e.id.as_deref()
                .is_none_or(|id| !shared.sink.seen(&labels.source, id))
        });
    let rules: Vec<_> = fresh.iter().flat_map(|e| e.rules.iter().cloned()).collect();
    let n_rules = rules.len();
    if let Err(e) = shared.sink.apply(rules).await {
        shared.metrics.sink_failed();
        error!(kind = %labels.kind, source = %labels.source, error = %e, "rules not committed; the sender will retry");
        return Err(Failure::Sink(e));
    }
    shared
        .sink
        .remember(&labels.source, fresh.iter().filter_map(|e| e.id.as_deref()));
    let applied = fresh.iter().filter(|e| !e.rules.is_empty()).count() as u64;
    shared.metrics.events(labels, Outcome::Applied, applied);
    shared
        .metrics
        .events(labels, Outcome::Ignored, fresh.len() as u64 - applied);
    shared
        .metrics
        .events(labels, Outcome::Duplicate, duplicates.len() as u64);
    for e in &fresh {
        for r in &e.rules {
            shared.metrics.rule(labels, r.scope);
            info!(source = %labels.source, event = %e.kind, id = e.id.as_deref().unwrap_or(""), rule = %r, "rule committed");
        }
        if e.rules.is_empty() {
            debug!(source = %labels.source, event = %e.kind, id = e.id.as_deref().unwrap_or(""), "event changes no token");
        }
    }
    for e in &duplicates {
        debug!(source = %labels.source, event = %e.kind, id = e.id.as_deref().unwrap_or(""), "replayed event: already applied");
    }
    if n_rules > 0 {
        shared
            .metrics
            .committed(labels, arrived.elapsed().as_secs_f64());
    }
    Ok(Summary {
        applied,
        ignored: fresh.len() as u64 - applied,
        duplicates: duplicates.len() as u64,
        rules: n_rules,
    })
}

/// The answer to a refused delivery: RFC 8935's `400 {"err", "description"}` for SSF;
/// for the webhooks `401` (not authenticated), `403` (not allowed) or `400`, with
/// `{"error", "error_description"}`.
fn refuse(imp: &SourceImpl, refusal: &Refusal) -> Response {
    let (status, body) = match imp {
        SourceImpl::Ssf { .. } => (
            StatusCode::BAD_REQUEST,
            serde_json::json!({"err": refusal.kind.code(), "description": refusal.reason}),
        ),
        _ => (
            match refusal.kind {
                RefusalKind::AuthenticationFailed => StatusCode::UNAUTHORIZED,
                RefusalKind::AccessDenied => StatusCode::FORBIDDEN,
                _ => StatusCode::BAD_REQUEST,
            },
            serde_json::json!({"error": refusal.kind.code(), "error_description": refusal.reason}),
        ),
    };
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body.to_string(),
    )
        .into_response()
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    if let Some(ledger) = shared.sink.ledger().cloned() {
        let stats = tokio::task::spawn_blocking(move || ledger.stats(unix_now_floor())).await;
        if let Ok(Ok(s)) = stats {
            shared.metrics.ledger(s.live_keys, s.file_bytes);
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        )],
        shared.metrics.encode(),
    )
        .into_response()
}

async fn health(State(shared): State<Arc<Shared>>) -> Response {
    if shared.metrics.sink_is_up() {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "the last write to the sink failed\n",
        )
            .into_response()
    }
}
