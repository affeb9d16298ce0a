//! Keycloak events as the common webhook extensions send them: phasetwo's
//! `ext-event-webhook` (one event per POST, `type` `admin.RESOURCE-OPERATION` or
//! `access.TYPE`, `authDetails`, a `uid`) and `ext-event-http` (Keycloak's own
//! `EventRepresentation` / `AdminEventRepresentation`), each signed with the shared
//! secret: `X-Keycloak-Signature` is the hex HMAC (SHA-256 by default, or SHA-1) of the
//! body.
//!
//! | event | rule |
//! |---|---|
//! | admin `REALM_ROLE_MAPPING`, `CLIENT_ROLE_MAPPING` on `users/{id}/role-mappings/…` | Subject `{id}` |
//! | admin `GROUP_MEMBERSHIP` on `users/{id}/groups/{group}` | Subject `{id}` |
//! | admin `REALM_ROLE_MAPPING`, `CLIENT_ROLE_MAPPING` on `groups/{g}/role-mappings/…` | Role, each role of the representation |
//! | admin `REALM_ROLE` update/delete on `roles/{name}` (and its `composites`), `roles-by-id/{id}` | Role `esc(name)` |
//! | admin `CLIENT_ROLE` update/delete on `clients/{uuid}/roles/{name}` (and its `composites`) | Role `esc(clientId):esc(name)` |
//! | admin `USER` delete; update to `"enabled": false` (an update without its representation is refused); action `logout`, `reset-password` | Subject |
//! | admin `USER_SESSION` delete on `sessions/{id}` | Session |
//! | admin `REALM` action `logout-all` | Tenant, when `allow_tenant_rules` |
//! | user `LOGOUT` | Session (`sessionId`; Subject when it has none) |
//! | user `DELETE_ACCOUNT`, `USER_DISABLED_BY_*_LOCKOUT`, `UPDATE_PASSWORD`, `RESET_PASSWORD`, `UPDATE_CREDENTIAL`, `REMOVE_CREDENTIAL`, `UPDATE_TOTP`, `REMOVE_TOTP` | Subject |
//!
//! Keys are those of the `keycloak` claim mapping (DESIGN.md §7): the tenant is the
//! realm's token issuer (`iss`, formed from the realm's name by the configured template
//! or given per realm), roles are escaped by [`revledger::claims::keycloak_role_key`]. A
//! client role's client is the `clientId` tokens carry, found from the UUID admin events
//! name it by in the configured `clients` table. Failed operations (an `error`) and every
//! other event are ignored. The cutoff is the event's `time` (milliseconds), rounded up.

use super::config::KeycloakConfig;
use super::event::{cutoff_from_millis, MappedEvent, OwnedRule, Refusal, RefusalKind};
use revledger::claims::keycloak_role_key;
use revledger::Scope;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// How a sender's events are mapped (from its `[[keycloak]]` table).
#[derive(Clone, Debug, Default)]
pub struct KeycloakPolicy {
    /// `https://host/realms/{realm}`.
    pub issuer: Option<String>,
    /// Issuers by realm name or id.
    pub realms: BTreeMap<String, String>,
    /// Client UUIDs to client ids.
    pub clients: BTreeMap<String, String>,
    /// Whether `logout-all` gives a tenant rule.
    pub allow_tenant_rules: bool,
}

impl KeycloakPolicy {
    /// The policy of a configured sender.
    pub fn from_config(c: &KeycloakConfig) -> KeycloakPolicy {
        KeycloakPolicy {
            issuer: c.issuer.clone(),
            realms: c
                .realms
                .iter()
                .map(|(k, v)| (k.clone(), v.issuer.clone()))
                .collect(),
            clients: c.clients.clone(),
            allow_tenant_rules: c.allow_tenant_rules,
        }
    }
}

/// The HMAC algorithms the webhook extensions sign with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hmac {
    /// `HmacSHA256`.
    Sha256,
    /// `HmacSHA1` (the extensions' legacy setting).
    Sha1,
}

/// Checks `X-Keycloak-Signature`: the hex HMAC of the body with the shared secret.
pub fn verify_signature(
    signature: Option<&str>,
    body: &[u8],
    secret: &[u8],
    algorithm: Hmac,
) -> Result<(), Refusal> {
    use aws_lc_rs::hmac;
    let fail = |why: &str| Refusal::new(RefusalKind::AuthenticationFailed, why.to_string());
    let sig = signature.ok_or_else(|| fail("no X-Keycloak-Signature header"))?;
    let tag = hex::decode(sig.trim()).map_err(|_| fail("X-Keycloak-Signature is not hex"))?;
    let alg = match algorithm {
        Hmac::Sha256 => hmac::HMAC_SHA256,
        Hmac::Sha1 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
    };
    hmac::verify(&hmac::Key::new(alg, secret), body, &tag)
        .map_err(|_| fail("X-Keycloak-Signature does not match the body and the shared secret"))
}

