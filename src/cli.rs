//! The command line: `concord serve`, `concord dev-token`, `concord policy check`,
//! `concord profile check`, `concord audit …` and `concord migrate`.

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
        /// HL7 v3 PurposeOfUse; by default TREAT for staff, PATRQT for a patient token and
        /// FAMRQT for a carer's (as the gateway assumes when a token names none).
        #[arg(long)]
        purpose: Option<String>,
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
        /// The config file (store and [audit] key).
        #[arg(long, default_value = "concord.toml")]
        config: PathBuf,
        /// A witness file of signed heads to check too (default: `[audit] witness_file`).
        #[arg(long)]
        witness: Option<PathBuf>,
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
        /// The config file (sources, store, keys and policy directory).
        #[arg(long, default_value = "concord.toml")]
        config: PathBuf,
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
            let purpose = purpose.unwrap_or_else(|| {
                match (&patient, &relationship) {
                    (None, _) => "TREAT",
                    (Some(_), Some(_)) => "FAMRQT",
                    (Some(_), None) => "PATRQT",
                }
                .into()
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
        Command::Policy {
            action:
                PolicyCommand::Explain {
                    token,
                    patient,
                    resource,
                    break_glass,
                    config,
                },
        } => policy_explain(&config, &token, &patient, resource.as_deref(), break_glass).await,
        Command::Audit {
            action: AuditCommand::Verify { config, witness },
        } => audit_verify(&config, witness.as_deref()).await,
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

/// `concord source check`.
async fn source_check(path: &std::path::Path, id: &str, sample: usize) -> anyhow::Result<()> {
    use std::collections::{BTreeMap, HashMap};
    let config = Config::load(path)?;
    init_logging(&config);
    if sample == 0 {
        anyhow::bail!("--sample must be at least 1");
    }
    let chosen: Vec<_> = config
        .sources
        .iter()
        .filter(|s| s.id == id)
        .cloned()
        .collect();
    if chosen.is_empty() {
        let known: Vec<&str> = config.sources.iter().map(|s| s.id.as_str()).collect();
        anyhow::bail!(
            "no source `{id}` in the config (sources: {})",
            known.join(", ")
        );
    }
    let profiles = crate::profiles::Profiles::load(&config.profiles.dir).with_context(|| {
        format!(
            "cannot load the profiles in `{}`",
            config.profiles.dir.display()
        )
    })?;
    let metrics = crate::telemetry::Metrics::new();
    let sources = crate::sources::build(&chosen, &metrics).await?;
    let Some(source) = sources.first() else {
        anyhow::bail!("the source `{id}` could not be built");
    };
    let info = source.info();
    println!(
        "source {} ({}, {}): up to {sample} resource(s) per type, checked against {}",
        info.id,
        info.name,
        info.ods,
        config.profiles.dir.display()
    );
    let types = std::iter::once("Patient").chain(crate::fhir::search::TYPES.iter().map(|t| t.name));
    let mut rows: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut common: HashMap<(String, crate::profiles::Rule), usize> = HashMap::new();
    let mut failed_types = Vec::new();
    for kind in types {
        if !source.may_hold(kind) {
            continue;
        }
        let fetched = match source.sample(kind, sample).await {
            Ok(f) => f,
            Err(e) => {
                failed_types.push(format!("{kind}: {e}"));
                continue;
            }
        };
        for resource in &fetched.resources {
            let problems = profiles.check(resource);
            let row = rows.entry(kind).or_default();
            row.0 += 1;
            if problems.is_empty() {
                row.1 += 1;
            }
            for p in problems {
                *common.entry((strip_indexes(&p.path), p.rule)).or_default() += 1;
            }
        }
    }
    println!("\n| type | sampled | conform | share |");
    println!("| --- | ---: | ---: | ---: |");
    let (mut total, mut good) = (0, 0);
    for (kind, (n, ok)) in &rows {
        total += n;
        good += ok;
        println!("| {kind} | {n} | {ok} | {:.1}% |", share(*ok, *n));
    }
    println!("| all | {total} | {good} | {:.1}% |", share(good, total));
    if !common.is_empty() {
        let mut list: Vec<_> = common.into_iter().collect();
        list.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        println!("\nmost common problems:");
        for ((path, rule), n) in list.iter().take(10) {
            println!("  {n:>6} × {path} [{rule}]");
        }
    }
    for failure in &failed_types {
        println!("could not sample {failure}");
    }
    if !failed_types.is_empty() {
        anyhow::bail!("{} type(s) could not be sampled", failed_types.len());
    }
    if good < total {
        anyhow::bail!(
            "{} of {total} sampled resource(s) do not conform",
            total - good
        );
    }
    Ok(())
}

fn share(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        100.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// `Patient.identifier[0].system` → `Patient.identifier.system`, so problems group by element.
fn strip_indexes(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut skipping = false;
    for c in path.chars() {
        match c {
            '[' => skipping = true,
            ']' => skipping = false,
            _ if !skipping => out.push(c),
            _ => {}
        }
    }
    out
}

/// `concord profile check`.
fn profile_check(
    dir: &std::path::Path,
    files: &[PathBuf],
    problems_only: bool,
) -> anyhow::Result<()> {
    use std::collections::HashMap;
    use std::fmt::Write as _;
    let started = std::time::Instant::now();
    let profiles = crate::profiles::Profiles::load(dir)
        .with_context(|| format!("cannot load the profiles in `{}`", dir.display()))?;
    let mut out = String::new();
    let (mut checked, mut failing, mut problems) = (0usize, 0usize, 0usize);
    let mut by_rule: HashMap<crate::profiles::Rule, usize> = HashMap::new();
    let mut common: HashMap<(String, crate::profiles::Rule), usize> = HashMap::new();
    for file in files {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read `{}`", file.display()))?;
        for (place, parsed) in resources_in(&text) {
            checked += 1;
            let (name, found) = match parsed {
                Ok(resource) => (resource_name(&resource), profiles.check(&resource)),
                Err(message) => (
                    "(not JSON)".to_owned(),
                    vec![crate::profiles::Problem {
                        path: "Resource".into(),
                        rule: crate::profiles::Rule::Structure,
                        message,
                    }],
                ),
            };
            if found.is_empty() {
                if !problems_only {
                    let _ = writeln!(out, "{name}  ({}{place}): conforms", file.display());
                }
                continue;
            }
            failing += 1;
            problems += found.len();
            let _ = writeln!(
                out,
                "{name}  ({}{place}): {} problem(s)",
                file.display(),
                found.len()
            );
            for problem in &found {
                let _ = writeln!(out, "  {problem}");
                *by_rule.entry(problem.rule).or_default() += 1;
                *common
                    .entry((without_indexes(&problem.path), problem.rule))
                    .or_default() += 1;
            }
            if out.len() > 1 << 16 {
                print!("{out}");
                out.clear();
            }
        }
    }
    print!("{out}");
    let mut rules: Vec<_> = by_rule.into_iter().collect();
    rules.sort();
    let rules: Vec<String> = rules.iter().map(|(r, n)| format!("{r} {n}")).collect();
    let mut common: Vec<_> = common.into_iter().collect();
    common.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    if !common.is_empty() {
        println!("most common problems:");
        for ((path, rule), n) in common.iter().take(10) {
            println!("  {n:>6} × {path} [{rule}]");
        }
    }
    println!(
        "checked {checked} resource(s) in {} file(s) against {}: {} conform, {failing} do not ({problems} problem(s){}{}), {:.2} s",
        files.len(),
        dir.display(),
        checked - failing,
        if rules.is_empty() { "" } else { ": " },
        rules.join(", "),
        started.elapsed().as_secs_f64()
    );
    if failing > 0 {
        anyhow::bail!("{failing} of {checked} resource(s) do not conform");
    }
    Ok(())
}

/// The resources of a file, each with where it is (`:line` for NDJSON, ` entry[i]` for a
/// Bundle): one JSON resource, a Bundle (its entries' resources), or NDJSON.
fn resources_in(text: &str) -> Vec<(String, Result<serde_json::Value, String>)> {
    let whole = serde_json::from_str::<serde_json::Value>(text);
    match whole {
        Ok(value) if value.get("resourceType").and_then(|t| t.as_str()) == Some("Bundle") => value
            .get("entry")
            .and_then(|e| e.as_array())
            .into_iter()
            .flatten()
            .enumerate()
            .filter_map(|(i, entry)| {
                entry
                    .get("resource")
                    .map(|r| (format!(" entry[{i}]"), Ok(r.clone())))
            })
            .collect(),
        Ok(value) => vec![(String::new(), Ok(value))],
        Err(_) => text
            .lines()
            .enumerate()
            .filter(|(_, line)| !line.trim().is_empty())
            .map(|(i, line)| {
                (
                    format!(":{}", i + 1),
                    serde_json::from_str(line).map_err(|e| format!("not JSON: {e}")),
                )
            })
            .collect(),
    }
}

/// `Type/id` of a resource, with `?` for what is missing.
fn resource_name(resource: &serde_json::Value) -> String {
    let part = |key: &str| resource.get(key).and_then(|v| v.as_str()).unwrap_or("?");
    format!("{}/{}", part("resourceType"), part("id"))
}

/// `Patient.identifier[0].system` → `Patient.identifier.system`, to count problems by place.
fn without_indexes(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut rest = path;
    while let Some(at) = rest.find('[') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        match after.find(']') {
            Some(close) if after[..close].bytes().all(|b| b.is_ascii_digit()) => {
                rest = &after[close + 1..];
            }
            _ => {
                out.push('[');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// A time given to `audit export`: RFC 3339, or a UTC date (its start), as Unix microseconds.
fn export_time(text: &str, flag: &str) -> anyhow::Result<i64> {
    if let Ok(t) = text.parse::<jiff::Timestamp>() {
        return Ok(t.as_microsecond());
    }
    let date: jiff::civil::Date = text.parse().with_context(|| {
        format!("{flag} `{text}` is neither an RFC 3339 time (2026-11-01T09:00:00Z) nor a date (2026-11-01)")
    })?;
    Ok(date
        .to_zoned(jiff::tz::TimeZone::UTC)
        .context("a date out of range")?
        .timestamp()
        .as_microsecond())
}

/// `concord audit export`.
async fn audit_export(
    path: &std::path::Path,
    since: Option<&str>,
    until: Option<&str>,
    format: &str,
    output: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    let config = Config::load(path)?;
    init_logging(&config);
    let since = since.map(|s| export_time(s, "--since")).transpose()?;
    let until = until.map(|u| export_time(u, "--until")).transpose()?;
    if let (Some(s), Some(u)) = (since, until)
        && s >= u
    {
        anyhow::bail!("--since must be before --until");
    }
    let format = match format {
        "csv" => crate::audit::export::Format::Csv,
        _ => crate::audit::export::Format::Ndjson,
    };
    let store = crate::store::Store::connect(&config.store.url, 1)
        .await
        .context("cannot connect to the store")?;
    let mut out: Box<dyn std::io::Write> = match output {
        Some(file) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(file)
                .with_context(|| format!("cannot create `{}`", file.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let terminal = std::io::stderr().is_terminal();
    let total = if terminal {
        u64::try_from(store.audit_count(since, until).await?).unwrap_or(0)
    } else {
        0
    };
    let started = std::time::Instant::now();
    let mut shown = std::time::Instant::now();
    let mut progress = |done: u64| {
        if terminal && (shown.elapsed().as_millis() >= 200 || done == total) {
            shown = std::time::Instant::now();
            eprint!("\r{}", progress_bar(done, total, started.elapsed()));
        }
    };
    let written =
        crate::audit::export::export(&store, since, until, format, &mut out, &mut progress).await?;
    if terminal {
        eprintln!();
    }
    eprintln!(
        "exported {written} audit record(s) in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `[#########-----------]  45%  450000/1000000 records  12.3 s`
fn progress_bar(done: u64, total: u64, elapsed: std::time::Duration) -> String {
    const WIDTH: u64 = 30;
    let filled = (done.min(total) * WIDTH)
        .checked_div(total)
        .unwrap_or(WIDTH);
    let percent = (done.min(total) * 100).checked_div(total).unwrap_or(100);
    format!(
        "[{}{}] {percent:>3}%  {done}/{total} records  {:.1} s",
        "#".repeat(filled as usize),
        "-".repeat((WIDTH - filled) as usize),
        elapsed.as_secs_f64()
    )
}

/// `concord audit verify`.
async fn audit_verify(
    path: &std::path::Path,
    witness: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let config = Config::load(path)?;
    init_logging(&config);
    let audit = config
        .audit
        .as_ref()
        .context("the config has no [audit] section")?;
    let key = crate::audit::AuditKey::load(audit.key_file.as_deref(), audit.key_env.as_deref())?;
    let store = crate::store::Store::connect(&config.store.url, 1)
        .await
        .context("cannot connect to the store")?;
    let mut heads = crate::audit::HeadCheck::default();
    match &audit.head_signing_key_file {
        Some(file) => {
            heads.public_key = Some(
                crate::audit::heads::HeadSigner::load(file)?
                    .public_key()
                    .to_owned(),
            );
        }
        None => println!(
            "note: [audit] head_signing_key_file is not set: signatures of heads are not checked"
        ),
    }
    match (witness, audit.witness_file.as_deref()) {
        (Some(file), _) => heads.witnessed = crate::audit::heads::read_witness(file)?,
        (None, Some(file)) if file.exists() => {
            heads.witnessed = crate::audit::heads::read_witness(file)?;
        }
        (None, Some(file)) => println!(
            "note: the witness file {} does not exist (yet): only the heads in the store are checked",
            file.display()
        ),
        (None, None) => {}
    }
    let started = std::time::Instant::now();
    let (spools, spooled) = crate::audit::spool::pending(&audit.spool_dir)?;
    match crate::audit::verify_with_heads(&store, &key, &heads).await? {
        Ok(v) => {
            println!(
                "audit log verified: {} record(s) in {} chain(s), {} signed head(s), {:.2} s",
                v.records,
                v.chains,
                v.heads,
                started.elapsed().as_secs_f64()
            );
            if spooled > 0 {
                println!(
                    "note: {spooled} record(s) in {spools} spool file(s) under {} are not in the store yet (a gateway moves them in when the store takes writes)",
                    audit.spool_dir.display()
                );
            }
            Ok(())
        }
        Err(broken) => {
            println!("audit log BROKEN: {broken}");
            anyhow::bail!("the audit log does not verify")
        }
    }
}

/// `concord policy explain`.
async fn policy_explain(
    path: &std::path::Path,
    token: &str,
    nhs: &str,
    only: Option<&str>,
    break_glass: bool,
) -> anyhow::Result<()> {
    let config = Config::load(path)?;
    init_logging(&config);
    let nhs = crate::fhir::NhsNumber::parse(nhs).map_err(|e| anyhow::anyhow!("--patient: {e}"))?;
    let state = crate::server::build_state(&config)
        .await
        .context("cannot start")?;
    let mut principal = state
        .verifier
        .verify(token.trim())
        .map_err(|e| anyhow::anyhow!("--token: {e}"))?;
    if break_glass {
        principal.break_glass = Some("(policy explain)".into());
    }
    let set = state.policies.current();
    // As an operator: every source, every type, so that withheld resources are seen too.
    let identify: std::collections::HashSet<String> = state
        .federation
        .sources()
        .iter()
        .map(|s| s.info().id.clone())
        .collect();
    let mut all_types: Vec<&'static str> =
        crate::fhir::search::TYPES.iter().map(|t| t.name).collect();
    all_types.push("Patient");
    let types: std::collections::HashMap<String, Vec<&'static str>> = identify
        .iter()
        .map(|id| (id.clone(), all_types.clone()))
        .collect();
    let plan = crate::federation::Plan {
        identify: &identify,
        types: &types,
        labels: &set.labels,
        labels_key: set.labels_key(),
    };
    let deadline = tokio::time::Instant::now() + config.server.request_timeout();
    let resolution = state.federation.resolve_nhs(&nhs, &plan, deadline).await?;
    for report in &resolution.reports {
        println!("warning: source {} could not be asked", report.source.id);
    }
    let Some(person) = resolution.person else {
        anyhow::bail!("no source knows a person with this NHS number");
    };
    if !principal.may_see_person(&person.nhs) {
        println!("the token is a patient token for another person: everything is withheld");
        return Ok(());
    }
    let collected = state.federation.collect(&person, &plan, deadline).await;
    for report in &collected.reports {
        println!(
            "warning: source {} did not answer fully; its records may be missing below",
            report.source.id
        );
    }
    let records = state.federation.store().consents(person.id).await?;
    let consent = crate::policy::consent::standing_of(&records);
    let explained = crate::server::access::explain_all(
        &set,
        &principal,
        &state.federation,
        &person,
        &consent,
        &collected.resources,
    );
    println!(
        "policy set {} · {} · user {} org {} role {} purpose {}{}",
        set.hash,
        crate::policy::live::today(),
        principal.user,
        principal.org.as_deref().unwrap_or("-"),
        principal.role.as_deref().unwrap_or("-"),
        principal.purpose_of_use,
        if break_glass {
            " · emergency access"
        } else {
            ""
        }
    );
    let mut shown = 0;
    for (name, explanation) in &explained {
        if only.is_some_and(|o| o != name) {
            continue;
        }
        shown += 1;
        match &explanation.permit {
            Some(p) => println!(
                "PERMIT    {name}  by {} rule {}{}{}",
                p.agreement.id,
                p.rule.id,
                if p.emergency {
                    " (emergency access)"
                } else {
                    ""
                },
                if p.rule.redact.is_empty() {
                    String::new()
                } else {
                    format!(", redacting {}", p.rule.redact.join(", "))
                }
            ),
            None => {
                println!("WITHHELD  {name}");
                for refusal in &explanation.refusals {
                    match &refusal.rule {
                        Some(rule) => println!(
                            "          {} rule {}: {}",
                            refusal.agreement, rule, refusal.failure
                        ),
                        None => println!("          {}: {}", refusal.agreement, refusal.failure),
                    }
                }
            }
        }
    }
    if let Some(o) = only
        && shown == 0
    {
        anyhow::bail!("{o}: no such resource about this person in any source");
    }
    Ok(())
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
    tracing::info!(listen = %config.server.listen, base = %config.server.base_url(), tls = config.server.tls.is_some(), client_certificates = ?mtls, sources = config.sources.len(), store = state.federation.store().backend(), "concord is serving");
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

#[cfg(test)]
mod tests {
    use super::{export_time, progress_bar};

    #[test]
    fn export_times_are_rfc3339_or_utc_dates() {
        assert_eq!(
            export_time("2026-11-01T00:00:00Z", "--since").ok(),
            Some(1_793_491_200_000_000)
        );
        assert_eq!(
            export_time("2026-11-01", "--since").ok(),
            Some(1_793_491_200_000_000)
        );
        assert!(export_time("01/11/2026", "--since").is_err());
        assert!(export_time("", "--until").is_err());
    }

    #[test]
    fn the_progress_bar_fills_with_the_count() {
        let half = progress_bar(50, 100, std::time::Duration::from_secs(2));
        assert!(
            half.starts_with(&format!("[{}{}]", "#".repeat(15), "-".repeat(15))),
            "{half}"
        );
        assert!(half.contains(" 50%  50/100 records"), "{half}");
        // Nothing to export: full, not a division by zero.
        assert!(progress_bar(0, 0, std::time::Duration::ZERO).contains("100%"));
        // More than counted (records written meanwhile): never past full.
        assert!(progress_bar(120, 100, std::time::Duration::ZERO).contains("100%"));
    }
}
