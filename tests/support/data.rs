//! Small, deterministic FHIR test data: three providers that know some of the same people.

use serde_json::{Value, json};

pub(crate) const NHS_SYSTEM: &str = "https://fhir.nhs.uk/Id/nhs-number";

/// Valid test-range NHS numbers (Modulus 11 checked).
pub(crate) const ANN: &str = "9990000018";
pub(crate) const BOB: &str = "9990000026";
pub(crate) const CAT: &str = "9990000034";
/// Valid, but nobody has it.
pub(crate) const NOBODY: &str = "9990000042";

pub(crate) fn patient(local_id: &str, nhs: &str, family: &str, phone: &str, city: &str) -> Value {
    json!({
        "resourceType": "Patient",
        "id": local_id,
        "meta": {"lastUpdated": "2026-10-01T09:00:00Z"},
        "identifier": [
            {"system": NHS_SYSTEM, "value": nhs},
            {"system": "https://provider.example/Id/mrn", "value": format!("mrn-{local_id}")}
        ],
        "name": [{"use": "official", "family": family, "given": ["Test"]}],
        "telecom": [{"system": "phone", "value": phone, "use": "home"}],
        "gender": "female",
        "birthDate": "1948-03-02",
        "address": [{"line": ["1 High Street"], "city": city, "postalCode": "NS1 1AA"}]
    })
}

pub(crate) fn observation(id: &str, patient_local: &str, code: &str, date: &str) -> Value {
    json!({
        "resourceType": "Observation",
        "id": id,
        "meta": {"lastUpdated": format!("{date}T12:00:00Z")},
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": code}]},
        "subject": {"reference": format!("Patient/{patient_local}")},
        "effectiveDateTime": format!("{date}T10:00:00Z"),
        "valueQuantity": {"value": 72.5, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}
    })
}

pub(crate) fn condition(id: &str, patient_local: &str, code: &str, onset: &str) -> Value {
    json!({
        "resourceType": "Condition",
        "id": id,
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": code}]},
        "subject": {"reference": format!("Patient/{patient_local}")},
        "onsetDateTime": onset
    })
}

pub(crate) fn encounter(id: &str, patient_local: &str, start: &str) -> Value {
    json!({
        "resourceType": "Encounter",
        "id": id,
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": format!("Patient/{patient_local}")},
        "period": {"start": format!("{start}T09:00:00Z"), "end": format!("{start}T09:20:00Z")}
    })
}

/// The GP: knows Ann and Bob.
pub(crate) fn gp() -> Vec<Value> {
    let mut enc = encounter("e1", "g-ann", "2026-02-01");
    enc["serviceProvider"] = json!({"reference": "Organization/practice"});
    let mut obs = observation("o1", "g-ann", "27113001", "2026-02-01");
    obs["encounter"] = json!({"reference": "Encounter/e1"});
    vec![
        patient("g-ann", ANN, "Smith", "01632 960001", "Riverside"),
        patient("g-bob", BOB, "Jones", "01632 960002", "Riverside"),
        enc,
        obs,
        observation("o2", "g-ann", "271649006", "2025-06-10"),
        condition("c1", "g-ann", "38341003", "2019-04-01"),
        observation("o3", "g-bob", "27113001", "2026-01-05"),
        condition("c2", "g-bob", "195967001", "2010-01-01"),
    ]
}

/// Community services: know Ann (with a newer phone number) and Cat.
pub(crate) fn community() -> Vec<Value> {
    vec![
        patient("c-77", ANN, "Smith", "07700 900123", "Riverside"),
        patient("c-78", CAT, "Brown", "01632 960003", "Millbrook"),
        observation("w1", "c-77", "27113001", "2026-03-15"),
        encounter("v1", "c-77", "2026-03-15"),
        observation("w2", "c-78", "27113001", "2026-03-16"),
    ]
}

/// Social care: knows Ann, who has moved.
pub(crate) fn social() -> Vec<Value> {
    vec![
        patient("s-1", ANN, "Smith", "01632 960001", "Millbrook"),
        json!({
            "resourceType": "CarePlan", "id": "cp1", "status": "active", "intent": "plan",
            "subject": {"reference": "Patient/s-1"},
            "period": {"start": "2026-04-01"},
            "description": "Home care, two visits a day"
        }),
    ]
}
