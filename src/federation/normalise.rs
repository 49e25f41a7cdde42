//! Making a source's resource the gateway's: checking it is about the person asked for,
//! giving it a gateway id, rewriting its references and stamping its provenance.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::fhir::ODS_SYSTEM;
pub use crate::fhir::reference::split_gateway_id;
use crate::fhir::reference::{is_valid_id, parse_under_base};
use crate::sources::{Source, SourceInfo};

/// Why a resource from a source was not passed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// It is not about the person asked for (a provider that ignored the search parameters).
    Foreign,
    /// It has no valid type or id.
    Invalid,
    /// It is of a type the gateway does not serve (an upstream `$everything` may include
    /// Practitioners, Organizations, …): left out, counted, but not a fault to report.
    Unserved,
    /// Its gateway id (`{source}.{id}`) would be longer than FHIR's 64 characters.
    IdTooLong,
    /// It does not conform to its profile, and its source's `conformance` is `drop`.
    Nonconformant,
}

impl Fault {
    /// Metrics label.
    pub fn kind(self) -> &'static str {
        match self {
            Fault::Foreign => "foreign_resource",
            Fault::Invalid => "invalid_resource",
            Fault::Unserved => "unserved_type",
            Fault::IdTooLong => "id_too_long",
            Fault::Nonconformant => "nonconformant",
        }
    }
}

/// The gateway id of a source's resource: `{source id}.{local id}`.
pub fn gateway_id(source_id: &str, local_id: &str) -> Option<String> {
    let id = format!("{source_id}.{local_id}");
    is_valid_id(&id).then_some(id)
}

/// Where a resource comes from and whose it should be: what normalising needs to know about
/// the source and the person.
#[derive(Debug)]
pub struct Origin<'a> {
    /// The source the resource came from.
    pub source: &'a SourceInfo,
    /// The person's gateway id.
    pub person_id: Uuid,
    /// The person's NHS number.
    pub nhs_number: &'a str,
    /// The person's patient ids in this source.
    pub local_patient_ids: &'a HashSet<String>,
    /// Codes to sensitivity labels.
    pub labels: &'a crate::policy::LabelMap,
    /// Every configured source (this one among them), so that a reference under another
    /// source's base URL (a part of a plan pointing at the plan another provider holds) reads
    /// as that source's gateway id.
    pub peers: &'a [Arc<dyn Source>],
}

/// Checks the resource is about the person, then makes it the gateway's, with its sensitivity
/// labels in `meta.security`. The check reads the shared resource; only a resource that passes
/// is copied (or taken, when not shared).
pub fn normalise(resource: Arc<Value>, origin: &Origin<'_>) -> Result<Value, Fault> {
    let id = check(&resource, origin)?;
    let mut resource = Arc::try_unwrap(resource).unwrap_or_else(|shared| (*shared).clone());
    rewrite_references(&mut resource, origin);
    let labels = origin.labels.labels_of(&resource);
    let obj = resource.as_object_mut().ok_or(Fault::Invalid)?;
    obj.insert("id".into(), Value::String(id));
    stamp_provenance(obj, origin.source);
    mark_contributor(obj, origin.person_id);
    crate::policy::LabelMap::stamp(obj, &labels);
    Ok(resource)
}

/// The `meta.tag` system that says who contributed a resource; its one code, `patient`, marks
/// what the person wrote themselves.
pub const CONTRIBUTOR_SYSTEM: &str = "https://fhir.concord.health/CodeSystem/contributor";

/// The `meta.tag` coding on what the person wrote themselves.
pub fn contributor_tag() -> Value {
    json!({"system": CONTRIBUTOR_SYSTEM, "code": "patient", "display": "Written by the person"})
}

/// True when the resource carries the [`contributor_tag`].
pub fn has_contributor_tag(resource: &Value) -> bool {
    resource
        .pointer("/meta/tag")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|t| {
            t.get("system").and_then(Value::as_str) == Some(CONTRIBUTOR_SYSTEM)
                && t.get("code").and_then(Value::as_str) == Some("patient")
        })
}

/// The elements that name who wrote or expressed a resource.
const AUTHORSHIP: [&str; 3] = ["author", "recorder", "expressedBy"];

/// Marks (once) a resource the person wrote themselves: its `author`, `recorder` or
/// `expressedBy` is the person (references already the gateway's), or its source kept the
/// mark the gateway put on what the person wrote through the portal.
fn mark_contributor(obj: &mut Map<String, Value>, person: Uuid) {
    let theirs = format!("Patient/{person}");
    let by_them = AUTHORSHIP.iter().filter_map(|k| obj.get(*k)).any(|v| {
        let named = |r: &Value| r.get("reference").and_then(Value::as_str) == Some(theirs.as_str());
        match v {
            Value::Array(items) => items.iter().any(named),
            other => named(other),
        }
    });
    let marked = obj
        .get("meta")
        .and_then(|m| m.get("tag"))
        .and_then(Value::as_array)
        .is_some_and(|tags| {
            tags.iter()
                .any(|t| t.get("system").and_then(Value::as_str) == Some(CONTRIBUTOR_SYSTEM))
        });
    if by_them && !marked {
        add_tag(obj, contributor_tag());
    }
}

