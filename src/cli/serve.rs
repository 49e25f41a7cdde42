//! `concord serve`: the gateway, until SIGTERM or ctrl-c.

use anyhow::Context;

use super::init_logging;
use crate::config::Config;

pub(super) async fn serve(path: &std::path::Path) -> anyhow::Result<()> {
    let config = Config::load(path)?;
    init_logging(&config);
    let state = crate::server::build_state(&config)
        .await
        .context("cannot start")?;
    state.spawn_fleet();
    state.spawn_locator();
    tokio::spawn(
        state
            .door
            .policies()
            .clone()
            .watch(std::time::Duration::from_secs(
                config.policy.reload_check_secs,
            )),
    );
    let tcp = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.server.listen))?;
    let limits = crate::server::tls::Limits::from_config(&config.server);
    if let Some(files) = open_file_limit()
        && limits.max_connections as u64 + FILES_BESIDES_CONNECTIONS > files
    {
        tracing::warn!(
            max_connections = limits.max_connections,
            open_file_limit = files,
            "[server] max_connections leaves fewer than {FILES_BESIDES_CONNECTIONS} of the process's open files for the store, sources, spool and policy reloads; lower it or raise the limit (ulimit -n, LimitNOFILE)"
        );
    }
    let listener = crate::server::tls::Listener::new(tcp, config.server.tls.as_ref())
        .context("cannot set up TLS")?
        .with_limits(limits)
        .with_metrics(state.metrics.clone());
    let audit = state.audit.stopped();
    let mtls = config
        .server
        .tls
        .as_ref()
        .and_then(|t| t.client_ca_file.as_ref().map(|_| t.client_auth));
    tracing::info!(listen = %config.server.listen, base = %config.server.base_url(), tls = config.server.tls.is_some(), client_certificates = ?mtls, sources = config.sources.len(), store = state.door.federation().store().backend(), "concord is serving");
    crate::server::tls::serve(listener, crate::server::app(state), shutdown_signal())
        .await
        .context("server failed")?;
    // Every connection, and with it every handle to the audit log, is gone: the writer
    // commits what is queued, signs its head and ends. Records already acknowledged are in
    // the store or the spool, whether or not it finishes in time.
    if tokio::time::timeout(limits.shutdown_reserve(), audit.wait())
        .await
        .is_err()
    {
        tracing::warn!("the audit log did not close before the shutdown deadline");
    }
    tracing::info!("stopped");
    Ok(())
}

/// Open files the gateway needs besides its client connections: the store's pool, sources,
/// the audit spool and witness, policy reloads, logs.
const FILES_BESIDES_CONNECTIONS: u64 = 128;

/// The process's soft limit on open files, where the platform says (Linux).
fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}
