//! The generated policy set: agreements drawn from a fixed-seed SplitMix64 (the same files
//! every run) and a label map of 20 mappings, written into a directory and loaded as the
//! gateway loads them.

use std::path::Path;

use jiff::civil::Date;

use concord::policy::PolicySet;

use crate::rng::SplitMix64;
use crate::{AGREEMENTS, RELATIONSHIPS, ROLES, RULES, SEED, SOURCE_ODS, STAFF_PURPOSES};

/// ODS codes the generated parties are drawn from.
const ODS_POOL: usize = 30;
/// Labels a generated rule may exclude.
const EXCLUDABLE: &[&str] = &[
    "SEX",
    "HIV",
    "ETH",
    "PSY",
    "SUD",
    "SDV",
    "MH",
    "SAFEGUARDING",
];
/// Element paths a generated rule may redact.
const REDACTABLE: &[&str] = &[
    "note",
    "performer.display",
    "reasonCode",
    "reasonReference",
    "recorder.display",
];
/// What the generated agreements are about, in their ids and titles.
const AREAS: &[&str] = &[
    "direct-care",
    "urgent-care",
    "social-care",
    "mental-health",
    "pharmacy",
    "hospice",
    "maternity",
    "child-health",
];

/// `["a", "b"]`.
fn toml_list<S: AsRef<str>>(items: &[S]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|s| format!("\"{}\"", s.as_ref()))
        .collect();
    format!("[{}]", quoted.join(", "))
}

/// 30 ODS codes, `A81001` (the benchmark source) first: GP practices and trusts alike written
/// as a letter and five digits.
pub(crate) fn ods_pool(rng: &mut SplitMix64) -> Vec<String> {
    let mut pool = vec![SOURCE_ODS.to_owned()];
    while pool.len() < ODS_POOL {
        let letter = (b'A' + rng.below(26) as u8) as char;
        let code = format!("{letter}{:05}", rng.below(100_000));
        if !pool.contains(&code) {
            pool.push(code);
        }
    }
    pool
}

/// The resource types a rule may name: every type the gateway serves, and Patient.
pub(crate) fn served_types() -> Vec<&'static str> {
    let mut types: Vec<&'static str> = concord::fhir::search::TYPES
        .iter()
        .map(|t| t.name)
        .collect();
    types.push("Patient");
    types
}

/// The day `days` after `today` (before it, when negative).
pub(crate) fn date_from(today: Date, days: i64) -> Date {
    today.saturating_add(jiff::Span::new().days(days))
}

/// FHIRPath conditions a rule may carry; each holds for most resources.
const CONDITIONS: &[&str] = &[
    "status.exists() implies status != 'entered-in-error'",
    "meta.security.where(code = 'R').empty()",
    "code.coding.where(system = 'http://snomed.info/sct').exists() or code.empty()",
    "verificationStatus.empty() or verificationStatus.coding.code != 'refuted'",
];

/// One generated agreement file: (name, text). Of the 50, 4 are patient-access agreements
/// and 6 are not in force (suspended, draft, or lapsed). With `conditions`, half the rules
/// (drawn from that generator, so the rest of the file is the same as without) also carry a
/// FHIRPath `where` condition.
fn agreement(
    rng: &mut SplitMix64,
    mut conditions: Option<&mut SplitMix64>,
    n: usize,
    ods: &[String],
    today: Date,
) -> (String, String) {
    let types = served_types();
    let area = AREAS[n % AREAS.len()];
    let id = format!("dsa-{area}-{n:02}");
    let patient = n % 12 == 11;
    let (status, valid_until) = match n % 25 {
        7 => ("suspended", date_from(today, 700)),
        13 => ("draft", date_from(today, 700)),
        19 => ("active", date_from(today, -30)),
        _ => ("active", date_from(today, 700)),
    };
    let mut text = format!(
        "# Generated for the policy benchmark: {area}, agreement {n}.\n\
         [agreement]\nid = \"{id}\"\ntitle = \"Generated {area} agreement {n}\"\nversion = \"1.{}.0\"\n\
         status = \"{status}\"\n{}legal_basis = [\"UK GDPR 6(1)(e)\", \"UK GDPR 9(2)(h)\"]\n\
         valid_from = \"{}\"\nvalid_until = \"{valid_until}\"\nreview_by = \"{}\"\n\
         owner = \"Benchmark ICB Information Governance\"\n\n[parties]\ndisclosers = {}\n",
        rng.below(4),
        if patient {
            "access = \"patient\"\n"
        } else {
            ""
        },
        date_from(today, -400),
        date_from(today, 180),
        toml_list(&rng.sample(ods, 2, 6)),
    );
    if !patient {
        text.push_str(&format!(
            "recipients = {}\n",
            toml_list(&rng.sample(ods, 2, 6))
        ));
    }
    for r in 0..RULES {
        text.push_str(&format!("\n[[rule]]\nid = \"rule-{r:02}\"\n"));
        if patient {
            if r % 2 == 0 {
                text.push_str("purpose_of_use = [\"PATRQT\"]\n");
            } else {
                let purposes = rng.sample(&["FAMRQT", "PWATRNY"], 1, 2);
                text.push_str(&format!(
                    "purpose_of_use = {}\nrelationships = {}\n",
                    toml_list(&purposes),
                    toml_list(&rng.sample(RELATIONSHIPS, 1, 4))
                ));
            }
        } else {
            let mut purposes = rng.sample(STAFF_PURPOSES, 1, 2);
            purposes.dedup();
            text.push_str(&format!(
                "purpose_of_use = {}\nroles = {}\n",
                toml_list(&purposes),
                toml_list(&rng.sample(ROLES, 1, 3))
            ));
        }
        let resources = if rng.chance(0.08) {
            vec!["*"]
        } else {
            rng.sample(&types, 1, 6)
        };
        text.push_str(&format!("resources = {}\n", toml_list(&resources)));
        if rng.chance(0.5) {
            text.push_str(&format!(
                "exclude_labels = {}\n",
                toml_list(&rng.sample(EXCLUDABLE, 1, 4))
            ));
        }
        if !patient && rng.chance(0.5) {
            text.push_str("requires_care_relationship = true\n");
        }
        if rng.chance(0.2) {
            text.push_str(&format!(
                "redact = {}\n",
                toml_list(&rng.sample(REDACTABLE, 1, 2))
            ));
        }
        if let Some(c) = conditions.as_deref_mut()
            && c.chance(0.5)
        {
            text.push_str(&format!("where = \"{}\"\n", c.pick(CONDITIONS)));
        }
    }
    (format!("{id}.toml"), text)
}

