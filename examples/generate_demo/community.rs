//! Northshire Community Health NHS Trust (ODS `RY4`): district nursing at
//! home, and for a few people the community mental health or substance
//! misuse service. Ids are `RY4-` record numbers with a type suffix.

use std::io;

use crate::care::Org;
use crate::codes;
use crate::fhir::{self, PatientView};
use crate::nursing;
use crate::out::{Export, Tally};
use crate::people::{Person, Source};
use crate::rng::Rng;
use crate::specialist;

/// ODS code and name.
pub(crate) const ORG: Org = ("RY4", "Northshire Community Health NHS Trust");
/// Local patient-number system.
const MRN_SYSTEM: &str = "https://northshire-community.example/Id/patient";

/// Builds this provider's ids from its record number.
#[derive(Debug)]
pub(crate) struct Ids {
    /// The person's record number here.
    number: u64,
    /// Resources issued so far.
    seq: u64,
}

impl Ids {
    /// The next id, e.g. `RY4-4012345-enc-3`.
    pub(crate) fn next(&mut self, kind: &str) -> String {
        self.seq += 1;
        format!("RY4-{:07}-{kind}-{}", self.number, self.seq)
    }
}

/// Generate the community record of one person.
pub(crate) fn generate(
    seed: u64,
    p: &Person,
    out: &mut Export,
    tally: &mut Tally,
) -> io::Result<()> {
    let mut rng = Rng::derive(seed, p.index.wrapping_mul(4).wrapping_add(3));
    let number = 1_000_000 + fhir::local_number(p.index, 9_000_000, 7_919, 4_241_337);
    let mut ids = Ids { number, seq: 0 };
    let patient_id = format!("RY4-{number:07}");
    let mrn = format!("NCH{number:07}");
    let view = PatientView {
        source: Source::Community,
        id: &patient_id,
        mrn_system: MRN_SYSTEM,
        mrn: &mrn,
    };
    out.write(&fhir::patient(p, &view, &mut rng))?;

    let specialist = p
        .problems
        .iter()
        .find_map(|s| match codes::sensitivity(s.code.code) {
            Some(label @ ("PSY" | "ETH")) => Some((s, label)),
            _ => None,
        });
    if let Some((problem, label)) = specialist.filter(|_| p.index == 0 || rng.chance(0.6)) {
        specialist::service(
            problem.code,
            problem.onset,
            &patient_id,
            &mut ids,
            out,
            &mut rng,
        )?;
        *tally
            .entry(format!("community | {label} | {}", problem.code.display))
            .or_insert(0) += 1;
        if p.age() < 65 {
            return Ok(());
        }
    }
    nursing::district_nursing(p, &patient_id, &mut ids, out, &mut rng)
}
