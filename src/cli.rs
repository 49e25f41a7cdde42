//! The command line, one file per command under `cli/`: `serve`, `dev-token`,
//! `policy check` and `policy explain`, `audit verify`, `audit export` and `audit writes`,
//! `profile check`, `source check`, and `migrate` (here). This file holds the argument types
//! and the dispatch.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::config::{Config, ENV_LOG, LogFormat};

mod audit;
mod dev_token;
mod policy;
mod profile;
mod serve;
mod source;

use audit::{audit_export, audit_verify, audit_writes};
use policy::{policy_check, policy_explain, policy_explain_write};
use profile::profile_check;
use serve::serve;
use source::source_check;

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
    DevToken(dev_token::DevTokenArgs),
    /// Data-sharing agreements.
    Policy {
        /// What to do with them.
        #[command(subcommand)]
        action: PolicyCommand,
    },
    /// The audit log.
    Audit {
        /// What to do with it.
        #[command(subcommand)]
        action: AuditCommand,
    },
    /// The FHIR profiles Concord holds its sources to.
    Profile {
        /// What to do with them.
        #[command(subcommand)]
        action: ProfileCommand,
    },
    /// A configured source.
    Source {
        /// What to do with it.
        #[command(subcommand)]
        action: SourceCommand,
    },
    /// Apply database migrations and exit.
    Migrate {
        /// The config file.
        #[arg(long, default_value = "concord.toml")]
        config: PathBuf,
    },
}

/// `concord source …`.
#[derive(Debug, Subcommand)]
pub enum SourceCommand {
    /// Ask a configured source for a sample of each type the gateway serves and report how
    /// well it conforms to `[profiles] dir`: per type, the share conforming, and the most
    /// common problems. Exits non-zero when any sampled resource does not conform.
    Check {
        /// The config file (the source and `[profiles] dir`).
        #[arg(long, default_value = "concord.toml")]
        config: PathBuf,
        /// The source's id.
        #[arg(long)]
        source: String,
        /// Resources asked for per type.
        #[arg(long, default_value_t = 100)]
        sample: usize,
    },
}

/// `concord audit …`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Walk every hash chain and check every signed head; exit non-zero naming the first
    /// record that was modified, removed, inserted, moved or cut off the end.
    Verify {
        /// The config file (store and `[audit]` key).
        #[arg(long, default_value = "concord.toml")]
        config: PathBuf,
        /// A witness file of signed heads to check too (default: `[audit] witness_file`).
        #[arg(long)]
        witness: Option<PathBuf>,
    },
    /// Writes whose outcome the audit chain does not know: an intent recorded with no
    /// outcome after it (the gateway stopped, or its store failed, between sending the write
    /// and recording the source's answer). Lists each with what reading its source shows
    /// now (present as sent, absent, unclear, unreachable); with `--settle`, records each
    /// present or absent finding in the chain. Exits non-zero while any is left unsettled.
    Writes {
        /// The config file (store, `[audit]` key and the sources).
        #[arg(long, default_value = "concord.toml")]
        config: PathBuf,
        /// The writes left without an outcome (the one listing there is).
        #[arg(long, required = true)]
        unsettled: bool,
        /// Only intents recorded at least this many seconds ago: a younger write may still be
        /// on its way.
        #[arg(long, default_value_t = 600)]
        older_than: u64,
        /// Only intents from this time on (RFC 3339 or a UTC date); the whole log by default.
        #[arg(long)]
        since: Option<String>,
        /// Record each present or absent finding in the audit chain (as `--by`).
        #[arg(long, requires = "by")]
        settle: bool,
        /// Who settles: recorded as the settlement record's user.
        #[arg(long)]
        by: Option<String>,
    },
    /// Write audit records, oldest first, as NDJSON (whole records with their chain
    /// positions and hashes) or CSV (for a spreadsheet), streamed; a progress bar goes to a
    /// terminal's stderr.
    Export {
        /// The config file (store).
        #[arg(long, default_value = "concord.toml")]
        config: PathBuf,
        /// From this time on (RFC 3339, e.g. 2026-11-01T00:00:00Z, or a UTC date 2026-11-01).
        #[arg(long)]
        since: Option<String>,
        /// Before this time (same forms; a date means its start).
        #[arg(long)]
        until: Option<String>,
        /// `ndjson` or `csv`.
        #[arg(long, default_value = "ndjson", value_parser = ["ndjson", "csv"])]
        format: String,
        /// Write here instead of standard output.
        #[arg(long)]
        output: Option<PathBuf>,
    },
}

