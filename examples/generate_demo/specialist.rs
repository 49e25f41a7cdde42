//! The community trust's specialist services: the community mental health
//! team and the substance misuse service. Their records carry sensitive
//! diagnoses (HL7 labels PSY and ETH).

use std::io;

use serde_json::json;

use crate::care::{self, Visit};
use crate::codes::{self, Code};
use crate::community::{Ids, ORG};
use crate::dates::{Date, REFERENCE};
use crate::fhir::{self, reference, sct};
use crate::out::Export;
use crate::rng::Rng;

/// Community mental health or substance misuse clinic contacts, with the
/// diagnosis recorded by the service (sensitive content).
pub(crate) fn service(
    code: Code,
    onset: Date,
    patient: &str,
    ids: &mut Ids,
    out: &mut Export,
    rng: &mut Rng,
) -> io::Result<()> {
    let psy = codes::sensitivity(code.code) == Some("PSY");
    let start = onset
        .plus(rng.range(20, 200))
        .min(REFERENCE.plus(-30))
        .weekday_or_next();
    let episode_id = ids.next("eoc");
    let service = if psy {
        sct(codes::COMMUNITY_MENTAL_HEALTH)
    } else {
        fhir::text("Substance misuse service")
    };
    out.write(&care::episode(
        &episode_id,
        patient,
        service,
        ORG,
        start,
        None,
        rng,
    ))?;
    let mut first = None;
    for k in 0..rng.range(2, 6) {
        let day = start
            .plus(k * rng.range(20, 60))
            .weekday_or_next()
            .min(REFERENCE.plus(-1));
        let id = ids.next("enc");
        let visit = Visit {
            id: &id,
            patient,
            class: ("AMB", "ambulatory"),
            kind: if psy {
                codes::SEEN_MENTAL_HEALTH
            } else {
                codes::SEEN_SUBSTANCE_MISUSE
            },
            kind_text: None,
            service: psy.then_some(codes::COMMUNITY_MENTAL_HEALTH),
            episode: &episode_id,
            day,
            start: rng.range(54, 100) * 10,
            minutes: 45,
            org: ORG,
        };
        out.write(&care::encounter(&visit, rng))?;
        first.get_or_insert((id, day));
    }
    let Some((encounter, day)) = first else {
        return Ok(());
    };
    let mut v = json!({
        "resourceType": "Condition",
        "id": ids.next("cond"),
        "meta": fhir::meta(rng, day),
        "clinicalStatus": { "coding": [{ "system": codes::COND_CLINICAL, "code": "active", "display": "Active" }] },
        "verificationStatus": { "coding": [{ "system": codes::COND_VER, "code": "confirmed", "display": "Confirmed" }] },
        "category": [{ "coding": [
            { "system": codes::COND_CAT, "code": "encounter-diagnosis", "display": "Encounter Diagnosis" }
        ] }],
        "code": sct(code),
        "subject": reference("Patient", patient),
        "encounter": reference("Encounter", &encounter),
        "onsetDateTime": onset.min(day).to_string()
    });
    v["recordedDate"] = json!(day.at(10 * 60));
    out.write(&v)
}