/// Maps one delivery: an event, or an array of events.
pub fn map_body(body: &[u8], policy: &KeycloakPolicy) -> Result<Vec<MappedEvent>, Refusal> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| Refusal::invalid(format!("the body is not JSON: {e}")))?;
    match v {
        Value::Array(events) => {
            if events.len() > super::auth0::MAX_ENTRIES {
                return Err(Refusal::invalid("too many events in one delivery"));
            }
            events.iter().map(|e| map_event(e, policy)).collect()
        }
        one => Ok(vec![map_event(&one, policy)?]),
    }
}

fn text<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    obj.get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// Maps one event.
pub fn map_event(event: &Value, policy: &KeycloakPolicy) -> Result<MappedEvent, Refusal> {
    let obj = event
        .as_object()
        .ok_or_else(|| Refusal::invalid("an event is not a JSON object"))?;
    let id = text(obj, "id")
        .or_else(|| text(obj, "uid"))
        .map(str::to_string);
    let auth = obj.get("authDetails").and_then(Value::as_object);
    let type_ = text(obj, "type").unwrap_or("");
    let admin = obj.contains_key("operationType") || type_.starts_with("admin.");
    let failed = obj.get("error").is_some_and(|e| !e.is_null() && e != "");
    let kind = if admin {
        format!(
            "admin {} {}",
            text(obj, "resourceType").unwrap_or("?"),
            text(obj, "operationType").unwrap_or("?")
        )
    } else {
        type_.strip_prefix("access.").unwrap_or(type_).to_string()
    };
    if failed {
        return Ok(MappedEvent::ignored(id, kind));
    }
    let targets = if admin {
        admin_targets(obj, policy)?
    } else {
        user_targets(obj, auth, &kind)?
    };
    if targets.is_empty() {
        return Ok(MappedEvent::ignored(id, kind));
    }
    let time = obj
        .get("time")
        .and_then(Value::as_i64)
        .ok_or_else(|| Refusal::invalid(format!("{kind}: no time (milliseconds)")))?;
    let at = cutoff_from_millis(time);
    let issuer = issuer(obj, policy)?;
    let rules = targets
        .into_iter()
        .map(|t| match t {
            Target::Subject(s) => {
                OwnedRule::new(Scope::Subject, issuer.as_bytes(), s.as_bytes(), at)
            }
            Target::Session(s) => {
                OwnedRule::new(Scope::Session, issuer.as_bytes(), s.as_bytes(), at)
            }
            Target::Role(key) => OwnedRule::new(Scope::Role, issuer.as_bytes(), &key, at),
            Target::Tenant => OwnedRule::new(Scope::Tenant, issuer.as_bytes(), b"", at),
        })
        .collect();
    Ok(MappedEvent { id, kind, rules })
}

/// The realm's token issuer: the per-realm table (by name, then id), else the template.
fn issuer(obj: &Map<String, Value>, policy: &KeycloakPolicy) -> Result<String, Refusal> {
    let name = text(obj, "realmName");
    let id = text(obj, "realmId");
    for key in [name, id].into_iter().flatten() {
        if let Some(i) = policy.realms.get(key) {
            return Ok(i.clone());
        }
    }
    match (name, &policy.issuer) {
        (Some(n), Some(template)) => Ok(template.replace("{realm}", n)),
        _ => Err(Refusal::invalid(format!(
            "realm {} has no issuer: the event has no realmName for the issuer template; \
             add [keycloak.realms.\"{}\"]",
            name.or(id).unwrap_or("(none)"),
            id.or(name).unwrap_or("REALM")
        ))),
    }
}

enum Target {
    Subject(String),
    Session(String),
    Role(Vec<u8>),
    Tenant,
}

const SUBJECT_USER_EVENTS: [&str; 9] = [
    "DELETE_ACCOUNT",
    "USER_DISABLED_BY_PERMANENT_LOCKOUT",
    "USER_DISABLED_BY_TEMPORARY_LOCKOUT",
    "UPDATE_PASSWORD",
    "RESET_PASSWORD",
    "UPDATE_CREDENTIAL",
    "REMOVE_CREDENTIAL",
    "UPDATE_TOTP",
    "REMOVE_TOTP",
];

