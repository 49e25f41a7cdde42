//! A person's sharing choices as FHIR R4 Consent resources (scope `patient-privacy`).
//!
//! Two choices are understood, each a `deny` provision with exactly one actor, an
//! organisation named by its ODS code:
//!
//! - actor role `CST` (custodian): "do not share the records this provider holds";
//! - actor role `PRCP` (information recipient): "do not share my records with this
//!   organisation".
//!
//! `status = "active"` records the objection; `status = "inactive"` withdraws it. The newest
//! choice per organisation and kind counts. Anything else is refused with a message that says
//! what to send, rather than stored and ignored.

use serde_json::{Value, json};

use super::engine::Consent;
use crate::fhir::ODS_SYSTEM;

/// The Consent scope the gateway records.
pub const SCOPE_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/consentscope";
/// The participation roles of actors.
pub const PARTICIPATION: &str = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType";

/// What a sharing choice is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The records a provider holds.
    NotFrom,
    /// Sharing with an organisation.
    NotTo,
}

impl Kind {
    /// Its stored name.
    pub fn name(self) -> &'static str {
        match self {
            Kind::NotFrom => "not_from",
            Kind::NotTo => "not_to",
        }
    }

    /// The actor role that expresses it.
    pub fn role(self) -> &'static str {
        match self {
            Kind::NotFrom => "CST",
            Kind::NotTo => "PRCP",
        }
    }
}

/// A checked sharing choice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    /// What it is about.
    pub kind: Kind,
    /// The organisation (ODS code).
    pub org: String,
    /// True to object, false to withdraw an objection.
    pub active: bool,
    /// The person's own request, as staff documented it (`Consent.verification`): who asked
    /// and how. Staff may record a withdrawal only with one.
    pub request: Option<Request>,
}

/// The extension on `Consent.verification` that says how the person asked.
pub const REQUEST_METHOD_URL: &str =
    "https://fhir.concord.health/StructureDefinition/request-method";

/// How a person asked for a choice to be recorded on their behalf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Face to face.
    InPerson,
    /// In a letter.
    Letter,
    /// On the telephone.
    Phone,
}

impl Method {
    /// Its code in [`REQUEST_METHOD_URL`].
    pub fn code(self) -> &'static str {
        match self {
            Method::InPerson => "in-person",
            Method::Letter => "letter",
            Method::Phone => "phone",
        }
    }

    fn parse(code: &str) -> Option<Method> {
        [Method::InPerson, Method::Letter, Method::Phone]
            .into_iter()
            .find(|m| m.code() == code)
    }
}

/// A person's documented request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The gateway id of the person who asked (must be the person the Consent is about).
    pub by: String,
    /// How they asked.
    pub method: Method,
    /// When (a FHIR dateTime as sent).
    pub date: String,
}

/// Why a Consent cannot be recorded (safe to send to the caller).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConsentError(pub String);

fn err<T>(message: impl Into<String>) -> Result<T, ConsentError> {
    Err(ConsentError(message.into()))
}

/// Reads a posted Consent: its patient reference (the gateway id after `Patient/`) and the
/// choice.
pub fn parse(body: &Value) -> Result<(String, Choice), ConsentError> {
    if body.get("resourceType").and_then(Value::as_str) != Some("Consent") {
        return err("the body must be a FHIR Consent resource");
    }
    let active = status(body)?;
    check_scope(body)?;
    let patient = patient_id(body)?;
    let actor = deny_actor(body)?;
    let kind = actor_kind(actor)?;
    let request = match body.get("verification") {
        None => None,
        Some(v) => Some(request(v)?),
    };
    let org = actor_org(actor)?;
    Ok((
        patient.to_owned(),
        Choice {
            kind,
            org: org.to_owned(),
            active,
            request,
        },
    ))
}

/// Reads `Consent.status`: true for `active` (an objection), false for `inactive` (its
/// withdrawal).
fn status(body: &Value) -> Result<bool, ConsentError> {
    match body.get("status").and_then(Value::as_str) {
        Some("active") => Ok(true),
        Some("inactive") => Ok(false),
        _ => err(
            "Consent.status must be `active` (record the objection) or `inactive` (withdraw it)",
        ),
    }
}

