use super::{Access, Kind, action};
use crate::audit::unsettled::SETTLE_ROUTE;
use crate::audit::{Body, Disclosure, Row, Written};
use crate::store::{Columns, Record};

fn body(method: &str, route: &str, target: &str) -> Body {
    Body {
        method: method.into(),
        route: route.into(),
        target: target.into(),
        caller: "staff".into(),
        ..Body::default()
    }
}

#[test]
fn what_was_done_is_said_in_words() {
    for (method, route, target, want) in [
        (
            "GET",
            "/fhir/{type}/{id}",
            "/fhir/Observation/gp-1",
            "read Observation",
        ),
        (
            "GET",
            "/fhir/{type}",
            "/fhir/Condition?patient=x",
            "searched Condition",
        ),
        (
            "GET",
            "/fhir/Patient/{id}/$everything",
            "/fhir/Patient/x/$everything",
            "the whole record ($everything)",
        ),
        (
            "PUT",
            "/fhir/{type}/{id}",
            "/fhir/CarePlan/c1",
            "wrote CarePlan",
        ),
        (
            "GET",
            "/fhir/{type}/{id}",
            "/fhir/%3Cb%3E/1",
            "read resource",
        ),
        (
            "POST",
            "/fhir/Consent",
            "/fhir/Consent",
            "recorded a sharing preference",
        ),
        (
            "GET",
            "/fhir/AuditEvent",
            "/fhir/AuditEvent?patient=x",
            "searched the audit trail",
        ),
        (
            "GET",
            "/console/audit",
            "/console/audit",
            "searched the audit log for this person",
        ),
        (
            "GET",
            "/console/person/{nhs}/report",
            "/console/person/{nhs}/report",
            "viewed this access report (print version)",
        ),
        (
            "GET",
            "/fhir/unknown/{x}",
            "/fhir/unknown/1",
            "GET /unknown/{x}",
        ),
    ] {
        assert_eq!(action(&body(method, route, target)), want, "{route}");
    }
}

fn row(b: &Body) -> Row {
    Row {
        record: Record {
            chain: "c".into(),
            seq: 7,
            body: serde_json::to_string(b).expect("json"),
            prev_hash: String::new(),
            hash: String::new(),
        },
        columns: Columns {
            recorded_us: 1_700_000_000_000_000,
            ..Columns::default()
        },
    }
}

fn disclosure(agreement: &str, rule: &str, emergency: bool) -> Disclosure {
    Disclosure {
        reference: "Condition/x".into(),
        agreement: agreement.into(),
        rule: rule.into(),
        emergency,
    }
}

#[test]
fn each_agreement_and_rule_is_named_once_with_its_count() {
    let mut b = body(
        "GET",
        "/fhir/Patient/{id}/$everything",
        "/fhir/Patient/x/$everything",
    );
    b.user = Some("dr-1".into());
    b.user_name = Some("Dr One".into());
    b.role = Some("clinician".into());
    b.org = Some("A81001".into());
    b.purpose = Some("ETREAT".into());
    b.break_glass_reason = Some("unconscious in A&E".into());
    b.disclosed = vec![
        disclosure("dsa-a", "r1", false),
        disclosure("dsa-b", "emergency", true),
        disclosure("dsa-a", "r1", false),
        disclosure("dsa-a", "r2", false),
    ];
    b.withheld = 3;
    b.outcome = "success".into();
    b.status = 200;
    let a = Access::of(&row(&b));
    assert_eq!(a.id, "c.7");
    assert_eq!(a.kind, Kind::Staff);
    assert_eq!(a.who, "Dr One (dr-1)");
    assert_eq!((a.disclosed, a.withheld), (4, 3));
    assert_eq!(a.break_glass.as_deref(), Some("unconscious in A&E"));
    let grounds: Vec<_> = a
        .grounds
        .iter()
        .map(|g| {
            (
                g.agreement.as_str(),
                g.rule.as_str(),
                g.resources,
                g.emergency,
            )
        })
        .collect();
    assert_eq!(
        grounds,
        [
            ("dsa-a", "r1", 2, false),
            ("dsa-b", "emergency", 1, true),
            ("dsa-a", "r2", 1, false)
        ]
    );
    assert_eq!(a.outcome, "success (200)");
}

#[test]
fn console_views_people_and_anonymous_callers_are_told_apart() {
    let console = body("GET", "/console/person", "/console/person");
    assert_eq!(Access::of(&row(&console)).kind, Kind::Console);
    let mut patient = body("GET", "/fhir/{type}", "/fhir/Condition");
    patient.caller = "carer".into();
    assert_eq!(Access::of(&row(&patient)).kind, Kind::Patient);
    let mut nobody = body("GET", "/fhir/{type}/{id}", "/fhir/Patient/x");
    nobody.caller = "unauthenticated".into();
    let a = Access::of(&row(&nobody));
    assert_eq!(
        (a.kind, a.who.as_str()),
        (Kind::Unauthenticated, "no valid token")
    );
}

#[test]
fn a_write_is_said_by_its_action_stage_and_outcome() {
    let write = |method: &str, code: &str, stage: &str, outcome: &str| {
        let (route, target) = if code == "U" {
            ("/fhir/{type}/{id}", "/fhir/Goal/region.g1")
        } else {
            ("/fhir/{type}", "/fhir/Goal")
        };
        let mut b = body(method, route, target);
        b.outcome = outcome.into();
        b.write = Some(Written {
            stage: stage.into(),
            action: code.into(),
            source: Some("region".into()),
            resource: None,
            version: None,
            sha256: None,
            agreement: None,
            rule: None,
            read_version: None,
        });
        action(&b)
    };
    assert_eq!(
        write("POST", "C", "intent", "pending"),
        "about to create Goal (recorded before it was sent)"
    );
    assert_eq!(write("POST", "C", "outcome", "success"), "created Goal");
    assert_eq!(write("PUT", "U", "outcome", "success"), "updated Goal");
    assert_eq!(
        write("PUT", "U", "outcome", "refused"),
        "tried to update Goal"
    );
    assert_eq!(
        write("POST", "C", "outcome", "error"),
        "tried to create Goal"
    );
    let mut settled = body("CLI", SETTLE_ROUTE, "concord audit writes --settle c.3");
    settled.outcome = "error".into();
    settled.write = Some(Written {
        stage: "settled".into(),
        action: "C".into(),
        source: Some("region".into()),
        resource: Some("Goal/region.g1".into()),
        version: None,
        sha256: None,
        agreement: None,
        rule: None,
        read_version: None,
    });
    assert_eq!(
        action(&settled),
        "checked at the source: the create of Goal was not made"
    );
    settled.outcome = "success".into();
    assert_eq!(
        action(&settled),
        "checked at the source: the create of Goal was made"
    );
}
