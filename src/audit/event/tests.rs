//! Rendering records as AuditEvents: the BALP shape, and what the person's view leaves out.

use super::*;
use crate::audit::{Disclosure, SourceOutcome};

fn body() -> Body {
    Body {
        recorded_us: 1_764_064_800_123_456,
        request_id: "req-7".into(),
        client_address: Some("192.0.2.10:51234".into()),
        user: Some("dr-who".into()),
        user_name: Some("Dr Who".into()),
        org: Some("RY4".into()),
        role: Some("clinician".into()),
        caller: "staff".into(),
        client_certificate: Some("CN=ehr.example".into()),
        method: "GET".into(),
        route: "/fhir/Patient/{id}/$everything".into(),
        target: "/fhir/Patient/p1/$everything?_count=5".into(),
        purpose: Some("ETREAT".into()),
        break_glass_reason: Some("collapsed".into()),
        person: Some("p1".into()),
        sources: vec![SourceOutcome {
            source: "gp".into(),
            outcome: "ok".into(),
        }],
        disclosed: vec![
            Disclosure {
                reference: "Condition/gp.c1".into(),
                agreement: "dsa-b".into(),
                rule: "emergency".into(),
                emergency: true,
            },
            Disclosure {
                reference: "Patient/gp.p".into(),
                agreement: "dsa-a".into(),
                rule: "direct".into(),
                emergency: false,
            },
        ],
        withheld: 3,
        policy_hash: "ab".repeat(32),
        outcome: "success".into(),
        status: 200,
        ..Body::default()
    }
}

fn record(body: &Body) -> Record {
    Record {
        chain: "0b0e4c1c-4a57-4c4e-9c1a-3d2b1f0e9a77".into(),
        seq: 42,
        body: serde_json::to_string(body).expect("json"),
        prev_hash: "11".repeat(32),
        hash: "22".repeat(32),
    }
}

fn ext<'a>(event: &'a Value, url: &str) -> Option<&'a Value> {
    event["extension"]
        .as_array()?
        .iter()
        .find(|e| e["url"] == url)
}

#[test]
fn the_full_view_is_a_balp_rest_event_with_every_fact() {
    let e = render(&record(&body()), View::Full).expect("renders");
    assert_eq!(e["resourceType"], "AuditEvent");
    assert_eq!(e["id"], "0b0e4c1c-4a57-4c4e-9c1a-3d2b1f0e9a77.42");
    assert_eq!(e["type"]["code"], "rest");
    assert_eq!(e["subtype"][0]["code"], "operation");
    assert_eq!(e["action"], "E");
    assert_eq!(e["recorded"], "2025-11-25T10:00:00.123456Z");
    assert_eq!(e["outcome"], "0");
    assert_eq!(e["outcomeDesc"], "HTTP 200 OK");
    assert_eq!(e["purposeOfEvent"][0]["coding"][0]["code"], "ETREAT");
    let user = &e["agent"][0];
    assert_eq!(user["requestor"], true);
    assert_eq!(user["who"]["identifier"]["value"], "dr-who");
    assert_eq!(user["who"]["display"], "Dr Who");
    assert_eq!(user["altId"], "dr-who");
    assert_eq!(user["network"]["address"], "192.0.2.10");
    assert_eq!(user["policy"], json!(["dsa-a", "dsa-b"]));
    assert_eq!(user["role"][0]["text"], "clinician");
    let org = &e["agent"][1];
    assert_eq!(org["requestor"], false);
    assert_eq!(org["who"]["identifier"]["system"], ODS_SYSTEM);
    assert_eq!(org["who"]["identifier"]["value"], "RY4");
    assert_eq!(e["source"]["observer"]["display"], "Concord");
    assert_eq!(e["source"]["type"][0]["code"], "4");
    let entities = e["entity"].as_array().expect("entities");
    assert_eq!(entities[0]["what"]["reference"], "Patient/p1");
    assert_eq!(entities[1]["role"]["code"], "24");
    let query = base64::engine::general_purpose::STANDARD
        .decode(entities[1]["query"].as_str().expect("query"))
        .expect("base64");
    assert_eq!(query, b"/fhir/Patient/p1/$everything?_count=5");
    assert_eq!(entities[2]["what"]["identifier"]["value"], "req-7");
    assert_eq!(entities[3]["what"]["reference"], "Condition/gp.c1");
    assert_eq!(entities[3]["securityLabel"][0]["code"], "ETREAT");
    assert_eq!(entities[3]["detail"][0]["valueString"], "dsa-b");
    assert_eq!(entities[3]["detail"][1]["valueString"], "emergency");
    assert!(entities[4].get("securityLabel").is_none());

    let chain = ext(&e, EXT_CHAIN).expect("chain");
    assert_eq!(chain["extension"][1]["valueDecimal"], 42);
    assert_eq!(chain["extension"][3]["valueString"], "22".repeat(32));
    assert_eq!(
        ext(&e, EXT_BREAK_GLASS_REASON).expect("reason")["valueString"],
        "collapsed"
    );
    assert_eq!(
        ext(&e, EXT_WITHHELD).expect("withheld")["valueUnsignedInt"],
        3
    );
    assert!(ext(&e, EXT_POLICY_HASH).is_some());
    assert_eq!(
        ext(&e, EXT_SOURCE_OUTCOME).expect("source")["extension"][1]["valueCode"],
        "ok"
    );
    assert_eq!(
        user["extension"][0]["valueString"], "CN=ehr.example",
        "the certificate's subject"
    );
}

