//! Northshire County Council Adult Social Care (fictional code `LA001`):
//! needs assessments and reviews, care packages, informal carers and
//! safeguarding flags. Ids are dotted case-management numbers.

use std::io;

use serde_json::json;

use crate::care::{self, Org, Plan, Visit};
use crate::codes;
use crate::dates::{Date, REFERENCE};
use crate::fhir::{self, PatientView, reference, sct};
use crate::names;
use crate::out::{Export, Tally};
use crate::people::{Person, Source};
use crate::rng::Rng;

/// Code and name.
pub(crate) const ORG: Org = ("LA001", "Northshire County Council Adult Social Care");
/// Local person-number system.
const MRN_SYSTEM: &str = "https://northshire-county.example/Id/person";

/// Care packages: title and description (`{}` is a provider or setting).
const PACKAGES: &[(&str, &str)] = &[
    (
        "Home care",
        "Home care from {}: two calls a day (morning and evening) for personal care and medication prompts",
    ),
    ("Day care", "Day care at {} two days a week, with transport"),
    (
        "Respite care",
        "Planned respite at {}: two weeks twice a year to support the family carer",
    ),
    (
        "Telecare",
        "Telecare: pendant alarm and falls sensor, monitored by {}",
    ),
    (
        "Meals at home",
        "Hot meal delivered daily, arranged through {}",
    ),
];

/// Safeguarding concerns raised with the council.
const CONCERNS: &[&str] = &[
    "Adult safeguarding: section 42 enquiry open - suspected financial abuse",
    "Adult safeguarding: self-neglect - hoarding and missed meals",
    "Adult safeguarding: domestic abuse disclosed - do not share address with ex-partner",
    "Adult safeguarding: suspected neglect by paid carers - enquiry in progress",
];

/// Generate the social care record of one person.
pub(crate) fn generate(
    seed: u64,
    p: &Person,
    out: &mut Export,
    tally: &mut Tally,
) -> io::Result<()> {
    let mut rng = Rng::derive(seed, p.index.wrapping_mul(4).wrapping_add(4));
    let number = 1_000_000 + fhir::local_number(p.index, 1_000_000, 104_729, 31_337);
    let patient_id = format!("person.{number}");
    let mrn = number.to_string();
    let view = PatientView {
        source: Source::Social,
        id: &patient_id,
        mrn_system: MRN_SYSTEM,
        mrn: &mrn,
    };
    out.write(&fhir::patient(p, &view, &mut rng))?;
    let id = |kind: &str, k: u64| format!("{kind}.{number}.{k}");

    let start = REFERENCE.plus(-rng.range(30, 2500)).weekday_or_next();
    let closed = (rng.chance(0.2) && p.index != 2)
        .then(|| start.plus(rng.range(90, 700)))
        .filter(|e| *e < REFERENCE);
    let episode_id = id("episode", 1);
    out.write(&care::episode(
        &episode_id,
        &patient_id,
        sct(codes::SOCIAL_SERVICES),
        ORG,
        start,
        closed,
        &mut rng,
    ))?;

    // The Care Act needs assessment, then yearly reviews while the case is open.
    let last = closed.unwrap_or(REFERENCE.plus(-1));
    let mut day = start;
    let mut k = 0;
    while day <= last {
        k += 1;
        let enc_id = id("contact", k);
        let visit = Visit {
            id: &enc_id,
            patient: &patient_id,
            class: ("HH", "home health"),
            kind: codes::SEEN_AT_HOME,
            kind_text: Some(if k == 1 {
                "Care Act 2014 needs assessment"
            } else {
                "Care and support plan review"
            }),
            service: Some(codes::SOCIAL_SERVICES),
            episode: &episode_id,
            day,
            start: rng.range(54, 90) * 10,
            minutes: if k == 1 {
                rng.range(60, 100)
            } else {
                rng.range(30, 60)
            },
            org: ORG,
        };
        out.write(&care::encounter(&visit, &mut rng))?;
        day = day.plus(365 + rng.range(-30, 30)).weekday_or_next();
    }

    // Care packages arranged after the assessment.
    let first = rng.below(PACKAGES.len() as u64) as usize;
    let count = 1 + usize::from(p.age() >= 75 && rng.chance(0.4));
    for n in 0..count {
        let (title, template) = PACKAGES[(first + n * 2) % PACKAGES.len()];
        let who = if title == "Day care" || title == "Respite care" {
            names::CARE_SETTINGS
        } else {
            names::AGENCIES
        };
        let name = *rng.pick(who);
        let description = template.replace("{}", name);
        let from = start.plus(rng.range(7, 40)).min(last);
        let plan = Plan {
            id: &id("package", n as u64 + 1),
            patient: &patient_id,
            category: codes::CARE_PLAN,
            title,
            description: &description,
            addresses: None,
            start: from,
            end: closed.map(|c| c.max(from)),
            org: ORG,
        };
        out.write(&care::care_plan(&plan, &mut rng))?;
    }

    for n in 0..p.carers {
        out.write(&carer(
            p,
            &id("carer", u64::from(n) + 1),
            &patient_id,
            n,
            start,
            &mut rng,
        ))?;
        *tally
            .entry("socialcare | carer | RelatedPerson".to_owned())
            .or_insert(0) += 1;
    }
    if p.safeguarding {
        let raised = REFERENCE.plus(-rng.range(10, 400)).max(start);
        out.write(&json!({
            "resourceType": "Flag",
            "id": id("alert", 1),
            "meta": fhir::meta(&mut rng, raised),
            "status": "active",
            "category": [{ "coding": [{ "system": codes::FLAG_CAT, "code": "safety", "display": "Safety" }] }],
            "code": { "text": rng.pick(CONCERNS) },
            "subject": reference("Patient", &patient_id),
            "period": { "start": raised.at(rng.range(9 * 60, 17 * 60)) },
            "author": fhir::organisation(ORG.0, ORG.1)
        }))?;
        *tally
            .entry("socialcare | safeguarding | Flag".to_owned())
            .or_insert(0) += 1;
    }
    Ok(())
}

