//! Operating `revledger sync` (docs/OPERATIONS.md): Prometheus metrics (prometheus-client)
//! fed from the follower's events and, at each scrape, from the ledger itself; and a
//! health endpoint, both served over HTTP on a thread of their own (axum on a one-thread
//! tokio runtime, as `revledger ingest` serves its own).

use super::Event;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use revledger::{unix_now_floor, Ledger};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;
use std::time::Duration;

/// The metrics of one sync process (all prefixed `revledger_sync_`).
pub struct SyncMetrics {
    registry: Registry,
    applied: Counter,
    skipped: Counter,
    refused: Counter,
    unreachable: Counter,
    heartbeats: Counter,
    compactions: Counter,
    compaction_seconds: Histogram,
    lag_seconds: Gauge<f64, AtomicU64>,
    last_heard_age: Gauge,
    degraded: Gauge,
    redis_up: Gauge,
    live_rules: Gauge,
    file_bytes: Gauge,
    up: AtomicBool,
}

impl Default for SyncMetrics {
    fn default() -> SyncMetrics {
        SyncMetrics::new()
    }
}

impl SyncMetrics {
    /// Metrics at zero, registered.
    pub fn new() -> SyncMetrics {
        let mut registry = Registry::with_prefix("revledger_sync");
        let m = SyncMetrics {
            registry: Registry::default(),
            applied: Counter::default(),
            skipped: Counter::default(),
            refused: Counter::default(),
            unreachable: Counter::default(),
            heartbeats: Counter::default(),
            compactions: Counter::default(),
            compaction_seconds: Histogram::new(exponential_buckets(0.001, 4.0, 10)),
            lag_seconds: Gauge::default(),
            last_heard_age: Gauge::default(),
            degraded: Gauge::default(),
            redis_up: Gauge::default(),
            live_rules: Gauge::default(),
            file_bytes: Gauge::default(),
            up: AtomicBool::new(false),
        };
        registry.register(
            "entries_applied",
            "Stream entries applied to the ledger as rules",
            m.applied.clone(),
        );
        registry.register(
            "entries_skipped",
            "Stream entries skipped because they were not valid rules (each marks the ledger degraded)",
            m.skipped.clone(),
        );
        registry.register(
            "entries_refused",
            "Stream entries refused for their signature: unsigned, bad, unknown key, scope not allowed (each marks the ledger degraded)",
            m.refused.clone(),
        );
        registry.register(
            "redis_failures",
            "Times Redis could not be reached or failed (each followed by a backoff)",
            m.unreachable.clone(),
        );
        registry.register(
            "heartbeats",
            "Reads that found nothing new and moved last heard",
            m.heartbeats.clone(),
        );
        registry.register(
            "compactions",
            "Compactions of the ledger",
            m.compactions.clone(),
        );
        registry.register(
            "compaction_duration_seconds",
            "Time each compaction took",
            m.compaction_seconds.clone(),
        );
        registry.register(
            "lag_seconds",
            "How far behind the stream's newest entry the ledger is: 0 when caught up, else the age of the last entry applied",
            m.lag_seconds.clone(),
        );
        registry.register(
            "last_heard_age_seconds",
            "Seconds since the ledger last heard from the stream (-1: never)",
            m.last_heard_age.clone(),
        );
        registry.register(
            "ledger_degraded",
            "The ledger's degraded bits: 0 healthy; 1 skipped, 2 refused, 4 trimmed past its position (resync, then sync --resolve)",
            m.degraded.clone(),
        );
        registry.register(
            "redis_up",
            "1 while the last exchange with Redis succeeded, else 0",
            m.redis_up.clone(),
        );
        registry.register(
            "ledger_live_rules",
            "Live keys in the ledger",
            m.live_rules.clone(),
        );
        registry.register(
            "ledger_file_bytes",
            "Size of the ledger file",
            m.file_bytes.clone(),
        );
        SyncMetrics { registry, ..m }
    }

    /// Counts what the follower reports.
    pub fn observe(&self, e: &Event) {
        match e {
            Event::Applied {
                rules,
                skipped,
                refused,
                lag_ms,
                ..
            } => {
                self.applied.inc_by(*rules as u64);
                self.skipped.inc_by(*skipped as u64);
                self.refused.inc_by(*refused as u64);
                self.lag_seconds.set(*lag_ms as f64 / 1000.0);
                self.set_up(true);
            }
            Event::Heartbeat { .. } => {
                self.heartbeats.inc();
                self.lag_seconds.set(0.0);
                self.set_up(true);
            }
            Event::Connected { .. } => self.set_up(true),
            Event::Unreachable { .. } => {
                self.unreachable.inc();
                self.set_up(false);
            }
            Event::Compacted { micros, .. } => {
                self.compactions.inc();
                self.compaction_seconds.observe(*micros as f64 / 1e6);
            }
            _ => {}
        }
    }

