//! Observation builders: vital signs, HbA1c and wound measurements.

use serde_json::{Value, json};

use crate::codes::{self, Code};
use crate::dates::Date;
use crate::fhir::{self, quantity, reference, tenths};
use crate::rng::Rng;

/// Where and when an observation was taken.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Taken<'a> {
    /// Observation id.
    pub(crate) id: &'a str,
    /// The provider's Patient id.
    pub(crate) patient: &'a str,
    /// The provider's Encounter id, when taken at an encounter.
    pub(crate) encounter: Option<&'a str>,
    /// FHIR dateTime of the measurement.
    pub(crate) when: &'a str,
    /// Day of the measurement.
    pub(crate) day: Date,
}

/// The observation-category CodeableConcept.
fn category(code: &str) -> Value {
    let display = match code {
        "vital-signs" => "Vital Signs",
        "laboratory" => "Laboratory",
        _ => "Exam",
    };
    json!([{ "coding": [{ "system": codes::OBS_CAT, "code": code, "display": display }] }])
}

/// The common skeleton of a final Observation.
fn base(t: Taken<'_>, cat: &str, code: Value, rng: &mut Rng) -> Value {
    let mut v = json!({
        "resourceType": "Observation",
        "id": t.id,
        "meta": fhir::meta(rng, t.day),
        "status": "final",
        "category": category(cat),
        "code": code,
        "subject": reference("Patient", t.patient)
    });
    if let Some(enc) = t.encounter {
        v["encounter"] = reference("Encounter", enc);
    }
    v["effectiveDateTime"] = json!(t.when);
    v
}

/// A blood pressure panel with systolic and diastolic components (mm[Hg]).
pub(crate) fn blood_pressure(t: Taken<'_>, systolic: i64, diastolic: i64, rng: &mut Rng) -> Value {
    let mut v = base(t, "vital-signs", fhir::sct_loinc(codes::BP), rng);
    v["component"] = json!([
        { "code": fhir::sct_loinc(codes::SYSTOLIC), "valueQuantity": quantity(json!(systolic), "mm[Hg]") },
        { "code": fhir::sct_loinc(codes::DIASTOLIC), "valueQuantity": quantity(json!(diastolic), "mm[Hg]") }
    ]);
    v
}

/// A vital sign with a single quantity (`codes` is a SNOMED/LOINC pair).
pub(crate) fn vital(
    t: Taken<'_>,
    codes: (Code, Code),
    value: Value,
    unit: &str,
    rng: &mut Rng,
) -> Value {
    let mut v = base(t, "vital-signs", fhir::sct_loinc(codes), rng);
    v["valueQuantity"] = quantity(value, unit);
    v
}

/// Body weight in kilograms, from a value in tenths of a kilogram.
pub(crate) fn weight(t: Taken<'_>, tenths_kg: i64, rng: &mut Rng) -> Value {
    vital(t, codes::WEIGHT, tenths(tenths_kg), "kg", rng)
}

/// HbA1c (IFCC, mmol/mol), a laboratory result.
pub(crate) fn hba1c(t: Taken<'_>, mmol_mol: i64, rng: &mut Rng) -> Value {
    let mut v = base(t, "laboratory", fhir::sct(codes::HBA1C), rng);
    v["valueQuantity"] = quantity(json!(mmol_mol), "mmol/mol");
    v
}

/// A wound measurement in centimetres (tenths), category `exam`.
pub(crate) fn wound(t: Taken<'_>, code: Code, tenths_cm: i64, site: &str, rng: &mut Rng) -> Value {
    let mut v = base(t, "exam", fhir::sct(code), rng);
    v["valueQuantity"] = quantity(tenths(tenths_cm), "cm");
    v["bodySite"] = fhir::text(site);
    v
}

/// A person's body habitus: height and a starting weight, both in tenths.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Habitus {
    /// Height in millimetres.
    pub(crate) height_mm: i64,
    /// Current weight in tenths of a kilogram.
    pub(crate) weight: i64,
}

impl Habitus {
    /// A plausible adult build.
    pub(crate) fn new(female: bool, rng: &mut Rng) -> Self {
        let height_mm = if female {
            rng.range(1520, 1760)
        } else {
            rng.range(1640, 1910)
        };
        let bmi_tenths = rng.range(195, 345);
        let weight = bmi_tenths * height_mm * height_mm / 1_000_000;
        Self { height_mm, weight }
    }

    /// Drift the weight a little between measurements (never below 40 kg).
    pub(crate) fn drift(&mut self, rng: &mut Rng) -> i64 {
        self.weight = (self.weight + rng.range(-25, 25)).max(400);
        self.weight
    }

    /// BMI in tenths, rounded, for the current weight.
    pub(crate) fn bmi_tenths(&self) -> i64 {
        let h2 = self.height_mm * self.height_mm;
        (self.weight * 1_000_000 * 10 + h2 * 5) / (h2 * 10)
    }
}
