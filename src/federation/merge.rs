//! One Patient from many: the person as every source knows them.
//!
//! Repeating elements (`identifier`, `name`, `address`, `telecom`, `contact`, `extension`) are
//! the union over the sources; each item carries a `data-source` extension for every source
//! that holds it, so a moved address or a changed phone number shows where each version came
//! from. The NHS number appears once. Single elements (`gender`, `birthDate`, …) come from the
//! first source, in config order, that has them; a choice element (`deceased[x]`,
//! `multipleBirth[x]`) appears in one form only, and a death recorded by any source outweighs
//! another source's `deceasedBoolean: false`. `Patient.link` points at each source's own
//! Patient (`Patient/{source}.{id}`), which can be read on its own.

use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::fhir::resource::{Resource, SharedResource};
use crate::fhir::{CONCORD_CANONICAL, NHS_NUMBER_SYSTEM};

/// URL of the extension that names the source of a merged element.
pub fn data_source_extension_url() -> String {
    format!("{CONCORD_CANONICAL}/StructureDefinition/data-source")
}

/// Repeating elements merged as the union over the sources, each item traced.
const LISTS: [&str; 5] = ["identifier", "name", "address", "telecom", "contact"];
/// Elements not taken from the parts (the merged Patient makes its own).
const SKIP: [&str; 6] = ["resourceType", "id", "meta", "link", "text", "contained"];

/// Merges normalised Patients (each with `meta.source` set) into the person's one Patient.
pub fn merge_patient(person_id: Uuid, parts: &[SharedResource]) -> Value {
    let ext_url = data_source_extension_url();
    let mut merged = Map::new();
    merged.insert("resourceType".into(), "Patient".into());
    merged.insert("id".into(), person_id.to_string().into());
    let mut tags: Vec<Value> = Vec::new();
    let mut last_updated: Option<String> = None;
    let mut lists: Vec<(&str, Vec<Value>)> = LISTS.iter().map(|l| (*l, Vec::new())).collect();
    let mut extensions: Vec<Value> = Vec::new();
    let mut links = Vec::new();

    for part in parts.iter().map(|p| p.value()) {
        let Some(obj) = part.as_object() else {
            continue;
        };
        let source_uri = part
            .pointer("/meta/source")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if let Some(id) = obj.get("id").and_then(Value::as_str) {
            links.push(json!({"other": {"reference": format!("Patient/{id}")}, "type": "seealso"}));
        }
        add_meta(part, &mut tags, &mut last_updated);
        for (name, items) in &mut lists {
            for item in obj
                .get(*name)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                add_traced(items, item, &source_uri, &ext_url, *name == "identifier");
            }
        }
        for ext in obj
            .get("extension")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if !extensions.contains(ext) {
                extensions.push(ext.clone());
            }
        }
        for (key, value) in obj {
            if SKIP.contains(&key.as_str()) || LISTS.contains(&key.as_str()) || key == "extension" {
                continue;
            }
            add_single(&mut merged, key, value);
        }
    }
    let mut meta = Map::new();
    if let Some(lu) = last_updated {
        meta.insert("lastUpdated".into(), lu.into());
    }
    if !tags.is_empty() {
        meta.insert("tag".into(), Value::Array(tags));
    }
    merged.insert("meta".into(), Value::Object(meta));
    if !extensions.is_empty() {
        merged.insert("extension".into(), Value::Array(extensions));
    }
    for (name, items) in lists {
        if !items.is_empty() {
            merged.insert(name.into(), Value::Array(items));
        }
    }
    if !links.is_empty() {
        merged.insert("link".into(), Value::Array(links));
    }
    Value::Object(merged)
}

/// Most people whose merged Patient [`MergedPatients`] keeps.
pub const MERGED_KEPT: usize = 1024;

