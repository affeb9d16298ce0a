//! The workload the check profilers share (examples/profile_check and
//! examples/check_floor), so that both measure the same rules and tokens: rule `i` has
//! the scope `RULE_SCOPES[i mod 5]`, the tenant `tenant(i mod TENANTS)` and the key
//! `key("key_", i)`; tokens carry `key("abs_", ..)` keys, which no rule has.
#![allow(dead_code)] // each example uses part of this module

use revledger::Scope;

#[path = "../../benches/common/clock.rs"]
mod clock;
pub use clock::thread_cpu_ns;

/// The scope of rule `i` is `RULE_SCOPES[i % 5]`.
pub const RULE_SCOPES: [Scope; 5] = [
    Scope::Subject,
    Scope::Session,
    Scope::Role,
    Scope::Client,
    Scope::Token,
];

/// Tenants the rules and tokens are spread over.
pub const TENANTS: u64 = 100;

/// `tenant-000042`.
pub fn tenant(i: u64) -> Vec<u8> {
    format!("tenant-{i:06}").into_bytes()
}

/// `prefix` and 16 hex digits of a scrambled `i`: 20 bytes with a four-byte prefix.
pub fn key(prefix: &str, i: u64) -> Vec<u8> {
    format!("{prefix}{:016x}", i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).into_bytes()
}

/// The next command-line argument parsed, or `default` when it is missing or does not
/// parse.
pub fn arg<T: std::str::FromStr>(args: &mut impl Iterator<Item = String>, default: T) -> T {
    args.next().and_then(|a| a.parse().ok()).unwrap_or(default)
}