/// Whether the resource may be passed on as the person's; its gateway id when it may.
fn check(resource: &Value, origin: &Origin<'_>) -> Result<String, Fault> {
    let rtype = resource
        .get("resourceType")
        .and_then(Value::as_str)
        .ok_or(Fault::Invalid)?;
    let local_id = resource
        .get("id")
        .and_then(Value::as_str)
        .filter(|id| is_valid_id(id))
        .ok_or(Fault::Invalid)?;
    let belongs = if rtype == "Patient" {
        crate::fhir::nhs_number::carried_by(resource).any(|n| n == origin.nhs_number)
    } else {
        if crate::fhir::search::type_def(rtype).is_none() {
            return Err(Fault::Unserved);
        }
        crate::fhir::search::patient_id_of(resource, origin.source.base_url.as_deref())
            .is_some_and(|p| origin.local_patient_ids.contains(p))
    };
    if !belongs {
        return Err(Fault::Foreign);
    }
    gateway_id(&origin.source.id, local_id).ok_or(Fault::IdTooLong)
}

/// Sets `meta.source` to the source's URI and tags the providing organisation.
pub fn stamp_provenance(obj: &mut Map<String, Value>, source: &SourceInfo) {
    if let Some(meta) = meta_of(obj) {
        meta.insert("source".into(), Value::String(source.uri()));
    }
    add_tag(
        obj,
        json!({"system": ODS_SYSTEM, "code": source.ods, "display": source.name}),
    );
}

/// Appends a coding to `meta.tag` (making `meta` and `tag` when they are missing or not of
/// their FHIR shape).
pub fn add_tag(obj: &mut Map<String, Value>, tag: Value) {
    let Some(meta) = meta_of(obj) else {
        return;
    };
    match meta.get_mut("tag") {
        Some(Value::Array(tags)) => tags.push(tag),
        _ => {
            meta.insert("tag".into(), Value::Array(vec![tag]));
        }
    }
}

/// The resource's `meta`, made an object when it is missing or is not one (so never `None`).
fn meta_of(obj: &mut Map<String, Value>) -> Option<&mut Map<String, Value>> {
    let meta = obj
        .entry("meta")
        .or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    meta.as_object_mut()
}

