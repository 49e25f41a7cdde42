//! `concord source check`: sample a configured source and report its conformance.

use std::collections::{BTreeMap, HashMap};

use anyhow::Context;

use super::init_logging;
use crate::config::{Config, SourceConfig};
use crate::profiles::{Constraint, Profiles};
use crate::sources::Source;

/// `concord source check`.
pub(super) async fn source_check(
    path: &std::path::Path,
    id: &str,
    sample: usize,
) -> anyhow::Result<()> {
    let config = Config::load(path)?;
    init_logging(&config);
    if sample == 0 {
        anyhow::bail!("--sample must be at least 1");
    }
    let chosen = chosen(&config, id)?;
    let profiles = Profiles::load(&config.profiles.dir).with_context(|| {
        format!(
            "cannot load the profiles in `{}`",
            config.profiles.dir.display()
        )
    })?;
    let metrics = crate::telemetry::Metrics::new();
    let store = crate::store::Store::connect_with_cache(
        &config.store.url,
        config.store.max_connections,
        config.store.sqlite_cache_mib,
    )
    .await?;
    let sources = crate::sources::build(&chosen, &metrics, &store).await?;
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
    let tally = Tally::take(source.as_ref(), &profiles, sample).await;
    let (total, good) = print_table(&tally.rows);
    print_common_problems(tally.common);
    for failure in &tally.failed_types {
        println!("could not sample {failure}");
    }
    if !tally.failed_types.is_empty() {
        anyhow::bail!("{} type(s) could not be sampled", tally.failed_types.len());
    }
    if good < total {
        anyhow::bail!(
            "{} of {total} sampled resource(s) do not conform",
            total - good
        );
    }
    Ok(())
}

/// The config of the source with this id, alone in a list; an error naming the configured
/// sources when there is none.
fn chosen(config: &Config, id: &str) -> anyhow::Result<Vec<SourceConfig>> {
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
    Ok(chosen)
}

/// What sampling a source found.
struct Tally {
    /// Per resource type: how many were sampled, and how many of those conform.
    rows: BTreeMap<&'static str, (usize, usize)>,
    /// How often each problem (its path without indexes, and its rule) was found.
    common: HashMap<(String, Constraint), usize>,
    /// `{type}: {error}` for each type the source could not be sampled for.
    failed_types: Vec<String>,
}

impl Tally {
    /// Samples up to `sample` resources of each type the source may hold (`Patient` first,
    /// then those the gateway serves) and checks each against the profiles.
    async fn take(source: &dyn Source, profiles: &Profiles, sample: usize) -> Tally {
        let types =
            std::iter::once("Patient").chain(crate::fhir::search::TYPES.iter().map(|t| t.name));
        let mut tally = Tally {
            rows: BTreeMap::new(),
            common: HashMap::new(),
            failed_types: Vec::new(),
        };
        for kind in types {
            if !source.may_hold(kind) {
                continue;
            }
            match source.sample(kind, sample).await {
                Ok(fetched) => {
                    for resource in &fetched.resources {
                        tally.count(kind, profiles, resource);
                    }
                }
                Err(e) => tally.failed_types.push(format!("{kind}: {e}")),
            }
        }
        tally
    }

    /// Checks one sampled resource of type `kind` and counts it and its problems.
    fn count(&mut self, kind: &'static str, profiles: &Profiles, resource: &serde_json::Value) {
        let problems = profiles.check(resource);
        let row = self.rows.entry(kind).or_default();
        row.0 += 1;
        if problems.is_empty() {
            row.1 += 1;
        }
        for p in problems {
            *self
                .common
                .entry((strip_indexes(&p.path), p.rule))
                .or_default() += 1;
        }
    }
}

/// Prints the Markdown table of sampled and conforming resources per type, with a total
/// row; gives the totals (sampled, conforming).
fn print_table(rows: &BTreeMap<&'static str, (usize, usize)>) -> (usize, usize) {
    println!("\n| type | sampled | conform | share |");
    println!("| --- | ---: | ---: | ---: |");
    let (mut total, mut good) = (0, 0);
    for (kind, (n, ok)) in rows {
        total += n;
        good += ok;
        println!("| {kind} | {n} | {ok} | {:.1}% |", share(*ok, *n));
    }
    println!("| all | {total} | {good} | {:.1}% |", share(good, total));
    (total, good)
}

/// Prints the ten most common problems, most frequent first (nothing when there are none).
fn print_common_problems(common: HashMap<(String, Constraint), usize>) {
    if common.is_empty() {
        return;
    }
    let mut list: Vec<_> = common.into_iter().collect();
    list.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    println!("\nmost common problems:");
    for ((path, rule), n) in list.iter().take(10) {
        println!("  {n:>6} × {path} [{rule}]");
    }
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