/// An informal carer: spouse for older people, else a child, friend or neighbour.
fn carer(
    p: &Person,
    id: &str,
    patient: &str,
    n: u8,
    since: Date,
    rng: &mut Rng,
) -> serde_json::Value {
    let female_patient = p.gender == "female";
    let (code, display, female) = match rng.unit() {
        _ if n == 0 && p.age() >= 60 && rng.chance(0.55) => {
            if female_patient {
                ("HUSB", "husband", false)
            } else {
                ("WIFE", "wife", true)
            }
        }
        u if u < 0.45 => ("DAU", "natural daughter", true),
        u if u < 0.75 => ("SON", "natural son", false),
        u if u < 0.9 => ("FRND", "unrelated friend", rng.chance(0.6)),
        _ => ("NBOR", "neighbor", rng.chance(0.6)),
    };
    let (given, _) = *rng.pick(if female { names::FEMALE } else { names::MALE });
    let family = match code {
        "HUSB" | "WIFE" => p.family,
        "DAU" | "SON" if rng.chance(0.6) => p.family,
        _ => *rng.pick(names::FAMILY),
    };
    json!({
        "resourceType": "RelatedPerson",
        "id": id,
        "meta": fhir::meta(rng, since),
        "active": true,
        "patient": reference("Patient", patient),
        "relationship": [
            { "coding": [{ "system": codes::ROLE_CODE, "code": code, "display": display }] },
            { "coding": [{
                "system": "https://fhir.hl7.org.uk/CodeSystem/UKCore-AdditionalPersonRelationshipRole",
                "code": "Carer",
                "display": "Carer of patient"
            }] }
        ],
        "name": [{ "use": "official", "family": family, "given": [given] }],
        "telecom": [{ "system": "phone", "value": format!("07700 900{:03}", rng.below(1000)), "use": "mobile" }],
        "gender": if female { "female" } else { "male" },
        "period": { "start": since.to_string() }
    })
}
