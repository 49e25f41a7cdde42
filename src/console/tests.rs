use serde_json::{Map, Value, json};

use super::signin::{CIS2_ROLES_CLAIM, offered};
use crate::auth::principal_from_claims;
use crate::config::{ClaimNames, ConsoleConfig};

fn claims(value: Value) -> Map<String, Value> {
    value.as_object().cloned().unwrap_or_default()
}

fn config(allowed: &[&str], map: &[(&str, &str)]) -> ConsoleConfig {
    ConsoleConfig {
        allowed_roles: allowed.iter().map(|r| (*r).to_owned()).collect(),
        cis2_roles: map
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        ..ConsoleConfig::default()
    }
}

fn offer(c: &Map<String, Value>, config: &ConsoleConfig) -> Vec<(String, Option<String>)> {
    let principal = principal_from_claims(&ClaimNames::default(), c).expect("principal");
    offered(&principal, c, config)
}

#[test]
fn the_role_claim_is_offered_only_when_allowed() {
    let lead = claims(json!({"sub": "u1", "role": "ig-lead", "org": "A81001"}));
    assert_eq!(
        offer(&lead, &config(&["ig-lead"], &[])),
        [("ig-lead".to_owned(), Some("A81001".to_owned()))]
    );
    let clinician = claims(json!({"sub": "u1", "role": "clinician", "org": "A81001"}));
    assert!(offer(&clinician, &config(&["ig-lead"], &[])).is_empty());
}

#[test]
fn cis2_roles_are_mapped_by_whole_code_or_r_code_and_deduplicated() {
    let c = claims(json!({
        "sub": "555",
        CIS2_ROLES_CLAIM: [
            {"role_code": "S8000:G8000:R8003", "org_code": "RY4"},
            {"role_code": "S8000:G8000:R8003", "org_code": "RY4"},
            {"role_code": "S0030:G0100:R0570", "org_code": "A81001"},
            {"role_code": "S9999:G9999:R9999", "org_code": "LA001"},
            {"role_code": "S8000:G8000:R8003", "org_code": "<b>"},
            {"org_code": "RY4"}
        ]
    }));
    let config = config(
        &["ig-lead", "caldicott"],
        &[("R8003", "ig-lead"), ("S9999:G9999:R9999", "caldicott")],
    );
    assert_eq!(
        offer(&c, &config),
        [
            ("ig-lead".to_owned(), Some("RY4".to_owned())),
            ("caldicott".to_owned(), Some("LA001".to_owned())),
        ]
    );
}

#[test]
fn an_unmapped_cis2_code_stands_for_itself() {
    let c = claims(json!({
        "sub": "555",
        CIS2_ROLES_CLAIM: [{"role_code": "S8000:G8000:R8003", "org_code": "RY4"}]
    }));
    assert_eq!(
        offer(&c, &config(&["S8000:G8000:R8003"], &[])),
        [("S8000:G8000:R8003".to_owned(), Some("RY4".to_owned()))]
    );
}
