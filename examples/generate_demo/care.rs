//! Resources shared by the community trust and social care: encounters
//! within an episode of care, the episode itself, and care plans.

use serde_json::{Value, json};

use crate::codes::{self, Code};
use crate::dates::Date;
use crate::fhir::{self, reference, sct};
use crate::rng::Rng;

/// An organisation: ODS code and name.
pub(crate) type Org = (&'static str, &'static str);

/// A contact within an episode of care.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Visit<'a> {
    /// Encounter id.
    pub(crate) id: &'a str,
    /// The provider's Patient id.
    pub(crate) patient: &'a str,
    /// Encounter.class: v3 ActCode code and display.
    pub(crate) class: (&'a str, &'a str),
    /// Encounter.type codes (SNOMED CT).
    pub(crate) kind: Code,
    /// An extra free-text type, e.g. the kind of social care assessment.
    pub(crate) kind_text: Option<&'a str>,
    /// Encounter.serviceType (SNOMED CT), when the service has a code.
    pub(crate) service: Option<Code>,
    /// The EpisodeOfCare id.
    pub(crate) episode: &'a str,
    /// Day of the contact.
    pub(crate) day: Date,
    /// Start, minutes after local midnight.
    pub(crate) start: i64,
    /// Length in minutes.
    pub(crate) minutes: i64,
    /// The provider.
    pub(crate) org: Org,
}

/// A finished Encounter for a visit.
pub(crate) fn encounter(v: &Visit<'_>, rng: &mut Rng) -> Value {
    let mut types = vec![sct(v.kind)];
    if let Some(text) = v.kind_text {
        types.push(fhir::text(text));
    }
    let mut e = json!({
        "resourceType": "Encounter",
        "id": v.id,
        "meta": fhir::meta(rng, v.day),
        "status": "finished",
        "class": { "system": codes::ACT_CODE, "code": v.class.0, "display": v.class.1 },
        "type": types
    });
    if let Some(service) = v.service {
        e["serviceType"] = sct(service);
    }
    e["subject"] = reference("Patient", v.patient);
    e["episodeOfCare"] = json!([reference("EpisodeOfCare", v.episode)]);
    e["period"] = json!({ "start": v.day.at(v.start), "end": v.day.at(v.start + v.minutes) });
    e["serviceProvider"] = fhir::organisation(v.org.0, v.org.1);
    e
}

/// A Period from a start date and an optional end date.
fn period(start: Date, end: Option<Date>) -> Value {
    let mut p = json!({ "start": start.to_string() });
    if let Some(end) = end {
        p["end"] = json!(end.to_string());
    }
    p
}

/// An EpisodeOfCare, finished when `end` is given.
pub(crate) fn episode(
    id: &str,
    patient: &str,
    kind: Value,
    org: Org,
    start: Date,
    end: Option<Date>,
    rng: &mut Rng,
) -> Value {
    json!({
        "resourceType": "EpisodeOfCare",
        "id": id,
        "meta": fhir::meta(rng, end.unwrap_or(start)),
        "status": if end.is_some() { "finished" } else { "active" },
        "type": [kind],
        "patient": reference("Patient", patient),
        "managingOrganization": fhir::organisation(org.0, org.1),
        "period": period(start, end)
    })
}

/// What a care plan says.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plan<'a> {
    /// CarePlan id.
    pub(crate) id: &'a str,
    /// The provider's Patient id.
    pub(crate) patient: &'a str,
    /// Category (SNOMED CT).
    pub(crate) category: Code,
    /// Short title.
    pub(crate) title: &'a str,
    /// What will be done.
    pub(crate) description: &'a str,
    /// The Condition the plan addresses, if recorded by this provider.
    pub(crate) addresses: Option<&'a str>,
    /// Start of the plan.
    pub(crate) start: Date,
    /// End, for completed plans.
    pub(crate) end: Option<Date>,
    /// The provider.
    pub(crate) org: Org,
}

/// A CarePlan: `active` while open, `completed` once ended; intent `plan`.
pub(crate) fn care_plan(p: &Plan<'_>, rng: &mut Rng) -> Value {
    let mut v = json!({
        "resourceType": "CarePlan",
        "id": p.id,
        "meta": fhir::meta(rng, p.end.unwrap_or(p.start)),
        "status": if p.end.is_some() { "completed" } else { "active" },
        "intent": "plan",
        "category": [sct(p.category)],
        "title": p.title,
        "description": p.description,
        "subject": reference("Patient", p.patient),
        "period": period(p.start, p.end),
        "created": p.start.at(rng.range(9 * 60, 16 * 60)),
        "author": fhir::organisation(p.org.0, p.org.1)
    });
    if let Some(condition) = p.addresses {
        v["addresses"] = json!([reference("Condition", condition)]);
    }
    v
}
