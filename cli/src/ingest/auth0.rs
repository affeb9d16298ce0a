//! Auth0 Log Streams, custom webhook: Auth0 POSTs batches of tenant log entries
//! (`{"log_id": "...", "data": {...}}`, as JSON Lines, a JSON array or a JSON object of
//! entries) with the stream's Authorization Token as the `Authorization` header.
//!
//! Management API operations that succeeded (`sapi` entries) are mapped by method and
//! path (`details.request`); the rest of the log (logins, token exchanges, failures, other
//! API calls) is ignored and counted:
//!
//! | operation | rule |
//! |---|---|
//! | `POST`/`DELETE /api/v2/users/{id}/roles`, `…/permissions` | Subject `{id}` |
//! | `PATCH /api/v2/users/{id}` with `"blocked": true`; `DELETE /api/v2/users/{id}` | Subject |
//! | `DELETE /api/v2/users/{id}/sessions` | Subject |
//! | `POST`/`DELETE /api/v2/roles/{id}/users` | Subject, each user of the body |
//! | `POST /api/v2/roles/{id}/permissions` | Role (the role) |
//! | `DELETE /api/v2/roles/{id}/permissions` | Role (the role), and Role for each permission removed |
//! | `PATCH`/`DELETE /api/v2/roles/{id}` | Role (the role) |
//! | `POST`/`DELETE /api/v2/organizations/{org}/members/{id}/roles` | Subject `{id}` in tenant `{org}` |
//! | `DELETE /api/v2/organizations/{org}/members` | Subject, each member, in tenant `{org}` |
//! | `DELETE /api/v2/sessions/{id}` | Session `{id}` |
//! | log type `du` (user deleted) | Subject |
//! | log type `slo` (logout) with a `session_id` | Session |
//!
//! The `auth0` claim mapping (DESIGN.md §7) reads the tenant from `org_id`: user- and
//! role-level rules are written for each tenant of `tenants` (`[""]`, no organization, by
//! default). A role is keyed by its name (what an Action puts in a `…/roles` claim) or by
//! its id (`role_key`); a permission by its `permission_name` (the `permissions` claim).
//! The cutoff is the entry's `date`, rounded up to the next whole second.

use super::config::{Auth0Config, RoleKey};
use super::event::{cutoff_from_secs, MappedEvent, OwnedRule, Refusal};
use revledger::Scope;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// How a stream's entries are mapped (from its `[[auth0]]` table).
#[derive(Clone, Debug, Default)]
pub struct Auth0Policy {
    /// Tenant keys for user- and role-level rules.
    pub tenants: Vec<String>,
    /// What keys a role.
    pub role_key: RoleKey,
    /// Role ids to names.
    pub role_names: BTreeMap<String, String>,
}

impl Auth0Policy {
    /// The policy of a configured stream.
    pub fn from_config(c: &Auth0Config) -> Auth0Policy {
        Auth0Policy {
            tenants: c.tenants.clone(),
            role_key: c.role_key,
            role_names: c.role_names.clone(),
        }
    }
}

/// Most entries in one delivery.
pub const MAX_ENTRIES: usize = 10_000;

