//! The FHIRPath subset of rules' `where` conditions: a condition on the first line, a
//! resource (JSON) after it (a built-in Observation when there is none). Compiles the
//! condition and evaluates it on the resource.

#![no_main]

use std::sync::LazyLock;

use concord::policy::fhirpath::Condition;
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

/// Something for conditions to find when the input brings no resource: nested arrays,
/// choice elements, dates of several precisions, numbers, booleans, non-ASCII text.
static RESOURCE: LazyLock<Value> = LazyLock::new(|| {
    json!({
        "resourceType": "Observation",
        "id": "obs-1",
        "meta": {"security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "PSY"}]},
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [
            {"system": "http://snomed.info/sct", "code": "271649006", "display": "Systolic blood pressure"},
            {"system": "http://loinc.org", "code": "8480-6"}
        ], "text": "Pression artérielle"},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2026-01-15T10:30:00Z",
        "issued": "2026-01-15",
        "valueQuantity": {"value": 1.50, "unit": "mmHg", "code": "mm[Hg]"},
        "interpretation": [],
        "note": [{"text": "né 2026"}, {"text": "😀"}],
        "component": [{"valueBoolean": true}, {"valueInteger": 3}, {"valueString": "2026é"}]
    })
});

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (condition, body) = text.split_once('\n').unwrap_or((text, ""));
    let Ok(condition) = Condition::parse(condition) else {
        return;
    };
    match serde_json::from_str::<Value>(body) {
        Ok(resource) => condition.holds(&resource),
        Err(_) => condition.holds(&RESOURCE),
    };
});