/// Checks that `Consent.scope` has the coding `patient-privacy`.
fn check_scope(body: &Value) -> Result<(), ConsentError> {
    let scoped = body
        .pointer("/scope/coding")
        .and_then(Value::as_array)
        .is_some_and(|codings| {
            codings.iter().any(|c| {
                c.get("system").and_then(Value::as_str) == Some(SCOPE_SYSTEM)
                    && c.get("code").and_then(Value::as_str) == Some("patient-privacy")
            })
        });
    if !scoped {
        return err(format!(
            "Consent.scope must be `{SCOPE_SYSTEM}|patient-privacy`"
        ));
    }
    Ok(())
}

/// Reads `Consent.patient`: the gateway id after `Patient/`.
fn patient_id(body: &Value) -> Result<&str, ConsentError> {
    body.pointer("/patient/reference")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("Patient/"))
        .filter(|id| crate::fhir::reference::is_valid_id(id))
        .ok_or_else(|| ConsentError("Consent.patient must be `Patient/{id}`".into()))
}

/// Reads `Consent.provision`: a `deny` that names nothing but its one actor, which it
/// gives.
fn deny_actor(body: &Value) -> Result<&Value, ConsentError> {
    let Some(provision) = body.get("provision") else {
        return err("Consent.provision is required: a `deny` with one organisation as actor");
    };
    if provision.get("type").and_then(Value::as_str) != Some("deny") {
        return err("Consent.provision.type must be `deny`");
    }
    if provision.get("provision").is_some()
        || [
            "period",
            "action",
            "purpose",
            "class",
            "code",
            "data",
            "dataPeriod",
            "securityLabel",
        ]
        .iter()
        .any(|f| provision.get(*f).is_some())
    {
        return err(
            "Consent.provision may only name one organisation as actor; narrower provisions (periods, purposes, data, classes, nested provisions) are not supported",
        );
    }
    let actors = provision
        .get("actor")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    let [actor] = actors else {
        return err("Consent.provision.actor must name exactly one organisation");
    };
    Ok(actor)
}

/// Reads the actor's role: `CST` (a provider's records) or `PRCP` (sharing with an
/// organisation).
fn actor_kind(actor: &Value) -> Result<Kind, ConsentError> {
    let role = actor
        .pointer("/role/coding")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|c| c.get("system").and_then(Value::as_str) == Some(PARTICIPATION))
        .and_then(|c| c.get("code").and_then(Value::as_str));
    match role {
        Some("CST") => Ok(Kind::NotFrom),
        Some("PRCP") => Ok(Kind::NotTo),
        _ => err(format!(
            "Consent.provision.actor.role must be `{PARTICIPATION}|CST` (a provider's records) or `|PRCP` (sharing with an organisation)"
        )),
    }
}

/// Reads the actor's organisation: the ODS code in its reference's identifier.
fn actor_org(actor: &Value) -> Result<&str, ConsentError> {
    actor
        .pointer("/reference/identifier")
        .filter(|i| i.get("system").and_then(Value::as_str) == Some(ODS_SYSTEM))
        .and_then(|i| i.get("value").and_then(Value::as_str))
        .filter(|v| crate::fhir::is_ods_code(v))
        .ok_or_else(|| {
            ConsentError(format!(
                "Consent.provision.actor.reference must be an identifier `{ODS_SYSTEM}` with an ODS code"
            ))
        })
}

