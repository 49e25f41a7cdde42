//! What a write's body is checked and shaped by before it leaves: its shape, its person, the
//! plan it names, its references mapped to the target source's ids, the conditional
//! create's search, and the author and marks the gateway puts on what the person wrote.

use std::sync::Arc;

use serde_json::{Value, json};
use uuid::Uuid;

use super::{Change, PLAN_EXTENSION, WriteError};
use crate::federation::Person;
use crate::federation::normalise::{CONTRIBUTOR_SYSTEM, contributor_tag, split_gateway_id};
use crate::fhir::condition::Condition;
use crate::fhir::reference::parse_relative;
use crate::sources::Source;

pub(super) fn unprocessable(message: impl Into<String>) -> WriteError {
    let message = message.into();
    WriteError::Unprocessable {
        summary: message.clone(),
        problems: vec![message],
    }
}

/// 405 unless the source takes writes of the type (an NDJSON export never does).
pub(super) fn refuse_unless_accepts(
    source: &dyn Source,
    resource_type: &str,
) -> Result<(), WriteError> {
    if source.accepts_writes(resource_type) {
        return Ok(());
    }
    Err(WriteError::NotAllowed(format!(
        "{} ({}) does not accept writes of {resource_type}; the write was not made anywhere",
        source.info().name,
        source.info().id
    )))
}

/// The body is an object of the path's type; an update names the path's id.
pub(super) fn check_shape(
    body: &Value,
    resource_type: &str,
    change: Change<'_>,
) -> Result<(), WriteError> {
    let Some(obj) = body.as_object() else {
        return Err(WriteError::Invalid(
            "the body is not a FHIR resource".into(),
        ));
    };
    match obj.get("resourceType").and_then(Value::as_str) {
        Some(t) if t == resource_type => {}
        Some(t) => {
            return Err(WriteError::Invalid(format!(
                "the body is a `{t}`, and the path says {resource_type}"
            )));
        }
        None => return Err(WriteError::Invalid("the body has no resourceType".into())),
    }
    if let Change::Update { id, .. } = change {
        match obj.get("id").and_then(Value::as_str) {
            Some(body_id) if body_id == id => {}
            Some(body_id) => {
                return Err(WriteError::Invalid(format!(
                    "the body's id `{body_id}` is not the id in the path `{id}`"
                )));
            }
            None => {
                return Err(WriteError::Invalid(
                    "an update's body must carry the resource's id".into(),
                ));
            }
        }
    }
    Ok(())
}

/// The person the resource is about: `subject` must be `Patient/{gateway id}`.
pub(super) fn subject_person(body: &Value) -> Result<Uuid, WriteError> {
    body.pointer("/subject/reference")
        .and_then(Value::as_str)
        .and_then(parse_relative)
        .filter(|r| r.resource_type == "Patient")
        .and_then(|r| Uuid::parse_str(r.id).ok())
        .ok_or_else(|| {
            unprocessable(
                "`subject` must name the person as the gateway serves them (`Patient/{gateway id}`)",
            )
        })
}

/// The plan a new resource belongs to: a CarePlan's first `basedOn` or `partOf` reference to
/// a CarePlan; a Goal's or Flag's [`PLAN_EXTENSION`].
pub(super) fn plan_reference(body: &Value, resource_type: &str) -> Option<String> {
    let references: Vec<&Value> = if resource_type == "CarePlan" {
        ["basedOn", "partOf"]
            .iter()
            .filter_map(|k| body.get(*k).and_then(Value::as_array))
            .flatten()
            .collect()
    } else {
        body.get("extension")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|e| e.get("url").and_then(Value::as_str) == Some(PLAN_EXTENSION))
            .filter_map(|e| e.get("valueReference"))
            .collect()
    };
    references
        .into_iter()
        .filter_map(|r| r.get("reference").and_then(Value::as_str))
        .find(|r| r.starts_with("CarePlan/"))
        .map(str::to_owned)
}

/// Rewrites every reference from gateway ids into `source`'s own: the person to their patient
/// id there, `Type/{source}.{id}` to `Type/{id}`. Anything the source cannot resolve (another
/// source's resource, another person, an id that is not the gateway's, a URN) is refused,
/// each named.
pub(super) fn map_references(
    body: &mut Value,
    source: &Arc<dyn Source>,
    person: &Person,
) -> Result<(), WriteError> {
    let info = source.info();
    let patient = patient_in(source, person);
    let mut problems = Vec::new();
    walk(body, "", &mut |path, reference| {
        if reference.starts_with('#') || reference.contains("://") {
            return None;
        }
        let Some(r) = parse_relative(reference) else {
            problems.push(format!(
                "{path}: `{reference}` is not a reference the gateway can map"
            ));
            return None;
        };
        if r.resource_type == "Patient" && Uuid::parse_str(r.id).is_ok() {
            if r.id != person.id.to_string() {
                problems.push(format!("{path}: `{reference}` is another person"));
                return None;
            }
            return match &patient {
                Some(p) => Some(format!("Patient/{p}")),
                None => {
                    problems.push(format!(
                        "{path}: {} ({}) does not know the person, so it cannot resolve `{reference}`",
                        info.name, info.id
                    ));
                    None
                }
            };
        }
        match split_gateway_id(r.id) {
            Some((s, local)) if s == info.id => Some(format!("{}/{local}", r.resource_type)),
            Some((s, _)) => {
                problems.push(format!(
                    "{path}: `{reference}` is held by `{s}`, which {} ({}) cannot resolve",
                    info.name, info.id
                ));
                None
            }
            None => {
                problems.push(format!("{path}: `{reference}` is not a gateway id"));
                None
            }
        }
    });
    if problems.is_empty() {
        Ok(())
    } else {
        Err(WriteError::Unprocessable {
            summary: format!(
                "the resource names what {} ({}) cannot resolve",
                info.name, info.id
            ),
            problems,
        })
    }
}

