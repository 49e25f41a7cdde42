//! `concord profile check`: check FHIR resources in files against `fhir-profiles/`.

use anyhow::Context;

use std::path::PathBuf;

/// `concord profile check`.
pub(super) fn profile_check(
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
    let mut by_rule: HashMap<crate::profiles::Constraint, usize> = HashMap::new();
    let mut common: HashMap<(String, crate::profiles::Constraint), usize> = HashMap::new();
    for file in files {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read `{}`", file.display()))?;
        for (place, parsed) in resources_in(&text) {
            checked += 1;
            let (name, found) = match parsed {
                Ok(resource) => (resource_name(&resource), profiles.check(&resource)),
                Err(message) => (
                    "(not JSON)".to_owned(),
                    vec![crate::fhir::conformance::Departure {
                        path: "Resource".into(),
                        rule: crate::profiles::Constraint::Structure,
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
