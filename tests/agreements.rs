//! The repository's demo agreements (`policies/`), enforced end to end over HTTP: each persona
//! gets exactly what its agreements allow, with labels and redactions, from real upstream FHIR
//! servers on 127.0.0.1.

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::app::{
    Policies, SourceSpec, StoreChoice, TestApp, matches, outcomes, postgres,
};
use crate::support::data::{NHS_SYSTEM, condition, encounter, observation, patient};
use crate::support::upstream::Upstream;

/// Known to the GP, community services and social care.
pub(crate) const DORA: &str = "9990000050";
/// Known to the GP and social care, not to community services.
pub(crate) const EVE: &str = "9990000069";

fn coded(mut resource: Value, field: &str, system: &str, code: &str) -> Value {
    resource[field] = json!({"coding": [{"system": system, "code": code}]});
    resource
}

const SNOMED: &str = "http://snomed.info/sct";

fn gp_records() -> Vec<Value> {
    let mut medicine = json!({
        "resourceType": "MedicationStatement", "id": "m-cit", "status": "active",
        "medicationCodeableConcept": {"coding": [{"system": SNOMED, "code": "321987003", "display": "Citalopram 20mg tablets"}]},
        "subject": {"reference": "Patient/g-dora"},
        "effectivePeriod": {"start": "2025-01-01"},
        "reasonReference": [{"reference": "Condition/c-dep"}]
    });
    medicine["dosage"] = json!([{"text": "One tablet daily"}]);
    vec![
        patient("g-dora", DORA, "Dawson", "01632 960101", "Riverside"),
        patient("g-eve", EVE, "Evans", "01632 960102", "Riverside"),
        condition("c-ht", "g-dora", "59621000", "2015-01-01"),
        condition("c-hiv", "g-dora", "86406008", "2012-05-01"),
        condition("c-dep", "g-dora", "35489007", "2024-11-01"),
        observation("o-bp", "g-dora", "271649006", "2026-06-01"),
        {
            let mut pending = observation("o-pending", "g-dora", "1000731000000107", "2026-11-20");
            pending["status"] = json!("preliminary");
            pending
        },
        medicine,
        json!({
            "resourceType": "Immunization", "id": "i-flu", "status": "completed",
            "vaccineCode": {"coding": [{"system": SNOMED, "code": "1181000221105"}]},
            "patient": {"reference": "Patient/g-dora"}, "occurrenceDateTime": "2025-10-01"
        }),
        condition("c-eve", "g-eve", "195967001", "2001-01-01"),
    ]
}

fn community_records() -> Vec<Value> {
    vec![
        patient("c-dora", DORA, "Dawson", "07700 900101", "Riverside"),
        coded(
            encounter("e-sm", "c-dora", "2026-05-02"),
            "serviceType",
            SNOMED,
            "494041000000102",
        ),
        encounter("e-home", "c-dora", "2026-05-09"),
        json!({
            "resourceType": "CarePlan", "id": "cp-c", "status": "active", "intent": "plan",
            "subject": {"reference": "Patient/c-dora"}, "period": {"start": "2026-05-01"},
            "description": "Leg ulcer dressings twice a week"
        }),
    ]
}

fn social_records() -> Vec<Value> {
    vec![
        patient("s-dora", DORA, "Dawson", "01632 960101", "Millbrook"),
        patient("s-eve", EVE, "Evans", "01632 960102", "Millbrook"),
        json!({
            "resourceType": "CarePlan", "id": "cp-s", "status": "active", "intent": "plan",
            "subject": {"reference": "Patient/s-dora"}, "period": {"start": "2026-04-01"},
            "description": "Home care, two visits a day"
        }),
        json!({
            "resourceType": "Flag", "id": "f-safe", "status": "active",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/flag-category", "code": "safety"}]}],
            "code": {"text": "Adult safeguarding: section 42 enquiry open"},
            "subject": {"reference": "Patient/s-dora"}
        }),
        json!({
            "resourceType": "RelatedPerson", "id": "rp-dau", "active": true,
            "patient": {"reference": "Patient/s-dora"},
            "relationship": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "code": "DAU"}]}],
            "name": [{"family": "Dawson", "given": ["Daisy"]}]
        }),
        encounter("e-s", "s-dora", "2026-04-02"),
        json!({
            "resourceType": "CarePlan", "id": "cp-eve", "status": "active", "intent": "plan",
            "subject": {"reference": "Patient/s-eve"}, "period": {"start": "2026-04-01"},
            "description": "Day centre on Tuesdays"
        }),
    ]
}

/// A sexual health clinic's records of Dora: no agreement names the clinic.
fn clinic_records() -> Vec<Value> {
    vec![
        patient("x-dora", DORA, "Dawson", "07700 900101", "Riverside"),
        condition("x-1", "x-dora", "105629000", "2020-02-02"),
    ]
}

/// The shipped policy files.
pub(crate) fn shipped() -> Vec<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("policies/") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            files.push((
                path.file_name()
                    .expect("name")
                    .to_string_lossy()
                    .into_owned(),
                std::fs::read_to_string(&path).expect("read policy"),
            ));
        }
    }
    files
}

pub(crate) struct World {
    pub(crate) app: TestApp,
    pub(crate) gp: Upstream,
    community: Upstream,
    social: Upstream,
    clinic: Upstream,
}

async fn world_with(files: Vec<(String, String)>) -> World {
    world_full(files, "").await
}

/// `social` adds TOML lines to the social care source.
async fn world_full(files: Vec<(String, String)>, social_lines: &str) -> World {
    world_on(files, social_lines, StoreChoice::Sqlite).await
}

pub(crate) async fn world_on(
    files: Vec<(String, String)>,
    social_lines: &str,
    store: StoreChoice,
) -> World {
    world_audited(files, social_lines, store, "").await
}