/// Merged Patients kept for the parts they were made from. A merged Patient is a function of
/// the person's id and the disclosed Patient parts alone (no decision, date or caller goes
/// into it), so the same parts need not be merged again: a warm `$everything` gets the very
/// parts the normalised cache keeps, and is answered with the merged Patient and its JSON
/// text made the first time. The parts are matched by identity (the same shared resources,
/// in the same order), never by content: a part redacted for this caller, a reloaded source
/// or an upstream's fresh answer is a different resource, so it is merged anew. The kept
/// entry holds its parts, so an identity cannot be reused while it is kept. At most
/// [`MERGED_KEPT`] people are kept; beyond that an arbitrary one is dropped.
#[derive(Debug, Default)]
pub struct MergedPatients {
    kept: std::sync::Mutex<std::collections::HashMap<Uuid, (Vec<SharedResource>, SharedResource)>>,
}

impl MergedPatients {
    /// The person's merged Patient from `parts`: the one kept when it was made from these
    /// very parts, else merged now (and kept).
    pub fn merged(&self, person_id: Uuid, parts: &[SharedResource]) -> SharedResource {
        let same = |kept: &[SharedResource]| {
            kept.len() == parts.len()
                && kept
                    .iter()
                    .zip(parts)
                    .all(|(a, b)| std::sync::Arc::ptr_eq(a, b))
        };
        if let Ok(kept) = self.kept.lock()
            && let Some((from, merged)) = kept.get(&person_id)
            && same(from)
        {
            return merged.clone();
        }
        let merged = Resource::shared(merge_patient(person_id, parts));
        if let Ok(mut kept) = self.kept.lock() {
            if kept.len() >= MERGED_KEPT
                && !kept.contains_key(&person_id)
                && let Some(any) = kept.keys().next().copied()
            {
                kept.remove(&any);
            }
            kept.insert(person_id, (parts.to_vec(), merged.clone()));
        }
        merged
    }
}

/// Takes a part's `meta.tag` codings (each once) and its `meta.lastUpdated`, when newer than
/// the newest so far.
fn add_meta(part: &Value, tags: &mut Vec<Value>, last_updated: &mut Option<String>) {
    for tag in part
        .pointer("/meta/tag")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if !tags.contains(tag) {
            tags.push(tag.clone());
        }
    }
    if let Some(lu) = part.pointer("/meta/lastUpdated").and_then(Value::as_str) {
        // Instants in one format compare as text well enough to pick the newest.
        if last_updated.as_deref().is_none_or(|cur| lu > cur) {
            *last_updated = Some(lu.to_owned());
        }
    }
}

/// Takes a single element of a part unless an earlier part gave it: a choice element
/// (`deceased[x]`, `multipleBirth[x]`) in one form only, a recorded death outweighing
/// another source's "not deceased".
fn add_single(merged: &mut Map<String, Value>, key: &str, value: &Value) {
    let Some(group) = choice_group(key) else {
        merged
            .entry(key.to_owned())
            .or_insert_with(|| value.clone());
        return;
    };
    let existing = merged
        .keys()
        .find(|k| choice_group(k) == Some(group))
        .cloned();
    match existing {
        None => {
            merged.insert(key.to_owned(), value.clone());
        }
        // A death recorded by any source outweighs another's "not deceased".
        Some(k)
            if group == "deceased"
                && merged.get(&k) == Some(&Value::Bool(false))
                && value != &Value::Bool(false) =>
        {
            merged.shift_remove(&k);
            merged.insert(key.to_owned(), value.clone());
        }
        Some(_) => {}
    }
}

/// Choice elements of Patient (`deceased[x]`, `multipleBirth[x]`): one value per group.
fn choice_group(key: &str) -> Option<&'static str> {
    ["deceased", "multipleBirth"]
        .into_iter()
        .find(|g| key.len() > g.len() && key.starts_with(g))
}

/// The item without our data-source extensions, as it is kept the first time it is seen.
fn untraced(item: &Value, ext_url: &str) -> Value {
    let mut item = item.clone();
    if let Some(obj) = item.as_object_mut()
        && let Some(Value::Array(exts)) = obj.get_mut("extension")
    {
        exts.retain(|e| !is_trace(e, ext_url));
        if exts.is_empty() {
            obj.remove("extension");
        }
    }
    item
}

/// True when `extension` is one of our data-source extensions.
fn is_trace(extension: &Value, ext_url: &str) -> bool {
    extension.get("url").and_then(Value::as_str) == Some(ext_url)
}

