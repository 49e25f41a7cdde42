//! Small builders for FHIR R4 JSON datatypes, and the Patient resource that
//! every provider holds in its own way.

use serde_json::{Value, json};

use crate::codes::{self, Code};
use crate::dates::{Date, REFERENCE};
use crate::people::{Address, Person, Source};
use crate::rng::Rng;

/// A Coding.
pub(crate) fn coding(system: &str, code: Code) -> Value {
    json!({ "system": system, "code": code.code, "display": code.display })
}

/// A CodeableConcept with one coding.
pub(crate) fn concept(system: &str, code: Code) -> Value {
    json!({ "coding": [coding(system, code)] })
}

/// A CodeableConcept with one SNOMED CT coding.
pub(crate) fn sct(code: Code) -> Value {
    concept(codes::SNOMED, code)
}

/// A CodeableConcept with a SNOMED CT and a LOINC coding for the same idea.
pub(crate) fn sct_loinc(codes: (Code, Code)) -> Value {
    json!({ "coding": [coding(codes::SNOMED, codes.0), coding(codes::LOINC, codes.1)] })
}

/// A CodeableConcept with text only.
pub(crate) fn text(text: &str) -> Value {
    json!({ "text": text })
}

/// A literal reference such as `Patient/abc`.
pub(crate) fn reference(kind: &str, id: &str) -> Value {
    json!({ "reference": format!("{kind}/{id}") })
}

/// A logical reference to an organisation by ODS code.
pub(crate) fn organisation(ods: &str, name: &str) -> Value {
    json!({
        "identifier": { "system": codes::ODS, "value": ods },
        "display": name
    })
}

/// A UCUM quantity. `value` is any JSON number (integer or decimal).
pub(crate) fn quantity(value: Value, unit: &str) -> Value {
    json!({ "value": value, "unit": unit, "system": codes::UCUM, "code": unit })
}

/// A decimal with one place from a value in tenths (e.g. 724 -> 72.4).
pub(crate) fn tenths(value: i64) -> Value {
    json!(value as f64 / 10.0)
}

/// `meta.lastUpdated`: some time in the two months before the reference
/// date, but never before `floor`, the latest date the resource mentions
/// (then it is that evening, after the event).
pub(crate) fn meta(rng: &mut Rng, floor: Date) -> Value {
    let day = REFERENCE.plus(-rng.range(1, 60));
    let (daytime, evening) = (rng.range(7 * 60, 18 * 60), rng.range(19 * 60, 21 * 60));
    let stamp = if day > floor {
        day.instant(daytime)
    } else {
        floor.min(REFERENCE.plus(-1)).instant(evening)
    };
    json!({ "lastUpdated": stamp })
}

/// An FHIR Address.
fn address(a: &Address, period_end: Option<Date>) -> Value {
    let mut v = json!({
        "use": "home",
        "line": [a.line],
        "city": a.town,
        "district": "Northshire",
        "postalCode": a.postcode
    });
    if let Some(end) = period_end {
        v["use"] = json!("old");
        v["period"] = json!({ "end": end.to_string() });
    }
    v
}

/// Everything a provider needs to render its own Patient.
#[derive(Debug)]
pub(crate) struct PatientView<'a> {
    /// Which provider is speaking.
    pub(crate) source: Source,
    /// The provider's own id for the person.
    pub(crate) id: &'a str,
    /// The provider's local record-number system.
    pub(crate) mrn_system: &'a str,
    /// The provider's local record number.
    pub(crate) mrn: &'a str,
}

/// The Patient resource as one provider holds it.
///
/// The NHS number, official name, gender and birth date agree everywhere;
/// a familiar name, an old address or an old phone number may be held by one
/// provider only, as happens in real records.
pub(crate) fn patient(p: &Person, view: &PatientView<'_>, rng: &mut Rng) -> Value {
    let mut names = vec![json!({ "use": "official", "family": p.family, "given": [p.given] })];
    if let Some(nick) = p.nickname.filter(|_| p.nickname_in == view.source) {
        names.push(json!({ "use": "usual", "family": p.family, "given": [nick] }));
    }
    if let (Some(maiden), Source::Gp) = (p.maiden, view.source) {
        names.push(json!({ "use": "maiden", "family": maiden, "given": [p.given] }));
    }
    let address = match &p.old_address {
        Some((old, src)) if *src == view.source => self::address(old, None),
        _ => self::address(&p.address, None),
    };
    let (number, mobile) = match &p.old_phone {
        Some((old, src)) if *src == view.source => (old.clone(), true),
        _ => p.phone.clone(),
    };
    let mut v = json!({
        "resourceType": "Patient",
        "id": view.id,
        "meta": meta(rng, REFERENCE.plus(-60)),
        "identifier": [
            { "system": codes::NHS_NUMBER, "value": p.nhs },
            { "use": "usual", "system": view.mrn_system, "value": view.mrn }
        ],
        "active": true,
        "name": names,
        "telecom": [
            { "system": "phone", "value": number, "use": if mobile { "mobile" } else { "home" } }
        ],
        "gender": p.gender,
        "birthDate": p.birth.to_string(),
        "address": [address]
    });
    if p.at_gp {
        v["generalPractitioner"] = json!([organisation("A81001", "Riverside Medical Practice")]);
    }
    v
}

/// A moved person's previous address, shown with `use: old` by the GP,
/// which keeps address history (the other providers simply overwrite, and
/// one of them has not yet heard of the move).
pub(crate) fn address_history(p: &Person) -> Option<Value> {
    let (old, _) = p.old_address.as_ref()?;
    Some(address(old, Some(REFERENCE.plus(-200))))
}

/// A provider's local record number for person `index`: an affine bijection
/// on `0..modulus`, so numbers are unique per provider, look unrelated
/// between providers, and need no lookup table.
pub(crate) fn local_number(index: u64, modulus: u64, a: u64, b: u64) -> u64 {
    // INVARIANT: `a` is coprime to `modulus` (both callers use a prime `a`
    // that does not divide a power of ten) and `index < modulus`.
    (a.wrapping_mul(index % modulus) + b) % modulus
}