/// [`world_on`] with `audit_toml` added to the gateway's `[audit]` table.
pub(crate) async fn world_audited(
    files: Vec<(String, String)>,
    social_lines: &str,
    store: StoreChoice,
    audit_toml: &str,
) -> World {
    let gp = Upstream::start(gp_records()).await;
    let community = Upstream::start(community_records()).await;
    let social = Upstream::start(social_records()).await;
    let clinic = Upstream::start(clinic_records()).await;
    let app = TestApp::start_audited(
        vec![
            SourceSpec::fhir("gp", "Riverside GP", "A81001", gp.base_url()),
            SourceSpec::fhir(
                "community",
                "Northshire Community",
                "RY4",
                community.base_url(),
            ),
            SourceSpec::fhir(
                "social",
                "Northshire Adult Social Care",
                "LA001",
                social.base_url(),
            )
            .with(social_lines),
            SourceSpec::fhir("clinic", "Sexual Health Clinic", "RXX99", clinic.base_url()),
        ],
        store,
        "",
        Policies::Files(files),
        audit_toml,
        "",
    )
    .await;
    World {
        app,
        gp,
        community,
        social,
        clinic,
    }
}

pub(crate) async fn world() -> World {
    world_with(shipped()).await
}

fn staff(app: &TestApp, org: &str, role: &str) -> String {
    app.token_with(&[("org", json!(org)), ("role", json!(role))])
}

pub(crate) fn person_token(app: &TestApp, nhs: &str, relationship: Option<&str>) -> String {
    let mut claims = vec![
        ("scope", json!("patient/*.rs")),
        ("nhs_number", json!(nhs)),
        ("role", json!("patient")),
        ("org", Value::Null),
    ];
    if let Some(rel) = relationship {
        claims.push(("acting_for_relationship", json!(rel)));
    }
    app.token_with(&claims)
}

pub(crate) async fn as_(
    app: &TestApp,
    token: &str,
    path: &str,
    extra: &[(&str, &str)],
) -> (StatusCode, Value) {
    let bearer = format!("Bearer {token}");
    let mut headers = vec![("Authorization", bearer.as_str())];
    headers.extend_from_slice(extra);
    let a = app.get_raw(path, &headers).await;
    (a.status, a.body)
}