/// The entries of a delivery, whatever the stream's content format.
pub fn entries(body: &[u8]) -> Result<Vec<Value>, Refusal> {
    let text = std::str::from_utf8(body)
        .map_err(|_| Refusal::invalid("the body is not UTF-8"))?
        .trim();
    let list = match serde_json::from_str::<Value>(text) {
        Ok(Value::Array(items)) => items,
        // One entry, or the "JSON object" format: entries as the values of an object.
        Ok(Value::Object(obj)) if obj.contains_key("log_id") || obj.contains_key("data") => {
            vec![Value::Object(obj)]
        }
        Ok(Value::Object(obj)) => obj.into_iter().map(|(_, v)| v).collect(),
        Ok(other) => {
            return Err(Refusal::invalid(format!(
                "expected log entries, found {}",
                kind_of(&other)
            )))
        }
        // JSON Lines: one entry per line.
        Err(_) => text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l)
                    .map_err(|e| Refusal::invalid(format!("a line is not a JSON log entry: {e}")))
            })
            .collect::<Result<_, _>>()?,
    };
    if list.len() > MAX_ENTRIES {
        return Err(Refusal::invalid(format!(
            "{} entries in one delivery; at most {MAX_ENTRIES}",
            list.len()
        )));
    }
    Ok(list)
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Maps a delivery: every entry to its rules (none for the entries that change no
/// token). An entry that should map but cannot (a role whose name is unknown, a path
/// without its id) refuses the whole delivery.
pub fn map_batch(body: &[u8], policy: &Auth0Policy) -> Result<Vec<MappedEvent>, Refusal> {
    entries(body)?
        .iter()
        .enumerate()
        .map(|(i, e)| {
            map_entry(e, policy).map_err(|mut r| {
                r.reason = format!("entry {i}: {}", r.reason);
                r
            })
        })
        .collect()
}

/// Maps one log entry.
pub fn map_entry(entry: &Value, policy: &Auth0Policy) -> Result<MappedEvent, Refusal> {
    let obj = entry
        .as_object()
        .ok_or_else(|| Refusal::invalid("a log entry is not a JSON object"))?;
    // The webhook wraps each entry as {"log_id", "data"}; a bare entry is read as data.
    let data = match obj.get("data") {
        Some(Value::Object(d)) => d,
        Some(_) => return Err(Refusal::invalid("\"data\" is not an object")),
        None => obj,
    };
    let id = text(obj, "log_id")
        .or_else(|| text(data, "log_id"))
        .or_else(|| text(data, "_id"))
        .map(str::to_string);
    let log_type = text(data, "type").unwrap_or("");
    let details = data.get("details").and_then(Value::as_object);
    let (kind, rules) = match log_type {
        "sapi" => {
            let request = details
                .and_then(|d| d.get("request"))
                .and_then(Value::as_object);
            let Some(request) = request else {
                return Ok(MappedEvent::ignored(id, "sapi"));
            };
            let method = text(request, "method").unwrap_or("").to_ascii_uppercase();
            let path = text(request, "path").unwrap_or("");
            let status = details
                .and_then(|d| d.get("response"))
                .and_then(|r| r.get("statusCode"))
                .and_then(Value::as_u64);
            let kind = format!("sapi {method} {path}");
            if status.is_some_and(|s| !(200..300).contains(&s)) {
                return Ok(MappedEvent::ignored(id, kind));
            }
            let body = request.get("body");
            let response = details
                .and_then(|d| d.get("response"))
                .and_then(|r| r.get("body"));
            let targets = api_targets(&method, path, body, response, policy)?;
            (kind, targets)
        }
        "du" => {
            let user = text(data, "user_id")
                .ok_or_else(|| Refusal::invalid("a du (user deleted) entry has no user_id"))?;
            ("du".to_string(), vec![Target::user(user)])
        }
        "slo" => match details.and_then(|d| text(d, "session_id")) {
            Some(sid) => ("slo".to_string(), vec![Target::Session(sid.to_string())]),
            None => ("slo".to_string(), Vec::new()),
        },
        other => (other.to_string(), Vec::new()),
    };
    if rules.is_empty() {
        return Ok(MappedEvent::ignored(id, kind));
    }
    let date = text(data, "date").ok_or_else(|| Refusal::invalid(format!("{kind}: no date")))?;
    let at = parse_date(date)?;
    let mut out = Vec::new();
    for t in rules {
        t.rules(policy, at, &mut out);
    }
    Ok(MappedEvent {
        id,
        kind,
        rules: out,
    })
}

/// `2021-11-04T00:11:39.575Z` → the cutoff (next whole second).
fn parse_date(date: &str) -> Result<i64, Refusal> {
    let t = humantime::parse_rfc3339_weak(date)
        .map_err(|e| Refusal::invalid(format!("date {date:?}: {e}")))?;
    let secs = match t.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    };
    cutoff_from_secs(secs)
}

fn text<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    obj.get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// What an entry revokes, before tenants and time are applied.
#[derive(Debug)]
enum Target {
    /// A user, in `org` or in every configured tenant.
    User { id: String, org: Option<String> },
    /// A role key or a permission name, in every configured tenant.
    Role(String),
    /// A session, in every configured tenant.
    Session(String),
}

impl Target {
    fn user(id: &str) -> Target {
        Target::User {
            id: id.to_string(),
            org: None,
        }
    }

