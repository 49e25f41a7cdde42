//! `concord policy check` and `concord policy explain`.

use anyhow::Context;

use super::init_logging;
use crate::config::Config;

/// Prints every error and warning of a policy directory, then a one-line verdict.
pub(super) fn policy_check(dir: &std::path::Path) -> anyhow::Result<()> {
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

/// `concord policy explain`.
pub(super) async fn policy_explain(
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
    let set = state.door.policies().current();
    let explained = state.door.explain(&principal, &nhs, &set).await?;
    for report in &explained.resolving {
        println!("warning: source {} could not be asked", report.source.id);
    }
    let Some(person) = &explained.person else {
        anyhow::bail!("no source knows a person with this NHS number");
    };
    if !principal.may_see_person(&person.nhs) {
        println!("the token is a patient token for another person: everything is withheld");
        return Ok(());
    }
    for report in &explained.collecting {
        println!(
            "warning: source {} did not answer fully; its records may be missing below",
            report.source.id
        );
    }
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
    for (name, explanation) in &explained.decisions {
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

/// `concord policy explain --write create|update --type T --to SOURCE`: whether the token may
/// write a resource of that type about the person to that source today, and why.
pub(super) async fn policy_explain_write(
    path: &std::path::Path,
    token: &str,
    nhs: &str,
    write: &str,
    resource_type: &str,
    to: &str,
) -> anyhow::Result<()> {
    let interaction = crate::policy::Interaction::parse(write)
        .filter(|i| i.is_write())
        .ok_or_else(|| anyhow::anyhow!("--write: `{write}` is not create or update"))?;
    if crate::fhir::search::type_def(resource_type).is_none() {
        anyhow::bail!("--type: `{resource_type}` is not a FHIR resource type the gateway serves");
    }
    let config = Config::load(path)?;
    init_logging(&config);
    let nhs = crate::fhir::NhsNumber::parse(nhs).map_err(|e| anyhow::anyhow!("--patient: {e}"))?;
    let state = crate::server::build_state(&config)
        .await
        .context("cannot start")?;
    let principal = state
        .verifier
        .verify(token.trim())
        .map_err(|e| anyhow::anyhow!("--token: {e}"))?;
    let set = state.door.policies().current();
    let explained = state
        .door
        .explain_write(&principal, &nhs, &set, (interaction, resource_type, to))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let Some(explanation) = explained else {
        anyhow::bail!(
            "no source knows a person with this NHS number (or the token is a patient token for another person)"
        );
    };
    let name = format!("{} {resource_type} in {to}", interaction.name());
    match &explanation.permit {
        Some(p) => {
            println!(
                "PERMIT    {name}  by {} rule {}{}",
                p.agreement.id,
                p.rule.id,
                if p.emergency {
                    " (emergency access)"
                } else {
                    ""
                }
            );
            if let Some(target) = &p.rule.write_to {
                println!("          one that belongs to no plan goes to `{target}` (write_to)");
            }
        }
        None => {
            println!("REFUSED   {name}");
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
    Ok(())
}
