//! Policy files as `concord policy check` reads them: the input is parsed both as a label
//! map (`labels.toml`) and as an agreement (checked against the repository's label map). A
//! label map that loads is applied to a resource with codes of every kind it maps.

#![no_main]

use std::path::Path;
use std::sync::LazyLock;

use concord::policy::{Agreement, LabelMap};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

static LABELS: LazyLock<LabelMap> = LazyLock::new(|| {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/labels.toml");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) => panic!("cannot read {}: {e}", path.display()),
    };
    match LabelMap::parse(&path, &text) {
        Ok(map) => map,
        Err(found) => panic!("the repository's labels.toml does not load: {found:?}"),
    }
});

static RESOURCE: LazyLock<Value> = LazyLock::new(|| {
    let coding = |system: &str, code: &str| json!({"system": system, "code": code});
    json!({
        "resourceType": "Condition",
        "meta": {"security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "HIV"}]},
        "code": {"coding": [
            coding("http://hl7.org/fhir/sid/icd-10", "F20"),
            coding("http://hl7.org/fhir/sid/icd-10-uk", "F32.1"),
            coding("http://hl7.org/fhir/sid/icd-10", "Zé"),
            coding("http://hl7.org/fhir/sid/icd-10", ""),
            coding("http://snomed.info/sct", "86406008"),
            coding("http://terminology.hl7.org/CodeSystem/flag-category", "safety")
        ]}
    })
});

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let today = jiff::civil::date(2026, 5, 20);
    if let Ok(map) = LabelMap::parse(Path::new("labels.toml"), text) {
        map.labels_of(&RESOURCE);
    }
    if let Ok((agreement, _warnings)) =
        Agreement::parse(Path::new("fuzz.toml"), text, &LABELS, today)
    {
        agreement.in_force(today);
    }
});
