//! The decision table: role × purpose × provider × resource type × labels × consent × care
//! relationship × agreement dates and status, each case with its expected outcome.
//!
//! The policy set under test is written below twice: once as the TOML files the engine reads
//! ([`table_files`]) and once as a plain statement in Rust ([`table_model`]), which
//! [`model_decide`] reads with the rules of `engine.rs` spelled out independently of it. A test
//! checks that the two say the same thing; the hand-written rows check both the engine and the
//! statement; the generated rows (cross products) check the engine against the statement.
//!
//! Every row also checks that `explain` gives the same verdict, that planning (`may_disclose`)
//! never drops what would be permitted, and the invariants that hold for any row: emergency
//! permits only under break-glass or ETREAT, consent overridden only by emergency rules, no
//! permit under an agreement that is not in force.
//!
//! The property tests use a small seeded PRNG (SplitMix64) and randomly generated agreement
//! sets: decisions never depend on the order of files, and nothing outside what some in-force
//! rule covers is ever disclosed.

use std::fmt;

use jiff::civil::{Date, date};

use crate::policy::engine::{Permit, explain};
use crate::policy::{
    Acting, Audience, Caller, Consent, Failure, Item, LABELS_FILE, PolicySet, Status,
};

fn today() -> Date {
    date(2026, 11, 25)
}

// ---------------------------------------------------------------------------------------------
// The policy set of the table, as files.

/// The label map: `SAFEGUARDING` is a local label that two agreements exclude.
const LABELS: &str = r#"local_labels = ["SAFEGUARDING"]

[[map]]
label = "SAFEGUARDING"
system = "http://snomed.info/sct"
codes = ["713025008"]

[[map]]
label = "HIV"
system = "http://snomed.info/sct"
codes = ["86406008"]
"#;

const URGENT: &str = "dsa-a-urgent-care";
const DIRECT: &str = "dsa-direct-care";
const HSC: &str = "dsa-health-and-social-care";
const HOSPICE: &str = "dsa-hospice-palliative";
const PHARMACY: &str = "dsa-pharmacy-medicines";
const PATIENT: &str = "patient-access";

/// Ambulance crews see a summary; clinicians and paramedics have an emergency rule. Its id sorts
/// first, so that "non-emergency before agreement id" and "agreement id among emergency rules"
/// can both be seen. Its two paramedic rules overlap on MedicationStatement, and their ids
/// sort the other way round from file order.
const URGENT_TOML: &str = r#"# Urgent and emergency care (ambulance service and out-of-hours).
[agreement]
id = "dsa-a-urgent-care"
title = "Urgent and emergency care summary"
version = "1.0.0"
status = "active"
legal_basis = ["UK GDPR 6(1)(e)", "UK GDPR 9(2)(h)"]
valid_from = "2026-01-01"
valid_until = "2027-12-31"
review_by = "2027-06-30"
owner = "Northshire ICB Information Governance"

[parties]
disclosers = ["A81001", "RY4"]
recipients = ["A81001", "RY4", "AMB01"]

[[rule]]
id = "summary-care-record"
purpose_of_use = ["TREAT"]
roles = ["paramedic"]
resources = ["Patient", "AllergyIntolerance", "MedicationStatement"]
exclude_labels = ["PSY"]

[[rule]]
id = "medicines"
purpose_of_use = ["TREAT"]
roles = ["paramedic"]
resources = ["MedicationStatement", "MedicationRequest"]

[[rule]]
id = "urgent-emergency"
purpose_of_use = ["ETREAT"]
roles = ["clinician", "paramedic"]
resources = ["Patient", "AllergyIntolerance", "MedicationStatement", "Condition", "Observation"]
"#;

/// GP and community direct care, with the catch-all emergency rule.
const DIRECT_TOML: &str = r#"# Direct care between Riverside GP and Northshire Community Health.
[agreement]
id = "dsa-direct-care"
title = "Direct care between Riverside GP and Northshire Community Health"
version = "1.0.0"
status = "active"
legal_basis = ["UK GDPR 6(1)(e)", "UK GDPR 9(2)(h)"]
valid_from = "2026-01-01"
valid_until = "2027-12-31"
review_by = "2027-06-30"
owner = "Northshire ICB Information Governance"

[parties]
disclosers = ["A81001", "RY4"]
recipients = ["A81001", "RY4"]

[[rule]]
id = "clinical-direct-care"
purpose_of_use = ["TREAT"]
roles = ["clinician", "nurse"]
resources = ["Patient", "Condition", "Observation", "MedicationStatement", "AllergyIntolerance", "Encounter", "CarePlan"]
exclude_labels = ["SEX", "HIV", "ETH"]
requires_care_relationship = true

[[rule]]
id = "emergency"
purpose_of_use = ["ETREAT"]
roles = ["clinician"]
resources = ["*"]
"#;

/// Health and social care: social workers see some types and fewer labels; health staff see
/// social care's types (CarePlan overlaps with direct care, with no labels excluded).
const HSC_TOML: &str = r#"# Integrated health and adult social care in Northshire.
[agreement]
id = "dsa-health-and-social-care"
title = "Integrated health and adult social care in Northshire"
version = "1.0.0"
status = "active"
legal_basis = ["UK GDPR 6(1)(e)", "UK GDPR 9(2)(h)", "Care Act 2014 s6"]
valid_from = "2026-04-01"
valid_until = "2028-03-31"
review_by = "2027-03-31"
owner = "Northshire Council and Northshire ICB Information Governance"

[parties]
disclosers = ["A81001", "RY4", "LA001"]
recipients = ["A81001", "RY4", "LA001"]

[[rule]]
id = "social-care-assessment"
purpose_of_use = ["TREAT", "CAREMGT"]
roles = ["social-worker"]
resources = ["Patient", "AllergyIntolerance", "CarePlan", "Flag", "RelatedPerson", "EpisodeOfCare", "Encounter"]
exclude_labels = ["SEX", "HIV", "ETH", "PSY", "SUD"]
requires_care_relationship = true

[[rule]]
id = "health-staff-see-social-care"
purpose_of_use = ["TREAT"]
roles = ["clinician", "nurse"]
resources = ["CarePlan", "Flag", "RelatedPerson", "EpisodeOfCare"]
requires_care_relationship = true
"#;

/// Suspended: were it active, it would permit nearly everything (any type, no care
/// relationship, no labels excluded).
const HOSPICE_TOML: &str = r#"# Palliative care with St Elsewhere Hospice: suspended pending a DPIA review.
[agreement]
id = "dsa-hospice-palliative"
title = "Palliative care with St Elsewhere Hospice"
version = "0.9.0"
status = "suspended"
legal_basis = ["UK GDPR 6(1)(e)", "UK GDPR 9(2)(h)"]
valid_from = "2026-01-01"
valid_until = "2027-12-31"
owner = "Northshire ICB Information Governance"

[parties]
disclosers = ["A81001", "HSP01"]
recipients = ["A81001", "HSP01"]

[[rule]]
id = "palliative-care"
purpose_of_use = ["TREAT", "CAREMGT"]
roles = ["clinician", "nurse", "social-worker"]
resources = ["*"]
"#;

/// Active but lapsed on 2026-10-31, before the table's `today`.
const PHARMACY_TOML: &str = r#"# Medicines reconciliation with Northshire Pharmacy: lapsed, renewal pending.
[agreement]
id = "dsa-pharmacy-medicines"
title = "Medicines reconciliation with Northshire Pharmacy"
version = "1.0.0"
status = "active"
legal_basis = ["UK GDPR 6(1)(e)", "UK GDPR 9(2)(h)"]
valid_from = "2025-01-01"
valid_until = "2026-10-31"
owner = "Northshire ICB Information Governance"

[parties]
disclosers = ["A81001", "PHM01"]
recipients = ["A81001", "PHM01"]

[[rule]]
id = "medicines-reconciliation"
purpose_of_use = ["TREAT"]
roles = ["pharmacist", "clinician"]
resources = ["Patient", "MedicationStatement", "MedicationRequest", "AllergyIntolerance"]
"#;

/// People see their own record; daughters, sons and spouses, as carers, see care plans.
const PATIENT_TOML: &str = r#"# What people (and carers they have authorised) see through the portal.
[agreement]
id = "patient-access"
title = "Patient and carer access to the shared care record"
version = "1.0.0"
status = "active"
access = "patient"
legal_basis = ["UK GDPR 15 (right of access)"]
valid_from = "2026-01-01"
valid_until = "2027-12-31"
review_by = "2027-06-30"
owner = "Northshire ICB Information Governance"

[parties]
disclosers = ["A81001", "RY4", "LA001"]

[[rule]]
id = "own-record"
purpose_of_use = ["PATRQT"]
resources = ["Patient", "Condition", "Observation", "MedicationStatement", "AllergyIntolerance", "Encounter", "CarePlan"]
exclude_labels = ["SAFEGUARDING"]

[[rule]]
id = "carer-care-plans"
purpose_of_use = ["FAMRQT", "PWATRNY"]
relationships = ["DAU", "SON", "SPS"]
resources = ["Patient", "CarePlan", "MedicationStatement", "AllergyIntolerance"]
exclude_labels = ["SAFEGUARDING", "HIV", "SEX"]
"#;

/// The table's agreement files, by name.
fn table_files() -> Vec<(String, String)> {
    [
        ("urgent-care.toml", URGENT_TOML),
        ("direct-care.toml", DIRECT_TOML),
        ("health-and-social-care.toml", HSC_TOML),
        ("hospice.toml", HOSPICE_TOML),
        ("pharmacy.toml", PHARMACY_TOML),
        ("patient-access.toml", PATIENT_TOML),
    ]
    .into_iter()
    .map(|(name, text)| (name.to_owned(), text.to_owned()))
    .collect()
}