/// `untraced(a) == untraced(b)`, without copying either: the elements other than
/// `extension` equal (in any order, as maps compare), and the extensions that are not ours
/// equal in order (an `extension` left empty counts as absent).
fn same_untraced(a: &Value, b: &Value, ext_url: &str) -> bool {
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return a == b;
    };
    let others = |obj: &Map<String, Value>| obj.len() - usize::from(obj.contains_key("extension"));
    if others(a) != others(b)
        || !a
            .iter()
            .filter(|(k, _)| *k != "extension")
            .all(|(k, v)| b.get(k) == Some(v))
    {
        return false;
    }
    match (extensions(a, ext_url), extensions(b, ext_url)) {
        (Extensions::None, Extensions::None) => true,
        (Extensions::Array(x), Extensions::Array(y)) => {
            let theirs = |e: &&Value| !is_trace(e, ext_url);
            x.iter().filter(theirs).eq(y.iter().filter(theirs))
        }
        (Extensions::Other(x), Extensions::Other(y)) => x == y,
        _ => false,
    }
}

/// What an item's `extension` holds once our data-source extensions are left out.
enum Extensions<'a> {
    /// Nothing (absent, or only ours).
    None,
    /// An array with something besides ours in it.
    Array(&'a [Value]),
    /// Not an array (kept as it is).
    Other(&'a Value),
}

fn extensions<'a>(item: &'a Map<String, Value>, ext_url: &str) -> Extensions<'a> {
    match item.get("extension") {
        Some(Value::Array(exts)) if exts.iter().any(|e| !is_trace(e, ext_url)) => {
            Extensions::Array(exts)
        }
        Some(Value::Array(_)) | None => Extensions::None,
        Some(other) => Extensions::Other(other),
    }
}

/// The NHS number an identifier holds, when it is one.
fn is_nhs_identifier(item: &Value) -> Option<&str> {
    (item.get("system").and_then(Value::as_str) == Some(NHS_NUMBER_SYSTEM))
        .then(|| item.get("value").and_then(Value::as_str))
        .flatten()
}

/// Two NHS numbers equal once spaces are left out.
fn same_number(a: &str, b: &str) -> bool {
    a.chars()
        .filter(|c| *c != ' ')
        .eq(b.chars().filter(|c| *c != ' '))
}

