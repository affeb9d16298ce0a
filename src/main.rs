//! The `revledger` command line: create, revoke, check, inspect and demonstrate a ledger.
//! The logic lives in the binary-only `cli` module tree; the library's API is untouched.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