/// Writes the label map and `files` (name, text) into a fresh directory and loads it.
fn load(files: &[(String, String)]) -> PolicySet {
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::fs::write(dir.path().join(LABELS_FILE), LABELS).expect("write labels.toml");
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).expect("write an agreement file");
    }
    PolicySet::load(dir.path(), today())
        .unwrap_or_else(|e| panic!("the test's policy set must load: {e}"))
}

// ---------------------------------------------------------------------------------------------
// The same policy, stated plainly, and the rules of decision stated independently of the engine.

/// One agreement as the test states it.
#[derive(Debug, Clone)]
struct ModelAgreement {
    id: &'static str,
    status: &'static str,
    from: Date,
    until: Date,
    patient: bool,
    disclosers: Vec<&'static str>,
    recipients: Vec<&'static str>,
    rules: Vec<ModelRule>,
}

/// One rule as the test states it.
#[derive(Debug, Clone)]
struct ModelRule {
    id: &'static str,
    purposes: Vec<&'static str>,
    roles: Vec<&'static str>,
    relationships: Vec<&'static str>,
    resources: Vec<&'static str>,
    exclude: Vec<&'static str>,
    care: bool,
}

impl ModelAgreement {
    /// In force: active, and `day` between the first and the last day, both included.
    fn in_force(&self, day: Date) -> bool {
        self.status == "active" && self.from <= day && day <= self.until
    }
}

/// A list written as words: `"TREAT CAREMGT"`.
fn words(list: &'static str) -> Vec<&'static str> {
    list.split_whitespace().collect()
}

fn staff_agreement(
    id: &'static str,
    status: &'static str,
    (from, until): (Date, Date),
    disclosers: &'static str,
    recipients: &'static str,
    rules: Vec<ModelRule>,
) -> ModelAgreement {
    ModelAgreement {
        id,
        status,
        from,
        until,
        patient: false,
        disclosers: words(disclosers),
        recipients: words(recipients),
        rules,
    }
}

/// A staff rule: purposes, roles, resources and excluded labels as words.
fn staff_rule(
    id: &'static str,
    purposes: &'static str,
    roles: &'static str,
    resources: &'static str,
    exclude: &'static str,
    care: bool,
) -> ModelRule {
    ModelRule {
        id,
        purposes: words(purposes),
        roles: words(roles),
        relationships: Vec::new(),
        resources: words(resources),
        exclude: words(exclude),
        care,
    }
}

/// A patient-access rule: purposes, carers' relationships, resources and excluded labels as
/// words.
fn patient_rule(
    id: &'static str,
    purposes: &'static str,
    relationships: &'static str,
    resources: &'static str,
    exclude: &'static str,
) -> ModelRule {
    ModelRule {
        id,
        purposes: words(purposes),
        roles: Vec::new(),
        relationships: words(relationships),
        resources: words(resources),
        exclude: words(exclude),
        care: false,
    }
}

/// The table's policy set, stated plainly (the same as [`table_files`]).
fn table_model() -> Vec<ModelAgreement> {
    let current = (date(2026, 1, 1), date(2027, 12, 31));
    let care = true;
    vec![
        staff_agreement(
            URGENT,
            "active",
            current,
            "A81001 RY4",
            "A81001 RY4 AMB01",
            vec![
                staff_rule(
                    "summary-care-record",
                    "TREAT",
                    "paramedic",
                    "Patient AllergyIntolerance MedicationStatement",
                    "PSY",
                    !care,
                ),
                staff_rule(
                    "medicines",
                    "TREAT",
                    "paramedic",
                    "MedicationStatement MedicationRequest",
                    "",
                    !care,
                ),
                staff_rule(
                    "urgent-emergency",
                    "ETREAT",
                    "clinician paramedic",
                    "Patient AllergyIntolerance MedicationStatement Condition Observation",
                    "",
                    !care,
                ),
            ],
        ),
        staff_agreement(
            DIRECT,
            "active",
            current,
            "A81001 RY4",
            "A81001 RY4",
            vec![
                staff_rule(
                    "clinical-direct-care",
                    "TREAT",
                    "clinician nurse",
                    "Patient Condition Observation MedicationStatement AllergyIntolerance \
                     Encounter CarePlan",
                    "SEX HIV ETH",
                    care,
                ),
                staff_rule("emergency", "ETREAT", "clinician", "*", "", !care),
            ],
        ),
        staff_agreement(
            HSC,
            "active",
            (date(2026, 4, 1), date(2028, 3, 31)),
            "A81001 RY4 LA001",
            "A81001 RY4 LA001",
            vec![
                staff_rule(
                    "social-care-assessment",
                    "TREAT CAREMGT",
                    "social-worker",
                    "Patient AllergyIntolerance CarePlan Flag RelatedPerson EpisodeOfCare Encounter",
                    "SEX HIV ETH PSY SUD",
                    care,
                ),
                staff_rule(
                    "health-staff-see-social-care",
                    "TREAT",
                    "clinician nurse",
                    "CarePlan Flag RelatedPerson EpisodeOfCare",
                    "",
                    care,
                ),
            ],
        ),
        staff_agreement(
            HOSPICE,
            "suspended",
            current,
            "A81001 HSP01",
            "A81001 HSP01",
            vec![staff_rule(
                "palliative-care",
                "TREAT CAREMGT",
                "clinician nurse social-worker",
                "*",
                "",
                !care,
            )],
        ),
        staff_agreement(
            PHARMACY,
            "active",
            (date(2025, 1, 1), date(2026, 10, 31)),
            "A81001 PHM01",
            "A81001 PHM01",
            vec![staff_rule(
                "medicines-reconciliation",
                "TREAT",
                "pharmacist clinician",
                "Patient MedicationStatement MedicationRequest AllergyIntolerance",
                "",
                !care,
            )],
        ),
        ModelAgreement {
            id: PATIENT,
            status: "active",
            from: current.0,
            until: current.1,
            patient: true,
            disclosers: words("A81001 RY4 LA001"),
            recipients: Vec::new(),
            rules: vec![
                patient_rule(
                    "own-record",
                    "PATRQT",
                    "",
                    "Patient Condition Observation MedicationStatement AllergyIntolerance \
                     Encounter CarePlan",
                    "SAFEGUARDING",
                ),
                patient_rule(
                    "carer-care-plans",
                    "FAMRQT PWATRNY",
                    "DAU SON SPS",
                    "Patient CarePlan MedicationStatement AllergyIntolerance",
                    "SAFEGUARDING HIV SEX",
                ),
            ],
        },
    ]
}

/// Checks that the loaded set says what the plain statement says.
#[track_caller]
fn assert_set_matches_model(set: &PolicySet, model: &[ModelAgreement]) {
    let mut stated: Vec<&ModelAgreement> = model.iter().collect();
    stated.sort_by_key(|a| a.id);
    let loaded_ids: Vec<&str> = set.agreements.iter().map(|a| &*a.id).collect();
    let stated_ids: Vec<&str> = stated.iter().map(|a| a.id).collect();
    assert_eq!(loaded_ids, stated_ids, "the agreements, in id order");
    for (loaded, stated) in set.agreements.iter().zip(stated) {
        let id = stated.id;
        assert_eq!(loaded.status.name(), stated.status, "{id}: status");
        assert_eq!(loaded.valid_from, stated.from, "{id}: valid_from");
        assert_eq!(loaded.valid_until, stated.until, "{id}: valid_until");
        assert_eq!(
            loaded.access == Audience::Patient,
            stated.patient,
            "{id}: access"
        );
        assert_eq!(loaded.disclosers, stated.disclosers, "{id}: disclosers");
        assert_eq!(loaded.recipients, stated.recipients, "{id}: recipients");
        let rule_ids: Vec<&str> = loaded.rules.iter().map(|r| &*r.id).collect();
        let stated_rule_ids: Vec<&str> = stated.rules.iter().map(|r| r.id).collect();
        assert_eq!(rule_ids, stated_rule_ids, "{id}: rules, in file order");
        for (l, s) in loaded.rules.iter().zip(&stated.rules) {
            let rule = format!("{id}/{}", s.id);
            assert_eq!(l.purpose_of_use, s.purposes, "{rule}: purpose_of_use");
            assert_eq!(l.roles, s.roles, "{rule}: roles");
            assert_eq!(l.relationships, s.relationships, "{rule}: relationships");
            assert_eq!(l.resources, s.resources, "{rule}: resources");
            assert_eq!(l.exclude_labels, s.exclude, "{rule}: exclude_labels");
            assert_eq!(
                l.requires_care_relationship, s.care,
                "{rule}: requires_care_relationship"
            );
        }
    }
}

/// Whether the agreement's parties include the caller: staff of a recipient for a staff
/// agreement, the person or a carer for a patient-access one.
fn model_party(agreement: &ModelAgreement, case: &Case) -> bool {
    match case.who {
        Who::Staff(_) => {
            !agreement.patient && case.org.is_some_and(|o| agreement.recipients.contains(&o))
        }
        Who::Person | Who::Carer(_) => agreement.patient,
    }
}

/// Whether the rule is for this caller: their role (staff), no relationship (the person), or
/// their relationship (a carer).
fn model_fits_person(rule: &ModelRule, case: &Case) -> bool {
    match case.who {
        Who::Staff(role) => role.is_some_and(|r| rule.roles.contains(&r)),
        Who::Person => rule.relationships.is_empty(),
        Who::Carer(rel) => rule.relationships.contains(&rel),
    }
}

/// The rules that can serve the caller on the case's day, in the order of precedence stated at
/// the top of `engine.rs`: rules serving the caller's own (non-ETREAT) purpose first, then
/// emergency ones; within each, agreements by id, then rules in file order. The flag is true
/// for emergency access.
fn model_rules_for<'m>(
    model: &'m [ModelAgreement],
    case: &Case,
) -> Vec<(&'m ModelAgreement, &'m ModelRule, bool)> {
    let mut agreements: Vec<&ModelAgreement> = model.iter().collect();
    agreements.sort_by_key(|a| a.id);
    let mut own_purpose = Vec::new();
    let mut emergency = Vec::new();
    for agreement in agreements {
        if !agreement.in_force(case.today) || !model_party(agreement, case) {
            continue;
        }
        for rule in &agreement.rules {
            if !model_fits_person(rule, case) {
                continue;
            }
            if rule.purposes.contains(&case.purpose) {
                if case.purpose == "ETREAT" {
                    emergency.push((agreement, rule, true));
                } else {
                    own_purpose.push((agreement, rule, false));
                }
            } else if case.emergency && rule.purposes.contains(&"ETREAT") {
                emergency.push((agreement, rule, true));
            }
        }
    }
    own_purpose.extend(emergency);
    own_purpose
}