/// Reads `Consent.verification`: exactly one entry, verified, with the person who asked
/// (`verifiedWith`), when (`verificationDate`) and how (the [`REQUEST_METHOD_URL`]
/// extension).
fn request(verification: &Value) -> Result<Request, ConsentError> {
    let shape = || {
        ConsentError(format!(
            "Consent.verification must be one entry: `verified: true`, `verifiedWith` the person (`Patient/{{id}}`), `verificationDate`, and an extension `{REQUEST_METHOD_URL}` with valueCode `in-person`, `letter` or `phone`"
        ))
    };
    let [entry] = verification.as_array().map_or(&[][..], Vec::as_slice) else {
        return Err(shape());
    };
    if entry.get("verified").and_then(Value::as_bool) != Some(true) {
        return Err(shape());
    }
    let by = entry
        .pointer("/verifiedWith/reference")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("Patient/"))
        .filter(|id| crate::fhir::reference::is_valid_id(id))
        .ok_or_else(shape)?;
    let date = entry
        .get("verificationDate")
        .and_then(Value::as_str)
        .filter(|d| crate::fhir::date::parse(d).is_some())
        .ok_or_else(shape)?;
    let methods: Vec<&Value> = entry
        .get("extension")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|e| e.get("url").and_then(Value::as_str) == Some(REQUEST_METHOD_URL))
        .collect();
    let [method] = methods.as_slice() else {
        return Err(shape());
    };
    let method = method
        .get("valueCode")
        .and_then(Value::as_str)
        .and_then(Method::parse)
        .ok_or_else(shape)?;
    Ok(Request {
        by: by.to_owned(),
        method,
        date: date.to_owned(),
    })
}

/// The Consent the gateway stores and serves for a choice.
pub fn render(id: &str, person: &str, choice: &Choice, recorded: &str, recorder: &Value) -> Value {
    let mut consent = json!({
        "resourceType": "Consent",
        "id": id,
        "meta": {"lastUpdated": recorded},
        "status": if choice.active { "active" } else { "inactive" },
        "scope": {"coding": [{"system": SCOPE_SYSTEM, "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0", "display": "Patient Consent"}]}],
        "patient": {"reference": format!("Patient/{person}")},
        "dateTime": recorded,
        "performer": [recorder],
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTOUT"}]},
        "provision": {
            "type": "deny",
            "actor": [{
                "role": {"coding": [{"system": PARTICIPATION, "code": choice.kind.role()}]},
                "reference": {"identifier": {"system": ODS_SYSTEM, "value": choice.org}}
            }]
        }
    });
    if let Some(request) = &choice.request {
        consent["verification"] = json!([{
            "extension": [{"url": REQUEST_METHOD_URL, "valueCode": request.method.code()}],
            "verified": true,
            "verifiedWith": {"reference": format!("Patient/{}", request.by)},
            "verificationDate": request.date,
        }]);
    }
    consent
}

/// The objections that stand, from every choice recorded for a person (oldest first).
pub fn standing<'a>(choices: impl IntoIterator<Item = (&'a str, &'a str, bool)>) -> Consent {
    let mut consent = Consent::default();
    for (kind, org, active) in choices {
        let list = match kind {
            "not_from" => &mut consent.not_from,
            "not_to" => &mut consent.not_to,
            _ => continue,
        };
        list.retain(|o| o != org);
        if active {
            list.push(org.to_owned());
        }
    }
    consent
}

#[cfg(test)]
mod tests {
    use super::*;

    fn consent(role: &str, org: &str, status: &str) -> Value {
        json!({
            "resourceType": "Consent", "status": status,
            "scope": {"coding": [{"system": SCOPE_SYSTEM, "code": "patient-privacy"}]},
            "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
            "patient": {"reference": "Patient/0b7c9c1e-6f7a-4a43-9b8e-2f0d8f6c9a11"},
            "provision": {"type": "deny", "actor": [{
                "role": {"coding": [{"system": PARTICIPATION, "code": role}]},
                "reference": {"identifier": {"system": ODS_SYSTEM, "value": org}}
            }]}
        })
    }

    #[test]
    fn both_choices_parse_and_render_back() {
        let (patient, choice) = parse(&consent("CST", "A81001", "active")).expect("valid");
        assert_eq!(patient, "0b7c9c1e-6f7a-4a43-9b8e-2f0d8f6c9a11");
        assert_eq!(
            choice,
            Choice {
                kind: Kind::NotFrom,
                org: "A81001".into(),
                active: true,
                request: None,
            }
        );
        let rendered = render("c1", &patient, &choice, "2026-11-25T10:00:00Z", &json!({}));
        assert_eq!(parse(&rendered).expect("round trip").1, choice);
        let (_, to) = parse(&consent("PRCP", "LA001", "inactive")).expect("valid");
        assert_eq!((to.kind, to.active), (Kind::NotTo, false));
    }