/// The person's patient id in `source`: its own id for them, or the first linked.
fn patient_in(source: &Arc<dyn Source>, person: &Person) -> Option<String> {
    source.own_patient_id(person.id).or_else(|| {
        let mut ids: Vec<&String> = person.links.get(&source.info().id)?.iter().collect();
        ids.sort();
        ids.first().map(|s| (*s).clone())
    })
}

/// A conditional create's search as `source` is to run it: refused unless the source honours
/// it; its person must be the resource's; narrowed to the person's patient id there.
pub(super) fn conditional(
    condition: &Condition,
    source: &Arc<dyn Source>,
    person: &Person,
) -> Result<Vec<(String, String)>, WriteError> {
    let info = source.info();
    if !source.conditional_create() {
        return Err(WriteError::NotConditional {
            source_id: info.id.clone(),
            source_name: info.name.clone(),
        });
    }
    if condition
        .person()
        .is_some_and(|p| p != person.id.to_string())
    {
        return Err(unprocessable(
            "If-None-Exist names another person than the resource's `subject`",
        ));
    }
    let patient = patient_in(source, person).ok_or_else(|| {
        unprocessable(format!(
            "{} ({}) does not know the person, so it cannot run If-None-Exist",
            info.name, info.id
        ))
    })?;
    Ok(condition.for_source(&patient))
}

/// Calls `map` on every `reference` string (with its path), replacing it with what `map`
/// returns.
pub(super) fn walk(
    value: &mut Value,
    path: &str,
    map: &mut dyn FnMut(&str, &str) -> Option<String>,
) {
    match value {
        Value::Object(obj) => {
            if let Some(Value::String(reference)) = obj.get_mut("reference")
                && let Some(new) = map(&format!("{path}.reference"), reference)
            {
                *reference = new;
            }
            for (key, child) in obj.iter_mut() {
                if key != "reference" {
                    walk(child, &format!("{path}.{key}"), map);
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                walk(item, &format!("{path}[{i}]"), map);
            }
        }
        _ => {}
    }
}

/// The element that names who wrote a resource of this type: `Goal.expressedBy`,
/// `CarePlan.author`, `Flag.author`.
fn author_element(resource_type: &str) -> &'static str {
    if resource_type == "Goal" {
        "expressedBy"
    } else {
        "author"
    }
}

/// Names the person as the author of what they write themselves, when the body names nobody.
pub(super) fn name_author(body: &mut Value, resource_type: &str, person: Uuid) {
    if let Some(obj) = body.as_object_mut() {
        obj.entry(author_element(resource_type))
            .or_insert_with(|| json!({"reference": format!("Patient/{person}")}));
    }
}

/// Puts the mark of the person's own on the answer's body (`theirs`), or takes away any the
/// caller sent (only the gateway puts it on).
pub(super) fn mark_theirs(body: &mut Value, theirs: bool) {
    let Some(obj) = body.as_object_mut() else {
        return;
    };
    if let Some(meta) = obj.get_mut("meta").and_then(Value::as_object_mut)
        && let Some(Value::Array(tags)) = meta.get_mut("tag")
    {
        tags.retain(|t| t.get("system").and_then(Value::as_str) != Some(CONTRIBUTOR_SYSTEM));
        if tags.is_empty() {
            meta.remove("tag");
        }
    }
    if theirs {
        crate::federation::normalise::add_tag(obj, contributor_tag());
    }
}

/// What the gateway added on reading is not sent back: its `meta.source`, the providing
/// organisation's tag, the mark of the person's own (put back by the gateway alone) and the
/// version (the source sets it). An update carries the source's own id; a create none.
pub(super) fn prepare_meta(body: &mut Value, local_id: Option<&str>) {
    let Some(obj) = body.as_object_mut() else {
        return;
    };
    match local_id {
        Some(id) => {
            obj.insert("id".into(), Value::String(id.to_owned()));
        }
        None => {
            obj.remove("id");
        }
    }
    if let Some(meta) = obj.get_mut("meta").and_then(Value::as_object_mut) {
        meta.remove("versionId");
        meta.remove("lastUpdated");
        if meta
            .get("source")
            .and_then(Value::as_str)
            .is_some_and(|s| s.starts_with("urn:concord:source:"))
        {
            meta.remove("source");
        }
        if let Some(Value::Array(tags)) = meta.get_mut("tag") {
            tags.retain(|t| {
                let system = t.get("system").and_then(Value::as_str);
                system != Some(crate::fhir::ODS_SYSTEM) && system != Some(CONTRIBUTOR_SYSTEM)
            });
            if tags.is_empty() {
                meta.remove("tag");
            }
        }
        if meta.is_empty() {
            obj.remove("meta");
        }
    }
}
