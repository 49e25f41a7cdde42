//! District nursing at home: the caseload episode, the nursing care plan,
//! home visits, wound measurements and the ulcers being nursed.

use std::io;

use serde_json::{Value, json};

use crate::care::{self, Plan, Visit};
use crate::codes;
use crate::community::{Ids, ORG};
use crate::dates::{Date, REFERENCE};
use crate::fhir::{self, reference, sct};
use crate::out::Export;
use crate::people::Person;
use crate::rng::Rng;
use crate::vitals::{self, Habitus, Taken};

/// The demo's deliberate conformance faults, all in this provider's district nursing records
/// (the kind of dialect a real system speaks): the first home visit of every 4th person nursed at home is
/// an Encounter with status `completed` (R4 says `finished`), and a wound measurement taken
/// at it has status `Final` (codes are case-sensitive). The gateway flags both (required
/// bindings); a fault consumes no randomness, so the rest of the data is as it would be.
fn deliberate_fault(p: &Person, visit: i64) -> bool {
    p.index % 4 == 3 && visit == 0
}

/// See [`deliberate_fault`].
const FAULTY_ENCOUNTER_STATUS: &str = "completed";
/// See [`deliberate_fault`].
const FAULTY_OBSERVATION_STATUS: &str = "Final";

/// Why district nurses visit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Focus {
    /// Pressure ulcer care.
    PressureUlcer,
    /// Venous leg ulcer care.
    LegUlcer,
    /// Long-term catheter care.
    Catheter,
    /// Insulin and glucose monitoring.
    Diabetes,
    /// Anticipatory and end-of-life care at home.
    Anticipatory,
}

impl Focus {
    /// Care plan description.
    fn plan(self) -> &'static str {
        match self {
            Self::PressureUlcer => {
                "Pressure ulcer management: repositioning advice, pressure-relieving mattress, dressing changes twice weekly"
            }
            Self::LegUlcer => {
                "Venous leg ulcer management with four-layer compression bandaging, reviewed weekly"
            }
            Self::Catheter => {
                "Long-term urinary catheter care: change every 12 weeks, review of infection signs"
            }
            Self::Diabetes => {
                "Diabetes support at home: insulin administration and capillary glucose monitoring"
            }
            Self::Anticipatory => {
                "Anticipatory care at home: symptom review, medicines check and carer support"
            }
        }
    }
}

/// A nursed ulcer: pressure ulcer (SNOMED CT) or leg ulcer (free text: we
/// found no leg-ulcer concept we could vouch for, and text is honest).
fn ulcer(id: &str, patient: &str, pressure: bool, start: Date, rng: &mut Rng) -> Value {
    let code = if pressure {
        sct(codes::PRESSURE_ULCER)
    } else {
        fhir::text("Venous leg ulcer")
    };
    json!({
        "resourceType": "Condition",
        "id": id,
        "meta": fhir::meta(rng, start),
        "clinicalStatus": { "coding": [{ "system": codes::COND_CLINICAL, "code": "active", "display": "Active" }] },
        "verificationStatus": { "coding": [{ "system": codes::COND_VER, "code": "confirmed", "display": "Confirmed" }] },
        "category": [{ "coding": [
            { "system": codes::COND_CAT, "code": "problem-list-item", "display": "Problem List Item" }
        ] }],
        "code": code,
        "subject": reference("Patient", patient),
        "onsetDateTime": start.plus(-rng.range(3, 40)).to_string(),
        "recordedDate": start.at(rng.range(9 * 60, 16 * 60))
    })
}

