//! `concord source check`: sample a configured source and report its conformance.

use anyhow::Context;

use super::init_logging;
use crate::config::Config;

/// `concord source check`.
pub(super) async fn source_check(
    path: &std::path::Path,
    id: &str,
    sample: usize,
) -> anyhow::Result<()> {
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
    let mut common: HashMap<(String, crate::profiles::Constraint), usize> = HashMap::new();
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