/// `concord profile …`.
#[derive(Debug, Subcommand)]
pub enum ProfileCommand {
    /// Check resource files (one JSON resource, NDJSON, or Bundles, whose entries are
    /// checked) against base FHIR R4 and the UK Core profiles; print each resource's
    /// problems with their element paths and rules, then a summary. Exits non-zero when any
    /// resource does not conform.
    Check {
        /// The profiles directory (relative to the working directory).
        #[arg(long, default_value = crate::profiles::DEFAULT_DIR)]
        profiles: PathBuf,
        /// Print only resources with problems (and the summary).
        #[arg(long)]
        problems_only: bool,
        /// The files to check.
        #[arg(required = true)]
        files: Vec<PathBuf>,
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
    /// For each resource the sources hold about a person, whether this token would be given
    /// it today and why: the agreement and rule that permit it, or each agreement's first
    /// failed condition. Asks every source, as an operator, whatever the token may see.
    Explain {
        /// The caller's bearer token (as the gateway would receive it).
        #[arg(long)]
        token: String,
        /// The person's NHS number.
        #[arg(long)]
        patient: String,
        /// Only this resource (`Type/id`, a gateway id such as `Condition/gp.123`).
        #[arg(long)]
        resource: Option<String>,
        /// Explain as if `X-Break-Glass-Reason` were sent (emergency access).
        #[arg(long)]
        break_glass: bool,
        /// Explain a write instead: `create` or `update` of `--type` in the source `--to`.
        #[arg(long, value_parser = ["create", "update"], requires_all = ["resource_type", "to"])]
        write: Option<String>,
        /// The type written (with `--write`), e.g. `Goal`.
        #[arg(long = "type", id = "resource_type")]
        resource_type: Option<String>,
        /// The source the write goes to (with `--write`), by its configured id.
        #[arg(long)]
        to: Option<String>,
        /// The config file (sources, store, keys and policy directory).
        #[arg(long, default_value = "concord.toml")]
        config: PathBuf,
    },
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve { config } => serve(&config).await,
        Command::DevToken(args) => dev_token::dev_token(args),
        Command::Policy {
            action: PolicyCommand::Check { dir },
        } => policy_check(&dir),
        Command::Policy {
            action:
                PolicyCommand::Explain {
                    token,
                    patient,
                    resource,
                    break_glass,
                    write,
                    resource_type,
                    to,
                    config,
                },
        } => match (write, resource_type, to) {
            (Some(write), Some(resource_type), Some(to)) => {
                policy_explain_write(&config, &token, &patient, &write, &resource_type, &to).await
            }
            _ => policy_explain(&config, &token, &patient, resource.as_deref(), break_glass).await,
        },
        Command::Audit {
            action: AuditCommand::Verify { config, witness },
        } => audit_verify(&config, witness.as_deref()).await,
        Command::Audit {
            action:
                AuditCommand::Writes {
                    config,
                    unsettled: _,
                    older_than,
                    since,
                    settle,
                    by,
                },
        } => {
            let settle_as = if settle { by.as_deref() } else { None };
            audit_writes(&config, older_than, since.as_deref(), settle_as).await
        }
        Command::Audit {
            action:
                AuditCommand::Export {
                    config,
                    since,
                    until,
                    format,
                    output,
                },
        } => {
            audit_export(
                &config,
                since.as_deref(),
                until.as_deref(),
                &format,
                output.as_deref(),
            )
            .await
        }
        Command::Profile {
            action:
                ProfileCommand::Check {
                    profiles,
                    problems_only,
                    files,
                },
        } => profile_check(&profiles, &files, problems_only),
        Command::Source {
            action:
                SourceCommand::Check {
                    config,
                    source,
                    sample,
                },
        } => source_check(&config, &source, sample).await,
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

pub(super) fn init_logging(config: &Config) {
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
