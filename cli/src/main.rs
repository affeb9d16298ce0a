//! The `revledger` command line: create, revoke, check, inspect and demonstrate a ledger;
//! publish rules to a stream and follow it. The logic lives in the `revledger_cli` library.

fn main() -> std::process::ExitCode {
    revledger_cli::main()
}