/// Adds `item` to `items`, or marks the equal item already there as also held by this source.
fn add_traced(
    items: &mut Vec<Value>,
    item: &Value,
    source_uri: &str,
    ext_url: &str,
    identifiers: bool,
) {
    let number = if identifiers {
        is_nhs_identifier(item)
    } else {
        None
    };
    let existing = items.iter_mut().find(|i| {
        if let (Some(a), Some(b)) = (is_nhs_identifier(i), number) {
            return same_number(a, b);
        }
        same_untraced(i, item, ext_url)
    });
    let target = match existing {
        Some(found) => found,
        None => {
            items.push(untraced(item, ext_url));
            let Some(last) = items.last_mut() else { return };
            last
        }
    };
    if let Some(obj) = target.as_object_mut() {
        let exts = obj
            .entry("extension")
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(exts) = exts
            && !exts.iter().any(|e| {
                is_trace(e, ext_url)
                    && e.get("valueUri").and_then(Value::as_str) == Some(source_uri)
            })
        {
            exts.push(json!({"url": ext_url, "valueUri": source_uri}));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(source: &str, phone: &str, city: &str) -> Value {
        json!({
            "resourceType": "Patient", "id": format!("{source}.p"),
            "meta": {"source": format!("urn:concord:source:{source}"), "tag": [{"code": source}], "lastUpdated": "2026-01-0{}T00:00:00Z".replace("{}", if source == "gp" { "1" } else { "2" })},
            "identifier": [{"system": NHS_NUMBER_SYSTEM, "value": "9434765919"}, {"system": format!("https://{source}/mrn"), "value": "1"}],
            "name": [{"family": "Smith", "given": ["Ann"]}],
            "telecom": [{"system": "phone", "value": phone}],
            "address": [{"city": city}],
            "gender": if source == "gp" { "female" } else { "unknown" },
            "birthDate": "1950-01-01"
        })
    }

    #[test]
    fn union_with_each_item_traced() {
        let id = Uuid::nil();
        let merged = merge_patient(
            id,
            &[
                Resource::shared(part("gp", "0100", "Riverside")),
                Resource::shared(part("community", "0200", "Riverside")),
            ],
        );
        assert_eq!(merged["id"], id.to_string());
        let ids = merged["identifier"].as_array().expect("identifiers");
        assert_eq!(ids.len(), 3, "one NHS number and two local ids");
        assert_eq!(
            ids[0]["extension"].as_array().map(Vec::len),
            Some(2),
            "NHS number from both sources"
        );
        assert_eq!(
            merged["telecom"].as_array().map(Vec::len),
            Some(2),
            "two different phones"
        );
        assert_eq!(
            merged["address"].as_array().map(Vec::len),
            Some(1),
            "same address once"
        );
        assert_eq!(
            merged["address"][0]["extension"].as_array().map(Vec::len),
            Some(2)
        );
        assert_eq!(
            merged["gender"], "female",
            "first source wins for single elements"
        );
        assert_eq!(merged["link"].as_array().map(Vec::len), Some(2));
        assert_eq!(merged["meta"]["tag"].as_array().map(Vec::len), Some(2));
        assert_eq!(merged["meta"]["lastUpdated"], "2026-01-02T00:00:00Z");
        assert!(merged["meta"].get("source").is_none());
    }

    #[test]
    fn one_value_per_choice_element_and_a_recorded_death_wins() {
        let mut alive = part("gp", "0100", "Riverside");
        alive["deceasedBoolean"] = json!(false);
        alive["multipleBirthBoolean"] = json!(true);
        let mut dead = part("social", "0100", "Riverside");
        dead["deceasedDateTime"] = json!("2026-01-03");
        dead["multipleBirthInteger"] = json!(2);
        let merged = merge_patient(
            Uuid::nil(),
            &[Resource::shared(alive), Resource::shared(dead)],
        );
        assert!(merged.get("deceasedBoolean").is_none());
        assert_eq!(merged["deceasedDateTime"], "2026-01-03");
        assert_eq!(merged["multipleBirthBoolean"], true);
        assert!(merged.get("multipleBirthInteger").is_none());
    }

    #[test]
    fn a_merged_patient_is_kept_for_the_very_same_parts_only() {
        let merged = MergedPatients::default();
        let person = Uuid::from_u128(7);
        let parts = [
            Resource::shared(part("gp", "0100", "Riverside")),
            Resource::shared(part("community", "0200", "Riverside")),
        ];
        let first = merged.merged(person, &parts);
        assert_eq!(*first.value(), merge_patient(person, &parts));
        assert_eq!(first.reference(), format!("Patient/{person}"));
        // The same parts again: the kept Patient, not a new merge.
        let again = merged.merged(person, &parts);
        assert!(std::sync::Arc::ptr_eq(&first, &again));
        // Equal content but another resource (a redacted or reloaded part): merged anew.
        let fresh = [
            Resource::shared(part("gp", "0100", "Riverside")),
            parts[1].clone(),
        ];
        let other = merged.merged(person, &fresh);
        assert!(!std::sync::Arc::ptr_eq(&first, &other));
        assert_eq!(other.value(), first.value());
        // Fewer parts (one source's Patient withheld from this caller): merged anew, and
        // its Patient says so.
        let fewer = merged.merged(person, &parts[..1]);
        assert_eq!(fewer.value()["link"].as_array().map(Vec::len), Some(1));
    }

    #[test]
    fn merged_patients_are_kept_for_a_bounded_number_of_people() {
        let merged = MergedPatients::default();
        let parts = [Resource::shared(part("gp", "0100", "Riverside"))];
        for n in 0..(MERGED_KEPT as u128 + 10) {
            merged.merged(Uuid::from_u128(n), &parts);
        }
        let kept = merged.kept.lock().map(|k| k.len()).unwrap_or_default();
        assert_eq!(kept, MERGED_KEPT);
    }
}