    fn set_up(&self, up: bool) {
        self.up.store(up, std::sync::atomic::Ordering::Relaxed);
        self.redis_up.set(i64::from(up));
    }

    /// Reads the ledger's own figures (last heard, degraded, live rules, file size).
    pub fn refresh(&self, ledger: &Ledger) -> Health {
        let now = unix_now_floor();
        let heard = ledger.last_heard().ok().flatten();
        let degraded = ledger.degraded().unwrap_or(0);
        let age = heard.map(|h| now.saturating_sub(h).max(0));
        self.last_heard_age.set(age.unwrap_or(-1));
        self.degraded.set(i64::from(degraded));
        if let Ok(s) = ledger.stats(now) {
            self.live_rules.set(s.live_keys as i64);
            self.file_bytes.set(s.file_bytes as i64);
        }
        Health {
            redis_up: self.up.load(std::sync::atomic::Ordering::Relaxed),
            last_heard_age: age,
            degraded,
        }
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// What the health endpoint judges from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Health {
    /// The last exchange with Redis succeeded.
    pub redis_up: bool,
    /// Seconds since the ledger last heard from its stream (`None`: never).
    pub last_heard_age: Option<i64>,
    /// The ledger's degraded bits.
    pub degraded: u8,
}

impl Health {
    /// The problems that make the process unhealthy, given the oldest "last heard"
    /// allowed (empty: healthy).
    pub fn problems(&self, max_age: Duration) -> Vec<String> {
        let mut p = Vec::new();
        if !self.redis_up {
            p.push("redis is unreachable".to_string());
        }
        match self.last_heard_age {
            None => p.push("the ledger never heard from its stream".to_string()),
            Some(a) if a as u64 > max_age.as_secs() => p.push(format!(
                "the ledger last heard from its stream {a} s ago (limit {} s)",
                max_age.as_secs()
            )),
            Some(_) => {}
        }
        if self.degraded != 0 {
            p.push(format!(
                "the ledger is degraded ({}): resync, then `revledger sync --resolve`",
                super::degraded_reasons(self.degraded).join("; ")
            ));
        }
        p
    }
}

struct Shared {
    metrics: Arc<SyncMetrics>,
    ledger: Ledger,
    max_age: Duration,
}

/// Serves `GET /metrics` (OpenMetrics text) and `GET /healthz` (200 `ok`, or 503 and the
/// problems, one a line) on `addr`, from a thread of its own, for as long as the process
/// lives. `ledger` is a reader handle of the ledger (the figures come from it). Returns
/// the address bound (port 0 picks one).
pub fn serve(
    addr: SocketAddr,
    metrics: Arc<SyncMetrics>,
    ledger: Ledger,
    max_age: Duration,
) -> std::io::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;
    let shared = Arc::new(Shared {
        metrics,
        ledger,
        max_age,
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("revledger-sync-http".into())
        .spawn(move || {
            runtime.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                    return;
                };
                let app = axum::Router::new()
                    .route("/metrics", get(metrics_page))
                    .route("/healthz", get(health_page))
                    .with_state(shared);
                let _ = axum::serve(listener, app).await;
            })
        })?;
    Ok(bound)
}

async fn metrics_page(State(s): State<Arc<Shared>>) -> Response {
    s.metrics.refresh(&s.ledger);
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        )],
        s.metrics.encode(),
    )
        .into_response()
}

async fn health_page(State(s): State<Arc<Shared>>) -> Response {
    let problems = s.metrics.refresh(&s.ledger).problems(s.max_age);
    if problems.is_empty() {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{}\n", problems.join("\n")),
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use revledger::StreamId;

    #[test]
    fn events_are_counted_and_health_names_each_problem() {
        let m = SyncMetrics::new();
        m.observe(&Event::Applied {
            rules: 3,
            skipped: 1,
            refused: 2,
            lag_ms: 1500,
            last_id: StreamId::new(1, 0),
        });
        m.observe(&Event::Unreachable {
            error: "x".into(),
            retry_in: Duration::from_millis(1),
            attempt: 1,
        });
        let text = m.encode();
        for line in [
            "revledger_sync_entries_applied_total 3",
            "revledger_sync_entries_skipped_total 1",
            "revledger_sync_entries_refused_total 2",
            "revledger_sync_lag_seconds 1.5",
            "revledger_sync_redis_failures_total 1",
            "revledger_sync_redis_up 0",
        ] {
            assert!(text.contains(line), "{line} not in {text}");
        }
        let h = Health {
            redis_up: false,
            last_heard_age: Some(30),
            degraded: 2,
        };
        let p = h.problems(Duration::from_secs(10));
        assert_eq!(p.len(), 3, "{p:?}");
        let ok = Health {
            redis_up: true,
            last_heard_age: Some(1),
            degraded: 0,
        };
        assert!(ok.problems(Duration::from_secs(10)).is_empty());
    }
}
