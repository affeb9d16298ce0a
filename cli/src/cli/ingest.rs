//! `ingest`: the HTTP receiver of identity-provider events (docs/INGEST.md), through
//! `revledger_cli::ingest`.

use super::{CliError, CliResult, IngestArgs, LogFormat};
use crate::ingest::config::Config;
use std::process::ExitCode;

/// `ingest`: runs the receiver until SIGTERM or SIGINT, or checks its configuration.
pub fn ingest(a: &IngestArgs) -> CliResult {
    if a.check_config {
        let summary =
            crate::ingest::check_config(&a.config).map_err(|e| CliError::new(e.to_string()))?;
        println!("{summary}");
        return Ok(ExitCode::SUCCESS);
    }
    let config = Config::load(&a.config).map_err(|e| CliError::new(e.to_string()))?;
    init_logs(a.log_format, a.verbose);
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all().thread_name("revledger-ingest");
    if let Some(n) = config.server.workers {
        rt.worker_threads(n);
    }
    let rt = rt
        .build()
        .map_err(|e| CliError::new(format!("cannot start the runtime: {e}")))?;
    rt.block_on(crate::ingest::run(config, a.metrics_listen, stop_signal()))
        .map_err(|e| {
            tracing::error!(error = %e, "revledger ingest stopped");
            CliError::new(e.to_string())
        })?;
    Ok(ExitCode::SUCCESS)
}

fn init_logs(format: LogFormat, verbose: bool) {
    let level = if verbose {
        tracing::Level::DEBUG
    } else {
        tracing::Level::INFO
    };
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.with_ansi(false).try_init(),
    };
}

/// Resolves on the first SIGTERM or SIGINT.
async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the process still stops on the default action.
        return std::future::pending().await;
    };
    let which = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    tracing::info!(signal = which, "stopping");
}
