//! GP problems, medicines, allergies and immunisations.

use std::io;

use serde_json::{Value, json};

use crate::codes::{self, Code};
use crate::dates::{Date, REFERENCE};
use crate::fhir::{self, concept, reference, sct};
use crate::gp::{Consultation, Guids};
use crate::out::Export;
use crate::people::{Person, Problem};
use crate::rng::Rng;

/// A recorded problem: its code, its Condition id and where it was recorded.
pub(crate) type Treated = (Code, String, Consultation);

/// A problem-list Condition recorded at consultation `c`.
pub(crate) fn condition(
    id: &str,
    patient: &str,
    p: &Problem,
    c: &Consultation,
    rng: &mut Rng,
) -> Value {
    let onset = p.onset.plus(-rng.range(0, 45)).min(c.day);
    let resolved = match p.code.code {
        "105629000" => Some(c.day.plus(rng.range(21, 35))),
        "35489007" | "197480006" if rng.chance(0.25) => Some(c.day.plus(rng.range(120, 500))),
        _ => None,
    }
    .filter(|end| *end < REFERENCE);
    let clinical = match resolved {
        Some(_) => ("resolved", "Resolved"),
        None => ("active", "Active"),
    };
    let mut v = json!({
        "resourceType": "Condition",
        "id": id,
        "meta": fhir::meta(rng, resolved.unwrap_or(c.day)),
        "clinicalStatus": { "coding": [
            { "system": codes::COND_CLINICAL, "code": clinical.0, "display": clinical.1 }
        ] },
        "verificationStatus": { "coding": [
            { "system": codes::COND_VER, "code": "confirmed", "display": "Confirmed" }
        ] },
        "category": [{ "coding": [
            { "system": codes::COND_CAT, "code": "problem-list-item", "display": "Problem List Item" }
        ] }],
        "code": sct(p.code),
        "subject": reference("Patient", patient),
        "encounter": reference("Encounter", &c.id),
        "onsetDateTime": onset.to_string()
    });
    if let Some(end) = resolved {
        v["abatementDateTime"] = json!(end.to_string());
    }
    v["recordedDate"] = json!(c.when());
    v
}

/// The medicines a problem is usually treated with, with dosage text.
fn treatments(code: Code) -> &'static [(Code, &'static str)] {
    const ONCE: &str = "One tablet once daily";
    match code.code {
        "59621000" => &[
            (codes::AMLODIPINE, ONCE),
            (codes::RAMIPRIL, "One capsule once daily"),
        ],
        "44054006" => &[(codes::METFORMIN, "One tablet twice a day with meals")],
        "195967001" | "13645005" => &[(
            codes::SALBUTAMOL,
            "Two puffs up to four times a day when required",
        )],
        "35489007" | "197480006" => &[(codes::CITALOPRAM, ONCE)],
        "49436004" => &[(codes::BISOPROLOL, ONCE)],
        "84114007" => &[
            (codes::FUROSEMIDE, "One tablet each morning"),
            (codes::BISOPROLOL, ONCE),
        ],
        "396275006" => &[(
            codes::PARACETAMOL,
            "Two tablets up to four times a day when required",
        )],
        "55822004" => &[(codes::SIMVASTATIN, "One tablet at night")],
        _ => &[],
    }
}

/// One MedicationStatement.
fn statement(
    id: &str,
    patient: &str,
    med: Code,
    dose: &str,
    c: &Consultation,
    end: Option<Date>,
    rng: &mut Rng,
) -> Value {
    let mut period = json!({ "start": c.day.to_string() });
    if let Some(end) = end {
        period["end"] = json!(end.to_string());
    }
    json!({
        "resourceType": "MedicationStatement",
        "id": id,
        "meta": fhir::meta(rng, end.unwrap_or(c.day)),
        "status": if end.is_some() { "completed" } else { "active" },
        "category": { "coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/medication-statement-category",
            "code": "community",
            "display": "Community"
        }] },
        "medicationCodeableConcept": sct(med),
        "subject": reference("Patient", patient),
        "context": reference("Encounter", &c.id),
        "effectivePeriod": period,
        "dateAsserted": c.when(),
        "dosage": [{ "text": dose }]
    })
}

