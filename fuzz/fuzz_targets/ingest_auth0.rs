//! `revledger ingest`, Auth0 Log Streams: arbitrary bytes as a delivery (JSON Lines, a
//! JSON array or object of log entries). Never a panic; the same answer twice; a delivery
//! that maps gives one mapped event per entry.
#![no_main]

use libfuzzer_sys::fuzz_target;
use revledger_cli::ingest::auth0::{entries, map_batch, Auth0Policy};
use revledger_cli::ingest::config::RoleKey;

fuzz_target!(|input: &[u8]| {
    let Some((&mode, body)) = input.split_first() else {
        return;
    };
    let policy = Auth0Policy {
        tenants: if mode & 1 == 0 {
            vec![String::new()]
        } else {
            vec![String::new(), "org_abc".into()]
        },
        role_key: if mode & 2 == 0 {
            RoleKey::Name
        } else {
            RoleKey::Id
        },
        role_names: [("rol_admin".to_string(), "admin".to_string())].into(),
    };
    let first = map_batch(body, &policy);
    assert_eq!(first, map_batch(body, &policy), "mapping is deterministic");
    if let Ok(events) = first {
        assert_eq!(
            events.len(),
            entries(body).expect("mapped, so readable").len()
        );
    }
});
