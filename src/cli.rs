//! The command line: `concord serve`, `concord dev-token`, `concord policy check` and
//! `concord migrate`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::config::{Config, ENV_LOG, LogFormat};

/// Concord: one FHIR view of a person across every provider's record.
#[derive(Debug, Parser)]
#[command(name = "concord", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway.
    Serve {
        /// The config file.
        #[arg(long, default_value = "concord.toml")]
        config: PathBuf,
    },
    /// Sign a token with the demo key (DEMO ONLY: the key is published in the repository).
    DevToken {
        /// The config file (its [auth] issuer, audience, claim names and dev_signing_key).
        #[arg(long, default_value = "concord.toml")]
        config: PathBuf,
        /// The user's role, e.g. clinician, nurse, social-worker, ig-lead, patient.
        #[arg(long, default_value = "clinician")]
        role: String,
        /// The user's organisation (ODS code).
        #[arg(long, default_value = "A81001")]
        org: String,
        /// HL7 v3 PurposeOfUse.
        #[arg(long, default_value = "TREAT")]
        purpose: String,
        /// Make a patient token for the person with this NHS number.
        #[arg(long)]
        patient: Option<String>,
        /// For a carer's patient token: their relationship to the person (e.g. SON).
        #[arg(long)]
        relationship: Option<String>,
        /// The user id (`sub`).
        #[arg(long, default_value = "demo-user")]
        user: String,
        /// The user's name.
        #[arg(long, default_value = "Demo User")]
        name: String,
        /// SMART scopes; default `user/*.rs`, or `patient/*.rs` with --patient.
        #[arg(long)]
        scope: Option<String>,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
    },
    /// Data-sharing agreements.
    Policy {
        /// What to do with them.
        #[command(subcommand)]
        action: PolicyCommand,
    },
    /// Apply database migrations and exit.
    Migrate {
        /// The config file.
        #[arg(long, default_value = "concord.toml")]
        config: PathBuf,
    },
}

/// `concord policy …`.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Check every agreement file and the label map; exit non-zero on any error.
    Check {
        /// The policy directory.
        #[arg(default_value = "policies")]
        dir: PathBuf,
    },
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve { config } => serve(&config).await,
        Command::DevToken {
            config,
            role,
            org,
            purpose,
            patient,
            relationship,
            user,
            name,
            scope,
            ttl,
        } => {
            let config = Config::load(&config)?;
            let auth = config
                .auth
                .as_ref()
                .context("the config has no [auth] section")?;
            if let Some(nhs) = &patient {
                crate::fhir::NhsNumber::parse(nhs)
                    .map_err(|e| anyhow::anyhow!("--patient: {e}"))?;
            }
            let scope = scope.unwrap_or_else(|| {
                if patient.is_some() {
                    "patient/*.rs".into()
                } else {
                    "user/*.rs".into()
                }
            });
            let spec = crate::auth::DevToken {
                user,
                name,
                org,
                role,
                purpose_of_use: purpose,
                patient,
                relationship,
                scope,
                ttl_secs: ttl,
            };
            eprintln!(
                "concord: DEMO token, signed with the published demo key; never trust that key outside the demo"
            );
            println!("{}", crate::auth::sign_dev_token(auth, &spec)?);
            Ok(())
        }
        Command::Policy {
            action: PolicyCommand::Check { dir },
        } => policy_check(&dir),
        Command::Migrate { config } => {
            let config = Config::load(&config)?;
            init_logging(&config);
            let store = crate::store::Store::connect(&config.store.url, 1)
                .await
                .context("cannot connect to the store")?;
            store.migrate().await.context("migration failed")?;
            tracing::info!(store = store.backend(), "migrations applied");
            Ok(())
        }
    }
}

/// Prints every error and warning of a policy directory, then a one-line verdict.
fn policy_check(dir: &std::path::Path) -> anyhow::Result<()> {
    let today = jiff::Zoned::now().date();
    match crate::policy::PolicySet::load(dir, today) {
        Ok(set) => {
            for warning in &set.warnings {
                println!("warning: {warning}");
            }
            let rules: usize = set.agreements.iter().map(|a| a.rules.len()).sum();
            let in_force = set.agreements.iter().filter(|a| a.in_force(today)).count();
            println!(
                "{}: {} agreement(s) ({} in force today), {} rule(s), {} label mapping(s), {} warning(s); policy set {}",
                dir.display(),
                set.agreements.len(),
                in_force,
                rules,
                set.labels.mappings.len(),
                set.warnings.len(),
                set.hash
            );
            Ok(())
        }
        Err(errors) => {
            for error in &errors.0 {
                println!("error: {error}");
            }
            anyhow::bail!(
                "{}: {} error(s); the policy set cannot be used",
                dir.display(),
                errors.0.len()
            )
        }
    }
}

fn init_logging(config: &Config) {
    let filter =
        EnvFilter::try_from_env(ENV_LOG).unwrap_or_else(|_| EnvFilter::new(&config.log.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match config.log.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

async fn serve(path: &std::path::Path) -> anyhow::Result<()> {
    let config = Config::load(path)?;
    init_logging(&config);
    let state = crate::server::build_state(&config)
        .await
        .context("cannot start")?;
    tokio::spawn(state.policies.clone().watch(std::time::Duration::from_secs(
        config.policy.reload_check_secs,
    )));
    let tcp = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.server.listen))?;
    let listener = crate::server::tls::Listener::new(tcp, config.server.tls.as_ref())
        .context("cannot set up TLS")?;
    let mtls = config
        .server
        .tls
        .as_ref()
        .and_then(|t| t.client_ca_file.as_ref().map(|_| t.client_auth));
    tracing::info!(listen = %config.server.listen, base = %config.server.base_url(), tls = config.server.tls.is_some(), client_certificates = ?mtls, sources = config.sources.len(), store = state.federation.store().backend(), "concord is serving");
    crate::server::tls::serve(listener, crate::server::app(state), shutdown_signal())
        .await
        .context("server failed")?;
    tracing::info!("stopped");
    Ok(())
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
