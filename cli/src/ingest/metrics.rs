//! Prometheus metrics of `revledger ingest` (prometheus-client), served with the health
//! endpoint on the metrics address (docs/INGEST.md lists them with alerts worth setting).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use revledger::Scope;
use std::sync::atomic::AtomicU64;

/// A source: its kind (`ssf`, `auth0`, `keycloak`) and configured name.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    /// `ssf`, `auth0` or `keycloak`.
    pub kind: String,
    /// The `name` of its table in the configuration.
    pub source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    kind: String,
    source: String,
    code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    kind: String,
    source: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuleLabels {
    kind: String,
    source: String,
    scope: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    kind: String,
    source: String,
    outcome: &'static str,
}

/// What happened to one event of a delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Its rules were committed.
    Applied,
    /// It changes no token (a login, a verification event, an unrelated log entry).
    Ignored,
    /// Seen before (same event id): nothing written again.
    Duplicate,
    /// It could not be mapped or authenticated: its delivery was refused.
    Refused,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Ignored => "ignored",
            Outcome::Duplicate => "duplicate",
            Outcome::Refused => "refused",
        }
    }
}

/// Every metric, registered once.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    events: Family<EventLabels, Counter>,
    rules: Family<RuleLabels, Counter>,
    commit_seconds: Family<SourceLabels, Histogram>,
    jwks_fetches: Family<OutcomeLabels, Counter>,
    verifications: Family<SourceLabels, Counter>,
    last_event: Family<SourceLabels, Gauge<f64, AtomicU64>>,
    sink_errors: Counter,
    sink_up: Gauge,
    ledger_live_rules: Gauge,
    ledger_file_bytes: Gauge,
}

fn commit_histogram() -> Histogram {
    // 50 µs .. ~3.3 s
    Histogram::new(exponential_buckets(0.000_05, 2.0, 17))
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    /// A registry with every metric at zero.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("revledger_ingest");
        let requests = Family::default();
        registry.register(
            "requests",
            "HTTP requests answered, by source and status code",
            requests.clone(),
        );
        let events = Family::default();
        registry.register(
            "events",
            "Events received, by outcome: applied, ignored (changes no token), duplicate \
             (replay of an event id already applied), refused (delivery answered 4xx)",
            events.clone(),
        );
        let rules = Family::default();
        registry.register("rules", "Rules committed, by scope", rules.clone());
        let commit_seconds = Family::<SourceLabels, Histogram>::new_with_constructor(
            commit_histogram as fn() -> Histogram,
        );
        registry.register(
            "commit_seconds",
            "Time from a request's arrival to its rules committed (and synced when durable)",
            commit_seconds.clone(),
        );
        let jwks_fetches = Family::default();
        registry.register(
            "jwks_fetches",
            "Fetches of an SSF transmitter's keys, by outcome (ok, error)",
            jwks_fetches.clone(),
        );
        let verifications = Family::default();
        registry.register(
            "ssf_verifications",
            "SSF verification events received",
            verifications.clone(),
        );
        let last_event = Family::default();
        registry.register(
            "last_event_timestamp_seconds",
            "Unix time of the last delivery accepted from the source",
            last_event.clone(),
        );
        let sink_errors = Counter::default();
        registry.register(
            "sink_errors",
            "Writes to the ledger or the stream that failed (answered 503)",
            sink_errors.clone(),
        );
        let sink_up = Gauge::default();
        registry.register(
            "sink_up",
            "1 when the last write to the ledger or the stream succeeded, else 0",
            sink_up.clone(),
        );
        sink_up.set(1);
        let ledger_live_rules = Gauge::default();
        registry.register(
            "ledger_live_rules",
            "Live rules in the ledger written (ledger sink only)",
            ledger_live_rules.clone(),
        );
        let ledger_file_bytes = Gauge::default();
        registry.register(
            "ledger_file_bytes",
            "Size of the ledger file (ledger sink only)",
            ledger_file_bytes.clone(),
        );
        Metrics {
            registry,
            requests,
            events,
            rules,
            commit_seconds,
            jwks_fetches,
            verifications,
            last_event,
            sink_errors,
            sink_up,
            ledger_live_rules,
            ledger_file_bytes,
        }
    }

    /// Counts an answer.
    pub fn request(&self, s: &SourceLabels, code: u16) {
        self.requests
            .get_or_create(&RequestLabels {
                kind: s.kind.clone(),
                source: s.source.clone(),
                code,
            })
            .inc();
    }

    /// Counts `n` events with this outcome.
    pub fn events(&self, s: &SourceLabels, outcome: Outcome, n: u64) {
        if n > 0 {
            self.events
                .get_or_create(&EventLabels {
                    kind: s.kind.clone(),
                    source: s.source.clone(),
                    outcome: outcome.label(),
                })
                .inc_by(n);
        }
    }

    /// Counts a committed rule.
    pub fn rule(&self, s: &SourceLabels, scope: Scope) {
        self.rules
            .get_or_create(&RuleLabels {
                kind: s.kind.clone(),
                source: s.source.clone(),
                scope: scope.name(),
            })
            .inc();
    }

    /// Records the time from arrival to commit.
    pub fn committed(&self, s: &SourceLabels, seconds: f64) {
        self.commit_seconds.get_or_create(s).observe(seconds);
        self.sink_up.set(1);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.last_event.get_or_create(s).set(now);
    }

    /// Counts a failed write.
    pub fn sink_failed(&self) {
        self.sink_errors.inc();
        self.sink_up.set(0);
    }

    /// Counts a fetch of a JWKS.
    pub fn jwks_fetch(&self, s: &SourceLabels, ok: bool) {
        self.jwks_fetches
            .get_or_create(&OutcomeLabels {
                kind: s.kind.clone(),
                source: s.source.clone(),
                outcome: if ok { "ok" } else { "error" },
            })
            .inc();
    }

    /// Counts an SSF verification event.
    pub fn verification(&self, s: &SourceLabels) {
        self.verifications.get_or_create(s).inc();
    }

    /// Sets the ledger gauges (at scrape time).
    pub fn ledger(&self, live_rules: u64, file_bytes: u64) {
        self.ledger_live_rules.set(live_rules as i64);
        self.ledger_file_bytes.set(file_bytes as i64);
    }

    /// Whether the last write succeeded.
    pub fn sink_is_up(&self) -> bool {
        self.sink_up.get() == 1
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_appear_with_their_labels() {
        let m = Metrics::new();
        let s = SourceLabels {
            kind: "ssf".into(),
            source: "okta".into(),
        };
        m.request(&s, 202);
        m.events(&s, Outcome::Applied, 2);
        m.events(&s, Outcome::Refused, 0);
        m.rule(&s, Scope::Session);
        m.committed(&s, 0.001);
        let text = m.encode();
        assert!(
            text.contains(
                r#"revledger_ingest_requests_total{kind="ssf",source="okta",code="202"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains(
            r#"revledger_ingest_events_total{kind="ssf",source="okta",outcome="applied"} 2"#
        ));
        assert!(!text.contains(r#"outcome="refused""#));
        assert!(text.contains(
            r#"revledger_ingest_rules_total{kind="ssf",source="okta",scope="session"} 1"#
        ));
        assert!(
            text.contains("revledger_ingest_commit_seconds_count{kind=\"ssf\",source=\"okta\"} 1")
        );
        assert!(text.contains("revledger_ingest_sink_up 1"));
    }
}
