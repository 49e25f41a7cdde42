//! The compact form of `disclosed` says what the earlier form said.

use super::super::{Body, Disclosure};
use super::earlier_form;

fn disclosure(reference: &str, agreement: &str, rule: &str, emergency: bool) -> Disclosure {
    Disclosure {
        reference: reference.into(),
        agreement: agreement.into(),
        rule: rule.into(),
        emergency,
    }
}

fn body(disclosed: Vec<Disclosure>) -> Body {
    Body {
        recorded_us: 7,
        request_id: "req".into(),
        caller: "staff".into(),
        method: "GET".into(),
        route: "/fhir/Patient/{id}/$everything".into(),
        target: "/fhir/Patient/p1/$everything".into(),
        disclosed,
        policy_hash: "abc".into(),
        outcome: "success".into(),
        status: 200,
        ..Body::default()
    }
}

/// Permits interleaved, one differing only in `emergency`, one resource named twice.
fn mixed() -> Vec<Disclosure> {
    vec![
        disclosure("Condition/gp.c1", "dsa-a", "gp", false),
        disclosure("Observation/sc.o1", "dsa-b", "social", false),
        disclosure("Condition/gp.c2", "dsa-a", "gp", false),
        disclosure("Observation/gp.o\"1", "dsa-a", "gp", true),
        disclosure("Condition/gp.c1", "dsa-a", "gp", false),
    ]
}

#[test]
fn each_permit_is_named_once_and_the_list_reads_back_in_order() {
    let b = body(mixed());
    let text = serde_json::to_string(&b).expect("encodes");
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(
        v["disclosed"],
        serde_json::json!({
            "permits": [
                {"agreement": "dsa-a", "rule": "gp", "emergency": false},
                {"agreement": "dsa-b", "rule": "social", "emergency": false},
                {"agreement": "dsa-a", "rule": "gp", "emergency": true},
            ],
            "resources": [
                ["Condition/gp.c1", 0],
                ["Observation/sc.o1", 1],
                ["Condition/gp.c2", 0],
                ["Observation/gp.o\"1", 2],
                ["Condition/gp.c1", 0],
            ],
        })
    );
    assert_eq!(serde_json::from_str::<Body>(&text).expect("decodes"), b);
    assert!(text.len() < earlier_form(&b).len());
}

#[test]
fn a_record_in_the_earlier_form_reads_the_same() {
    let b = body(mixed());
    let earlier = earlier_form(&b);
    assert!(earlier.contains(
        r#""disclosed":[{"reference":"Condition/gp.c1","agreement":"dsa-a","rule":"gp","emergency":false},"#
    ));
    assert_eq!(serde_json::from_str::<Body>(&earlier).expect("decodes"), b);
}

#[test]
fn nothing_disclosed_is_written_as_before() {
    let b = body(Vec::new());
    let text = serde_json::to_string(&b).expect("encodes");
    assert!(text.contains(r#""disclosed":[],"#), "{text}");
    assert_eq!(text, earlier_form(&b));
    assert_eq!(serde_json::from_str::<Body>(&text).expect("decodes"), b);
}

#[test]
fn a_malformed_list_is_not_a_record() {
    let good = serde_json::to_string(&body(mixed())).expect("encodes");
    let start = good.find(r#""disclosed":"#).expect("disclosed") + r#""disclosed":"#.len();
    let end = good.find(r#","withheld""#).expect("withheld");
    let splice = |part: &str| format!("{}{part}{}", &good[..start], &good[end..]);
    assert_eq!(splice(&good[start..end]), good);
    assert!(serde_json::from_str::<Body>(&good).is_ok());
    for bad in [
        // A resource naming a permit that is not there.
        r#"{"permits":[{"agreement":"a","rule":"r","emergency":false}],"resources":[["Condition/gp.c1",1]]}"#,
        r#"{"permits":[],"resources":[["Condition/gp.c1",0]]}"#,
        r#"{"permits":[{"agreement":"a","rule":"r","emergency":false}],"resources":[["Condition/gp.c1",-1]]}"#,
        // Missing, repeated or unknown parts.
        r#"{"resources":[]}"#,
        r#"{"permits":[]}"#,
        r#"{"permits":[],"resources":[],"permits":[]}"#,
        r#"{"permits":[],"resources":[],"extra":1}"#,
        // Neither form, or parts of the wrong shape.
        r#"7"#,
        r#""Condition/gp.c1""#,
        r#"null"#,
        r#"[["Condition/gp.c1",0]]"#,
        r#"{"permits":[{"agreement":"a","rule":"r","emergency":false}],"resources":[["Condition/gp.c1"]]}"#,
        r#"{"permits":[{"agreement":"a","rule":"r"}],"resources":[["Condition/gp.c1",0]]}"#,
    ] {
        assert!(
            serde_json::from_str::<Body>(&splice(bad)).is_err(),
            "{bad} read as a record"
        );
    }
}
