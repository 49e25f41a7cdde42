//! Removing what a rule says must not be disclosed, and saying so on the resource.

use serde_json::{Map, Value, json};

/// The HL7 code system of `REDACTED`.
pub const OBSERVATION_VALUE: &str = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue";
/// The HL7 code system of purposes of use (`ETREAT`).
pub const ACT_REASON: &str = "http://terminology.hl7.org/CodeSystem/v3-ActReason";

/// Removes each dotted element path (`note`, `performer.display`) from the resource, through
/// arrays at any step. Returns true when anything was removed.
pub fn redact(resource: &mut Value, paths: &[String]) -> bool {
    let mut removed = false;
    for path in paths {
        let parts: Vec<&str> = path.split('.').collect();
        removed |= remove(resource, &parts);
    }
    removed
}

fn remove(value: &mut Value, parts: &[&str]) -> bool {
    match (value, parts) {
        (Value::Array(items), _) => items
            .iter_mut()
            .fold(false, |acc, item| remove(item, parts) | acc),
        (Value::Object(obj), [last]) => {
            // A primitive's extensions and id live in `_name`; they go with it.
            let a = obj.remove(*last).is_some();
            let b = obj.remove(&format!("_{last}")).is_some();
            a || b
        }
        (Value::Object(obj), [first, rest @ ..]) => {
            obj.get_mut(*first).is_some_and(|child| remove(child, rest))
        }
        _ => false,
    }
}

/// Adds a code to `meta.security` unless present.
pub fn add_security(obj: &mut Map<String, Value>, system: &str, code: &str) {
    let meta = obj
        .entry("meta")
        .or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    let Some(meta) = meta.as_object_mut() else {
        return;
    };
    let security = meta
        .entry("security")
        .or_insert_with(|| Value::Array(Vec::new()));
    if !security.is_array() {
        *security = Value::Array(Vec::new());
    }
    if let Some(list) = security.as_array_mut()
        && !list.iter().any(|c| {
            c.get("system").and_then(Value::as_str) == Some(system)
                && c.get("code").and_then(Value::as_str) == Some(code)
        })
    {
        list.push(json!({"system": system, "code": code}));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_removed_through_arrays_with_their_extensions() {
        let mut r = json!({
            "resourceType": "Observation",
            "note": [{"text": "x"}],
            "_note": [{"extension": []}],
            "performer": [{"reference": "Practitioner/a", "display": "Dr A"}, {"display": "Dr B"}],
            "code": {"text": "keep"}
        });
        assert!(redact(
            &mut r,
            &["note".into(), "performer.display".into(), "absent".into()]
        ));
        assert_eq!(
            r,
            json!({
                "resourceType": "Observation",
                "performer": [{"reference": "Practitioner/a"}, {}],
                "code": {"text": "keep"}
            })
        );
        assert!(!redact(&mut r, &["note".into()]), "nothing left to remove");
    }

    #[test]
    fn security_codes_are_added_once() {
        let mut obj = Map::new();
        add_security(&mut obj, OBSERVATION_VALUE, "REDACTED");
        add_security(&mut obj, OBSERVATION_VALUE, "REDACTED");
        assert_eq!(
            Value::Object(obj),
            json!({"meta": {"security": [{"system": OBSERVATION_VALUE, "code": "REDACTED"}]}})
        );
    }
}