fn model_covers_type(rule: &ModelRule, resource_type: &str) -> bool {
    rule.resources
        .iter()
        .any(|r| *r == "*" || *r == resource_type)
}

/// What the policy says: the first rule (in precedence order) whose agreement discloses for the
/// provider, that covers the type, excludes none of the labels, finds the care relationship it
/// needs, and, unless it is emergency access, meets no objection of the person.
fn model_decide(model: &[ModelAgreement], case: &Case) -> Verdict {
    model_rules_for(model, case)
        .into_iter()
        .find(|(agreement, rule, emergency)| {
            agreement.disclosers.contains(&case.source)
                && model_covers_type(rule, case.rtype)
                && !case.labels.iter().any(|l| rule.exclude.contains(l))
                && (case.care || !rule.care)
                && (*emergency || !case.objects())
        })
        .map_or(Verdict::Withhold, |(agreement, rule, emergency)| {
            Verdict::permit(agreement.id, rule.id, emergency)
        })
}

/// What the plan should ask for: some rule for the caller could permit this type from this
/// provider.
fn model_may_disclose(model: &[ModelAgreement], case: &Case) -> bool {
    model_rules_for(model, case)
        .iter()
        .any(|(a, r, _)| a.disclosers.contains(&case.source) && model_covers_type(r, case.rtype))
}

// ---------------------------------------------------------------------------------------------
// Rows.

/// In what capacity the caller acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    /// Staff, with the role their token names (if any).
    Staff(Option<&'static str>),
    /// The person the record is about.
    Person,
    /// A carer with this relationship.
    Carer(&'static str),
}

/// The person's objection, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Objection {
    None,
    NotFrom(&'static str),
    NotTo(&'static str),
}

/// The outcome of a decision, by ids.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    Withhold,
    Permit {
        agreement: String,
        rule: String,
        emergency: bool,
    },
}

impl Verdict {
    fn permit(agreement: &str, rule: &str, emergency: bool) -> Verdict {
        Verdict::Permit {
            agreement: agreement.to_owned(),
            rule: rule.to_owned(),
            emergency,
        }
    }
}

fn verdict(permit: Option<Permit<'_>>) -> Verdict {
    permit.map_or(Verdict::Withhold, |p| {
        Verdict::permit(&p.agreement.id, &p.rule.id, p.emergency)
    })
}

/// One row: a caller, an item, the day, and (for hand-written rows) the expected outcome and
/// the failures `explain` must report.
#[derive(Debug, Clone)]
struct Case {
    name: String,
    who: Who,
    org: Option<&'static str>,
    purpose: &'static str,
    emergency: bool,
    today: Date,
    source: &'static str,
    rtype: &'static str,
    labels: Vec<&'static str>,
    care: bool,
    objection: Objection,
    /// `None`: the statement of the policy decides (generated rows).
    expect: Option<Verdict>,
    /// (agreement, rule, failure) that `explain` must report.
    refusals: Vec<(&'static str, Option<&'static str>, Failure)>,
}

/// A row with the defaults: a clinician at the GP practice A81001 asking for direct care (TREAT,
/// no break-glass) for an unlabelled Observation held by A81001, of a person known to the
/// practice who has no objection.
fn row(name: impl Into<String>) -> Case {
    Case {
        name: name.into(),
        who: Who::Staff(Some("clinician")),
        org: Some("A81001"),
        purpose: "TREAT",
        emergency: false,
        today: today(),
        source: "A81001",
        rtype: "Observation",
        labels: Vec::new(),
        care: true,
        objection: Objection::None,
        expect: None,
        refusals: Vec::new(),
    }
}

impl Case {
    fn role(mut self, role: &'static str) -> Self {
        self.who = Who::Staff(Some(role));
        self
    }
    fn no_role(mut self) -> Self {
        self.who = Who::Staff(None);
        self
    }
    fn at(mut self, org: &'static str) -> Self {
        self.org = Some(org);
        self
    }
    fn no_org(mut self) -> Self {
        self.org = None;
        self
    }
    fn staff(mut self, role: Option<&'static str>, org: Option<&'static str>) -> Self {
        self.who = Who::Staff(role);
        self.org = org;
        self
    }
    /// The person themselves (a patient's token names no organisation).
    fn person(self) -> Self {
        self.acting(Who::Person)
    }
    /// A carer with this relationship (their token names no organisation).
    fn carer(self, relationship: &'static str) -> Self {
        self.acting(Who::Carer(relationship))
    }
    fn acting(mut self, who: Who) -> Self {
        self.who = who;
        if !matches!(who, Who::Staff(_)) {
            self.org = None;
        }
        self
    }
    fn purpose(mut self, purpose: &'static str) -> Self {
        self.purpose = purpose;
        self
    }
    fn emergency(self) -> Self {
        self.break_glass(true)
    }
    fn break_glass(mut self, emergency: bool) -> Self {
        self.emergency = emergency;
        self
    }
    fn on(mut self, day: Date) -> Self {
        self.today = day;
        self
    }
    fn item(mut self, source: &'static str, rtype: &'static str) -> Self {
        self.source = source;
        self.rtype = rtype;
        self
    }
    fn labelled(mut self, labels: &[&'static str]) -> Self {
        self.labels = labels.to_vec();
        self
    }
    fn no_care(self) -> Self {
        self.care_relationship(false)
    }
    fn care_relationship(mut self, care: bool) -> Self {
        self.care = care;
        self
    }
    fn not_from(self, org: &'static str) -> Self {
        self.objecting(Objection::NotFrom(org))
    }
    fn not_to(self, org: &'static str) -> Self {
        self.objecting(Objection::NotTo(org))
    }
    fn objecting(mut self, objection: Objection) -> Self {
        self.objection = objection;
        self
    }
    fn permits(mut self, agreement: &str, rule: &str) -> Self {
        self.expect = Some(Verdict::permit(agreement, rule, false));
        self
    }
    fn permits_in_emergency(mut self, agreement: &str, rule: &str) -> Self {
        self.expect = Some(Verdict::permit(agreement, rule, true));
        self
    }
    fn withheld(mut self) -> Self {
        self.expect = Some(Verdict::Withhold);
        self
    }
    /// Withheld, and `explain` reports `failure` for this rule of this agreement.
    fn because(mut self, agreement: &'static str, rule: &'static str, failure: Failure) -> Self {
        self.expect = Some(Verdict::Withhold);
        self.refusals.push((agreement, Some(rule), failure));
        self
    }
    /// Withheld, and `explain` reports `failure` for this agreement as a whole.
    fn because_agreement(mut self, agreement: &'static str, failure: Failure) -> Self {
        self.expect = Some(Verdict::Withhold);
        self.refusals.push((agreement, None, failure));
        self
    }

    fn caller(&self) -> Caller<'_> {
        let (role, acting) = match self.who {
            Who::Staff(role) => (role, Acting::Staff),
            Who::Person => (None, Acting::Person),
            Who::Carer(rel) => (None, Acting::Carer(rel)),
        };
        Caller {
            org: self.org,
            role,
            purpose: self.purpose,
            emergency: self.emergency,
            acting,
        }
    }

    fn consent(&self) -> Consent {
        match self.objection {
            Objection::None => Consent::default(),
            Objection::NotFrom(org) => Consent {
                not_from: vec![org.to_owned()],
                not_to: Vec::new(),
            },
            Objection::NotTo(org) => Consent {
                not_from: Vec::new(),
                not_to: vec![org.to_owned()],
            },
        }
    }

    fn item_with<'a>(&'a self, consent: &'a Consent) -> Item<'a> {
        Item {
            source_org: self.source,
            resource_type: self.rtype,
            labels: &self.labels,
            resource: None,
            care_relationship: self.care,
            consent,
        }
    }

    /// The person's objection covers this disclosure (stated here, not by `Consent::objects`).
    /// Consent is about sharing: the person's own access is never limited by it, and records
    /// are never shared with the organisation that holds them; carers are bound like staff.
    fn objects(&self) -> bool {
        if self.who == Who::Person || self.org == Some(self.source) {
            return false;
        }
        match self.objection {
            Objection::None => false,
            Objection::NotFrom(org) => org == self.source,
            Objection::NotTo(org) => self.org == Some(org),
        }
    }
}

impl fmt::Display for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "row `{}` (", self.name)?;
        match self.who {
            Who::Staff(role) => write!(f, "{}", role.unwrap_or("<no role>"))?,
            Who::Person => write!(f, "the person")?,
            Who::Carer(rel) => write!(f, "carer {rel}")?,
        }
        write!(
            f,
            " at {}, {}{} on {}; {} from {}, labels {:?}, care relationship {}, objection {:?})",
            self.org.unwrap_or("<no org>"),
            self.purpose,
            if self.emergency { " + break-glass" } else { "" },
            self.today,
            self.rtype,
            self.source,
            self.labels,
            self.care,
            self.objection,
        )
    }
}

