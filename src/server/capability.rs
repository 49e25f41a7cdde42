//! The CapabilityStatement: generated from the same tables the search code uses, so it lists
//! exactly what works.

use serde_json::{Value, json};

use crate::fhir::search::{LAST_UPDATED, TYPES};

/// The gateway's CapabilityStatement. With `profiles` (loaded when a source is checked),
/// each type lists the profiles its resources are checked against (`supportedProfile`).
/// The `writable` types (those some source accepts writes of) list `create` and `update`.
pub fn statement(
    base: &str,
    profiles: Option<&crate::profiles::Profiles>,
    writable: &[&str],
) -> Value {
    let mut resources = vec![json!({
        "type": "Patient",
        "interaction": [{"code": "read"}, {"code": "search-type"}],
        "searchParam": [{
            "name": "identifier", "type": "token",
            "documentation": "NHS number only: https://fhir.nhs.uk/Id/nhs-number|{nhs number}. Returns the one merged Patient."
        }],
        "operation": [{"name": "everything", "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything"}],
    })];
    for def in TYPES {
        let mut params = vec![
            json!({"name": "patient", "type": "reference", "documentation": "Required: the gateway patient id."}),
        ];
        if def.patient_element == "subject" {
            params.push(json!({"name": "subject", "type": "reference", "documentation": "Patient/{gateway patient id}"}));
        }
        for p in def.params.iter().chain(std::iter::once(&LAST_UPDATED)) {
            params.push(json!({"name": p.name, "type": p.kind.code()}));
        }
        let mut resource = json!({
            "type": def.name,
            "interaction": [{"code": "read"}, {"code": "search-type"}],
            "searchParam": params,
        });
        if writable.contains(&def.name) {
            resource["interaction"] = json!([
                {"code": "read"}, {"code": "search-type"}, {"code": "create"}, {"code": "update"}
            ]);
            resource["versioning"] = json!("versioned-update");
            resource["readHistory"] = json!(false);
            resource["updateCreate"] = json!(false);
            resource["conditionalCreate"] = json!(true);
            resource["documentation"] = json!(
                "Writes go to the source that holds the resource (an update) or the plan it belongs to (a create: a CarePlan's basedOn/partOf, a Goal's or Flag's extension https://fhir.concord.health/StructureDefinition/care-plan), else for the person the source their portal agreement names, else the author's organisation's source, else the configured default. An update needs If-Match with the ETag read. If-None-Exist (identifier, the type's search parameters, patient) is honoured where the target source honours it, and refused (400) where it does not. Checked against the profile before it leaves."
            );
        }
        resources.push(resource);
    }
    resources.push(json!({
        "type": "Consent",
        "interaction": [{"code": "create"}, {"code": "search-type"}],
        "searchParam": [{"name": "patient", "type": "reference", "documentation": "Required: the gateway patient id."}],
        "documentation": "A person's sharing choices (scope patient-privacy): a deny provision with one organisation as actor, role CST (that provider's records are not shared) or PRCP (nothing is shared with that organisation); status inactive withdraws it. Honoured by every decision except emergency access.",
    }));
    resources.push(audit_event());
    if let Some(profiles) = profiles {
        for resource in &mut resources {
            let Some(kind) = resource
                .get("type")
                .and_then(Value::as_str)
                .map(str::to_owned)
            else {
                continue;
            };
            let urls: Vec<&str> = profiles
                .profiles()
                .iter()
                .filter(|p| p.resource_type == kind)
                .map(|p| p.url.as_str())
                .collect();
            if let (false, Some(obj)) = (urls.is_empty(), resource.as_object_mut()) {
                obj.insert("supportedProfile".into(), json!(urls));
            }
        }
    }
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-25",
        "publisher": "Concord",
        "kind": "instance",
        "software": {"name": "Concord", "version": env!("CARGO_PKG_VERSION")},
        "implementation": {"description": "Concord shared care record gateway", "url": base},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "rest": [{
            "mode": "server",
            "documentation": "Federated access to the records that every provider in the partnership holds about a person. Searches must name the person. Results are sorted and paged by the gateway; follow Bundle next links.",
            "resource": resources,
            "searchParam": [
                {"name": "_count", "type": "number", "documentation": "Page size (capped by the server)."},
                {"name": "_sort", "type": "string", "documentation": "Date parameters of the type, _lastUpdated and _id; prefix - for descending. Default: newest first."},
            ],
        }],
    })
}

/// AuditEvent: exactly the parameters `server::audit_event` understands.
fn audit_event() -> Value {
    json!({
        "type": "AuditEvent",
        "interaction": [{"code": "read"}, {"code": "search-type"}],
        "searchParam": [
            {"name": "patient", "type": "reference", "documentation": "The gateway patient id (`Patient/{id}` or `{id}`) the record is about."},
            {"name": "agent", "type": "token", "documentation": "The user id (the token's `sub`): agent.who.identifier.value."},
            {"name": "agent-org", "type": "token", "documentation": "Custom: the user's organisation, an ODS code (https://fhir.nhs.uk/Id/ods-organization-code)."},
            {"name": "date", "type": "date", "documentation": "When it was recorded; prefixes eq ne gt lt ge le sa eb; repeat for a range."},
            {"name": "outcome", "type": "token", "documentation": "0 (success), 4 (refused, 4xx) or 8 (error, 5xx); success, refused and error are accepted too."},
            {"name": "purpose", "type": "token", "documentation": "The purpose of use (v3-ActReason), e.g. ETREAT for emergency access."},
            {"name": "policy", "type": "uri", "documentation": "An agreement a resource was disclosed under (agent.policy): the agreement's id."},
            {"name": "review", "type": "token", "documentation": "Custom: why the record is flagged for IG review, break-glass or consent-withdrawn-by-staff."},
        ],
        "documentation": "The audit log, newest first, paged with next links. Role ig-lead with user/AuditEvent.rs sees the accesses by its organisation's staff and to the data its organisation discloses; a region role ([audit] region_roles) sees every record; a person with patient/AuditEvent.rs sees the records about themself, without staff's personal details; everyone else is refused.",
    })
}
