//! The library (Rust crate, `librevledger.so`/`.a`) stays lean: none of the command
//! line's or the services' crates (argument parsing, JSON output, the Redis client,
//! TLS, HTTP, async runtimes) among its normal dependencies, direct or transitive. They
//! belong to `revledger-cli` (cli/).

use std::collections::{BTreeSet, HashMap};
use std::process::Command;

/// Crates that only the command line and its services may use.
const CLI_ONLY: &[&str] = &[
    "clap",
    "serde_json",
    "redis",
    "tokio",
    "hyper",
    "axum",
    "reqwest",
    "rustls",
    "aws-lc-rs",
    "openssl",
    "prometheus-client",
];

#[test]
fn the_library_depends_on_no_crate_of_the_command_line() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--offline",
            "--manifest-path",
        ])
        .arg(format!("{root}/Cargo.toml"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let names: HashMap<&str, &str> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    let nodes: HashMap<&str, &serde_json::Value> = meta["resolve"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["id"].as_str().unwrap(), n))
        .collect();
    // The package of the root manifest: the library.
    let library = meta["resolve"]["root"].as_str().expect("a root package");
    assert_eq!(names[library], "revledger");
    // Normal (not dev, not build) dependencies, transitively.
    let mut seen = BTreeSet::new();
    let mut todo = vec![library];
    while let Some(id) = todo.pop() {
        for dep in nodes[id]["deps"].as_array().unwrap() {
            let normal = dep["dep_kinds"]
                .as_array()
                .unwrap()
                .iter()
                .any(|k| k["kind"].is_null());
            let dep_id = dep["pkg"].as_str().unwrap();
            if normal && seen.insert(names[dep_id]) {
                todo.push(dep_id);
            }
        }
    }
    let offending: Vec<&&str> = CLI_ONLY.iter().filter(|c| seen.contains(**c)).collect();
    assert!(
        offending.is_empty(),
        "librevledger depends on {offending:?}, crates of the command line; its dependencies: {seen:?}"
    );
    assert!(seen.contains("memmap2"), "{seen:?}");
}