#[test]
fn the_persons_view_leaves_out_staff_details_and_internals() {
    let e = render(&record(&body()), View::Person).expect("renders");
    let text = e.to_string();
    for hidden in [
        "dr-who",
        "Dr Who",
        "192.0.2.10",
        "CN=ehr.example",
        "collapsed",
        "req-7",
        &"ab".repeat(32),
        &"22".repeat(32),
        EXTENSION_BASE,
        // The query text, base64 or not.
        "_count=5",
        "L2ZoaXIv",
    ] {
        assert!(!text.contains(hidden), "{hidden} shown: {text}");
    }
    // What they are told: who (organisation and role), why, when, what and how it ended.
    assert_eq!(e["agent"][1]["who"]["identifier"]["value"], "RY4");
    assert_eq!(e["agent"][0]["role"][0]["text"], "clinician");
    assert_eq!(e["purposeOfEvent"][0]["coding"][0]["code"], "ETREAT");
    assert_eq!(e["subtype"][0]["code"], "operation");
    assert_eq!(e["outcome"], "0");
    assert_eq!(e["entity"][0]["what"]["reference"], "Patient/p1");
    assert_eq!(
        e["entity"][1]["description"],
        "GET /fhir/Patient/{id}/$everything"
    );
}

#[test]
fn interactions_and_actions_follow_the_route() {
    for (method, route, code, action) in [
        (
            "GET",
            "/fhir/Patient/{id}/$everything",
            Some("operation"),
            "E",
        ),
        ("GET", "/fhir/{type}/{id}", Some("read"), "R"),
        ("GET", "/fhir/AuditEvent/{id}", Some("read"), "R"),
        ("GET", "/fhir/{type}", Some("search-type"), "R"),
        ("GET", "/fhir/Consent", Some("search-type"), "R"),
        ("POST", "/fhir/Consent", Some("create"), "C"),
        ("DELETE", "/fhir/Consent", None, "E"),
    ] {
        let i = Interaction::of(method, route);
        assert_eq!((i.code(), i.action()), (code, action), "{method} {route}");
    }
}

#[test]
fn outcomes_map_both_ways() {
    for (word, code) in [("success", "0"), ("refused", "4"), ("error", "8")] {
        assert_eq!(outcome_code(word), code);
        assert_eq!(outcome_word(code), Some(word));
        assert_eq!(outcome_word(word), Some(word));
    }
    assert_eq!(outcome_word("12"), None);
    assert_eq!(outcome_word(""), None);
}

#[test]
fn refused_and_unauthenticated_records_still_have_a_requestor() {
    let b = Body {
        recorded_us: 0,
        caller: "unauthenticated".into(),
        method: "GET".into(),
        route: "/fhir/{type}".into(),
        target: "/fhir/Observation".into(),
        outcome: "refused".into(),
        status: 401,
        ..Body::default()
    };
    let e = render(&record(&b), View::Full).expect("renders");
    assert_eq!(e["outcome"], "4");
    assert_eq!(e["outcomeDesc"], "HTTP 401 Unauthorized");
    assert_eq!(e["agent"].as_array().map(Vec::len), Some(1));
    assert_eq!(e["agent"][0]["requestor"], true);
    assert_eq!(e["agent"][0]["who"]["display"], "unauthenticated caller");
    assert_eq!(e["agent"][0]["role"][0]["text"], "unauthenticated");
    assert!(e.get("purposeOfEvent").is_none());
    let server_error = Body {
        status: 503,
        outcome: "error".into(),
        ..b
    };
    assert_eq!(
        render(&record(&server_error), View::Full).expect("renders")["outcome"],
        "8"
    );
}

#[test]
fn ids_round_trip_and_nonsense_is_refused() {
    let chain = "0b0e4c1c-4a57-4c4e-9c1a-3d2b1f0e9a77";
    assert_eq!(parse_id(&id(chain, 7)), Some((chain, 7)));
    for bad in [
        "",
        "abc",
        ".7",
        "abc.",
        "abc.-1",
        "abc.x",
        "a.b.c",
        "a_b.1",
        "abc.99999999999999999999",
    ] {
        assert_eq!(parse_id(bad), None, "{bad}");
    }
}

#[test]
fn a_body_that_is_not_a_record_is_unreadable() {
    let mut r = record(&body());
    r.body = "not json".into();
    assert_eq!(
        render(&r, View::Full),
        Err(Unreadable {
            chain: r.chain.clone(),
            seq: 42
        })
    );
}

#[test]
fn a_full_look_up_is_an_extension_and_absent_otherwise() {
    let mut b = body();
    let e = render(&record(&b), View::Full).expect("renders");
    let lookups = |e: &serde_json::Value| -> Vec<serde_json::Value> {
        e["extension"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|x| x["url"] == EXT_LOOKUP)
            .map(|x| x["valueCode"].clone())
            .collect()
    };
    assert!(lookups(&e).is_empty(), "{e}");
    b.lookup = Some("full".into());
    let e = render(&record(&b), View::Full).expect("renders");
    assert_eq!(lookups(&e), [serde_json::json!("full")], "{e}");
}