/// Decides `case` with the engine and checks everything stated about it; returns the verdict.
#[track_caller]
fn check(set: &PolicySet, model: &[ModelAgreement], case: &Case) -> Verdict {
    let consent = case.consent();
    let caller = case.caller();
    let item = case.item_with(&consent);
    let policy = set.for_caller(&caller, case.today);
    let decided = verdict(policy.decide(&item));
    let stated = model_decide(model, case);
    match &case.expect {
        Some(expected) => {
            assert_eq!(
                &stated, expected,
                "{case}: the test's own statement of the policy disagrees with the row"
            );
            assert_eq!(&decided, expected, "{case}: the engine's decision");
        }
        None => assert_eq!(decided, stated, "{case}: the engine's decision"),
    }

    // Invariants of every permit.
    if let Verdict::Permit {
        agreement,
        emergency,
        ..
    } = &decided
    {
        assert!(
            policy.may_disclose(case.source, case.rtype) && policy.may_disclose_any(case.source),
            "{case}: permitted, yet the plan would not ask {} for {}",
            case.source,
            case.rtype
        );
        let under = model
            .iter()
            .find(|a| a.id == agreement)
            .expect("the permit names an agreement of the set");
        assert!(
            under.in_force(case.today),
            "{case}: permitted under {agreement}, which is not in force"
        );
        assert!(
            !*emergency || case.emergency || case.purpose == "ETREAT",
            "{case}: emergency access without break-glass or ETREAT"
        );
        assert!(
            *emergency || !case.objects(),
            "{case}: the person's objection was overridden by a non-emergency rule"
        );
    }

    // Planning agrees with the statement of the policy.
    let rules = model_rules_for(model, case);
    assert_eq!(
        policy.may_disclose(case.source, case.rtype),
        model_may_disclose(model, case),
        "{case}: may_disclose"
    );
    assert_eq!(
        policy.has_emergency(),
        rules.iter().any(|(_, _, emergency)| *emergency),
        "{case}: has_emergency"
    );
    assert_eq!(policy.is_empty(), rules.is_empty(), "{case}: is_empty");

    // `explain` decides the same and, when withholding, says why for every agreement.
    let explained = explain(set, &caller, &item, case.today);
    assert_eq!(
        verdict(explained.permit),
        decided,
        "{case}: explain and decide disagree"
    );
    if decided == Verdict::Withhold {
        for agreement in &set.agreements {
            assert!(
                explained
                    .refusals
                    .iter()
                    .any(|r| *r.agreement == *agreement.id),
                "{case}: explain gives no reason for {}: {:#?}",
                agreement.id,
                explained.refusals
            );
        }
    } else {
        assert!(
            explained.refusals.is_empty(),
            "{case}: refusals for a permit: {:#?}",
            explained.refusals
        );
    }
    for (agreement, rule, failure) in &case.refusals {
        assert!(
            explained.refusals.iter().any(|r| r.agreement == *agreement
                && r.rule.as_deref() == *rule
                && r.failure == *failure),
            "{case}: explain should report {failure:?} for {agreement} rule {rule:?}; it gave {:#?}",
            explained.refusals
        );
    }
    decided
}

fn not_in_force(status: Status, from: Date, until: Date) -> Failure {
    Failure::NotInForce {
        status,
        from,
        until,
    }
}

fn label(l: &str) -> Failure {
    Failure::Label(l.to_owned())
}

