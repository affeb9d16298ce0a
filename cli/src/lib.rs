//! The `revledger` command line and the services it runs, kept out of the library so that
//! `librevledger` (Rust, C) stays lean: argument parsing (clap), JSON output (serde_json)
//! and the Redis client live here, not in the crate at the repository root.
//!
//! - [`sync`]: fleet sync over Redis Streams (publish rules; follow a stream into a ledger);
//! - [`ingest`]: `revledger ingest`, the HTTP receiver of identity-provider events;
//! - `cli`: the commands of the `revledger` binary (`src/main.rs` calls [`main`]).

mod cli;
pub mod ingest;
pub mod sync;

pub use cli::main;