/// 20 mappings from SNOMED CT and ICD-10 codes to labels.
const LABELS_TOML: &str = r#"# Generated for the policy benchmark: 20 mappings.
local_labels = ["SAFEGUARDING"]

[[map]]
label = "HIV"
system = "http://snomed.info/sct"
codes = ["86406008", "165816005", "62479008"]

[[map]]
label = "HIV"
system = "http://hl7.org/fhir/sid/icd-10"
ranges = ["B20-B24"]

[[map]]
label = "SEX"
system = "http://snomed.info/sct"
codes = ["8098009", "105629000"]

[[map]]
label = "STD"
system = "http://hl7.org/fhir/sid/icd-10"
ranges = ["A50-A64"]

[[map]]
label = "PSY"
system = "http://snomed.info/sct"
codes = ["35489007", "58214004", "13746004"]

[[map]]
label = "PSY"
system = "http://hl7.org/fhir/sid/icd-10"
ranges = ["F20-F39"]

[[map]]
label = "PSY"
system = "http://hl7.org/fhir/sid/icd-10-uk"
ranges = ["F20-F39"]

[[map]]
label = "MH"
system = "http://hl7.org/fhir/sid/icd-10"
ranges = ["F40-F48"]

[[map]]
label = "MH"
system = "http://snomed.info/sct"
codes = ["197480006", "21897009"]

[[map]]
label = "SUD"
system = "http://hl7.org/fhir/sid/icd-10"
ranges = ["F10-F19"]

[[map]]
label = "SUD"
system = "http://snomed.info/sct"
codes = ["7200002", "66590003", "75544000", "494041000000102"]

[[map]]
label = "COGN"
system = "http://hl7.org/fhir/sid/icd-10"
ranges = ["F00-F09"]

[[map]]
label = "SDV"
system = "http://snomed.info/sct"
codes = ["95930005", "371788001"]

[[map]]
label = "ETH"
system = "http://snomed.info/sct"
codes = ["186005001", "185984009"]

[[map]]
label = "SICKLE"
system = "http://hl7.org/fhir/sid/icd-10"
ranges = ["D57-D57"]

[[map]]
label = "GDIS"
system = "http://snomed.info/sct"
codes = ["93461009"]

[[map]]
label = "TBOO"
system = "http://hl7.org/fhir/sid/icd-10"
ranges = ["Z30-Z30"]

[[map]]
label = "EMOTDIS"
system = "http://snomed.info/sct"
codes = ["66347000"]

[[map]]
label = "SAFEGUARDING"
system = "http://snomed.info/sct"
codes = ["713025008"]

[[map]]
label = "SAFEGUARDING"
system = "http://terminology.hl7.org/CodeSystem/flag-category"
codes = ["safety"]
"#;

/// Writes the 50 agreements and the label map into `dir`: the same files for the same seed,
/// with FHIRPath conditions on half the rules when `conditions`.
pub(crate) fn write_generated(dir: &Path, ods: &[String], today: Date, conditions: bool) {
    let mut rng = SplitMix64(SEED ^ 0xA5A5);
    let mut condition_rng = SplitMix64(SEED ^ 0x5A5A);
    std::fs::create_dir_all(dir).expect("policy dir");
    for n in 0..AGREEMENTS {
        let (name, text) = agreement(
            &mut rng,
            conditions.then_some(&mut condition_rng),
            n,
            ods,
            today,
        );
        std::fs::write(dir.join(name), text).expect("write agreement");
    }
    std::fs::write(dir.join("labels.toml"), LABELS_TOML).expect("write labels");
}

/// The set in `dir`, which must load.
pub(crate) fn load(dir: &Path, today: Date) -> PolicySet {
    PolicySet::load(dir, today).unwrap_or_else(|e| panic!("the generated set must load: {e}"))
}
