//! One fictional person: demographics, which providers know them, their
//! long-term conditions, and the small differences between what each
//! provider has recorded about them (as in real shared-care data).

use crate::codes::{self, Code};
use crate::dates::{Date, REFERENCE};
use crate::names;
use crate::profile;
use crate::rng::Rng;

/// One of the three demo providers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// Riverside Medical Practice (GP).
    Gp,
    /// Northshire Community Health NHS Trust.
    Community,
    /// Northshire County Council Adult Social Care.
    Social,
}

/// A postal address.
#[derive(Debug, Clone)]
pub(crate) struct Address {
    /// House number and street.
    pub(crate) line: String,
    /// Town.
    pub(crate) town: &'static str,
    /// Postcode.
    pub(crate) postcode: String,
}

/// A long-term condition with its onset date.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Problem {
    /// The SNOMED CT code.
    pub(crate) code: Code,
    /// When it started.
    pub(crate) onset: Date,
}

/// Everything the providers' records are generated from.
#[derive(Debug, Clone)]
pub(crate) struct Person {
    /// Position in the run (0-based); also the seed of the person's streams.
    pub(crate) index: u64,
    /// NHS number.
    pub(crate) nhs: String,
    /// FHIR administrative gender: `male` or `female`.
    pub(crate) gender: &'static str,
    /// Official given name.
    pub(crate) given: &'static str,
    /// Familiar short form, when they use one.
    pub(crate) nickname: Option<&'static str>,
    /// Official family name.
    pub(crate) family: &'static str,
    /// Family name before marriage, when recorded.
    pub(crate) maiden: Option<&'static str>,
    /// Date of birth.
    pub(crate) birth: Date,
    /// Current address.
    pub(crate) address: Address,
    /// Previous address, still held by one provider after a move.
    pub(crate) old_address: Option<(Address, Source)>,
    /// Current phone number and whether it is a mobile.
    pub(crate) phone: (String, bool),
    /// An older phone number still held by one provider.
    pub(crate) old_phone: Option<(String, Source)>,
    /// Which provider records the familiar name as a `usual` name.
    pub(crate) nickname_in: Source,
    /// Registered at the GP practice.
    pub(crate) at_gp: bool,
    /// Known to community health services.
    pub(crate) at_community: bool,
    /// Known to adult social care.
    pub(crate) at_social: bool,
    /// Long-term conditions (the GP codes them; others may too).
    pub(crate) problems: Vec<Problem>,
    /// Social care holds an active safeguarding concern.
    pub(crate) safeguarding: bool,
    /// Number of informal carers recorded by social care.
    pub(crate) carers: u8,
}

impl Person {
    /// Age on the reference date.
    pub(crate) fn age(&self) -> i64 {
        self.birth.age_on(REFERENCE)
    }

    /// True when the person has a condition with this code.
    pub(crate) fn has(&self, code: Code) -> bool {
        self.problems.iter().any(|p| p.code.code == code.code)
    }
}

/// A random address in Northshire.
pub(crate) fn address(rng: &mut Rng) -> Address {
    let (town, district) = *rng.pick(names::TOWNS);
    let l1 = char::from(*rng.pick(names::INWARD_LETTERS));
    let l2 = char::from(*rng.pick(names::INWARD_LETTERS));
    Address {
        line: format!("{} {}", rng.range(1, 140), rng.pick(names::STREETS)),
        town,
        postcode: format!("{district} {}{l1}{l2}", rng.range(1, 9)),
    }
}

/// A drama-range phone number: mobile or landline.
fn phone(rng: &mut Rng, mobile: bool) -> String {
    if mobile {
        format!("07700 900{:03}", rng.below(1000))
    } else {
        format!("01632 960{:03}", rng.below(1000))
    }
}

/// Any provider, for a difference held "in one source".
fn some_source(rng: &mut Rng) -> Source {
    *rng.pick(&[Source::Gp, Source::Community, Source::Social])
}