/// Rewrites every literal reference to the source's own resources into gateway references:
/// the person's own patient becomes `Patient/{person id}`, anything else `Type/{source}.{id}`.
/// Contained (`#x`), URN and foreign absolute references are left as they are.
fn rewrite_references(value: &mut Value, origin: &Origin<'_>) {
    match value {
        Value::Object(obj) => {
            if let Some(Value::String(reference)) = obj.get_mut("reference")
                && let Some(new) = rewritten(reference, origin)
            {
                *reference = new;
            }
            for (key, child) in obj.iter_mut() {
                if key != "reference" {
                    rewrite_references(child, origin);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| rewrite_references(i, origin)),
        _ => {}
    }
}

/// The gateway reference for one of the source's own references, or for an absolute one to a
/// resource another source holds (under that source's base URL; not a Patient, whose gateway
/// id is the person's); `None` to leave it as it is.
fn rewritten(reference: &str, origin: &Origin<'_>) -> Option<String> {
    let Some(r) = parse_under_base(reference, origin.source.base_url.as_deref()) else {
        return elsewhere(reference, origin);
    };
    if r.resource_type == "Patient" && origin.local_patient_ids.contains(r.id) {
        return Some(format!("Patient/{}", origin.person_id));
    }
    gateway_id(&origin.source.id, r.id).map(|id| format!("{}/{id}", r.resource_type))
}

/// The gateway reference for an absolute reference under another source's base URL.
fn elsewhere(reference: &str, origin: &Origin<'_>) -> Option<String> {
    if !reference.contains("://") {
        return None;
    }
    origin.peers.iter().find_map(|peer| {
        let info = peer.info();
        let base = info.base_url.as_deref()?;
        if info.id == origin.source.id {
            return None;
        }
        let rest = reference.strip_prefix(base)?.strip_prefix('/')?;
        let r = crate::fhir::reference::parse_relative(rest)?;
        if r.resource_type == "Patient" {
            return None;
        }
        gateway_id(&info.id, r.id).map(|id| format!("{}/{id}", r.resource_type))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fhir::NHS_NUMBER_SYSTEM;

    fn source() -> SourceInfo {
        SourceInfo {
            id: "gp".into(),
            name: "Riverside".into(),
            ods: "A81001".into(),
            base_url: Some("http://up/fhir".into()),
            conformance: crate::config::Conformance::Off,
        }
    }

    #[test]
    fn normalises_and_rewrites() {
        let src = source();
        let ids: HashSet<String> = ["p1".to_owned()].into();
        let person = Uuid::nil();
        let ctx = Origin {
            source: &src,
            person_id: person,
            nhs_number: "9434765919",
            local_patient_ids: &ids,
            labels: &crate::policy::LabelMap::default(),
            peers: &[],
        };
        let obs = json!({
            "resourceType": "Observation", "id": "o1",
            "meta": {"tag": [{"code": "x"}]},
            "subject": {"reference": "http://up/fhir/Patient/p1"},
            "encounter": {"reference": "Encounter/e1/_history/2"},
            "hasMember": [{"reference": "#c1"}, {"reference": "http://elsewhere/Observation/9"}],
            "performer": [{"reference": "Practitioner/dr"}]
        });
        let out = normalise(Arc::new(obs), &ctx).expect("belongs");
        assert_eq!(out["id"], "gp.o1");
        assert_eq!(out["subject"]["reference"], format!("Patient/{person}"));
        assert_eq!(out["encounter"]["reference"], "Encounter/gp.e1");
        assert_eq!(out["hasMember"][0]["reference"], "#c1");
        assert_eq!(
            out["hasMember"][1]["reference"],
            "http://elsewhere/Observation/9"
        );
        assert_eq!(out["performer"][0]["reference"], "Practitioner/gp.dr");
        assert_eq!(out["meta"]["source"], "urn:concord:source:gp");
        assert_eq!(out["meta"]["tag"][1]["code"], "A81001");
    }

    #[test]
    fn what_the_person_wrote_is_marked_once() {
        let src = source();
        let ids: HashSet<String> = ["p1".to_owned()].into();
        let ctx = Origin {
            source: &src,
            person_id: Uuid::nil(),
            nhs_number: "9434765919",
            local_patient_ids: &ids,
            labels: &crate::policy::LabelMap::default(),
            peers: &[],
        };
        let theirs = json!({"resourceType": "Goal", "id": "g1",
            "subject": {"reference": "Patient/p1"}, "expressedBy": {"reference": "Patient/p1"}});
        let out = normalise(Arc::new(theirs), &ctx).expect("belongs");
        assert!(has_contributor_tag(&out), "{out}");
        let kept = json!({"resourceType": "Goal", "id": "g2", "subject": {"reference": "Patient/p1"},
            "expressedBy": {"reference": "Patient/p1"}, "meta": {"tag": [contributor_tag()]}});
        let out = normalise(Arc::new(kept), &ctx).expect("belongs");
        let tags = out["meta"]["tag"].as_array().map(Vec::len);
        assert_eq!(tags, Some(2), "the mark once, and the provider's: {out}");
        let staff = json!({"resourceType": "CarePlan", "id": "c1", "subject": {"reference": "Patient/p1"},
            "author": {"reference": "Practitioner/dr"}});
        let out = normalise(Arc::new(staff), &ctx).expect("belongs");
        assert!(!has_contributor_tag(&out), "{out}");
    }

    #[test]
    fn other_peoples_records_are_faults() {
        let src = source();
        let ids: HashSet<String> = ["p1".to_owned()].into();
        let ctx = Origin {
            source: &src,
            person_id: Uuid::nil(),
            nhs_number: "9434765919",
            local_patient_ids: &ids,
            labels: &crate::policy::LabelMap::default(),
            peers: &[],
        };
        let foreign = json!({"resourceType": "Observation", "id": "o2", "subject": {"reference": "Patient/p2"}});
        assert_eq!(
            normalise(Arc::new(foreign), &ctx).err(),
            Some(Fault::Foreign)
        );
        let no_subject = json!({"resourceType": "Observation", "id": "o3"});
        assert_eq!(
            normalise(Arc::new(no_subject), &ctx).err(),
            Some(Fault::Foreign)
        );
        let other_patient = json!({"resourceType": "Patient", "id": "p9", "identifier": [{"system": NHS_NUMBER_SYSTEM, "value": "9990000018"}]});
        assert_eq!(
            normalise(Arc::new(other_patient), &ctx).err(),
            Some(Fault::Foreign)
        );
        let bad_id = json!({"resourceType": "Observation", "id": "a b", "subject": {"reference": "Patient/p1"}});
        assert_eq!(
            normalise(Arc::new(bad_id), &ctx).err(),
            Some(Fault::Invalid)
        );
        let long = json!({"resourceType": "Observation", "id": "x".repeat(63), "subject": {"reference": "Patient/p1"}});
        assert_eq!(
            normalise(Arc::new(long), &ctx).err(),
            Some(Fault::IdTooLong)
        );
        let unserved = json!({"resourceType": "Practitioner", "id": "dr"});
        assert_eq!(
            normalise(Arc::new(unserved), &ctx).err(),
            Some(Fault::Unserved)
        );
    }
}