fn user_targets(
    obj: &Map<String, Value>,
    auth: Option<&Map<String, Value>>,
    kind: &str,
) -> Result<Vec<Target>, Refusal> {
    let field = |name: &str| text(obj, name).or_else(|| auth.and_then(|a| text(a, name)));
    let user = || {
        field("userId")
            .map(|u| Target::Subject(u.to_string()))
            .ok_or_else(|| Refusal::invalid(format!("{kind}: no userId")))
    };
    Ok(match kind {
        "LOGOUT" => match field("sessionId") {
            Some(sid) => vec![Target::Session(sid.to_string())],
            None => vec![user()?],
        },
        k if SUBJECT_USER_EVENTS.contains(&k) => vec![user()?],
        _ => Vec::new(),
    })
}

fn admin_targets(
    obj: &Map<String, Value>,
    policy: &KeycloakPolicy,
) -> Result<Vec<Target>, Refusal> {
    let (resource, op) = match (text(obj, "resourceType"), text(obj, "operationType")) {
        (Some(r), Some(o)) => (r.to_string(), o.to_string()),
        // ext-event-webhook also says it in `type`: admin.RESOURCE-OPERATION.
        _ => {
            let t = text(obj, "type")
                .and_then(|t| t.strip_prefix("admin."))
                .unwrap_or("");
            match t.rsplit_once('-') {
                Some((r, o)) => (r.to_string(), o.to_string()),
                None => return Ok(Vec::new()),
            }
        }
    };
    let path = text(obj, "resourcePath").unwrap_or("");
    let seg: Vec<&str> = path.trim_matches('/').split('/').collect();
    let what = format!("admin {resource} {op} {path}");
    let representation = || -> Result<Value, Refusal> {
        match obj.get("representation") {
            Some(Value::String(s)) => serde_json::from_str(s)
                .map_err(|e| Refusal::invalid(format!("{what}: representation is not JSON: {e}"))),
            Some(Value::Null) | None => Ok(Value::Null),
            Some(v) => Ok(v.clone()),
        }
    };
    let client_id = |uuid: &str| -> Result<&str, Refusal> {
        policy.clients.get(uuid).map(String::as_str).ok_or_else(|| {
            Refusal::invalid(format!(
                "{what}: client {uuid} is not in [keycloak.clients] (its clientId keys its roles in tokens)"
            ))
        })
    };
    let changed = matches!(op.as_str(), "UPDATE" | "DELETE");
    Ok(match (resource.as_str(), seg.as_slice()) {
        ("REALM_ROLE_MAPPING" | "CLIENT_ROLE_MAPPING", ["users", id, "role-mappings", ..]) => {
            vec![Target::Subject(id.to_string())]
        }
        ("GROUP_MEMBERSHIP", ["users", id, "groups", ..]) => vec![Target::Subject(id.to_string())],
        (
            "REALM_ROLE_MAPPING" | "CLIENT_ROLE_MAPPING",
            ["groups", _, "role-mappings", rest @ ..],
        ) => {
            let client = match rest {
                ["clients", uuid] => Some(client_id(uuid)?),
                _ => None,
            };
            let roles = representation()?;
            let roles = roles.as_array().ok_or_else(|| {
                Refusal::invalid(format!("{what}: the representation lists no roles"))
            })?;
            let mut out = Vec::new();
            for r in roles {
                let name = r
                    .get("name")
                    .and_then(Value::as_str)
                    .filter(|n| !n.is_empty());
                let name =
                    name.ok_or_else(|| Refusal::invalid(format!("{what}: a role has no name")))?;
                let client = match (
                    client,
                    r.get("clientRole").and_then(Value::as_bool),
                    r.get("containerId").and_then(Value::as_str),
                ) {
                    (Some(c), _, _) => Some(c),
                    (None, Some(true), Some(uuid)) => Some(client_id(uuid)?),
                    _ => None,
                };
                out.push(Target::Role(keycloak_role_key(
                    client.map(str::as_bytes),
                    name.as_bytes(),
                )));
            }
            out
        }
        ("REALM_ROLE", ["roles", name]) if changed => {
            vec![Target::Role(keycloak_role_key(None, name.as_bytes()))]
        }
        ("REALM_ROLE", ["roles", name, "composites", ..]) => {
            vec![Target::Role(keycloak_role_key(None, name.as_bytes()))]
        }
        ("REALM_ROLE" | "CLIENT_ROLE", ["roles-by-id", _]) if changed => {
            let r = representation()?;
            let name = r
                .get("name")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .ok_or_else(|| {
                    Refusal::invalid(format!("{what}: the representation does not name the role"))
                })?;
            let client = match (
                r.get("clientRole").and_then(Value::as_bool),
                r.get("containerId").and_then(Value::as_str),
            ) {
                (Some(true), Some(uuid)) => Some(client_id(uuid)?),
                (Some(true), None) => {
                    return Err(Refusal::invalid(format!(
                        "{what}: a client role without its client"
                    )))
                }
                _ => None,
            };
            vec![Target::Role(keycloak_role_key(
                client.map(str::as_bytes),
                name.as_bytes(),
            ))]
        }
        ("REALM_ROLE" | "CLIENT_ROLE", ["roles-by-id", _, "composites", ..]) => {
            return Err(Refusal::invalid(format!(
                "{what}: the composite role is named by id only; change composites through \
                 roles/{{name}}/composites, or revoke the role by hand"
            )))
        }
        ("CLIENT_ROLE", ["clients", uuid, "roles", name]) if changed => {
            vec![Target::Role(keycloak_role_key(
                Some(client_id(uuid)?.as_bytes()),
                name.as_bytes(),
            ))]
        }
        ("CLIENT_ROLE", ["clients", uuid, "roles", name, "composites", ..]) => {
            vec![Target::Role(keycloak_role_key(
                Some(client_id(uuid)?.as_bytes()),
                name.as_bytes(),
            ))]
        }
        ("USER", ["users", id]) if op == "DELETE" => vec![Target::Subject(id.to_string())],
        ("USER", ["users", id]) if op == "UPDATE" => {
            let user = representation()?;
            if user.is_null() {
                // Whether the user was disabled cannot be read: refused (DESIGN.md §9: an
                // event that cannot be mapped is refused and logged), as for a group's role
                // mapping without its representation, instead of being acknowledged as
                // ignored while the disabled user's tokens stay valid.
                return Err(Refusal::invalid(format!(
                    "{what}: no representation, so a disabled user cannot be told from any \
                     other update; turn on Include representation in the realm's admin events"
                )));
            }
            let disabled = user.get("enabled").and_then(Value::as_bool) == Some(false);
            if disabled {
                vec![Target::Subject(id.to_string())]
            } else {
                Vec::new()
            }
        }
        ("USER", ["users", id, "logout" | "reset-password"]) => {
            vec![Target::Subject(id.to_string())]
        }
        ("USER_SESSION", ["sessions", sid]) if op == "DELETE" => {
            vec![Target::Session(sid.to_string())]
        }
        ("REALM", ["logout-all"]) if op == "ACTION" => {
            if !policy.allow_tenant_rules {
                return Err(Refusal::new(
                    RefusalKind::AccessDenied,
                    format!("{what}: logging out a whole realm is a tenant rule, which this sender may not ask for (allow_tenant_rules)"),
                ));
            }
            vec![Target::Tenant]
        }
        _ => Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ISS: &str = "https://sso.example.com/realms/acme";
    const TIME: i64 = 1_686_328_227_484;
    const AT: i64 = 1_686_328_228;

    fn policy() -> KeycloakPolicy {
        KeycloakPolicy {
            issuer: Some("https://sso.example.com/realms/{realm}".into()),
            realms: BTreeMap::new(),
            clients: [(
                "6b1d5d5e-aaaa-4bbb-8ccc-000000000001".to_string(),
                "orders-api".to_string(),
            )]
            .into(),
            allow_tenant_rules: false,
        }
    }

    /// An admin event as ext-event-webhook sends it.
    fn admin(resource: &str, op: &str, path: &str, representation: Option<Value>) -> Value {
        let mut e = json!({
            "time": TIME, "realmId": "f3b3c8d6-realm-uuid", "realmName": "acme",
            "authDetails": {"realmId": "master", "clientId": "security-admin-console",
                            "userId": "a1", "ipAddress": "10.0.0.1", "username": "admin"},
            "resourceType": resource, "operationType": op, "resourcePath": path,
            "id": "e-1", "uid": "u-1", "type": format!("admin.{resource}-{op}"), "details": {}
        });
        if let Some(r) = representation {
            e["representation"] = json!(r.to_string());
        }
        e
    }

    fn rules(e: &Value) -> Vec<OwnedRule> {
        map_event(e, &policy()).unwrap().rules
    }

    #[test]
    fn role_mappings_and_groups_revoke_the_user() {
        let user = "6a2e0f5c-1111-4222-8333-444455556666";
        for (resource, path) in [
            (
                "REALM_ROLE_MAPPING",
                format!("users/{user}/role-mappings/realm"),
            ),
            (
                "CLIENT_ROLE_MAPPING",
                format!("users/{user}/role-mappings/clients/6b1d5d5e-aaaa-4bbb-8ccc-000000000001"),
            ),
            ("GROUP_MEMBERSHIP", format!("users/{user}/groups/9f9f")),
        ] {
            for op in ["CREATE", "DELETE"] {
                let e = admin(
                    resource,
                    op,
                    &path,
                    Some(json!([{"id": "r", "name": "super_admin"}])),
                );
                assert_eq!(
                    rules(&e),
                    [OwnedRule::new(
                        Scope::Subject,
                        ISS.as_bytes(),
                        user.as_bytes(),
                        AT
                    )],
                    "{resource} {op}"
                );
            }
        }
    }

    #[test]
    fn role_changes_revoke_the_role_keyed_as_the_mapping_keys_it() {
        let e = admin(
            "REALM_ROLE",
            "UPDATE",
            "roles/super:admin",
            Some(json!({"name": "super:admin"})),
        );
        assert_eq!(
            rules(&e),
            [OwnedRule::new(
                Scope::Role,
                ISS.as_bytes(),
                b"super%3Aadmin",
                AT
            )]
        );
        let e = admin(
            "CLIENT_ROLE",
            "DELETE",
            "clients/6b1d5d5e-aaaa-4bbb-8ccc-000000000001/roles/refund",
            None,
        );
        assert_eq!(rules(&e)[0].key, b"orders-api:refund");
        let e = admin(
            "REALM_ROLE",
            "CREATE",
            "roles/super_admin/composites",
            Some(json!([{"name": "billing"}])),
        );
        assert_eq!(rules(&e)[0].key, b"super_admin");
        let e = admin(
            "REALM_ROLE",
            "UPDATE",
            "roles-by-id/0c0c",
            Some(json!({"id": "0c0c", "name": "auditor", "clientRole": false})),
        );
        assert_eq!(rules(&e)[0].key, b"auditor");
        let e = admin(
            "CLIENT_ROLE",
            "DELETE",
            "roles-by-id/0d0d",
            Some(
                json!({"name": "ship", "clientRole": true, "containerId": "6b1d5d5e-aaaa-4bbb-8ccc-000000000001"}),
            ),
        );
        assert_eq!(rules(&e)[0].key, b"orders-api:ship");
        // A new role is in nobody's token yet.
        assert!(rules(&admin(
            "REALM_ROLE",
            "CREATE",
            "roles",
            Some(json!({"name": "new"}))
        ))
        .is_empty());
        // A group's role mappings: the roles named.
        let e = admin(
            "REALM_ROLE_MAPPING",
            "DELETE",
            "groups/77/role-mappings/realm",
            Some(json!([{"name": "a"}, {"name": "b%"}])),
        );
        let keys: Vec<Vec<u8>> = rules(&e).into_iter().map(|r| r.key).collect();
        assert_eq!(keys, [b"a".to_vec(), b"b%25".to_vec()]);
        // An unknown client: refused, naming the table.
        let e = admin(
            "CLIENT_ROLE",
            "UPDATE",
            "clients/unknown-uuid/roles/x",
            None,
        );
        assert!(map_event(&e, &policy())
            .unwrap_err()
            .reason
            .contains("[keycloak.clients]"));
    }

    #[test]
    fn users_disabled_deleted_logged_out() {
        let id = "6a2e";
        let subject = [OwnedRule::new(
            Scope::Subject,
            ISS.as_bytes(),
            id.as_bytes(),
            AT,
        )];
        assert_eq!(rules(&admin("USER", "DELETE", "users/6a2e", None)), subject);
        assert_eq!(
            rules(&admin(
                "USER",
                "UPDATE",
                "users/6a2e",
                Some(json!({"id": id, "enabled": false}))
            )),
            subject
        );
        assert!(rules(&admin(
            "USER",
            "UPDATE",
            "users/6a2e",
            Some(json!({"id": id, "enabled": true}))
        ))
        .is_empty());
        // Without its representation, a disabled user cannot be told from another update:
        // refused, not acknowledged as ignored.
        let blind = map_event(&admin("USER", "UPDATE", "users/6a2e", None), &policy());
        let e = blind.unwrap_err();
        assert_eq!(e.kind, RefusalKind::Invalid);
        assert!(e.to_string().contains("Include representation"), "{e}");
        assert_eq!(
            rules(&admin("USER", "ACTION", "users/6a2e/logout", None)),
            subject
        );
        assert_eq!(
            rules(&admin("USER_SESSION", "DELETE", "sessions/5e55", None)),
            [OwnedRule::new(Scope::Session, ISS.as_bytes(), b"5e55", AT)]
        );
        let all = admin("REALM", "ACTION", "logout-all", None);
        assert_eq!(
            map_event(&all, &policy()).unwrap_err().kind,
            RefusalKind::AccessDenied
        );
        let open = KeycloakPolicy {
            allow_tenant_rules: true,
            ..policy()
        };
        assert_eq!(
            map_event(&all, &open).unwrap().rules[0].scope,
            Scope::Tenant
        );
    }

    #[test]
    fn user_events_in_both_shapes() {
        // ext-event-http: Keycloak's EventRepresentation.
        let http = json!({"id": "ev-1", "time": TIME, "type": "LOGOUT", "realmId": "f3b3", "realmName": "acme",
                          "clientId": "account", "userId": "u-1", "sessionId": "s-1", "ipAddress": "10.0.0.2",
                          "details": {"redirect_uri": "https://app/"}});
        assert_eq!(
            rules(&http),
            [OwnedRule::new(Scope::Session, ISS.as_bytes(), b"s-1", AT)]
        );
        // ext-event-webhook: access.TYPE, ids in authDetails.
        let hook = json!({"time": TIME, "realmId": "f3b3", "realmName": "acme", "type": "access.UPDATE_PASSWORD",
                          "authDetails": {"realmId": "acme", "clientId": "account", "userId": "u-2",
                                          "sessionId": "s-2", "username": "jane"},
                          "details": {}, "id": "ev-2", "uid": "x"});
        let e = map_event(&hook, &policy()).unwrap();
        assert_eq!(
            e.rules,
            [OwnedRule::new(Scope::Subject, ISS.as_bytes(), b"u-2", AT)]
        );
        assert_eq!(e.id.as_deref(), Some("ev-2"));
        let login = json!({"time": TIME, "type": "access.LOGIN", "realmName": "acme", "authDetails": {"userId": "u"}});
        assert!(rules(&login).is_empty());
        let failed = json!({"time": TIME, "type": "LOGOUT_ERROR", "error": "invalid_token", "realmName": "acme"});
        assert!(rules(&failed).is_empty());
    }

    #[test]
    fn realms_without_issuer_are_refused() {
        let mut e = admin("USER", "DELETE", "users/x", None);
        e.as_object_mut().unwrap().remove("realmName");
        assert!(map_event(&e, &policy())
            .unwrap_err()
            .reason
            .contains("f3b3c8d6-realm-uuid"));
        let p = KeycloakPolicy {
            realms: [(
                "f3b3c8d6-realm-uuid".to_string(),
                "https://other/realms/acme".to_string(),
            )]
            .into(),
            ..policy()
        };
        assert_eq!(
            map_event(&e, &p).unwrap().rules[0].tenant,
            b"https://other/realms/acme"
        );
    }

    #[test]
    fn signatures_are_hex_hmacs_of_the_body() {
        let body = br#"{"a":1}"#;
        let good = {
            use aws_lc_rs::hmac;
            hex::encode(hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, b"s3cret"), body).as_ref())
        };
        assert!(verify_signature(Some(&good), body, b"s3cret", Hmac::Sha256).is_ok());
        assert!(
            verify_signature(Some(&good.to_uppercase()), body, b"s3cret", Hmac::Sha256).is_ok()
        );
        assert!(verify_signature(Some(&good), b"{\"a\":2}", b"s3cret", Hmac::Sha256).is_err());
        assert!(verify_signature(Some(&good), body, b"other", Hmac::Sha256).is_err());
        assert!(verify_signature(Some(&good), body, b"s3cret", Hmac::Sha1).is_err());
        assert!(verify_signature(None, body, b"s3cret", Hmac::Sha256).is_err());
        assert!(verify_signature(Some("zz"), body, b"s3cret", Hmac::Sha256).is_err());
    }
}