    #[test]
    fn everything_else_is_refused_with_what_to_send() {
        let mut cases: Vec<(Value, &str)> = vec![
            (json!({"resourceType": "Patient"}), "FHIR Consent"),
            (consent("CST", "A81001", "draft"), "status"),
            (consent("XYZ", "A81001", "active"), "role"),
            (consent("CST", "a81001", "active"), "ODS code"),
            (json!([]), "FHIR Consent"),
        ];
        let mut no_scope = consent("CST", "A81001", "active");
        no_scope["scope"] = json!({"coding": [{"system": SCOPE_SYSTEM, "code": "research"}]});
        cases.push((no_scope, "patient-privacy"));
        let mut permit = consent("CST", "A81001", "active");
        permit["provision"]["type"] = json!("permit");
        cases.push((permit, "deny"));
        let mut two = consent("CST", "A81001", "active");
        let actor = two["provision"]["actor"][0].clone();
        two["provision"]["actor"] = json!([actor.clone(), actor]);
        cases.push((two, "exactly one"));
        let mut nested = consent("CST", "A81001", "active");
        nested["provision"]["period"] = json!({"start": "2026-01-01"});
        cases.push((nested, "not supported"));
        let mut bad_patient = consent("CST", "A81001", "active");
        bad_patient["patient"]["reference"] = json!("Group/1");
        cases.push((bad_patient, "Patient/{id}"));
        let mut no_provision = consent("CST", "A81001", "active");
        no_provision
            .as_object_mut()
            .expect("object")
            .remove("provision");
        cases.push((no_provision, "provision is required"));
        for (body, says) in cases {
            let e = parse(&body).expect_err(says);
            assert!(e.0.contains(says), "{says}: {e}");
        }
    }

    #[test]
    fn a_documented_request_is_read_and_rendered_back() {
        let mut body = consent("CST", "A81001", "inactive");
        body["verification"] = json!([{
            "verified": true,
            "verifiedWith": {"reference": "Patient/0b7c9c1e-6f7a-4a43-9b8e-2f0d8f6c9a11"},
            "verificationDate": "2026-11-28",
            "extension": [{"url": REQUEST_METHOD_URL, "valueCode": "letter"}]
        }]);
        let (_, choice) = parse(&body).expect("valid");
        let request = choice.request.clone().expect("request");
        assert_eq!(request.method, Method::Letter);
        assert_eq!(request.by, "0b7c9c1e-6f7a-4a43-9b8e-2f0d8f6c9a11");
        let rendered = render(
            "c1",
            &request.by,
            &choice,
            "2026-11-28T10:00:00Z",
            &json!({}),
        );
        assert_eq!(parse(&rendered).expect("round trip").1, choice);
        // Each part is required; anything else is refused with what to send.
        for broken in [
            json!([]),
            json!({"verified": true}),
            json!([{"verified": false, "verifiedWith": {"reference": "Patient/x"}, "verificationDate": "2026-11-28",
                    "extension": [{"url": REQUEST_METHOD_URL, "valueCode": "letter"}]}]),
            json!([{"verified": true, "verifiedWith": {"reference": "Patient/x"}, "verificationDate": "2026-11-28",
                    "extension": [{"url": REQUEST_METHOD_URL, "valueCode": "telepathy"}]}]),
            json!([{"verified": true, "verifiedWith": {"reference": "Patient/x"}, "verificationDate": "yesterday",
                    "extension": [{"url": REQUEST_METHOD_URL, "valueCode": "phone"}]}]),
            json!([{"verified": true, "verifiedWith": {"reference": "Patient/x"}, "verificationDate": "2026-11-28"}]),
        ] {
            let mut body = consent("CST", "A81001", "inactive");
            body["verification"] = broken.clone();
            let e = parse(&body).expect_err("refused");
            assert!(e.0.contains("Consent.verification"), "{broken}: {e}");
        }
    }

    #[test]
    fn the_newest_choice_per_organisation_stands() {
        let standing = standing([
            ("not_from", "A81001", true),
            ("not_to", "LA001", true),
            ("not_from", "RY4", true),
            ("not_from", "A81001", false),
            ("not_to", "LA001", true),
        ]);
        assert_eq!(standing.not_from, vec!["RY4"]);
        assert_eq!(standing.not_to, vec!["LA001"]);
    }
}
