//! OpenID SSF poll delivery (RFC 8936): for a transmitter configured with a
//! `poll_endpoint`, the receiver POSTs `{"maxEvents", "returnImmediately", "ack",
//! "setErrs"}` and gets `{"sets": {jti: SET}, "moreAvailable"}`. Each SET goes through the
//! same verification, mapping and commit as a pushed one, alone (all or nothing per SET);
//! the next poll acknowledges the SETs whose rules were committed (`ack`) and reports the
//! refused ones with their RFC 8935 error code (`setErrs`). A SET whose rules could not be
//! written (the ledger or Redis failed) is neither: the transmitter delivers it again.
//! On shutdown a last request (`maxEvents` 0) sends the pending acknowledgements.

use super::event::Refusal;
use super::jwks::KeyStore;
use super::metrics::SourceLabels;
use super::server::{commit, ssf_events, Failure, Shared};
use super::ssf::SetPolicy;
use revledger::unix_now_floor;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tracing::{debug, info, warn};

/// Largest poll response read.
const MAX_RESPONSE_BYTES: usize = 64 << 20;
/// Longest wait between failed polls.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// How one transmitter is polled.
pub struct PollSettings {
    /// The poll endpoint.
    pub endpoint: String,
    /// The `Authorization` header value sent, if any.
    pub authorization: Option<String>,
    /// `maxEvents`.
    pub max_events: u32,
    /// `returnImmediately`.
    pub return_immediately: bool,
    /// Wait between polls that found nothing (with `return_immediately`).
    pub interval: Duration,
    /// The HTTPS client (its timeout covers a long poll).
    pub client: reqwest::Client,
}

/// What one poll answered.
struct Answer {
    sets: Vec<(String, Value)>,
    more: bool,
}

async fn request(s: &PollSettings, body: &Value) -> Result<Answer, String> {
    let mut req = s
        .client
        .post(&s.endpoint)
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .body(body.to_string());
    if let Some(a) = &s.authorization {
        req = req.header("authorization", a);
    }
    let mut resp = req
        .send()
        .await
        .map_err(|e| format!("POST {}: {e}", s.endpoint))?;
    let status = resp.status();
    let mut bytes = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| format!("POST {}: {e}", s.endpoint))?
    {
        bytes.extend_from_slice(&chunk);
        if bytes.len() > MAX_RESPONSE_BYTES {
            return Err(format!(
                "POST {}: answer larger than {MAX_RESPONSE_BYTES} bytes",
                s.endpoint
            ));
        }
    }
    if !status.is_success() {
        return Err(format!(
            "POST {}: {status} {}",
            s.endpoint,
            String::from_utf8_lossy(&bytes[..bytes.len().min(512)])
        ));
    }
    let v: Value =
        serde_json::from_slice(&bytes).map_err(|e| format!("the poll answer is not JSON: {e}"))?;
    let sets = match v.get("sets") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Object(m)) => m.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        Some(_) => return Err("the poll answer's \"sets\" is not an object".into()),
    };
    Ok(Answer {
        sets,
        more: v
            .get("moreAvailable")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    })
}

/// Polls until `stop` turns true.
pub(super) async fn run(
    shared: Arc<Shared>,
    labels: SourceLabels,
    policy: Arc<SetPolicy>,
    keys: Arc<KeyStore>,
    settings: PollSettings,
    mut stop: watch::Receiver<bool>,
) {
    info!(source = %labels.source, endpoint = %settings.endpoint, "polling the transmitter");
    let mut acks: Vec<String> = Vec::new();
    let mut errs = Map::new();
    let mut backoff = Duration::from_millis(500);
    loop {
        if *stop.borrow() {
            break;
        }
        let body = json!({
            "maxEvents": settings.max_events,
            "returnImmediately": settings.return_immediately,
            "ack": acks,
            "setErrs": errs,
        });
        let answer = tokio::select! {
            a = request(&settings, &body) => a,
            _ = stop.wait_for(|s| *s) => break,
        };
        let answer = match answer {
            Ok(a) => {
                backoff = Duration::from_millis(500);
                acks.clear();
                errs.clear();
                a
            }
            Err(e) => {
                warn!(source = %labels.source, error = %e, retry_in_ms = backoff.as_millis() as u64, "poll failed");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.wait_for(|s| *s) => break,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        let n = answer.sets.len();
        for (jti, set) in answer.sets {
            let arrived = Instant::now();
            let now = unix_now_floor();
            let mapped = match set.as_str() {
                Some(token) => {
                    ssf_events(&shared, &labels, &policy, &keys, token.as_bytes(), now).await
                }
                None => Err(Refusal::invalid("the SET is not a string")),
            };
            match commit(&shared, &labels, mapped, now, arrived).await {
                Ok(_) => acks.push(jti),
                Err(Failure::Refused(r)) => {
                    errs.insert(jti, json!({"err": r.kind.code(), "description": r.reason}));
                }
                Err(Failure::Sink(_)) => {} // not acknowledged: delivered again
            }
        }
        debug!(source = %labels.source, sets = n, more = answer.more, "polled");
        if n == 0 && !answer.more && settings.return_immediately {
            tokio::select! {
                _ = tokio::time::sleep(settings.interval) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
        }
    }
    if !acks.is_empty() || !errs.is_empty() {
        let body = json!({"maxEvents": 0, "returnImmediately": true, "ack": acks, "setErrs": errs});
        if let Err(e) = tokio::time::timeout(Duration::from_secs(5), request(&settings, &body))
            .await
            .unwrap_or_else(|_| Err("timed out".into()))
        {
            warn!(source = %labels.source, error = %e, "the last acknowledgements were not sent; the transmitter will deliver those SETs again");
        }
    }
    info!(source = %labels.source, "stopped polling");
}
