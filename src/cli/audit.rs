//! `concord audit verify`, `concord audit export` and `concord audit writes`.

use anyhow::Context;

use super::init_logging;
use crate::config::Config;

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
pub(super) async fn audit_export(
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
    // The export reads through the search projection: first project whatever a gateway that
    // stopped (or is still running) has not projected yet, so no record is left out.
    crate::audit::project_pending(&store)
        .await
        .context("cannot bring the audit search projection up to date")?;
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
pub(super) async fn audit_verify(
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
    // Each part of a chain walked at once reads its records and its search rows side by side.
    let parts = crate::audit::Parts::all_cores();
    let store = crate::store::Store::connect(&config.store.url, parts.connections())
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
    match crate::audit::verify_with_progress(&store, &key, &heads, parts, &mut |_| {}).await? {
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

/// `concord audit writes --unsettled [--settle --by NAME]`.
pub(super) async fn audit_writes(
    path: &std::path::Path,
    older_than_secs: u64,
    since: Option<&str>,
    settle_as: Option<&str>,
) -> anyhow::Result<()> {
    use crate::disclose::settle::{examine, settlement};
    let config = Config::load(path)?;
    init_logging(&config);
    let audit = config
        .audit
        .as_ref()
        .context("the config has no [audit] section")?;
    let since = since.map(|s| export_time(s, "--since")).transpose()?;
    let now = jiff::Timestamp::now().as_microsecond();
    let older_than = i64::try_from(older_than_secs)
        .ok()
        .and_then(|s| s.checked_mul(1_000_000))
        .context("--older-than is too large")?;
    let store = crate::store::Store::connect(&config.store.url, 2)
        .await
        .context("cannot connect to the store")?;
    // The intents are found through the search projection: first project whatever a gateway
    // that stopped (or is still running) has not projected yet.
    crate::audit::project_pending(&store)
        .await
        .context("cannot bring the audit search projection up to date")?;
    let (spools, spooled) = crate::audit::spool::pending(&audit.spool_dir)?;
    if spooled > 0 {
        println!(
            "note: {spooled} record(s) in {spools} spool file(s) under {} are not in the store yet: an outcome among them is not seen (a gateway moves them in when the store takes writes)",
            audit.spool_dir.display()
        );
    }
    let span = crate::store::AuditSpan {
        from: since,
        to: Some(now.saturating_sub(older_than)),
    };
    let (unsettled, _) = crate::audit::unsettled::unsettled(&store, span, usize::MAX)
        .await
        .context("cannot read the audit log")?;
    if unsettled.is_empty() {
        println!(
            "every write recorded more than {older_than_secs} s ago has its outcome or a settlement"
        );
        return Ok(());
    }
    let metrics = crate::telemetry::Metrics::new();
    let sources = crate::sources::build(&config.sources, &metrics, &store)
        .await
        .context("cannot set up the sources")?;
    let log = match settle_as {
        Some(_) => {
            let key =
                crate::audit::AuditKey::load(audit.key_file.as_deref(), audit.key_env.as_deref())?;
            Some(crate::audit::AuditLog::new(store.clone(), key))
        }
        None => None,
    };
    println!(
        "{} write(s) whose outcome is not known: time, request id, action and type, source, record (why), what the source shows now",
        unsettled.len()
    );
    let mut left = 0_usize;
    for intent in &unsettled {
        let finding = examine(intent, &sources, &store).await;
        let w = intent.body.write.as_ref();
        let when = jiff::Timestamp::from_microsecond(intent.body.recorded_us)
            .map_or_else(|_| intent.body.recorded_us.to_string(), |t| t.to_string());
        println!(
            "{when}  {}  {} {}  {}  {} ({})  {}: {}",
            intent.body.request_id,
            w.map_or("?", |w| w.action.as_str()),
            intent.resource_type().unwrap_or("?"),
            w.and_then(|w| w.source.as_deref()).unwrap_or("?"),
            intent.record_id(),
            intent.unknown.words(),
            finding.word(),
            finding.detail()
        );
        let record = match (&log, settle_as) {
            (Some(log), Some(by)) => settlement(
                intent,
                &finding,
                by,
                jiff::Timestamp::now().as_microsecond(),
            )
            .map(|body| (log, body)),
            _ => None,
        };
        match record {
            Some((log, body)) => {
                let kept = log
                    .append(&body)
                    .await
                    .context("the settlement could not be recorded")?;
                println!("  settled: recorded as {}.{}", kept.chain, kept.seq);
            }
            // Not settling, or nothing to settle with (unclear, unreachable).
            None => left += 1,
        }
    }
    if let Some(log) = log {
        let stopped = log.stopped();
        drop(log);
        stopped.wait().await;
    }
    if left > 0 {
        anyhow::bail!(
            "{left} write(s) left unsettled: {}",
            if settle_as.is_some() {
                "check each at its source by hand, or run again once the source can be read"
            } else {
                "settle them with --settle --by NAME"
            }
        );
    }
    Ok(())
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