/// The gateway id of a person, found with a GP clinician's token.
pub(crate) async fn person_id(app: &TestApp, nhs: &str) -> String {
    let token = staff(app, "A81001", "clinician");
    let (status, body) = as_(
        app,
        &token,
        &format!("Patient?identifier={NHS_SYSTEM}|{nhs}"),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    matches(&body)[0]["id"].as_str().expect("id").to_owned()
}

/// `Type/id` of every match but the merged Patient, sorted.
fn disclosed(bundle: &Value) -> BTreeSet<String> {
    matches(bundle)
        .iter()
        .filter(|r| r["resourceType"] != "Patient")
        .map(|r| {
            format!(
                "{}/{}",
                r["resourceType"].as_str().unwrap_or(""),
                r["id"].as_str().unwrap_or("")
            )
        })
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn find(bundle: &Value, id: &str) -> Option<Value> {
    matches(bundle).into_iter().find(|r| r["id"] == id)
}

fn security(resource: &Value) -> BTreeSet<String> {
    resource["meta"]["security"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["code"].as_str().map(str::to_owned))
        .collect()
}

fn withheld_notice(bundle: &Value) -> bool {
    outcomes(bundle)
        .iter()
        .any(|o| o.contains("data-sharing agreements in force do not permit"))
}

fn merged_links(bundle: &Value) -> usize {
    matches(bundle)
        .iter()
        .find(|r| r["resourceType"] == "Patient")
        .and_then(|p| p["link"].as_array().map(Vec::len))
        .unwrap_or(0)
}

#[tokio::test]
async fn a_gp_clinician_sees_direct_care_and_social_care_but_not_hiv() {
    let w = world().await;
    let dora = person_id(&w.app, DORA).await;
    let token = staff(&w.app, "A81001", "clinician");
    let (status, body) = as_(&w.app, &token, &format!("Patient/{dora}/$everything"), &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        disclosed(&body),
        set(&[
            "CarePlan/community.cp-c",
            "CarePlan/social.cp-s",
            "Condition/gp.c-dep",
            "Condition/gp.c-ht",
            "Encounter/community.e-home",
            "Encounter/community.e-sm",
            "Flag/social.f-safe",
            "Immunization/gp.i-flu",
            "MedicationStatement/gp.m-cit",
            "Observation/gp.o-bp",
            "Observation/gp.o-pending",
            "RelatedPerson/social.rp-dau",
        ])
    );
    assert_eq!(
        merged_links(&body),
        3,
        "the Patient of each agreed provider"
    );
    assert!(
        withheld_notice(&body),
        "HIV and social care's contacts are withheld: {body}"
    );
    let notice = outcomes(&body).join(" ");
    assert!(
        !notice.contains("HIV") && !notice.contains("Condition"),
        "no types or labels: {notice}"
    );
    // Labels are on what is disclosed.
    assert!(security(&find(&body, "gp.c-dep").expect("c-dep")).contains("PSY"));
    assert!(security(&find(&body, "community.e-sm").expect("e-sm")).contains("SUD"));
    assert!(security(&find(&body, "social.f-safe").expect("flag")).contains("SAFEGUARDING"));
    assert!(security(&find(&body, "gp.c-ht").expect("c-ht")).is_empty());
    // The clinic is in no agreement: never asked, not even who Dora is.
    assert_eq!(w.clinic.request_count(), 0, "{:?}", w.clinic.requests());

    // A read of a withheld resource is a 404, like a resource that does not exist.
    let (status, _) = as_(&w.app, &token, "Condition/gp.c-hiv", &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, c) = as_(&w.app, &token, "Condition/gp.c-dep", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(security(&c).contains("PSY"));
    // A search leaves the withheld out of the total too.
    let (_, conditions) = as_(&w.app, &token, &format!("Condition?patient={dora}"), &[]).await;
    assert_eq!(conditions["total"], 2, "{conditions}");
    assert!(withheld_notice(&conditions));
}

#[tokio::test]
async fn a_community_nurse_needs_a_care_relationship() {
    let w = world().await;
    let dora = person_id(&w.app, DORA).await;
    let eve = person_id(&w.app, EVE).await;
    let token = staff(&w.app, "RY4", "nurse");
    let (_, body) = as_(&w.app, &token, &format!("Patient/{dora}/$everything"), &[]).await;
    assert!(disclosed(&body).contains("Observation/gp.o-bp"), "{body}");
    assert!(disclosed(&body).contains("CarePlan/social.cp-s"));
    assert!(!disclosed(&body).contains("Condition/gp.c-hiv"));

    // Eve is not known to community services: nothing of hers goes to its nurse, and the
    // answer is the one for a person nobody knows (issue 13: it must not tell them apart).
    let (status, body) = as_(&w.app, &token, &format!("Patient/{eve}/$everything"), &[]).await;
    let unknown = uuid::Uuid::new_v4();
    let (unknown_status, unknown_body) = as_(
        &w.app,
        &token,
        &format!("Patient/{unknown}/$everything"),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(unknown_status, StatusCode::OK, "{unknown_body}");
    assert_eq!(body["total"], 0);
    // The same answer, but for the Bundle's own id and time.
    let shown = |b: &Value, id: &str| {
        json!([b["total"], b["link"], b["entry"]])
            .to_string()
            .replace(id, "ID")
    };
    assert_eq!(
        shown(&body, &eve),
        shown(&unknown_body, &unknown.to_string())
    );
    assert!(!withheld_notice(&body));
    let (status, _) = as_(&w.app, &token, "Condition/gp.c-eve", &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_social_worker_sees_the_assessment_view_and_the_gp_is_asked_for_nothing_else() {
    let w = world().await;
    let dora = person_id(&w.app, DORA).await;
    w.gp.clear_requests();
    w.community.clear_requests();
    let token = staff(&w.app, "LA001", "social-worker");
    let (status, body) = as_(&w.app, &token, &format!("Patient/{dora}/$everything"), &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        disclosed(&body),
        set(&[
            "CarePlan/community.cp-c",
            "CarePlan/social.cp-s",
            "Condition/gp.c-ht",
            "Encounter/social.e-s",
            "Flag/social.f-safe",
            "RelatedPerson/social.rp-dau",
        ]),
        "no mental health (PSY), no HIV, no observations, medicines or GP encounters"
    );
    assert!(withheld_notice(&body));
    // Planning: the GP and community services were asked only for the agreed types.
    for (name, upstream) in [("gp", &w.gp), ("community", &w.community)] {
        for request in upstream.requests() {
            for never in [
                "Observation",
                "MedicationStatement",
                "Immunization",
                "Encounter",
            ] {
                assert!(!request.contains(never), "{name} was asked `{request}`");
            }
        }
    }
    assert_eq!(w.clinic.request_count(), 0);
    assert!(
        w.social.request_count() > 0,
        "the council's own system is asked"
    );
    let before = w.gp.request_count();
    let (status, _) = as_(&w.app, &token, "Observation/gp.o-bp", &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        w.gp.request_count(),
        before,
        "a read no rule could permit is not sent"
    );

    // No emergency access for social workers.
    let (status, body) = as_(
        &w.app,
        &token,
        &format!("Patient/{dora}/$everything"),
        &[("X-Break-Glass-Reason", "worried")],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["resourceType"], "OperationOutcome");
}

#[tokio::test]
async fn a_patient_sees_their_own_record_but_not_alerts_or_third_parties() {
    let w = world().await;
    let dora = person_id(&w.app, DORA).await;
    let token = person_token(&w.app, DORA, None);
    let (status, body) = as_(&w.app, &token, &format!("Patient/{dora}/$everything"), &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        disclosed(&body),
        set(&[
            "CarePlan/community.cp-c",
            "CarePlan/social.cp-s",
            "Condition/gp.c-dep",
            "Condition/gp.c-hiv",
            "Condition/gp.c-ht",
            "Encounter/community.e-home",
            "Encounter/community.e-sm",
            "Encounter/social.e-s",
            "Immunization/gp.i-flu",
            "MedicationStatement/gp.m-cit",
            "Observation/gp.o-bp",
        ])
    );
    assert!(
        withheld_notice(&body),
        "the pending result, the safeguarding alert and the carer are held back"
    );
    let (status, _) = as_(&w.app, &token, "Observation/gp.o-pending", &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "not until it is final");
    let (status, _) = as_(&w.app, &token, "Observation/gp.o-bp", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(w.clinic.request_count(), 0);
}

#[tokio::test]
async fn a_carer_sees_what_their_relationship_is_granted_with_redactions() {
    let w = world().await;
    let dora = person_id(&w.app, DORA).await;
    let token = person_token(&w.app, DORA, Some("DAU"));
    let (status, body) = as_(&w.app, &token, &format!("Patient/{dora}/$everything"), &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        disclosed(&body),
        set(&[
            "CarePlan/community.cp-c",
            "CarePlan/social.cp-s",
            "MedicationStatement/gp.m-cit",
        ])
    );
    let medicine = find(&body, "gp.m-cit").expect("medicine");
    assert!(medicine.get("reasonReference").is_none(), "{medicine}");
    assert_eq!(medicine["dosage"][0]["text"], "One tablet daily");
    assert!(security(&medicine).contains("REDACTED"));
    let (status, read) = as_(&w.app, &token, "MedicationStatement/gp.m-cit", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(read.get("reasonReference").is_none());
    let (status, _) = as_(&w.app, &token, "Condition/gp.c-ht", &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A relationship the agreement does not name gets nothing.
    let stranger = person_token(&w.app, DORA, Some("GRFTH"));
    let (status, body) = as_(
        &w.app,
        &stranger,
        &format!("Patient/{dora}/$everything"),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
}

#[tokio::test]
async fn emergency_access_needs_a_reason_and_is_marked() {
    let w = world().await;
    let dora = person_id(&w.app, DORA).await;
    let eve = person_id(&w.app, EVE).await;
    let token = staff(&w.app, "RY4", "clinician");
    let (_, plain) = as_(&w.app, &token, &format!("Patient/{eve}/$everything"), &[]).await;
    assert!(matches(&plain).is_empty(), "no care relationship: {plain}");

    let reason = [(
        "X-Break-Glass-Reason",
        "Unconscious in A&E, no history available",
    )];
    let (status, body) = as_(
        &w.app,
        &token,
        &format!("Patient/{eve}/$everything"),
        &reason,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        disclosed(&body),
        set(&["CarePlan/social.cp-eve", "Condition/gp.c-eve"])
    );
    for r in matches(&body)
        .iter()
        .filter(|r| r["resourceType"] != "Patient")
    {
        assert!(security(r).contains("ETREAT"), "{r}");
    }
    // The reason is kept in the audit record, with what it disclosed under emergency access.
    let records = crate::audit::bodies(&w.app).await;
    let glass = records
        .iter()
        .find(|b| b.break_glass_reason.is_some())
        .expect("a break-glass record");
    assert_eq!(
        glass.break_glass_reason.as_deref(),
        Some("Unconscious in A&E, no history available")
    );
    assert!(
        glass
            .disclosed
            .iter()
            .any(|d| &*d.reference == "Condition/gp.c-eve"
                && &*d.agreement == "dsa-northshire-emergency-access"
                && d.emergency)
    );
    assert!(
        outcomes(&body)
            .iter()
            .any(|o| o.contains("emergency access")),
        "{body}"
    );

    // Under emergency access, what the normal rules permit is not marked; only what needed it.
    let gp_token = staff(&w.app, "A81001", "clinician");
    let (_, body) = as_(
        &w.app,
        &gp_token,
        &format!("Patient/{dora}/$everything"),
        &reason,
    )
    .await;
    let hiv = find(&body, "gp.c-hiv").expect("HIV disclosed under emergency access");
    assert!(security(&hiv).contains("ETREAT") && security(&hiv).contains("HIV"));
    let ht = find(&body, "gp.c-ht").expect("hypertension");
    assert!(!security(&ht).contains("ETREAT"), "{ht}");
    assert!(disclosed(&body).contains("Encounter/social.e-s"));
    assert_eq!(
        w.clinic.request_count(),
        0,
        "no agreement names the clinic, even in an emergency"
    );

    for bad in ["", "   ", "tab\tinside"] {
        let (status, body) = as_(
            &w.app,
            &token,
            &format!("Patient/{eve}/$everything"),
            &[("X-Break-Glass-Reason", bad)],
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad:?}: {body}");
        assert_eq!(body["resourceType"], "OperationOutcome");
    }
    let long = "x".repeat(1001);
    let (status, _) = as_(
        &w.app,
        &token,
        &format!("Patient/{eve}/$everything"),
        &[("X-Break-Glass-Reason", long.as_str())],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // A token that claims ETREAT still needs the reason.
    let etreat = w
        .app
        .token_with(&[("org", json!("RY4")), ("purpose_of_use", json!("ETREAT"))]);
    let (status, _) = as_(&w.app, &etreat, &format!("Patient/{eve}/$everything"), &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // Nurses have no emergency rule.
    let nurse = staff(&w.app, "RY4", "nurse");
    let (status, _) = as_(
        &w.app,
        &nurse,
        &format!("Patient/{eve}/$everything"),
        &reason,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn callers_no_agreement_names_are_refused() {
    let w = world().await;
    let dora = person_id(&w.app, DORA).await;
    for (org, role) in [("RXX99", "clinician"), ("A81001", "receptionist")] {
        let token = staff(&w.app, org, role);
        let (status, body) = as_(&w.app, &token, &format!("Patient/{dora}/$everything"), &[]).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{org} {role}: {body}");
        assert_eq!(body["issue"][0]["code"], "forbidden");
    }
    let no_org = w.app.token_with(&[("org", Value::Null)]);
    let (status, _) = as_(&w.app, &no_org, &format!("Patient/{dora}/$everything"), &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let research = w.app.token_with(&[("purpose_of_use", json!("HRESCH"))]);
    let (status, _) = as_(
        &w.app,
        &research,
        &format!("Patient/{dora}/$everything"),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn an_agreement_past_its_valid_until_stops_disclosures() {
    let files = shipped()
        .into_iter()
        .map(|(name, text)| {
            let text = if name == "dsa-northshire-direct-care.toml" {
                text.replace(
                    "valid_until = \"2027-12-31\"",
                    "valid_until = \"2026-01-31\"",
                )
                .replace("review_by = \"2027-06-30\"\n", "")
            } else {
                text
            };
            (name, text)
        })
        .collect();
    let w = world_with(files).await;
    let token = staff(&w.app, "A81001", "clinician");
    let (status, found) = as_(
        &w.app,
        &token,
        &format!("Patient?identifier={NHS_SYSTEM}|{DORA}"),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let dora = matches(&found)[0]["id"]
        .as_str()
        .expect("social care's Patient")
        .to_owned();
    let (_, body) = as_(&w.app, &token, &format!("Patient/{dora}/$everything"), &[]).await;
    assert_eq!(
        disclosed(&body),
        set(&[
            "CarePlan/community.cp-c",
            "CarePlan/social.cp-s",
            "Flag/social.f-safe",
            "RelatedPerson/social.rp-dau"
        ]),
        "only the health and social care agreement's rule for health staff applies"
    );
}

/// Reads `/readyz` as JSON.
async fn readyz(app: &TestApp) -> Value {
    let (status, text) = app.readiness().await;
    assert_eq!(status, StatusCode::OK, "{text}");
    serde_json::from_str(&text).expect("json")
}

async fn until(app: &TestApp, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..100 {
        let ready = readyz(app).await;
        if check(&ready) {
            return ready;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} did not happen within 10 s: {}", readyz(app).await);
}

#[tokio::test]
async fn a_change_under_policies_is_picked_up_and_a_broken_one_keeps_the_last_good_set() {
    let w = world().await;
    let dora = person_id(&w.app, DORA).await;
    let token = staff(&w.app, "LA001", "social-worker");
    let path = format!("Patient/{dora}/$everything");
    let before = readyz(&w.app).await;
    assert_eq!(before["policy"]["agreements"], 6, "{before}");
    assert!(before["policy"]["reload_error"].is_null());

    let file = w
        .app
        .dir()
        .join("policies/dsa-northshire-social-care-records.toml");
    let good = std::fs::read_to_string(&file).expect("read");
    std::fs::write(
        &file,
        good.replace(
            "roles = [\"social-worker\"]",
            "roles = [\"social-worker\"]\nwhere = 1",
        ),
    )
    .expect("break the file");
    let broken = until(&w.app, "the failed reload", |r| {
        !r["policy"]["reload_error"].is_null()
    })
    .await;
    let error = broken["policy"]["reload_error"].as_str().expect("error");
    assert!(
        error.contains("dsa-northshire-social-care-records.toml:"),
        "{error}"
    );
    assert_eq!(
        broken["policy"]["hash"], before["policy"]["hash"],
        "the last good set stays"
    );
    let (status, body) = as_(&w.app, &token, &path, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        disclosed(&body).contains("Encounter/social.e-s"),
        "still enforced as before"
    );

    // A valid change: the council's own-records agreement is suspended.
    std::fs::write(
        &file,
        good.replace("status = \"active\"", "status = \"suspended\""),
    )
    .expect("suspend");
    let changed = until(&w.app, "the reload", |r| {
        r["policy"]["reload_error"].is_null() && r["policy"]["hash"] != before["policy"]["hash"]
    })
    .await;
    assert_eq!(changed["policy"]["in_force"], 5);
    let (_, body) = as_(&w.app, &token, &path, &[]).await;
    assert!(!disclosed(&body).contains("Encounter/social.e-s"), "{body}");
    assert!(
        disclosed(&body).contains("CarePlan/social.cp-s"),
        "the other agreement still holds"
    );
}

fn consent(patient: &str, role: &str, org: &str, status: &str) -> Vec<u8> {
    json!({
        "resourceType": "Consent",
        "status": status,
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": format!("Patient/{patient}")},
        "provision": {"type": "deny", "actor": [{
            "role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": role}]},
            "reference": {"identifier": {"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": org}}
        }]}
    })
    .to_string()
    .into_bytes()
}

async fn post_consent(app: &TestApp, token: &str, body: Vec<u8>) -> (StatusCode, Value) {
    let bearer = format!("Bearer {token}");
    let a = app
        .post_raw(
            "Consent",
            &[
                ("Authorization", bearer.as_str()),
                ("Content-Type", "application/fhir+json"),
            ],
            body,
        )
        .await;
    (a.status, a.body)
}

fn from(bundle: &Value, source: &str) -> usize {
    disclosed(bundle)
        .iter()
        .filter(|r| r.contains(&format!("/{source}.")))
        .count()
}

#[tokio::test]
async fn a_consent_opt_out_takes_effect_on_the_next_request() {
    consent_round_trip(world().await).await;
}

/// The same with the store on PostgreSQL (when `CONCORD_TEST_DATABASE_URL` is set).
#[tokio::test]
async fn a_consent_opt_out_takes_effect_on_postgres_too() {
    let Some(db) = postgres().await else {
        return;
    };
    let w = world_on(shipped(), "", StoreChoice::Postgres(db.url().to_owned())).await;
    consent_round_trip(w).await;
    db.drop().await;
}

async fn consent_round_trip(w: World) {
    let dora = person_id(&w.app, DORA).await;
    let everything = format!("Patient/{dora}/$everything");
    let nurse = staff(&w.app, "RY4", "nurse");
    let (_, before) = as_(&w.app, &nurse, &everything, &[]).await;
    assert!(from(&before, "gp") > 0);

    // Dora asks, through the portal, that her GP record is not shared.
    let dora_token = w.app.token_with(&[
        ("scope", json!("patient/*.rs patient/Consent.cs")),
        ("nhs_number", json!(DORA)),
        ("role", json!("patient")),
    ]);
    let (status, recorded) = post_consent(
        &w.app,
        &dora_token,
        consent(&dora, "CST", "A81001", "active"),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{recorded}");
    assert_eq!(recorded["resourceType"], "Consent");
    assert_eq!(
        recorded["provision"]["actor"][0]["reference"]["identifier"]["value"],
        "A81001"
    );

    let (_, after) = as_(&w.app, &nurse, &everything, &[]).await;
    assert_eq!(from(&after, "gp"), 0, "{after}");
    assert_eq!(from(&after, "community"), from(&before, "community"));
    assert_eq!(from(&after, "social"), from(&before, "social"));
    assert!(withheld_notice(&after));
    let (status, _) = as_(&w.app, &nurse, "Observation/gp.o-bp", &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // The GP's own staff still see the GP's records; Dora still sees her whole record.
    let (_, gp_view) = as_(
        &w.app,
        &staff(&w.app, "A81001", "clinician"),
        &everything,
        &[],
    )
    .await;
    assert!(from(&gp_view, "gp") > 0);
    let (_, own) = as_(&w.app, &person_token(&w.app, DORA, None), &everything, &[]).await;
    assert!(from(&own, "gp") > 0);
    // Her daughter, as carer, no longer sees the GP's medicines.
    let (_, carer) = as_(
        &w.app,
        &person_token(&w.app, DORA, Some("DAU")),
        &everything,
        &[],
    )
    .await;
    assert_eq!(from(&carer, "gp"), 0, "{carer}");
    // Only emergency access overrides it, and is marked.
    let clinician = staff(&w.app, "RY4", "clinician");
    let (_, emergency) = as_(
        &w.app,
        &clinician,
        &everything,
        &[("X-Break-Glass-Reason", "collapsed at home")],
    )
    .await;
    let bp = find(&emergency, "gp.o-bp").expect("emergency access overrides the objection");
    assert!(security(&bp).contains("ETREAT"));

    // Withdrawn: shared again on the next request.
    let (status, _) = post_consent(
        &w.app,
        &dora_token,
        consent(&dora, "CST", "A81001", "inactive"),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, again) = as_(&w.app, &nurse, &everything, &[]).await;
    assert_eq!(from(&again, "gp"), from(&before, "gp"));

    let (status, listed) = as_(&w.app, &dora_token, &format!("Consent?patient={dora}"), &[]).await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    let statuses: Vec<String> = matches(&listed)
        .iter()
        .map(|c| c["status"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(statuses, ["inactive", "active"], "newest first");
}

#[tokio::test]
async fn staff_record_choices_for_people_their_organisation_knows() {
    let w = world().await;
    let dora = person_id(&w.app, DORA).await;
    let eve = person_id(&w.app, EVE).await;
    let social_worker = w.app.token_with(&[
        ("org", json!("LA001")),
        ("role", json!("social-worker")),
        ("scope", json!("user/*.rs user/Consent.c")),
    ]);
    let (status, body) = post_consent(
        &w.app,
        &social_worker,
        consent(&dora, "PRCP", "RY4", "active"),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["performer"][0]["identifier"]["value"], "LA001");
    let (_, nurse_view) = as_(
        &w.app,
        &staff(&w.app, "RY4", "nurse"),
        &format!("Patient/{dora}/$everything"),
        &[],
    )
    .await;
    assert_eq!(
        from(&nurse_view, "gp") + from(&nurse_view, "social"),
        0,
        "{nurse_view}"
    );
    assert!(
        from(&nurse_view, "community") > 0,
        "RY4's own records are not shared with it"
    );

    // Community services do not know Eve: their staff cannot record for her.
    let nurse = w.app.token_with(&[
        ("org", json!("RY4")),
        ("role", json!("nurse")),
        ("scope", json!("user/Consent.cs")),
    ]);
    let (status, _) = post_consent(&w.app, &nurse, consent(&eve, "PRCP", "LA001", "active")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn bad_consent_requests_are_refused_with_an_operation_outcome() {
    let w = world().await;
    let dora = person_id(&w.app, DORA).await;
    let eve = person_id(&w.app, EVE).await;
    let dora_token = w.app.token_with(&[
        ("scope", json!("patient/*.rs patient/Consent.cs")),
        ("nhs_number", json!(DORA)),
        ("role", json!("patient")),
    ]);
    let ok = consent(&dora, "CST", "A81001", "active");
    let cases: Vec<(String, &str, Vec<u8>, StatusCode)> = vec![
        (
            w.app.token.clone(),
            "application/fhir+json",
            ok.clone(),
            StatusCode::FORBIDDEN,
        ),
        (
            dora_token.clone(),
            "text/plain",
            ok.clone(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            dora_token.clone(),
            "application/fhir+json",
            b"{not json".to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            dora_token.clone(),
            "application/fhir+json",
            consent(&dora, "CST", "A81001", "draft"),
            StatusCode::BAD_REQUEST,
        ),
        (
            dora_token.clone(),
            "application/fhir+json",
            consent(&dora, "CST", "RXX01", "active"),
            StatusCode::BAD_REQUEST,
        ),
        (
            dora_token.clone(),
            "application/fhir+json",
            consent(&eve, "CST", "A81001", "active"),
            StatusCode::NOT_FOUND,
        ),
        (
            dora_token.clone(),
            "application/fhir+json",
            consent(
                "00000000-0000-0000-0000-000000000000",
                "CST",
                "A81001",
                "active",
            ),
            StatusCode::NOT_FOUND,
        ),
        (
            w.app.token_with(&[
                ("scope", json!("patient/*.rs patient/Consent.cs")),
                ("nhs_number", json!(DORA)),
                ("acting_for_relationship", json!("DAU")),
            ]),
            "application/fhir+json",
            ok.clone(),
            StatusCode::FORBIDDEN,
        ),
        (
            dora_token.clone(),
            "application/fhir+json",
            vec![b' '; 2 * 1024 * 1024],
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
    ];
    for (i, (token, content_type, body, expected)) in cases.into_iter().enumerate() {
        let bearer = format!("Bearer {token}");
        let a = w
            .app
            .post_raw(
                "Consent",
                &[
                    ("Authorization", bearer.as_str()),
                    ("Content-Type", content_type),
                ],
                body,
            )
            .await;
        assert_eq!(a.status, expected, "case {i}: {}", a.body);
        assert_eq!(a.body["resourceType"], "OperationOutcome", "case {i}");
    }
    // Nothing was recorded.
    let (_, listed) = as_(&w.app, &dora_token, &format!("Consent?patient={dora}"), &[]).await;
    assert_eq!(listed["total"], 0, "{listed}");
    let (status, _) = as_(&w.app, &dora_token, &format!("Consent?patient={eve}"), &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// Runs `concord policy explain` with the test gateway's own config file.
async fn explain(app: &TestApp, token: &str, nhs: &str, extra: &[&str]) -> (bool, String) {
    let args = [
        &["policy", "explain", "--token", token, "--patient", nhs],
        extra,
    ]
    .concat();
    let (ok, mut text, err) = app.concord(&args).await;
    text.push_str(&err);
    (ok, text)
}

#[tokio::test]
async fn policy_explain_says_which_rule_permits_and_why_others_do_not() {
    let w = world().await;
    person_id(&w.app, DORA).await;
    let social_worker = staff(&w.app, "LA001", "social-worker");
    let (ok, out) = explain(&w.app, &social_worker, DORA, &[]).await;
    assert!(ok, "{out}");
    assert!(
        out.contains("PERMIT    Condition/gp.c-ht  by dsa-northshire-health-and-social-care rule social-care-assessment"),
        "{out}"
    );
    assert!(out.contains("WITHHELD  Condition/gp.c-dep"), "{out}");
    assert!(
        out.contains("dsa-northshire-health-and-social-care rule social-care-assessment: the resource is labelled PSY, which the rule excludes"),
        "{out}"
    );
    assert!(
        out.contains("dsa-northshire-direct-care: organisation LA001 is not a recipient"),
        "{out}"
    );
    assert!(out.contains("WITHHELD  Observation/gp.o-bp"), "{out}");
    assert!(!out.contains(DORA), "no NHS number in the output");

    let carer = person_token(&w.app, DORA, Some("DAU"));
    let (ok, out) = explain(
        &w.app,
        &carer,
        DORA,
        &["--resource", "MedicationStatement/gp.m-cit"],
    )
    .await;
    assert!(ok, "{out}");
    assert!(
        out.contains("PERMIT    MedicationStatement/gp.m-cit  by patient-access-northshire rule carer-care-plans, redacting reasonCode, reasonReference"),
        "{out}"
    );
    assert_eq!(
        out.matches("PERMIT").count() + out.matches("WITHHELD").count(),
        1,
        "only the one resource: {out}"
    );

    let dora_token = person_token(&w.app, DORA, None);
    let (_, out) = explain(
        &w.app,
        &dora_token,
        DORA,
        &["--resource", "Observation/gp.o-pending"],
    )
    .await;
    assert!(
        out.contains("patient-access-northshire rule own-results: the condition `status in ('final' | 'amended' | 'corrected')` does not hold"),
        "{out}"
    );

    let clinician = staff(&w.app, "RY4", "clinician");
    let (_, out) = explain(
        &w.app,
        &clinician,
        EVE,
        &["--resource", "Condition/gp.c-eve", "--break-glass"],
    )
    .await;
    assert!(
        out.contains("by dsa-northshire-emergency-access rule emergency (emergency access)"),
        "{out}"
    );

    let (ok, out) = explain(
        &w.app,
        &social_worker,
        DORA,
        &["--resource", "Condition/gp.nothing"],
    )
    .await;
    assert!(!ok, "{out}");
    assert!(out.contains("no such resource"), "{out}");
    let (ok, out) = explain(&w.app, "not-a-token", DORA, &[]).await;
    assert!(!ok);
    assert!(out.contains("--token: the token is malformed"), "{out}");
}

#[tokio::test]
async fn the_notice_is_not_given_for_types_a_provider_never_holds() {
    let w = world_full(
        shipped(),
        "resource_types = [\"CarePlan\", \"Flag\", \"RelatedPerson\", \"Encounter\", \"EpisodeOfCare\"]",
    )
    .await;
    let dora = person_id(&w.app, DORA).await;
    let token = staff(&w.app, "A81001", "clinician");
    // Social care is not asked for Observations (no rule lets a clinician see them), and holds
    // none: nothing is missing, so nothing is said.
    let (_, observations) = as_(&w.app, &token, &format!("Observation?patient={dora}"), &[]).await;
    assert_eq!(observations["total"], 2, "{observations}");
    assert!(!withheld_notice(&observations), "{observations}");
    // Social care does hold Encounters, which no rule lets the GP see: said.
    let (_, encounters) = as_(&w.app, &token, &format!("Encounter?patient={dora}"), &[]).await;
    assert!(withheld_notice(&encounters), "{encounters}");
}

/// A Consent as staff send it when the person asked in person, by letter or by phone.
fn on_request(body: Vec<u8>, by: &str, how: &str) -> Vec<u8> {
    let mut consent: Value = serde_json::from_slice(&body).expect("json");
    consent["verification"] = json!([{
        "verified": true,
        "verifiedWith": {"reference": format!("Patient/{by}")},
        "verificationDate": "2026-11-28",
        "extension": [{"url": "https://fhir.concord.health/StructureDefinition/request-method", "valueCode": how}]
    }]);
    consent.to_string().into_bytes()
}

/// Issue 13, defect 1: an organisation could lift an objection aimed at itself.
#[tokio::test]
async fn only_the_person_lifts_an_objection_and_staff_withdrawals_go_to_review() {
    let w = world().await;
    let dora = person_id(&w.app, DORA).await;
    let dora_token = w.app.token_with(&[
        (
            "scope",
            json!("patient/*.rs patient/Consent.cs patient/AuditEvent.rs"),
        ),
        ("nhs_number", json!(DORA)),
        ("role", json!("patient")),
        ("org", Value::Null),
    ]);
    let writer = |org: &str, role: &str| {
        w.app.token_with(&[
            ("org", json!(org)),
            ("role", json!(role)),
            ("scope", json!("user/*.rs user/Consent.c")),
        ])
    };
    let everything = format!("Patient/{dora}/$everything");
    let nurse = staff(&w.app, "RY4", "nurse");
    let (_, before) = as_(&w.app, &nurse, &everything, &[]).await;
    let shared = from(&before, "gp");
    assert!(shared > 0, "{before}");

    // Dora objects to her GP record being shared; community nurses see none of it.
    let objection = consent(&dora, "CST", "A81001", "active");
    let (status, _) = post_consent(&w.app, &dora_token, objection).await;
    assert_eq!(status, StatusCode::CREATED);
    let gp_seen = || async { from(&as_(&w.app, &nurse, &everything, &[]).await.1, "gp") };
    assert_eq!(gp_seen().await, 0);

    // A community nurse with Consent.c cannot lift it: not without Dora's documented request,
    // and not by slipping a second `status` into the body either.
    let nurse_writer = writer("RY4", "nurse");
    let lift = consent(&dora, "CST", "A81001", "inactive");
    let (status, body) = post_consent(&w.app, &nurse_writer, lift.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.to_string().contains("documented request"), "{body}");
    let sneaky = String::from_utf8(consent(&dora, "CST", "A81001", "active"))
        .expect("utf-8")
        .replacen(
            "\"status\":\"active\"",
            "\"status\":\"active\",\"status\":\"inactive\"",
            1,
        );
    let (status, body) = post_consent(&w.app, &nurse_writer, sneaky.into_bytes()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["issue"][0]["expression"][0], "status", "{body}");
    let mut modified: Value = serde_json::from_slice(&lift).expect("json");
    modified["modifierExtension"] =
        json!([{"url": "https://example.org/means-the-opposite", "valueBoolean": true}]);
    let (status, body) =
        post_consent(&w.app, &nurse_writer, modified.to_string().into_bytes()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["issue"][0]["expression"][0], "modifierExtension");
    // A request "from" someone else is no request of Dora's.
    let eve = person_id(&w.app, EVE).await;
    let (status, _) = post_consent(
        &w.app,
        &nurse_writer,
        on_request(lift.clone(), &eve, "phone"),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(gp_seen().await, 0, "the objection still stands");

    // An objection to sharing with the council: its own staff never lift it, even on request.
    let (status, _) = post_consent(
        &w.app,
        &dora_token,
        consent(&dora, "PRCP", "LA001", "active"),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let council = writer("LA001", "social-worker");
    let council_lift = on_request(
        consent(&dora, "PRCP", "LA001", "inactive"),
        &dora,
        "in-person",
    );
    let (status, body) = post_consent(&w.app, &council, council_lift).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.to_string().contains("own organisation"), "{body}");

    // On Dora's documented request (her letter), the nurse records the withdrawal...
    let (status, recorded) =
        post_consent(&w.app, &nurse_writer, on_request(lift, &dora, "letter")).await;
    assert_eq!(status, StatusCode::CREATED, "{recorded}");
    assert_eq!(
        recorded["verification"][0]["verifiedWith"]["reference"],
        format!("Patient/{dora}")
    );
    assert_eq!(gp_seen().await, shared);

    // ... which goes to IG review like an emergency access, for the IG lead of the staff
    // member's organisation ...
    let ig = w.app.token_with(&[
        ("org", json!("RY4")),
        ("role", json!("ig-lead")),
        ("scope", json!("user/AuditEvent.rs")),
    ]);
    let (status, queue) = as_(
        &w.app,
        &ig,
        "AuditEvent?review=consent-withdrawn-by-staff",
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{queue}");
    let flagged = matches(&queue);
    assert_eq!(flagged.len(), 1, "{queue}");
    assert!(flagged[0].to_string().contains("\"RY4\""), "{queue}");
    // ... and Dora sees it in her own audit trail.
    let (status, mine) = as_(
        &w.app,
        &dora_token,
        &format!("AuditEvent?patient={dora}"),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{mine}");
    let reviewed: Vec<Value> = matches(&mine)
        .into_iter()
        .filter(|e| e.to_string().contains("consent-withdrawn-by-staff"))
        .collect();
    assert_eq!(reviewed.len(), 1, "{mine}");

    // Dora herself lifts her objection to the council at any time, with no review.
    let (status, _) = post_consent(
        &w.app,
        &dora_token,
        consent(&dora, "PRCP", "LA001", "inactive"),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, queue) = as_(
        &w.app,
        &ig,
        "AuditEvent?review=consent-withdrawn-by-staff",
        &[],
    )
    .await;
    assert_eq!(matches(&queue).len(), 1);
}

/// The audit record names the policy set that decided, even when a reload lands while the
/// request is still waiting for its sources (the hash used to be read after the answer).
#[tokio::test]
async fn the_audit_record_names_the_policy_set_that_decided() {
    let w = world().await;
    let dora = person_id(&w.app, DORA).await;
    let token = staff(&w.app, "A81001", "clinician");
    let file = w
        .app
        .dir()
        .join("policies/dsa-northshire-social-care-records.toml");
    let original = std::fs::read_to_string(&file).expect("read");
    // A slow GP holds the request in flight. Once the GP has the request (so the request has
    // taken its set), the files change and the test reloads them itself rather than waiting
    // for the watcher's next look, which on a loaded machine can come after the answer.
    w.gp.set_latency(Duration::from_millis(700));
    for attempt in 0..4 {
        let before = readyz(&w.app).await["policy"]["hash"].clone();
        let asked = w.gp.request_count();
        let path = format!("Patient/{dora}/$everything?_count={}", attempt + 1);
        let request = async {
            let answer = as_(&w.app, &token, &path, &[]).await;
            (answer, tokio::time::Instant::now())
        };
        let change = async {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while w.gp.request_count() == asked && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            std::fs::write(&file, format!("{original}\n# revision {attempt}\n")).expect("write");
            let changed = w
                .app
                .state
                .door
                .policies()
                .reload()
                .expect("the changed set loads");
            assert!(changed, "a new comment changes the set's hash");
            let reloaded = tokio::time::Instant::now();
            (readyz(&w.app).await, reloaded)
        };
        let (((status, _), answered), (after, reloaded)) = tokio::join!(request, change);
        assert_eq!(status, StatusCode::OK);
        assert_ne!(after["policy"]["hash"], before, "the reload is in force");
        if reloaded >= answered {
            continue; // the machine stalled past the GP's delay: nothing to tell apart; again
        }
        // The new set was in force before the answer left; the request took its set when it
        // started, before the files changed, and its record must name that one.
        let record = crate::audit::bodies(&w.app)
            .await
            .into_iter()
            .rev()
            .find(|b| b.target.ends_with(&path))
            .expect("the request's record");
        assert_eq!(record.policy_hash, before.as_str().unwrap_or_default());
        assert_ne!(
            record.policy_hash,
            after["policy"]["hash"].as_str().unwrap_or_default()
        );
        w.gp.set_latency(Duration::ZERO);
        return;
    }
    panic!("the reload never landed while a request was in flight");
}

#[tokio::test]
async fn policy_explain_covers_writes() {
    let w = world().await;
    person_id(&w.app, DORA).await;
    let write = ["--write", "create", "--type", "Goal", "--to", "gp"];
    let dora = person_token(&w.app, DORA, None);
    let (ok, out) = explain(&w.app, &dora, DORA, &write).await;
    assert!(ok, "{out}");
    assert!(
        out.contains("PERMIT    create Goal in gp  by patient-access-northshire rule own-goals"),
        "{out}"
    );
    assert!(
        out.contains("one that belongs to no plan goes to `region` (write_to)"),
        "the portal's target for the person's own: {out}"
    );
    let nurse = staff(&w.app, "A81001", "nurse");
    let (ok, out) = explain(&w.app, &nurse, DORA, &write).await;
    assert!(ok, "{out}");
    assert!(out.contains("REFUSED   create Goal in gp"), "{out}");
    assert!(
        out.contains(
            "dsa-northshire-direct-care rule clinical-direct-care: the rule does not permit create"
        ),
        "{out}"
    );
    let carer = person_token(&w.app, DORA, Some("DAU"));
    let update = ["--write", "update", "--type", "Goal", "--to", "gp"];
    let (_, out) = explain(&w.app, &carer, DORA, &update).await;
    assert!(out.contains("REFUSED   update Goal in gp"), "{out}");
    assert!(
        out.contains(
            "patient-access-northshire rule carer-care-plans: the rule does not permit update"
        ),
        "{out}"
    );
    let (ok, out) = explain(
        &w.app,
        &nurse,
        DORA,
        &["--write", "delete", "--type", "Goal", "--to", "gp"],
    )
    .await;
    assert!(!ok, "{out}");
    let (ok, out) = explain(
        &w.app,
        &nurse,
        DORA,
        &["--write", "create", "--type", "Goal", "--to", "nowhere"],
    )
    .await;
    assert!(!ok, "{out}");
    assert!(out.contains("source `nowhere` is not known"), "{out}");
}