/// A provider other than the GP, for out-of-date contact details: the
/// practice is kept in step with the national demographics service, the
/// others lag behind.
fn lagging_source(rng: &mut Rng) -> Source {
    *rng.pick(&[Source::Community, Source::Social])
}

/// Generate person number `index` from its own stream.
///
/// Persons 0, 1 and 2 are fixed walk-through scenarios: known to all three
/// providers; known only to the GP; known to the GP and social care with a
/// safeguarding flag and a carer.
pub(crate) fn person(seed: u64, index: u64, nhs: String) -> Person {
    let mut rng = Rng::derive(seed, index.wrapping_mul(4).wrapping_add(1));
    let female = rng.chance(0.52);
    let (given, nickname) = *rng.pick(if female { names::FEMALE } else { names::MALE });
    let family = *rng.pick(names::FAMILY);
    let age = match rng.unit() {
        u if u < 0.30 => rng.range(18, 39),
        u if u < 0.60 => rng.range(40, 59),
        u if u < 0.82 => rng.range(60, 74),
        u if u < 0.97 => rng.range(75, 89),
        _ => rng.range(90, 98),
    };
    let birth = REFERENCE.plus(-(age * 365 + age / 4) - rng.range(1, 364));
    let age = birth.age_on(REFERENCE);
    let maiden = (female && age > 30 && rng.chance(0.05)).then(|| *rng.pick(names::FAMILY));
    let nickname = nickname.filter(|_| rng.chance(0.35));
    let nickname_in = some_source(&mut rng);
    let address = address(&mut rng);
    let old_address = rng
        .chance(0.10)
        .then(|| (self::address(&mut rng), lagging_source(&mut rng)));
    let mobile = age < 75 || rng.chance(0.5);
    let phone = (self::phone(&mut rng, mobile), mobile);
    let old_phone = rng
        .chance(0.12)
        .then(|| (self::phone(&mut rng, true), lagging_source(&mut rng)));

    let mut problems = Vec::new();
    let earliest = birth.plus(18 * 365).max(REFERENCE.plus(-3650));
    for &code in profile::PROBLEM_LIST {
        if rng.chance(profile::risk(code, age, female)) {
            let onset = earliest.plus(rng.range(0, (REFERENCE.0 - 90 - earliest.0).max(0)));
            problems.push(Problem { code, onset });
        }
    }

    let (p_comm, p_social) = profile::involvement(age);
    let frail = problems
        .iter()
        .any(|p| matches!(p.code.code, "52448006" | "84114007"));
    let mut at_gp = rng.chance(0.90);
    let mut at_community = rng.chance(p_comm);
    let mut at_social = rng.chance(if frail { p_social * 1.4 } else { p_social });
    if !(at_gp || at_community || at_social) {
        if rng.chance(0.6) {
            at_community = true;
        } else {
            at_social = true;
        }
    }
    let mut safeguarding = at_social && rng.chance(0.2);
    let mut carers = if at_social && rng.chance(0.6) {
        1 + u8::from(rng.chance(0.25))
    } else {
        0
    };
    match index {
        0 => {
            (at_gp, at_community, at_social) = (true, true, true);
            if !problems
                .iter()
                .any(|p| p.code.code == codes::ALCOHOL_DEPENDENCE.code)
            {
                let onset = REFERENCE.plus(-rng.range(400, 3000)).max(earliest);
                problems.push(Problem {
                    code: codes::ALCOHOL_DEPENDENCE,
                    onset,
                });
            }
        }
        1 => (at_gp, at_community, at_social) = (true, false, false),
        2 => {
            (at_gp, at_community, at_social) = (true, false, true);
            safeguarding = true;
            carers = carers.max(1);
        }
        _ => {}
    }
    Person {
        index,
        nhs,
        gender: if female { "female" } else { "male" },
        given,
        nickname,
        family,
        maiden,
        birth,
        address,
        old_address,
        phone,
        old_phone,
        nickname_in,
        at_gp,
        at_community,
        at_social,
        problems,
        safeguarding,
        carers,
    }
}