/// The rows a reviewer reads: each names its outcome.
fn explicit_rows() -> Vec<Case> {
    let direct_rule = "clinical-direct-care";
    let hsc_health = "health-staff-see-social-care";
    let hsc_social = "social-care-assessment";
    let hospice_off = not_in_force(Status::Suspended, date(2026, 1, 1), date(2027, 12, 31));
    let pharmacy_lapsed = not_in_force(Status::Active, date(2025, 1, 1), date(2026, 10, 31));
    vec![
        // Direct care: roles, providers, types.
        row("GP clinician, GP observation").permits(DIRECT, direct_rule),
        row("community nurse, GP observation")
            .role("nurse")
            .at("RY4")
            .permits(DIRECT, direct_rule),
        row("GP clinician, community condition")
            .item("RY4", "Condition")
            .permits(DIRECT, direct_rule),
        row("GP clinician, the Patient resource")
            .item("RY4", "Patient")
            .permits(DIRECT, direct_rule),
        row("a type no rule lists (only the emergency `*`)")
            .item("A81001", "DocumentReference")
            .because(
                DIRECT,
                direct_rule,
                Failure::ResourceType("DocumentReference".into()),
            ),
        row("a type only the lapsed pharmacy agreement lists")
            .item("A81001", "MedicationRequest")
            .because_agreement(PHARMACY, pharmacy_lapsed.clone()),
        row("a council record: the council is not a direct-care discloser")
            .item("LA001", "Observation")
            .because_agreement(DIRECT, Failure::NotDiscloser("LA001".into())),
        row("provider in no agreement")
            .item("ZZZ99", "Observation")
            .because_agreement(DIRECT, Failure::NotDiscloser("ZZZ99".into())),
        row("provider in no agreement, under break-glass")
            .item("ZZZ99", "Observation")
            .emergency()
            .because_agreement(URGENT, Failure::NotDiscloser("ZZZ99".into())),
        row("clinician asking for care management")
            .purpose("CAREMGT")
            .because(DIRECT, direct_rule, Failure::Purpose("CAREMGT".into())),
        // Labels.
        row("HIV is excluded by direct care")
            .labelled(&["HIV"])
            .because(DIRECT, direct_rule, label("HIV"))
            .because(DIRECT, "emergency", Failure::Purpose("TREAT".into()))
            .because(HSC, hsc_health, Failure::ResourceType("Observation".into())),
        row("SEX is excluded by direct care")
            .labelled(&["SEX"])
            .because(DIRECT, direct_rule, label("SEX")),
        row("ETH is excluded by direct care")
            .labelled(&["ETH"])
            .because(DIRECT, direct_rule, label("ETH")),
        row("MH is excluded by no rule")
            .labelled(&["MH"])
            .permits(DIRECT, direct_rule),
        row("the first excluded label is reported")
            .labelled(&["MH", "HIV", "SEX"])
            .because(DIRECT, direct_rule, label("HIV")),
        // Care relationship and consent.
        row("person unknown to the caller's practice")
            .no_care()
            .because(DIRECT, direct_rule, Failure::NoCareRelationship),
        row("objection to sharing from the providing trust")
            .item("RY4", "Observation")
            .not_from("RY4")
            .because(DIRECT, direct_rule, Failure::Consent),
        row("objection to sharing with the caller's organisation")
            .item("RY4", "Observation")
            .not_to("A81001")
            .because(DIRECT, direct_rule, Failure::Consent),
        row("objection from the practice: its own staff still see what it holds")
            .not_from("A81001")
            .permits(DIRECT, direct_rule),
        row("objection to the practice: its own staff still see what it holds")
            .not_to("A81001")
            .permits(DIRECT, direct_rule),
        row("objection to the practice: what the trust holds is withheld from it")
            .item("RY4", "CarePlan")
            .not_to("A81001")
            .because(DIRECT, direct_rule, Failure::Consent)
            .because(HSC, hsc_health, Failure::Consent),
        row("objection to sharing from an unrelated provider")
            .not_from("LA001")
            .permits(DIRECT, direct_rule),
        row("objection to sharing with an unrelated organisation")
            .not_to("RY4")
            .permits(DIRECT, direct_rule),
        // Two agreements permit the same thing: the lower id is named.
        row("CarePlan: direct care and social care both permit; direct care's id sorts first")
            .item("A81001", "CarePlan")
            .permits(DIRECT, direct_rule),
        row("CarePlan labelled HIV: only health-and-social-care permits")
            .item("A81001", "CarePlan")
            .labelled(&["HIV"])
            .permits(HSC, hsc_health),
        row("CarePlan from the council: only health-and-social-care has it as discloser")
            .item("LA001", "CarePlan")
            .permits(HSC, hsc_health),
        row("Flag: only health-and-social-care lists it")
            .item("RY4", "Flag")
            .labelled(&["PSY"])
            .permits(HSC, hsc_health),
        // Emergency access.
        row("break-glass for what direct care permits anyway: the non-emergency rule")
            .emergency()
            .permits(DIRECT, direct_rule),
        row("break-glass, CarePlan labelled HIV: non-emergency rule of the highest id wins")
            .item("A81001", "CarePlan")
            .labelled(&["HIV"])
            .emergency()
            .permits(HSC, hsc_health),
        row("break-glass, HIV observation: emergency rules by agreement id (urgent care first)")
            .labelled(&["HIV"])
            .emergency()
            .permits_in_emergency(URGENT, "urgent-emergency"),
        row("break-glass, a type only the `*` emergency rule covers")
            .item("A81001", "DocumentReference")
            .emergency()
            .permits_in_emergency(DIRECT, "emergency"),
        row("break-glass, MedicationRequest (urgent care's emergency rule lacks it)")
            .item("RY4", "MedicationRequest")
            .emergency()
            .permits_in_emergency(DIRECT, "emergency"),
        row("break-glass overrides an objection from the provider")
            .item("RY4", "Observation")
            .not_from("RY4")
            .emergency()
            .permits_in_emergency(URGENT, "urgent-emergency"),
        row("break-glass without a care relationship")
            .no_care()
            .emergency()
            .permits_in_emergency(URGENT, "urgent-emergency"),
        // ETREAT in the token counts as emergency access even without the break-glass header.
        row("purpose ETREAT without break-glass, objection to the caller's organisation")
            .purpose("ETREAT")
            .item("RY4", "Observation")
            .not_to("A81001")
            .permits_in_emergency(URGENT, "urgent-emergency"),
        row("purpose ETREAT for a CarePlan: no TREAT rule serves ETREAT")
            .purpose("ETREAT")
            .emergency()
            .item("A81001", "CarePlan")
            .permits_in_emergency(DIRECT, "emergency"),
        row("care management under break-glass falls to emergency rules")
            .purpose("CAREMGT")
            .emergency()
            .permits_in_emergency(URGENT, "urgent-emergency"),
        row("nurses have no emergency rule")
            .role("nurse")
            .labelled(&["HIV"])
            .emergency()
            .because(DIRECT, "emergency", Failure::Role(Some("nurse".into()))),
        row("nurse asking with purpose ETREAT")
            .role("nurse")
            .purpose("ETREAT")
            .because(DIRECT, direct_rule, Failure::Purpose("ETREAT".into())),
        // Social care.
        row("social worker, care plan for care management")
            .role("social-worker")
            .at("LA001")
            .purpose("CAREMGT")
            .item("A81001", "CarePlan")
            .permits(HSC, hsc_social),
        row("social worker, encounter for treatment")
            .role("social-worker")
            .at("LA001")
            .item("RY4", "Encounter")
            .permits(HSC, hsc_social),
        row("social worker, the council's own Patient")
            .role("social-worker")
            .at("LA001")
            .purpose("CAREMGT")
            .item("LA001", "Patient")
            .permits(HSC, hsc_social),
        row("social worker, an observation (not among their types)")
            .role("social-worker")
            .at("LA001")
            .purpose("CAREMGT")
            .because(HSC, hsc_social, Failure::ResourceType("Observation".into())),
        row("social worker, a flag labelled PSY")
            .role("social-worker")
            .at("LA001")
            .purpose("CAREMGT")
            .item("RY4", "Flag")
            .labelled(&["PSY"])
            .because(HSC, hsc_social, label("PSY")),
        row("social worker, a flag labelled SUD")
            .role("social-worker")
            .at("LA001")
            .item("RY4", "Flag")
            .labelled(&["SUD"])
            .because(HSC, hsc_social, label("SUD")),
        row("social worker without a care relationship")
            .role("social-worker")
            .at("LA001")
            .item("A81001", "CarePlan")
            .no_care()
            .because(HSC, hsc_social, Failure::NoCareRelationship),
        row("social worker, objection to sharing with the council")
            .role("social-worker")
            .at("LA001")
            .item("A81001", "CarePlan")
            .not_to("LA001")
            .because(HSC, hsc_social, Failure::Consent),
        row("social worker, the same objection under break-glass: no emergency rule for them")
            .role("social-worker")
            .at("LA001")
            .item("A81001", "CarePlan")
            .not_to("LA001")
            .emergency()
            .because(HSC, hsc_social, Failure::Consent),
        row("social worker under break-glass")
            .role("social-worker")
            .at("LA001")
            .labelled(&["HIV"])
            .emergency()
            .because_agreement(DIRECT, Failure::NotRecipient("LA001".into())),
        row("clinician at the council: not a direct-care recipient")
            .at("LA001")
            .because_agreement(DIRECT, Failure::NotRecipient("LA001".into())),
        row("clinician at the council: a care plan under health-and-social-care")
            .at("LA001")
            .item("A81001", "CarePlan")
            .permits(HSC, hsc_health),
        // Suspended and lapsed agreements never permit.
        row("hospice clinician, hospice record: the agreement is suspended")
            .at("HSP01")
            .item("HSP01", "Observation")
            .because_agreement(HOSPICE, hospice_off.clone()),
        row("GP clinician, hospice immunisation under break-glass")
            .item("HSP01", "Immunization")
            .emergency()
            .because_agreement(DIRECT, Failure::NotDiscloser("HSP01".into()))
            .because_agreement(HOSPICE, hospice_off.clone()),
        row("GP nurse, care management: only the suspended hospice agreement would permit")
            .role("nurse")
            .purpose("CAREMGT")
            .item("A81001", "Condition")
            .because_agreement(HOSPICE, hospice_off),
        row("pharmacist: the pharmacy agreement lapsed on 2026-10-31")
            .role("pharmacist")
            .at("PHM01")
            .item("A81001", "MedicationRequest")
            .because_agreement(PHARMACY, pharmacy_lapsed.clone()),
        row("pharmacist at the GP practice")
            .role("pharmacist")
            .item("A81001", "MedicationStatement")
            .because_agreement(PHARMACY, pharmacy_lapsed),
        row("pharmacist on the pharmacy agreement's last day")
            .role("pharmacist")
            .at("PHM01")
            .item("A81001", "MedicationRequest")
            .on(date(2026, 10, 31))
            .permits(PHARMACY, "medicines-reconciliation"),
        row("pharmacist the day after")
            .role("pharmacist")
            .at("PHM01")
            .item("A81001", "MedicationRequest")
            .on(date(2026, 11, 1))
            .because_agreement(
                PHARMACY,
                not_in_force(Status::Active, date(2025, 1, 1), date(2026, 10, 31)),
            ),
        row("GP clinician, MedicationRequest while the pharmacy agreement was in force")
            .item("A81001", "MedicationRequest")
            .on(date(2026, 3, 31))
            .permits(PHARMACY, "medicines-reconciliation"),
        row("the day before health-and-social-care starts")
            .at("LA001")
            .item("A81001", "CarePlan")
            .on(date(2026, 3, 31))
            .because_agreement(
                HSC,
                not_in_force(Status::Active, date(2026, 4, 1), date(2028, 3, 31)),
            ),
        row("the day health-and-social-care starts")
            .at("LA001")
            .item("A81001", "CarePlan")
            .on(date(2026, 4, 1))
            .permits(HSC, hsc_health),
        row("after direct care has lapsed")
            .on(date(2028, 1, 1))
            .because_agreement(
                DIRECT,
                not_in_force(Status::Active, date(2026, 1, 1), date(2027, 12, 31)),
            ),
        row("after direct care has lapsed, a care plan under health-and-social-care")
            .item("A81001", "CarePlan")
            .on(date(2028, 1, 1))
            .permits(HSC, hsc_health),
        // Ambulance: rule order within one agreement.
        row("paramedic, medication: the first rule in file order is named")
            .role("paramedic")
            .at("AMB01")
            .item("RY4", "MedicationStatement")
            .permits(URGENT, "summary-care-record"),
        row("paramedic, medication labelled PSY: the second rule")
            .role("paramedic")
            .at("AMB01")
            .item("RY4", "MedicationStatement")
            .labelled(&["PSY"])
            .permits(URGENT, "medicines"),
        row("paramedic, MedicationRequest")
            .role("paramedic")
            .at("AMB01")
            .item("A81001", "MedicationRequest")
            .permits(URGENT, "medicines"),
        row("paramedic, Patient, no care relationship needed")
            .role("paramedic")
            .at("AMB01")
            .item("A81001", "Patient")
            .no_care()
            .permits(URGENT, "summary-care-record"),
        row("paramedic, observation")
            .role("paramedic")
            .at("AMB01")
            .because(
                URGENT,
                "summary-care-record",
                Failure::ResourceType("Observation".into()),
            )
            .because(URGENT, "urgent-emergency", Failure::Purpose("TREAT".into())),
        row("paramedic, observation under break-glass")
            .role("paramedic")
            .at("AMB01")
            .emergency()
            .permits_in_emergency(URGENT, "urgent-emergency"),
        row("paramedic, objection to sharing with the ambulance service")
            .role("paramedic")
            .at("AMB01")
            .item("RY4", "MedicationStatement")
            .not_to("AMB01")
            .because(URGENT, "summary-care-record", Failure::Consent)
            .because(URGENT, "medicines", Failure::Consent),
        row("paramedic, the same objection under break-glass")
            .role("paramedic")
            .at("AMB01")
            .item("RY4", "MedicationStatement")
            .not_to("AMB01")
            .emergency()
            .permits_in_emergency(URGENT, "urgent-emergency"),
        row("paramedic, a council record")
            .role("paramedic")
            .at("AMB01")
            .item("LA001", "Patient")
            .because_agreement(URGENT, Failure::NotDiscloser("LA001".into()))
            .because_agreement(DIRECT, Failure::NotRecipient("AMB01".into())),
        row("paramedic, care plan under break-glass")
            .role("paramedic")
            .at("AMB01")
            .item("A81001", "CarePlan")
            .emergency()
            .because(
                URGENT,
                "urgent-emergency",
                Failure::ResourceType("CarePlan".into()),
            ),
        // The token.
        row("no organisation on the token")
            .no_org()
            .because_agreement(DIRECT, Failure::NoOrganisation),
        row("no organisation on the token, under break-glass")
            .no_org()
            .labelled(&["HIV"])
            .emergency()
            .because_agreement(URGENT, Failure::NoOrganisation),
        row("no role on the token")
            .no_role()
            .because(DIRECT, direct_rule, Failure::Role(None)),
        row("a role in no rule").role("receptionist").because(
            DIRECT,
            direct_rule,
            Failure::Role(Some("receptionist".into())),
        ),
        row("staff asking as if for their own record")
            .purpose("PATRQT")
            .because_agreement(PATIENT, Failure::Audience(Audience::Patient)),
        // The person and carers.
        row("the person, their own observation")
            .person()
            .purpose("PATRQT")
            .permits(PATIENT, "own-record"),
        row("the person, their own HIV result")
            .person()
            .purpose("PATRQT")
            .labelled(&["HIV"])
            .permits(PATIENT, "own-record"),
        row("the person, a safeguarding-labelled record")
            .person()
            .purpose("PATRQT")
            .labelled(&["SAFEGUARDING"])
            .because(PATIENT, "own-record", label("SAFEGUARDING")),
        row("the person, a flag (not among their types)")
            .person()
            .purpose("PATRQT")
            .item("RY4", "Flag")
            .because(PATIENT, "own-record", Failure::ResourceType("Flag".into())),
        row("the person, asking as a carer would")
            .person()
            .purpose("FAMRQT")
            .item("A81001", "CarePlan")
            .because(PATIENT, "own-record", Failure::Purpose("FAMRQT".into()))
            .because(PATIENT, "carer-care-plans", Failure::Relationship(None)),
        row("the person, asking as staff would")
            .person()
            .purpose("TREAT")
            .because_agreement(DIRECT, Failure::Audience(Audience::Staff)),
        row("the person under break-glass")
            .person()
            .purpose("ETREAT")
            .emergency()
            .withheld(),
        row("the person with break-glass: their own access is unchanged")
            .person()
            .purpose("PATRQT")
            .emergency()
            .permits(PATIENT, "own-record"),
        row("a carer with break-glass: no emergency rule for carers")
            .carer("DAU")
            .purpose("FAMRQT")
            .emergency()
            .because(
                PATIENT,
                "carer-care-plans",
                Failure::ResourceType("Observation".into()),
            ),
        row("the person, no care relationship needed")
            .person()
            .purpose("PATRQT")
            .no_care()
            .permits(PATIENT, "own-record"),
        row("the person, a provider in no agreement")
            .person()
            .purpose("PATRQT")
            .item("ZZZ99", "Observation")
            .because_agreement(PATIENT, Failure::NotDiscloser("ZZZ99".into())),
        // Consent is about sharing: it never limits the person's own access, but binds carers.
        row("the person's own objection from the provider does not hide it from them")
            .person()
            .purpose("PATRQT")
            .not_from("A81001")
            .permits(PATIENT, "own-record"),
        row("the person's objection to an organisation: their token names none")
            .person()
            .purpose("PATRQT")
            .not_to("A81001")
            .permits(PATIENT, "own-record"),
        row("daughter as carer, care plan")
            .carer("DAU")
            .purpose("FAMRQT")
            .item("A81001", "CarePlan")
            .permits(PATIENT, "carer-care-plans"),
        row("daughter as carer, the person objects to sharing from the practice")
            .carer("DAU")
            .purpose("FAMRQT")
            .item("A81001", "CarePlan")
            .not_from("A81001")
            .because(PATIENT, "carer-care-plans", Failure::Consent),
        row("spouse with power of attorney, medication from the council")
            .carer("SPS")
            .purpose("PWATRNY")
            .item("LA001", "MedicationStatement")
            .permits(PATIENT, "carer-care-plans"),
        row("son as carer, Patient, no care relationship needed")
            .carer("SON")
            .purpose("FAMRQT")
            .item("RY4", "Patient")
            .no_care()
            .permits(PATIENT, "carer-care-plans"),
        row("daughter as carer, an observation")
            .carer("DAU")
            .purpose("FAMRQT")
            .because(
                PATIENT,
                "own-record",
                Failure::Relationship(Some("DAU".into())),
            )
            .because(
                PATIENT,
                "carer-care-plans",
                Failure::ResourceType("Observation".into()),
            ),
        row("neighbour as carer: relationship not allowed")
            .carer("NBOR")
            .purpose("FAMRQT")
            .item("A81001", "CarePlan")
            .because(
                PATIENT,
                "carer-care-plans",
                Failure::Relationship(Some("NBOR".into())),
            ),
        row("daughter asking as the person would")
            .carer("DAU")
            .purpose("PATRQT")
            .item("A81001", "CarePlan")
            .because(
                PATIENT,
                "carer-care-plans",
                Failure::Purpose("PATRQT".into()),
            ),
        row("daughter as carer, a care plan labelled HIV")
            .carer("DAU")
            .purpose("FAMRQT")
            .item("A81001", "CarePlan")
            .labelled(&["HIV"])
            .because(PATIENT, "carer-care-plans", label("HIV")),
        row("daughter as carer, a safeguarding-labelled care plan")
            .carer("DAU")
            .purpose("FAMRQT")
            .item("A81001", "CarePlan")
            .labelled(&["SAFEGUARDING"])
            .because(PATIENT, "carer-care-plans", label("SAFEGUARDING")),
    ]
}