/// Repeat medicines for treated problems, and now and then an acute course.
pub(crate) fn medications(
    treated: &[Treated],
    visits: &[Consultation],
    patient: &str,
    ids: &mut Guids,
    out: &mut Export,
    rng: &mut Rng,
) -> io::Result<()> {
    let mut given: Vec<&str> = Vec::new();
    for (code, condition_id, c) in treated {
        let options = treatments(*code);
        for (i, (med, dose)) in options.iter().enumerate() {
            let wanted = if i == 0 {
                rng.chance(0.85)
            } else {
                rng.chance(0.5)
            };
            if !wanted || given.contains(&med.code) {
                continue;
            }
            given.push(med.code);
            let stopped = (med.code == codes::CITALOPRAM.code && rng.chance(0.4))
                .then(|| c.day.plus(rng.range(180, 420)))
                .filter(|end| *end < REFERENCE);
            let mut v = statement(&ids.next(), patient, *med, dose, c, stopped, rng);
            v["reasonReference"] = json!([reference("Condition", condition_id)]);
            out.write(&v)?;
        }
    }
    if !visits.is_empty() && rng.chance(0.25) {
        let c = rng.pick(visits);
        let end = c.day.plus(7).min(REFERENCE.plus(-1));
        let dose = "One capsule three times a day for 7 days";
        let mut v = statement(
            &ids.next(),
            patient,
            codes::AMOXICILLIN,
            dose,
            c,
            Some(end),
            rng,
        );
        v["reasonCode"] = json!([fhir::text("Chest infection")]);
        out.write(&v)?;
    }
    Ok(())
}

/// Allergies for about one person in five.
pub(crate) fn allergies(
    visits: &[Consultation],
    patient: &str,
    ids: &mut Guids,
    out: &mut Export,
    rng: &mut Rng,
) -> io::Result<()> {
    if visits.is_empty() || !rng.chance(0.2) {
        return Ok(());
    }
    let first = rng.below(codes::ALLERGENS.len() as u64) as usize;
    let count = if rng.chance(0.25) { 2 } else { 1 };
    for k in 0..count {
        let (substance, category) = codes::ALLERGENS[(first + k * 3) % codes::ALLERGENS.len()];
        let c = rng.pick(visits);
        let (reaction, severity) = *rng.pick(codes::REACTIONS);
        let intolerance = reaction.code == "422587007";
        let v = json!({
            "resourceType": "AllergyIntolerance",
            "id": ids.next(),
            "meta": fhir::meta(rng, c.day),
            "clinicalStatus": concept(codes::ALLERGY_CLINICAL, Code { code: "active", display: "Active" }),
            "verificationStatus": concept(codes::ALLERGY_VER, Code { code: "confirmed", display: "Confirmed" }),
            "type": if intolerance { "intolerance" } else { "allergy" },
            "category": [category],
            "criticality": if severity == "severe" { "high" } else { "low" },
            "code": sct(substance),
            "patient": reference("Patient", patient),
            "onsetDateTime": c.day.plus(-rng.range(30, 3000)).to_string(),
            "recordedDate": c.when(),
            "reaction": [{ "manifestation": [sct(reaction)], "severity": severity }]
        });
        out.write(&v)?;
    }
    Ok(())
}

/// Seasonal flu vaccinations for people aged 65 and over or at clinical risk.
pub(crate) fn immunisations(
    p: &Person,
    patient: &str,
    ids: &mut Guids,
    out: &mut Export,
    rng: &mut Rng,
) -> io::Result<()> {
    let at_risk = [
        codes::ASTHMA,
        codes::COPD,
        codes::T2DM,
        codes::CKD,
        codes::HEART_FAILURE,
    ];
    for year in 2021..=2026 {
        let season = Date::ymd(year, 10, 1);
        let risk = p
            .problems
            .iter()
            .any(|x| x.onset < season && at_risk.iter().any(|r| r.code == x.code.code));
        if !(p.birth.age_on(season) >= 65 || risk) || !rng.chance(0.75) {
            continue;
        }
        let day = season.plus(rng.range(0, 55)).weekday_or_next();
        if day >= REFERENCE {
            continue;
        }
        let when = day.at(rng.range(9 * 6, 16 * 6) * 10);
        out.write(&json!({
            "resourceType": "Immunization",
            "id": ids.next(),
            "meta": fhir::meta(rng, day),
            "status": "completed",
            "vaccineCode": concept(codes::DMD, codes::FLU_VACCINE),
            "patient": reference("Patient", patient),
            "occurrenceDateTime": when,
            "recorded": when,
            "primarySource": true,
            "lotNumber": format!("FL{:05}", rng.below(100_000))
        }))?;
    }
    Ok(())
}
