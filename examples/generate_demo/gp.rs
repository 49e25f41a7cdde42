//! Riverside Medical Practice (ODS `A81001`): the GP record, the richest of
//! the three. Ids are GUIDs, as GP clinical systems issue them.

use std::io;

use serde_json::{Value, json};

use crate::codes;
use crate::dates::{Date, REFERENCE};
use crate::fhir::{self, PatientView, reference, sct};
use crate::gp_clinical;
use crate::gp_observations;
use crate::out::{Export, Tally};
use crate::people::{Person, Source};
use crate::rng::Rng;

/// ODS code.
pub(crate) const ODS: &str = "A81001";
/// Organisation name.
pub(crate) const NAME: &str = "Riverside Medical Practice";
/// Local patient-number system.
const MRN_SYSTEM: &str = "https://riverside-medical.example/Id/patient";

/// Issues unique GUIDs for one person's resources.
#[derive(Debug)]
pub(crate) struct Guids {
    /// Person index, the high bits of every counter.
    person: u64,
    /// Resources issued so far for this person.
    seq: u64,
    /// Randomness for the non-unique half of each GUID.
    rng: Rng,
}

impl Guids {
    /// The next GUID.
    pub(crate) fn next(&mut self) -> String {
        self.seq += 1;
        self.rng.uuid((self.person << 24) | self.seq)
    }
}

/// One GP consultation.
#[derive(Debug, Clone)]
pub(crate) struct Consultation {
    /// Encounter id.
    pub(crate) id: String,
    /// Day of the consultation.
    pub(crate) day: Date,
    /// Start, minutes after local midnight.
    pub(crate) start: i64,
    /// Face to face (true) or by telephone.
    pub(crate) in_person: bool,
}

impl Consultation {
    /// The start as a FHIR dateTime.
    pub(crate) fn when(&self) -> String {
        self.day.at(self.start)
    }
}

/// A consultation on `day` (moved off weekends), surgery or telephone.
fn consultation(ids: &mut Guids, day: Date, rng: &mut Rng) -> Consultation {
    let day = day.weekday_or_next().min(REFERENCE.plus(-1));
    let in_person = day < Date::ymd(2020, 3, 23) || rng.chance(0.65);
    let start = rng.range(8 * 6 + 3, 17 * 6 + 3) * 10;
    Consultation {
        id: ids.next(),
        day,
        start,
        in_person,
    }
}

/// The Encounter resource of a consultation.
fn encounter(c: &Consultation, patient: &str, rng: &mut Rng) -> Value {
    let (class, display, kind) = if c.in_person {
        ("AMB", "ambulatory", codes::SEEN_IN_SURGERY)
    } else {
        ("VR", "virtual", codes::TELEPHONE_CONSULTATION)
    };
    let minutes = rng.range(8, 20);
    json!({
        "resourceType": "Encounter",
        "id": c.id,
        "meta": fhir::meta(rng, c.day),
        "status": "finished",
        "class": { "system": codes::ACT_CODE, "code": class, "display": display },
        "type": [sct(kind)],
        "subject": reference("Patient", patient),
        "period": { "start": c.when(), "end": c.day.at(c.start + minutes) },
        "serviceProvider": fhir::organisation(ODS, NAME)
    })
}

/// Generate the GP record of one person.
pub(crate) fn generate(
    seed: u64,
    p: &Person,
    out: &mut Export,
    tally: &mut Tally,
) -> io::Result<()> {
    let mut rng = Rng::derive(seed, p.index.wrapping_mul(4).wrapping_add(2));
    let mut ids = Guids {
        person: p.index,
        seq: 0,
        rng: Rng::derive(seed, !p.index),
    };
    let patient_id = ids.next();
    let mrn = format!("{}", 100_000 + p.index);
    let view = PatientView {
        source: Source::Gp,
        id: &patient_id,
        mrn_system: MRN_SYSTEM,
        mrn: &mrn,
    };
    let mut patient = fhir::patient(p, &view, &mut rng);
    if let (Some(old), Some(list)) = (fhir::address_history(p), patient["address"].as_array_mut()) {
        list.push(old);
    }
    out.write(&patient)?;

    // Consultations: one where each problem was diagnosed, plus routine ones.
    let registered = p.birth.plus(18 * 365).max(REFERENCE.plus(-3650));
    let span = (REFERENCE.0 - registered.0).max(1);
    let mut diagnosed = Vec::new();
    for problem in &p.problems {
        diagnosed.push(consultation(&mut ids, problem.onset, &mut rng));
    }
    let routine =
        (rng.range(1, 3) + p.problems.len() as i64 + if p.age() >= 65 { 2 } else { 0 }).min(12);
    let mut visits: Vec<Consultation> = (0..routine)
        .map(|_| {
            let day = registered.plus(rng.range(0, span - 1));
            consultation(&mut ids, day, &mut rng)
        })
        .collect();
    visits.extend(diagnosed.iter().cloned());
    visits.sort_by_key(|c| (c.day, c.start));
    for c in &visits {
        out.write(&encounter(c, &patient_id, &mut rng))?;
    }

    // Problems, each linked to the consultation where it was recorded.
    let mut condition_ids = Vec::new();
    for (problem, c) in p.problems.iter().zip(&diagnosed) {
        let id = ids.next();
        out.write(&gp_clinical::condition(
            &id,
            &patient_id,
            problem,
            c,
            &mut rng,
        ))?;
        if let Some(label) = codes::sensitivity(problem.code.code) {
            *tally
                .entry(format!("gp | {label} | {}", problem.code.display))
                .or_insert(0) += 1;
        }
        condition_ids.push((problem.code, id, c.clone()));
    }

    gp_observations::vital_signs(p, &visits, &patient_id, &mut ids, out, &mut rng)?;
    gp_clinical::medications(
        &condition_ids,
        &visits,
        &patient_id,
        &mut ids,
        out,
        &mut rng,
    )?;
    gp_clinical::allergies(&visits, &patient_id, &mut ids, out, &mut rng)?;
    gp_clinical::immunisations(p, &patient_id, &mut ids, out, &mut rng)
}