/// The district nursing caseload: episode, care plan, home visits, wound
/// measurements and, for ulcers, the Condition nursed.
pub(crate) fn district_nursing(
    p: &Person,
    patient: &str,
    ids: &mut Ids,
    out: &mut Export,
    rng: &mut Rng,
) -> io::Result<()> {
    let age = p.age();
    let diabetic = p.has(codes::T2DM) && rng.chance(0.3);
    let focus = match (rng.unit(), age >= 70) {
        _ if diabetic => Focus::Diabetes,
        (u, true) if u < 0.35 => Focus::PressureUlcer,
        (u, _) if u < 0.55 => Focus::LegUlcer,
        (u, _) if u < 0.80 => Focus::Catheter,
        (_, true) => Focus::Anticipatory,
        _ => Focus::Catheter,
    };
    let start = REFERENCE.plus(-rng.range(20, 1500)).weekday_or_next();
    let end = (start < REFERENCE.plus(-200) || rng.chance(0.3))
        .then(|| start.plus(rng.range(30, 180)))
        .filter(|e| *e < REFERENCE);
    let last = end.unwrap_or(REFERENCE.plus(-1));
    let episode_id = ids.next("eoc");
    out.write(&care::episode(
        &episode_id,
        patient,
        sct(codes::COMMUNITY_NURSING),
        ORG,
        start,
        end,
        rng,
    ))?;

    let wound = matches!(focus, Focus::PressureUlcer | Focus::LegUlcer);
    let condition_id = ids.next("cond");
    if wound {
        out.write(&ulcer(
            &condition_id,
            patient,
            focus == Focus::PressureUlcer,
            start,
            rng,
        ))?;
    }
    let plan = Plan {
        id: &ids.next("cp"),
        patient,
        category: codes::NURSING_CARE_PLAN,
        title: "District nursing care plan",
        description: focus.plan(),
        addresses: wound.then_some(condition_id.as_str()),
        start,
        end,
        org: ORG,
    };
    out.write(&care::care_plan(&plan, rng))?;

    let visits = rng.range(3, 10);
    let gap = ((last.0 - start.0) / visits).max(1);
    let (mut length, mut width) = (rng.range(20, 80), rng.range(15, 50));
    let mut body = Habitus::new(p.gender == "female", rng);
    let site = if focus == Focus::PressureUlcer {
        "Sacrum"
    } else {
        *rng.pick(&["Left lower leg", "Right lower leg"])
    };
    for k in 0..visits {
        let day = start.plus(k * gap).weekday_or_next().min(last);
        let id = ids.next("enc");
        let visit = Visit {
            id: &id,
            patient,
            class: ("HH", "home health"),
            kind: codes::SEEN_AT_HOME,
            kind_text: None,
            service: Some(codes::COMMUNITY_NURSING),
            episode: &episode_id,
            day,
            start: rng.range(48, 96) * 10,
            minutes: rng.range(20, 45),
            org: ORG,
        };
        let mut encounter = care::encounter(&visit, rng);
        if deliberate_fault(p, k) {
            encounter["status"] = json!(FAULTY_ENCOUNTER_STATUS);
        }
        out.write(&encounter)?;
        let when = day.at(visit.start + 10);
        if wound && k % 2 == 0 {
            let (o1, o2) = (ids.next("obs"), ids.next("obs"));
            let t1 = Taken {
                id: &o1,
                patient,
                encounter: Some(&id),
                when: &when,
                day,
            };
            let mut measured = vitals::wound(t1, codes::WOUND_LENGTH, length, site, rng);
            if deliberate_fault(p, k) {
                measured["status"] = json!(FAULTY_OBSERVATION_STATUS);
            }
            out.write(&measured)?;
            let t2 = Taken { id: &o2, ..t1 };
            out.write(&vitals::wound(t2, codes::WOUND_WIDTH, width, site, rng))?;
            length = (length - rng.range(0, 6)).max(3);
            width = (width - rng.range(0, 4)).max(2);
        }
        if k == 0 && rng.chance(0.5) {
            let o = ids.next("obs");
            let t = Taken {
                id: &o,
                patient,
                encounter: Some(&id),
                when: &when,
                day,
            };
            out.write(&vitals::weight(t, body.drift(rng), rng))?;
        }
    }
    Ok(())
}