const TABLE_ROLES: [Option<&str>; 7] = [
    Some("clinician"),
    Some("nurse"),
    Some("social-worker"),
    Some("paramedic"),
    Some("pharmacist"),
    Some("receptionist"),
    None,
];
const TABLE_SOURCES: [&str; 6] = ["A81001", "RY4", "LA001", "HSP01", "PHM01", "ZZZ99"];
const TABLE_TYPES: [&str; 13] = [
    "Patient",
    "Condition",
    "Observation",
    "MedicationStatement",
    "MedicationRequest",
    "AllergyIntolerance",
    "Encounter",
    "CarePlan",
    "Flag",
    "RelatedPerson",
    "EpisodeOfCare",
    "DocumentReference",
    "Immunization",
];
const TABLE_LABEL_SETS: [&[&str]; 8] = [
    &[],
    &["HIV"],
    &["SEX"],
    &["PSY"],
    &["SUD"],
    &["SAFEGUARDING"],
    &["MH"],
    &["MH", "PSY"],
];

/// The rows generated as cross products; their outcome is the statement's.
fn generated_rows() -> Vec<Case> {
    let mut rows = Vec::new();
    // G1: every shape of staff caller, for two items.
    for role in TABLE_ROLES {
        for org in [Some("A81001"), Some("LA001"), Some("AMB01"), None] {
            for purpose in ["TREAT", "CAREMGT", "ETREAT"] {
                for emergency in [false, true] {
                    for (source, rtype, labels) in [
                        ("RY4", "MedicationStatement", &["HIV"][..]),
                        ("A81001", "CarePlan", &[][..]),
                    ] {
                        rows.push(
                            row("G1 staff callers")
                                .staff(role, org)
                                .purpose(purpose)
                                .break_glass(emergency)
                                .item(source, rtype)
                                .labelled(labels),
                        );
                    }
                }
            }
        }
    }
    // G2: every provider and type, for a GP clinician under break-glass and a social worker.
    for (role, org, purpose, emergency) in [
        ("clinician", "A81001", "TREAT", true),
        ("social-worker", "LA001", "CAREMGT", false),
    ] {
        for source in TABLE_SOURCES {
            for rtype in TABLE_TYPES {
                rows.push(
                    row("G2 providers × types")
                        .role(role)
                        .at(org)
                        .purpose(purpose)
                        .break_glass(emergency)
                        .item(source, rtype),
                );
            }
        }
    }
    // G3: labels × care relationship × consent, for three callers (the last asking for a
    // record its own organisation holds).
    for (role, org, purpose, emergency, source, rtype) in [
        ("clinician", "A81001", "TREAT", true, "RY4", "CarePlan"),
        ("social-worker", "LA001", "CAREMGT", false, "A81001", "Flag"),
        ("nurse", "RY4", "TREAT", false, "RY4", "Observation"),
    ] {
        for labels in TABLE_LABEL_SETS {
            for care in [true, false] {
                for objection in [
                    Objection::None,
                    Objection::NotFrom(source),
                    Objection::NotTo(org),
                    Objection::NotFrom("ZZZ99"),
                    Objection::NotTo("HSP01"),
                ] {
                    rows.push(
                        row("G3 labels × care × consent")
                            .role(role)
                            .at(org)
                            .purpose(purpose)
                            .break_glass(emergency)
                            .item(source, rtype)
                            .labelled(labels)
                            .care_relationship(care)
                            .objecting(objection),
                    );
                }
            }
        }
    }
    // G4: the person and carers.
    for who in [Who::Person, Who::Carer("DAU"), Who::Carer("NBOR")] {
        for purpose in ["PATRQT", "FAMRQT"] {
            for rtype in ["Patient", "Observation", "CarePlan", "Flag"] {
                for labels in [&[][..], &["SAFEGUARDING"], &["HIV"]] {
                    rows.push(
                        row("G4 person and carers")
                            .acting(who)
                            .purpose(purpose)
                            .item("RY4", rtype)
                            .labelled(labels)
                            .no_care(),
                    );
                }
            }
        }
    }
    rows
}