    fn rules(self, policy: &Auth0Policy, at: i64, out: &mut Vec<OwnedRule>) {
        let (scope, key, org) = match self {
            Target::User { id, org } => (Scope::Subject, id, org),
            Target::Role(r) => (Scope::Role, r, None),
            Target::Session(s) => (Scope::Session, s, None),
        };
        match org {
            Some(org) => out.push(OwnedRule::new(scope, org.as_bytes(), key.as_bytes(), at)),
            None => {
                for t in &policy.tenants {
                    out.push(OwnedRule::new(scope, t.as_bytes(), key.as_bytes(), at));
                }
            }
        }
    }
}

/// The path's segments after `/api/v2/`, percent-decoded (user ids like `auth0|123`
/// arrive as `auth0%7C123`).
fn segments(path: &str) -> Option<Vec<String>> {
    let path = path.split(['?', '#']).next().unwrap_or("");
    let rest = path.strip_prefix("/api/v2/")?;
    rest.trim_end_matches('/')
        .split('/')
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .ok()
                .map(|c| c.into_owned())
                .filter(|c| !c.is_empty())
        })
        .collect()
}

fn api_targets(
    method: &str,
    path: &str,
    body: Option<&Value>,
    response: Option<&Value>,
    policy: &Auth0Policy,
) -> Result<Vec<Target>, Refusal> {
    let Some(seg) = segments(path) else {
        return Ok(Vec::new());
    };
    let seg: Vec<&str> = seg.iter().map(String::as_str).collect();
    let list = |name: &str| -> Result<Vec<String>, Refusal> {
        let items = body
            .and_then(|b| b.get(name))
            .and_then(Value::as_array)
            .ok_or_else(|| {
                Refusal::invalid(format!("{method} {path}: the body has no {name} array"))
            })?;
        items
            .iter()
            .map(|v| match v {
                Value::String(s) if !s.is_empty() => Ok(s.clone()),
                other => Err(Refusal::invalid(format!(
                    "{method} {path}: {name} holds {other}, not a user id"
                ))),
            })
            .collect()
    };
    let role = |id: &str| -> Result<Target, Refusal> {
        Ok(Target::Role(
            role_key(id, body, response, policy).ok_or_else(|| {
                Refusal::invalid(format!(
                    "{method} {path}: role {id} has no known name; add it to [auth0.role_names] \
                 (or key roles by id: role_key = \"id\")"
                ))
            })?,
        ))
    };
    Ok(match (method, seg.as_slice()) {
        ("POST" | "DELETE", ["users", id, "roles" | "permissions"]) => vec![Target::user(id)],
        ("DELETE", ["users", id]) | ("DELETE", ["users", id, "sessions"]) => vec![Target::user(id)],
        ("PATCH", ["users", id]) => {
            let blocked =
                body.and_then(|b| b.get("blocked")).and_then(Value::as_bool) == Some(true);
            if blocked {
                vec![Target::user(id)]
            } else {
                Vec::new()
            }
        }
        ("POST" | "DELETE", ["roles", _, "users"]) => {
            list("users")?.iter().map(|u| Target::user(u)).collect()
        }
        ("POST", ["roles", id, "permissions"]) => vec![role(id)?],
        ("DELETE", ["roles", id, "permissions"]) => {
            let mut t = vec![role(id)?];
            let perms = body
                .and_then(|b| b.get("permissions"))
                .and_then(Value::as_array)
                .ok_or_else(|| {
                    Refusal::invalid(format!(
                        "{method} {path}: the body has no permissions array"
                    ))
                })?;
            for p in perms {
                let name = p
                    .get("permission_name")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| {
                        Refusal::invalid(format!(
                            "{method} {path}: a permission has no permission_name"
                        ))
                    })?;
                t.push(Target::Role(name.to_string()));
            }
            t
        }
        ("PATCH" | "DELETE", ["roles", id]) => vec![role(id)?],
        ("POST" | "DELETE", ["organizations", org, "members", id, "roles"]) => vec![Target::User {
            id: id.to_string(),
            org: Some(org.to_string()),
        }],
        ("DELETE", ["organizations", org, "members"]) => list("members")?
            .into_iter()
            .map(|id| Target::User {
                id,
                org: Some(org.to_string()),
            })
            .collect(),
        ("DELETE", ["sessions", id]) => vec![Target::Session(id.to_string())],
        _ => Vec::new(),
    })
}

