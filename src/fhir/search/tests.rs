use serde_json::json;

use super::*;

fn obs() -> Value {
    json!({
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "27113001"}]},
        "effectiveDateTime": "2024-03-05T10:30:00Z",
        "meta": {"lastUpdated": "2024-03-06T08:00:00Z"}
    })
}

fn filter(type_name: &str, param: &str, raw: &str) -> Filter {
    let def = type_def(type_name)
        .and_then(|t| t.param(param))
        .expect("known parameter");
    Filter::parse(def, raw).expect("parses")
}

#[test]
fn date_prefixes_follow_fhir_semantics() {
    let o = obs();
    for (raw, expected) in [
        ("2024", true),
        ("2024-03-05", true),
        ("eq2024-03-06", false),
        ("ge2024-03-05", true),
        ("ge2024-03-06", false),
        ("gt2024-03-04", true),
        ("lt2024-03-06", true),
        ("le2024-03-04", false),
        ("sa2024-03-04", true),
        ("eb2024-03-06", true),
        ("ne2024-03-05", false),
        ("2024-03-05T10:30:00Z", true),
        ("2024-03-05T11:30:00+01:00", true),
        ("ge2023,lt2020", true),
    ] {
        assert_eq!(
            filter("Observation", "date", raw).matches(&o),
            expected,
            "date={raw}"
        );
    }
}

#[test]
fn periods_with_open_ends_are_ongoing() {
    let plan = json!({"resourceType": "CarePlan", "period": {"start": "2020-01-01"}});
    assert!(filter("CarePlan", "date", "ge2030-01-01").matches(&plan));
    assert!(!filter("CarePlan", "date", "lt2019-01-01").matches(&plan));
}

#[test]
fn tokens_match_system_and_code_forms() {
    let o = obs();
    for (raw, expected) in [
        ("27113001", true),
        ("http://snomed.info/sct|27113001", true),
        ("http://loinc.org|27113001", false),
        ("http://snomed.info/sct|", true),
        ("|27113001", false),
        ("1234,27113001", true),
    ] {
        assert_eq!(
            filter("Observation", "code", raw).matches(&o),
            expected,
            "code={raw}"
        );
    }
    assert!(filter("Observation", "status", "final").matches(&o));
    assert!(!filter("Observation", "status", "amended").matches(&o));
    assert!(filter("Observation", "category", "vital-signs").matches(&o));
    assert!(filter("Observation", "_lastUpdated", "ge2024-03-06").matches(&o));
}

#[test]
fn bad_values_are_errors() {
    let def = type_def("Observation")
        .and_then(|t| t.param("date"))
        .expect("date");
    assert!(matches!(
        Filter::parse(def, "yesterday"),
        Err(ParamError::Date(_))
    ));
    assert_eq!(
        Filter::parse(def, "ap2024").err(),
        Some(ParamError::Approximate)
    );
    let code = type_def("Observation")
        .and_then(|t| t.param("code"))
        .expect("code");
    assert_eq!(Filter::parse(code, "").err(), Some(ParamError::EmptyToken));
    assert_eq!(
        Filter::parse(code, "a|b|c").err(),
        Some(ParamError::EmptyToken)
    );
}

#[test]
fn types_only_have_their_own_parameters() {
    assert!(
        type_def("Condition")
            .and_then(|t| t.param("date"))
            .is_none()
    );
    assert!(
        type_def("Condition")
            .and_then(|t| t.param("onset-date"))
            .is_some()
    );
    assert!(type_def("Flag").and_then(|t| t.param("status")).is_none());
}

#[test]
fn cursors_round_trip_and_reject_junk() {
    let key = vec![
        KeyPart::Text("Observation".into()),
        KeyPart::Time(Some(-5)),
        KeyPart::Time(None),
        KeyPart::Text("gp.o-1".into()),
    ];
    let raw = encode_cursor(&key);
    assert_eq!(decode_cursor(&raw), Some(key));
    for junk in ["", "x1", "n1.5", "t<script>", "z1", "n"] {
        assert_eq!(decode_cursor(junk), None, "{junk}");
    }
}

#[test]
fn missing_times_sort_last_both_ways() {
    let a = [KeyPart::Time(Some(1))];
    let none = [KeyPart::Time(None)];
    assert_eq!(compare_keys(&a, &none, &[false]), Ordering::Less);
    assert_eq!(compare_keys(&a, &none, &[true]), Ordering::Less);
    assert_eq!(
        compare_keys(&[KeyPart::Time(Some(2))], &a, &[true]),
        Ordering::Less
    );
}