#[test]
fn the_statement_of_the_table_policy_matches_its_files() {
    let set = load(&table_files());
    assert_set_matches_model(&set, &table_model());
    assert!(set.warnings.is_empty(), "{:?}", set.warnings);
}

#[test]
fn explicit_rows_name_the_agreement_and_rule() {
    let set = load(&table_files());
    let model = table_model();
    let rows = explicit_rows();
    assert!(rows.len() >= 40, "{} explicit rows", rows.len());
    for case in &rows {
        assert!(
            case.expect.is_some(),
            "{case}: a hand-written row states its outcome"
        );
        check(&set, &model, case);
    }
}

#[test]
fn generated_rows_agree_with_the_statement_of_the_policy() {
    let set = load(&table_files());
    let model = table_model();
    let rows = generated_rows();
    let (mut permits, mut emergency_permits) = (0, 0);
    for case in &rows {
        if let Verdict::Permit { emergency, .. } = check(&set, &model, case) {
            permits += 1;
            if emergency {
                emergency_permits += 1;
            }
        }
    }
    let all = rows.len() + explicit_rows().len();
    assert!(all >= 300, "{all} rows");
    assert!(
        permits > rows.len() / 10 && permits < rows.len() * 9 / 10,
        "{permits} of {} generated rows permitted: the table would test little",
        rows.len()
    );
    assert!(
        emergency_permits > 10,
        "{emergency_permits} emergency permits"
    );

    // The table covers every value of every dimension.
    let every: Vec<Case> = explicit_rows().into_iter().chain(rows).collect();
    for role in TABLE_ROLES {
        assert!(every.iter().any(|c| c.who == Who::Staff(role)), "{role:?}");
    }
    for purpose in ["TREAT", "CAREMGT", "ETREAT", "PATRQT", "FAMRQT"] {
        for emergency in [false, true] {
            assert!(
                every
                    .iter()
                    .any(|c| c.purpose == purpose && c.emergency == emergency),
                "{purpose} {emergency}"
            );
        }
    }
    for source in TABLE_SOURCES {
        assert!(every.iter().any(|c| c.source == source), "{source}");
    }
    for rtype in TABLE_TYPES {
        assert!(every.iter().any(|c| c.rtype == rtype), "{rtype}");
    }
    for labels in TABLE_LABEL_SETS {
        assert!(every.iter().any(|c| c.labels == labels), "{labels:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Property tests.

/// SplitMix64: a small, seeded, reproducible generator.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
    fn subset(&mut self, items: &[&'static str], percent: u64) -> Vec<&'static str> {
        items
            .iter()
            .copied()
            .filter(|_| self.chance(percent))
            .collect()
    }
    fn non_empty_subset(&mut self, items: &[&'static str], percent: u64) -> Vec<&'static str> {
        let mut chosen = self.subset(items, percent);
        if chosen.is_empty() {
            chosen.push(self.pick(items));
        }
        chosen
    }
}

/// What random agreements are made of.
const CORE_ORGS: [&str; 5] = ["A81001", "RY4", "LA001", "AMB01", "HSP01"];
const CORE_ROLES: [&str; 3] = ["clinician", "nurse", "social-worker"];
const CORE_TYPES: [&str; 8] = [
    "Patient",
    "Condition",
    "Observation",
    "MedicationStatement",
    "AllergyIntolerance",
    "CarePlan",
    "Flag",
    "Encounter",
];
const CORE_LABELS: [&str; 4] = ["HIV", "SEX", "PSY", "SAFEGUARDING"];
const CORE_RELATIONSHIPS: [&str; 3] = ["DAU", "SON", "SPS"];
const PURPOSES: [&str; 5] = ["TREAT", "CAREMGT", "ETREAT", "PATRQT", "FAMRQT"];
/// What random callers and items are made of: the above and more.
const ALL_ORGS: [&str; 7] = ["A81001", "RY4", "LA001", "AMB01", "HSP01", "PHM01", "ZZZ99"];
const ALL_ROLES: [&str; 6] = [
    "clinician",
    "nurse",
    "social-worker",
    "paramedic",
    "pharmacist",
    "receptionist",
];
const ALL_LABELS: [&str; 7] = ["HIV", "SEX", "PSY", "SAFEGUARDING", "ETH", "SUD", "MH"];
const ALL_RELATIONSHIPS: [&str; 4] = ["DAU", "SON", "SPS", "NBOR"];
const AGREEMENT_IDS: [&str; 8] = [
    "dsa-kestrel",
    "dsa-avocet",
    "dsa-heron",
    "dsa-plover",
    "dsa-curlew",
    "dsa-tern",
    "dsa-wren",
    "dsa-dunlin",
];
const RULE_IDS: [&str; 5] = ["zeta", "alpha", "mid", "beta", "omega"];

/// A random, valid set of 2 to 5 agreements, some not in force, with overlapping rules and no
/// `*` resources.
fn random_model(rng: &mut Rng) -> Vec<ModelAgreement> {
    let mut ids = AGREEMENT_IDS;
    rng.shuffle(&mut ids);
    let count = 2 + rng.below(4);
    ids[..count]
        .iter()
        .map(|&id| {
            let patient = rng.chance(20);
            let status = if rng.chance(75) {
                "active"
            } else {
                rng.pick(&["draft", "suspended", "retired"])
            };
            let (from, until) = rng.pick(&[
                (date(2026, 1, 1), date(2027, 12, 31)),
                (date(2026, 1, 1), date(2027, 12, 31)),
                (date(2025, 1, 1), date(2026, 11, 24)), // lapsed yesterday
                (date(2026, 11, 26), date(2028, 12, 31)), // starts tomorrow
                (date(2025, 6, 1), date(2026, 11, 25)), // its last day
                (date(2026, 11, 25), date(2027, 6, 30)), // its first day
            ]);
            let mut rule_ids = RULE_IDS;
            rng.shuffle(&mut rule_ids);
            let rules = rule_ids[..1 + rng.below(3)]
                .iter()
                .map(|&rule_id| ModelRule {
                    id: rule_id,
                    purposes: rng.non_empty_subset(&PURPOSES, 40),
                    roles: if patient {
                        Vec::new()
                    } else {
                        rng.non_empty_subset(&CORE_ROLES, 60)
                    },
                    relationships: if patient && rng.chance(50) {
                        rng.non_empty_subset(&CORE_RELATIONSHIPS, 50)
                    } else {
                        Vec::new()
                    },
                    resources: rng.non_empty_subset(&CORE_TYPES, 50),
                    exclude: rng.subset(&CORE_LABELS, 25),
                    care: !patient && rng.chance(40),
                })
                .collect();
            ModelAgreement {
                id,
                status,
                from,
                until,
                patient,
                disclosers: rng.non_empty_subset(&CORE_ORGS, 60),
                recipients: if patient {
                    Vec::new()
                } else {
                    rng.non_empty_subset(&CORE_ORGS, 60)
                },
                rules,
            }
        })
        .collect()
}

fn toml_list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| format!("\"{i}\"")).collect();
    format!("[{}]", quoted.join(", "))
}

/// The agreement as a policy file.
fn to_toml(agreement: &ModelAgreement) -> String {
    let mut text = format!(
        "[agreement]\nid = \"{id}\"\ntitle = \"Generated {id}\"\nversion = \"1.0.0\"\n\
         status = \"{status}\"\naccess = \"{access}\"\nlegal_basis = [\"UK GDPR 6(1)(e)\"]\n\
         valid_from = \"{from}\"\nvalid_until = \"{until}\"\nowner = \"Test IG\"\n\n\
         [parties]\ndisclosers = {disclosers}\n",
        id = agreement.id,
        status = agreement.status,
        access = if agreement.patient {
            "patient"
        } else {
            "staff"
        },
        from = agreement.from,
        until = agreement.until,
        disclosers = toml_list(&agreement.disclosers),
    );
    if !agreement.patient {
        text += &format!("recipients = {}\n", toml_list(&agreement.recipients));
    }
    for rule in &agreement.rules {
        text += &format!(
            "\n[[rule]]\nid = \"{}\"\npurpose_of_use = {}\nresources = {}\nexclude_labels = {}\n",
            rule.id,
            toml_list(&rule.purposes),
            toml_list(&rule.resources),
            toml_list(&rule.exclude),
        );
        if !agreement.patient {
            text += &format!(
                "roles = {}\nrequires_care_relationship = {}\n",
                toml_list(&rule.roles),
                rule.care
            );
        } else if !rule.relationships.is_empty() {
            text += &format!("relationships = {}\n", toml_list(&rule.relationships));
        }
    }
    text
}

fn random_files(model: &[ModelAgreement]) -> Vec<(String, String)> {
    model
        .iter()
        .map(|a| (format!("{}.toml", a.id), to_toml(a)))
        .collect()
}

/// A random caller and item, mostly within what random agreements are made of.
fn random_case(rng: &mut Rng, name: String) -> Case {
    let case = row(name);
    let case = if rng.chance(20) {
        let who = if rng.chance(50) {
            Who::Person
        } else {
            Who::Carer(rng.pick(&ALL_RELATIONSHIPS))
        };
        let case = case.acting(who);
        // Patients' tokens name no organisation; some do here, to see that nothing relies on it.
        if rng.chance(20) {
            case.at(rng.pick(&ALL_ORGS))
        } else {
            case
        }
    } else {
        let role = match rng.below(10) {
            0 => None,
            1 | 2 => Some(rng.pick(&ALL_ROLES)),
            _ => Some(rng.pick(&CORE_ROLES)),
        };
        let org = match rng.below(12) {
            0 => None,
            1 | 2 => Some(rng.pick(&ALL_ORGS)),
            _ => Some(rng.pick(&CORE_ORGS)),
        };
        case.staff(role, org)
    };
    let source = if rng.chance(85) {
        rng.pick(&CORE_ORGS)
    } else {
        rng.pick(&ALL_ORGS)
    };
    let rtype = if rng.chance(80) {
        rng.pick(&CORE_TYPES)
    } else {
        rng.pick(&TABLE_TYPES)
    };
    let labels = match rng.below(10) {
        0..=5 => Vec::new(),
        6..=8 => vec![rng.pick(&ALL_LABELS)],
        _ => vec![rng.pick(&ALL_LABELS), rng.pick(&ALL_LABELS)],
    };
    let objection = match rng.below(10) {
        0 => Objection::NotFrom(source),
        1 => Objection::NotTo(case.org.unwrap_or("A81001")),
        2 => Objection::NotFrom(rng.pick(&ALL_ORGS)),
        3 => Objection::NotTo(rng.pick(&ALL_ORGS)),
        _ => Objection::None,
    };
    let purpose = match case.who {
        _ if rng.chance(25) => rng.pick(&PURPOSES),
        Who::Staff(_) => rng.pick(&["TREAT", "TREAT", "CAREMGT", "ETREAT"]),
        Who::Person | Who::Carer(_) => rng.pick(&["PATRQT", "FAMRQT"]),
    };
    let emergency = rng.chance(30);
    let care = rng.chance(75);
    case.purpose(purpose)
        .break_glass(emergency)
        .item(source, rtype)
        .labelled(&labels)
        .care_relationship(care)
        .objecting(objection)
}

/// Everything the engine says about one case, by ids.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    verdict: Verdict,
    refusals: Vec<(String, Option<String>, Failure)>,
    may_disclose: bool,
    has_emergency: bool,
}

fn outcome(set: &PolicySet, case: &Case) -> Outcome {
    let consent = case.consent();
    let caller = case.caller();
    let item = case.item_with(&consent);
    let policy = set.for_caller(&caller, case.today);
    let refusals = explain(set, &caller, &item, case.today)
        .refusals
        .into_iter()
        .map(|r| (r.agreement, r.rule, r.failure))
        .collect();
    Outcome {
        verdict: verdict(policy.decide(&item)),
        refusals,
        may_disclose: policy.may_disclose(case.source, case.rtype),
        has_emergency: policy.has_emergency(),
    }
}

/// Loads `files` under names `NN-agreement.toml`, NN in a random order.
fn load_permuted(files: &[(String, String)], rng: &mut Rng) -> PolicySet {
    let mut order: Vec<usize> = (0..files.len()).collect();
    rng.shuffle(&mut order);
    let renamed: Vec<(String, String)> = files
        .iter()
        .zip(order)
        .map(|((_, text), n)| (format!("{n:02}-agreement.toml"), text.clone()))
        .collect();
    load(&renamed)
}

#[test]
fn decisions_never_depend_on_the_order_of_files() {
    let mut rng = Rng(0x00C0_DE0F_F11E_5001);
    let mut compared = 0;
    for iteration in 0..200 {
        // Even iterations: the table's set; odd ones: a random set.
        let files = if iteration % 2 == 0 {
            table_files()
        } else {
            random_files(&random_model(&mut rng))
        };
        let one = load_permuted(&files, &mut rng);
        let other = load_permuted(&files, &mut rng);
        let ids = |set: &PolicySet| -> Vec<(String, Vec<String>)> {
            set.agreements
                .iter()
                .map(|a| {
                    (
                        a.id.to_string(),
                        a.rules.iter().map(|r| r.id.to_string()).collect(),
                    )
                })
                .collect()
        };
        assert_eq!(ids(&one), ids(&other), "iteration {iteration}: agreements");
        assert!(
            one.agreements.windows(2).all(|w| w[0].id < w[1].id),
            "iteration {iteration}: agreements in id order"
        );
        for sample in 0..25 {
            let case = random_case(&mut rng, format!("order {iteration}/{sample}"));
            assert_eq!(outcome(&one, &case), outcome(&other, &case), "{case}");
            compared += 1;
        }
    }
    assert_eq!(compared, 200 * 25);
}

/// Whether this in-force rule covers the caller's organisation, role or relationship and
/// purpose, the provider and the type (labels, care and consent aside).
fn rule_covers(agreement: &ModelAgreement, rule: &ModelRule, case: &Case) -> bool {
    let party = match case.who {
        Who::Staff(role) => {
            !agreement.patient
                && case.org.is_some_and(|o| agreement.recipients.contains(&o))
                && role.is_some_and(|r| rule.roles.contains(&r))
        }
        Who::Person => agreement.patient && rule.relationships.is_empty(),
        Who::Carer(rel) => agreement.patient && rule.relationships.contains(&rel),
    };
    agreement.in_force(case.today)
        && party
        && agreement.disclosers.contains(&case.source)
        && (rule.purposes.contains(&case.purpose)
            || (case.emergency && rule.purposes.contains(&"ETREAT")))
        && (rule.resources.contains(&case.rtype) || rule.resources.contains(&"*"))
}

fn covered(model: &[ModelAgreement], case: &Case) -> bool {
    model
        .iter()
        .any(|a| a.rules.iter().any(|r| rule_covers(a, r, case)))
}

#[test]
fn what_no_agreement_covers_is_never_disclosed() {
    let mut rng = Rng(0x00C0_DE0F_F11E_5002);
    let mut uncovered_sources = 0;
    for iteration in 0..300 {
        let model = random_model(&mut rng);
        let set = load(&random_files(&model));
        assert_set_matches_model(&set, &model);
        let disclosers: Vec<&str> = model.iter().flat_map(|a| a.disclosers.clone()).collect();
        let types: Vec<&str> = model
            .iter()
            .flat_map(|a| a.rules.iter().flat_map(|r| r.resources.clone()))
            .collect();
        assert!(!types.contains(&"*"), "random sets have no `*` rules");
        let other_orgs: Vec<&'static str> = ALL_ORGS
            .into_iter()
            .filter(|o| !disclosers.contains(o))
            .collect();
        let other_types: Vec<&'static str> = TABLE_TYPES
            .into_iter()
            .filter(|t| !types.contains(t))
            .collect();
        for sample in 0..20 {
            let case = random_case(&mut rng, format!("uncovered {iteration}/{sample}"));
            let case = if rng.chance(50) {
                uncovered_sources += 1;
                let rtype = case.rtype;
                case.item(rng.pick(&other_orgs), rtype)
            } else {
                let source = case.source;
                case.item(source, rng.pick(&other_types))
            };
            let got = outcome(&set, &case);
            assert_eq!(got.verdict, Verdict::Withhold, "{case}");
            assert!(!got.may_disclose, "{case}: the plan asks for it");
            assert!(!got.refusals.is_empty(), "{case}: explain says nothing");
            check(&set, &model, &case);
        }
    }
    assert!(uncovered_sources > 2000, "{uncovered_sources}");
}

#[test]
fn random_agreements_never_permit_beyond_what_an_in_force_rule_covers() {
    let mut rng = Rng(0x00C0_DE0F_F11E_5003);
    let (mut permits, mut emergency_permits, mut samples) = (0, 0, 0);
    for iteration in 0..300 {
        let model = random_model(&mut rng);
        let set = load(&random_files(&model));
        assert_set_matches_model(&set, &model);
        for sample in 0..40 {
            let case = random_case(&mut rng, format!("coverage {iteration}/{sample}"));
            samples += 1;
            let Verdict::Permit {
                agreement,
                rule,
                emergency,
            } = check(&set, &model, &case)
            else {
                continue;
            };
            permits += 1;
            if emergency {
                emergency_permits += 1;
            }
            assert!(covered(&model, &case), "{case}: permitted, yet not covered");
            let named = model
                .iter()
                .find(|a| a.id == agreement)
                .expect("the permit names an agreement of the set");
            let named_rule = named
                .rules
                .iter()
                .find(|r| r.id == rule)
                .expect("the permit names a rule of its agreement");
            assert!(
                rule_covers(named, named_rule, &case),
                "{case}: permitted under {agreement}/{rule}, which does not cover it"
            );
        }
    }
    assert_eq!(samples, 300 * 40);
    assert!(permits > samples / 50, "{permits} permits of {samples}");
    assert!(
        emergency_permits > 20,
        "{emergency_permits} emergency permits"
    );
}

#[test]
fn an_organisation_on_a_carers_token_does_not_lift_an_objection() {
    let set = load(&table_files());
    let consent = Consent {
        not_from: vec!["A81001".into()],
        not_to: Vec::new(),
    };
    for org in [None, Some("A81001")] {
        let caller = Caller {
            org,
            role: None,
            purpose: "FAMRQT",
            emergency: false,
            acting: Acting::Carer("DAU"),
        };
        let item = Item {
            source_org: "A81001",
            resource_type: "CarePlan",
            labels: &[],
            resource: None,
            care_relationship: false,
            consent: &consent,
        };
        assert!(
            set.for_caller(&caller, today()).decide(&item).is_none(),
            "carer with org {org:?}"
        );
        let explained = crate::policy::engine::explain(&set, &caller, &item, today());
        assert!(explained.permit.is_none());
        assert!(
            explained
                .refusals
                .iter()
                .any(|r| r.failure == Failure::Consent),
            "{:?}",
            explained.refusals
        );
    }
}