/// The key of role `id`: the id itself, or its name (the configured table first, then a
/// `name` in the response or the request).
fn role_key(
    id: &str,
    body: Option<&Value>,
    response: Option<&Value>,
    policy: &Auth0Policy,
) -> Option<String> {
    match policy.role_key {
        RoleKey::Id => Some(id.to_string()),
        RoleKey::Name => policy.role_names.get(id).cloned().or_else(|| {
            [response, body]
                .into_iter()
                .flatten()
                .filter(|v| v.get("id").and_then(Value::as_str).is_none_or(|i| i == id))
                .find_map(|v| v.get("name").and_then(Value::as_str))
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy() -> Auth0Policy {
        Auth0Policy {
            tenants: vec![String::new()],
            role_key: RoleKey::Name,
            role_names: [("rol_admin".to_string(), "admin".to_string())].into(),
        }
    }

    fn sapi(log_id: &str, method: &str, path: &str, body: Value, status: u64) -> Value {
        json!({"log_id": log_id, "data": {
            "date": "2021-11-04T00:11:39.575Z", "type": "sapi",
            "description": "an operation", "client_id": "360yuN1BXP4u3tBChK5VOgekgGJ7CwLL",
            "details": {
                "request": {"method": method, "path": path, "query": {}, "body": body,
                            "channel": "https://manage.auth0.com/",
                            "auth": {"user": {"user_id": "auth0|6181ce2b0f293a006d158194"}, "strategy": "jwt"}},
                "response": {"statusCode": status, "body": {}}
            },
            "user_id": "auth0|6181ce2b0f293a006d158194", "log_id": log_id
        }})
    }

    const T: i64 = 1_635_984_700; // 2021-11-04T00:11:39.575Z, rounded up

    fn rules(entries: &[Value]) -> Vec<OwnedRule> {
        let body = serde_json::to_vec(entries).unwrap();
        map_batch(&body, &policy())
            .unwrap()
            .into_iter()
            .flat_map(|e| e.rules)
            .collect()
    }

    #[test]
    fn user_roles_permissions_and_blocks_revoke_the_user() {
        let r = rules(&[
            sapi(
                "1",
                "post",
                "/api/v2/users/auth0%7C123/roles",
                json!({"roles": ["rol_admin"]}),
                204,
            ),
            sapi(
                "2",
                "delete",
                "/api/v2/users/auth0%7C456/permissions",
                json!({}),
                204,
            ),
            sapi(
                "3",
                "patch",
                "/api/v2/users/auth0%7C789",
                json!({"blocked": true}),
                200,
            ),
            sapi(
                "4",
                "patch",
                "/api/v2/users/auth0%7C789",
                json!({"name": "x"}),
                200,
            ),
            sapi(
                "5",
                "delete",
                "/api/v2/users/google-oauth2%7C1",
                json!({}),
                204,
            ),
            sapi(
                "6",
                "post",
                "/api/v2/roles/rol_admin/users",
                json!({"users": ["auth0|a", "auth0|b"]}),
                200,
            ),
        ]);
        let keys: Vec<&[u8]> = r.iter().map(|r| r.key.as_slice()).collect();
        assert_eq!(
            keys,
            [
                &b"auth0|123"[..],
                b"auth0|456",
                b"auth0|789",
                b"google-oauth2|1",
                b"auth0|a",
                b"auth0|b"
            ]
        );
        assert!(r
            .iter()
            .all(|r| r.scope == Scope::Subject && r.at == T && r.tenant.is_empty()));
    }

    #[test]
    fn role_changes_revoke_the_role_and_removed_permissions() {
        let r = rules(&[
            sapi(
                "1",
                "post",
                "/api/v2/roles/rol_admin/permissions",
                json!({"permissions": [{"resource_server_identifier": "https://api", "permission_name": "read:reports"}]}),
                201,
            ),
            sapi(
                "2",
                "delete",
                "/api/v2/roles/rol_admin/permissions",
                json!({"permissions": [{"resource_server_identifier": "https://api", "permission_name": "delete:reports"}]}),
                204,
            ),
        ]);
        let keys: Vec<&[u8]> = r.iter().map(|r| r.key.as_slice()).collect();
        assert_eq!(keys, [&b"admin"[..], b"admin", b"delete:reports"]);
        assert!(r.iter().all(|r| r.scope == Scope::Role));
        // A name from the response body when the table does not know the role.
        let mut e = sapi(
            "3",
            "patch",
            "/api/v2/roles/rol_new",
            json!({"description": "d"}),
            200,
        );
        e["data"]["details"]["response"]["body"] = json!({"id": "rol_new", "name": "editor"});
        assert_eq!(rules(&[e])[0].key, b"editor");
        // Unknown name: the whole delivery is refused.
        let bad = sapi("4", "delete", "/api/v2/roles/rol_unknown", json!({}), 200);
        let body =
            serde_json::to_vec(&[sapi("5", "delete", "/api/v2/users/u", json!({}), 204), bad])
                .unwrap();
        let e = map_batch(&body, &policy()).unwrap_err();
        assert!(
            e.reason.contains("role_names") && e.reason.starts_with("entry 1"),
            "{e}"
        );
        let by_id = Auth0Policy {
            role_key: RoleKey::Id,
            ..policy()
        };
        assert_eq!(
            map_batch(&body, &by_id).unwrap()[1].rules[0].key,
            b"rol_unknown"
        );
    }

    #[test]
    fn organizations_are_tenants_and_tenants_fan_out() {
        let r = rules(&[sapi(
            "1",
            "post",
            "/api/v2/organizations/org_abc/members/auth0%7C1/roles",
            json!({"roles": ["rol_x"]}),
            204,
        )]);
        assert_eq!(
            r,
            [OwnedRule::new(Scope::Subject, b"org_abc", b"auth0|1", T)]
        );
        let p = Auth0Policy {
            tenants: vec!["".into(), "org_abc".into()],
            ..policy()
        };
        let body =
            serde_json::to_vec(&[sapi("2", "delete", "/api/v2/users/u/roles", json!({}), 204)])
                .unwrap();
        let e = map_batch(&body, &p).unwrap();
        let tenants: Vec<&[u8]> = e[0].rules.iter().map(|r| r.tenant.as_slice()).collect();
        assert_eq!(tenants, [&b""[..], b"org_abc"]);
    }

    #[test]
    fn unrelated_and_failed_entries_are_ignored() {
        let login = json!({"log_id": "9", "data": {"date": "2021-11-04T00:15:10.706Z", "type": "s", "user_id": "auth0|1"}});
        let e = map_batch(
            serde_json::to_string(&json!([
                login,
                sapi("1", "post", "/api/v2/log-streams", json!({}), 200),
                sapi("2", "post", "/api/v2/users/u/roles", json!({}), 400),
            ]))
            .unwrap()
            .as_bytes(),
            &policy(),
        )
        .unwrap();
        assert_eq!(e.len(), 3);
        assert!(e.iter().all(|e| e.rules.is_empty()));
        assert_eq!(e[0].id.as_deref(), Some("9"));
    }

    #[test]
    fn every_content_format_is_read() {
        let a = sapi("1", "delete", "/api/v2/users/u1", json!({}), 204);
        let b = sapi("2", "delete", "/api/v2/users/u2", json!({}), 204);
        let lines = format!("{a}\n{b}\n");
        let array = json!([a, b]).to_string();
        let object = json!({"0": a, "1": b}).to_string();
        for body in [lines, array, object] {
            let e = map_batch(body.as_bytes(), &policy()).unwrap();
            assert_eq!(e.len(), 2, "{body}");
            assert_eq!(e[1].rules[0].key, b"u2");
        }
        assert_eq!(
            map_batch(a.to_string().as_bytes(), &policy())
                .unwrap()
                .len(),
            1
        );
        assert!(map_batch(b"\"x\"", &policy()).is_err());
        assert!(map_batch(b"{\"a\": 1}\nnot json", &policy()).is_err());
    }

    #[test]
    fn sessions_and_deleted_users() {
        let r = rules(&[
            sapi("1", "delete", "/api/v2/sessions/sess_1", json!({}), 200),
            json!({"log_id": "2", "data": {"date": "2021-11-04T00:11:39Z", "type": "du", "user_id": "auth0|9"}}),
            json!({"log_id": "3", "data": {"date": "2021-11-04T00:11:39Z", "type": "slo", "details": {"session_id": "s-9"}}}),
        ]);
        assert_eq!(
            r,
            [
                OwnedRule::new(Scope::Session, b"", b"sess_1", T),
                OwnedRule::new(Scope::Subject, b"", b"auth0|9", T),
                OwnedRule::new(Scope::Session, b"", b"s-9", T),
            ]
        );
    }
}
