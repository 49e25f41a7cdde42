//! GP observations: blood pressure, heart rate, weight, height and BMI at
//! face-to-face consultations, and HbA1c laboratory results.

use std::io;

use serde_json::json;

use crate::codes;
use crate::dates::{Date, REFERENCE};
use crate::fhir;
use crate::gp::{Consultation, Guids};
use crate::out::Export;
use crate::people::Person;
use crate::rng::Rng;
use crate::vitals::{self, Habitus, Taken};

/// Vital signs at face-to-face consultations, and HbA1c results.
pub(crate) fn vital_signs(
    p: &Person,
    visits: &[Consultation],
    patient: &str,
    ids: &mut Guids,
    out: &mut Export,
    rng: &mut Rng,
) -> io::Result<()> {
    let hypertensive = p.has(codes::HYPERTENSION);
    let (sys0, dia0) = (
        rng.range(112, 134) + if hypertensive { 18 } else { 0 },
        rng.range(68, 84),
    );
    let hr0 = if p.has(codes::AF) {
        rng.range(74, 96)
    } else {
        rng.range(58, 84)
    };
    let mut body = Habitus::new(p.gender == "female", rng);
    let mut measured_height = false;
    for c in visits.iter().filter(|c| c.in_person) {
        let when = c.when();
        let tpl = Taken {
            id: "",
            patient,
            encounter: Some(c.id.as_str()),
            when: when.as_str(),
            day: c.day,
        };
        if rng.chance(if hypertensive { 0.85 } else { 0.5 }) {
            let id = ids.next();
            let (s, d) = (sys0 + rng.range(-9, 9), dia0 + rng.range(-6, 6));
            out.write(&vitals::blood_pressure(Taken { id: &id, ..tpl }, s, d, rng))?;
        }
        if rng.chance(0.2) {
            let id = ids.next();
            let v = json!(hr0 + rng.range(-6, 6));
            out.write(&vitals::vital(
                Taken { id: &id, ..tpl },
                codes::HEART_RATE,
                v,
                "/min",
                rng,
            ))?;
        }
        if !measured_height || rng.chance(0.2) {
            let id = ids.next();
            out.write(&vitals::weight(
                Taken { id: &id, ..tpl },
                body.drift(rng),
                rng,
            ))?;
            if !measured_height {
                measured_height = true;
                let id = ids.next();
                let h = fhir::tenths(body.height_mm);
                out.write(&vitals::vital(
                    Taken { id: &id, ..tpl },
                    codes::HEIGHT,
                    h,
                    "cm",
                    rng,
                ))?;
            }
            let id = ids.next();
            let bmi = fhir::tenths(body.bmi_tenths());
            out.write(&vitals::vital(
                Taken { id: &id, ..tpl },
                codes::BMI,
                bmi,
                "kg/m2",
                rng,
            ))?;
        }
    }
    hba1c_results(p, patient, ids, out, rng)
}

/// HbA1c every six months after a diabetes diagnosis; occasional screening
/// tests for adults over 40 without diabetes.
fn hba1c_results(
    p: &Person,
    patient: &str,
    ids: &mut Guids,
    out: &mut Export,
    rng: &mut Rng,
) -> io::Result<()> {
    let diabetes = p
        .problems
        .iter()
        .find(|x| x.code.code == codes::T2DM.code)
        .map(|x| x.onset);
    let (mut day, step, base): (Date, i64, i64) = match diabetes {
        Some(onset) => (onset.plus(-10), 182, rng.range(48, 70)),
        None if p.age() > 40 && rng.chance(0.3) => (
            REFERENCE.plus(-rng.range(60, 1500)),
            100_000,
            rng.range(32, 41),
        ),
        None => return Ok(()),
    };
    while day < REFERENCE.plus(-7) {
        let lab_day = day.weekday_or_next();
        let when = lab_day.at(rng.range(9 * 60, 11 * 60));
        let id = ids.next();
        let t = Taken {
            id: &id,
            patient,
            encounter: None,
            when: &when,
            day: lab_day,
        };
        out.write(&vitals::hba1c(t, base + rng.range(-5, 5), rng))?;
        day = day.plus(step + rng.range(-20, 20));
    }
    Ok(())
}
