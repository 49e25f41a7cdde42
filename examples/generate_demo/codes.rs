//! Terminology: code systems and the small set of codes the demo uses.
//!
//! Codes were taken from the published UK Core R4 examples and value sets
//! (`/work/shared/ukcore`) where they occur there; the rest are well-known
//! SNOMED CT international concepts and dm+d virtual medicinal products.
//! A short list of codes we are sure of beats a long list of doubtful ones.

/// SNOMED CT.
pub(crate) const SNOMED: &str = "http://snomed.info/sct";
/// LOINC (used alongside SNOMED CT on vital signs, as UK Core examples do).
pub(crate) const LOINC: &str = "http://loinc.org";
/// UCUM units.
pub(crate) const UCUM: &str = "http://unitsofmeasure.org";
/// NHS dm+d, as used by UK Core for vaccine products.
pub(crate) const DMD: &str = "https://dmd.nhs.uk";
/// NHS number identifier system.
pub(crate) const NHS_NUMBER: &str = "https://fhir.nhs.uk/Id/nhs-number";
/// ODS organisation code identifier system.
pub(crate) const ODS: &str = "https://fhir.nhs.uk/Id/ods-organization-code";
/// Condition clinical status.
pub(crate) const COND_CLINICAL: &str = "http://terminology.hl7.org/CodeSystem/condition-clinical";
/// Condition verification status.
pub(crate) const COND_VER: &str = "http://terminology.hl7.org/CodeSystem/condition-ver-status";
/// Condition category.
pub(crate) const COND_CAT: &str = "http://terminology.hl7.org/CodeSystem/condition-category";
/// AllergyIntolerance clinical status.
pub(crate) const ALLERGY_CLINICAL: &str =
    "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical";
/// AllergyIntolerance verification status.
pub(crate) const ALLERGY_VER: &str =
    "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification";
/// Observation category.
pub(crate) const OBS_CAT: &str = "http://terminology.hl7.org/CodeSystem/observation-category";
/// HL7 v3 ActCode (Encounter.class).
pub(crate) const ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
/// HL7 v3 RoleCode (RelatedPerson.relationship).
pub(crate) const ROLE_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-RoleCode";
/// Flag category.
pub(crate) const FLAG_CAT: &str = "http://terminology.hl7.org/CodeSystem/flag-category";

/// A code and its display in some code system.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Code {
    /// The code.
    pub(crate) code: &'static str,
    /// Its display (a preferred term or an accepted synonym).
    pub(crate) display: &'static str,
}

/// Shorthand for building a [`Code`] in a `const`.
const fn c(code: &'static str, display: &'static str) -> Code {
    Code { code, display }
}

// --- Conditions (SNOMED CT clinical findings / disorders) -------------------

/// Essential hypertension.
pub(crate) const HYPERTENSION: Code = c("59621000", "Essential hypertension");
/// Type 2 diabetes mellitus.
pub(crate) const T2DM: Code = c("44054006", "Type 2 diabetes mellitus");
/// Asthma (UK Core example code).
pub(crate) const ASTHMA: Code = c("195967001", "Asthma");
/// COPD.
pub(crate) const COPD: Code = c("13645005", "Chronic obstructive lung disease");
/// Depressive disorder.
pub(crate) const DEPRESSION: Code = c("35489007", "Depressive disorder");
/// Anxiety disorder.
pub(crate) const ANXIETY: Code = c("197480006", "Anxiety disorder");
/// Atrial fibrillation.
pub(crate) const AF: Code = c("49436004", "Atrial fibrillation");
/// Heart failure.
pub(crate) const HEART_FAILURE: Code = c("84114007", "Heart failure");
/// Chronic kidney disease.
pub(crate) const CKD: Code = c("709044004", "Chronic kidney disease");
/// Dementia.
pub(crate) const DEMENTIA: Code = c("52448006", "Dementia");
/// Osteoarthritis.
pub(crate) const OSTEOARTHRITIS: Code = c("396275006", "Osteoarthritis");
/// Hyperlipidaemia.
pub(crate) const HYPERLIPIDAEMIA: Code = c("55822004", "Hyperlipidaemia");
/// Hypothyroidism.
pub(crate) const HYPOTHYROIDISM: Code = c("40930008", "Hypothyroidism");
/// Pressure ulcer (community nursing).
pub(crate) const PRESSURE_ULCER: Code = c("399912005", "Pressure ulcer");

// --- Sensitive conditions ----------------------------------------------------

/// Chlamydial infection (sexual health).
pub(crate) const CHLAMYDIA: Code = c("105629000", "Chlamydial infection");
/// HIV infection.
pub(crate) const HIV: Code = c("86406008", "Human immunodeficiency virus infection");
/// Schizophrenia (mental health).
pub(crate) const SCHIZOPHRENIA: Code = c("58214004", "Schizophrenia");
/// Bipolar disorder (mental health).
pub(crate) const BIPOLAR: Code = c("13746004", "Bipolar disorder");
/// Alcohol dependence (substance misuse; SNOMED CT synonym of "Alcoholism").
pub(crate) const ALCOHOL_DEPENDENCE: Code = c("7200002", "Alcohol dependence");
/// Opioid dependence (substance misuse).
pub(crate) const OPIOID_DEPENDENCE: Code = c("75544000", "Opioid dependence");

/// The HL7 v3 sensitivity label a code would attract, for the README and the
/// summary: STD sexually transmitted, HIV, PSY psychiatry, ETH substance abuse.
pub(crate) fn sensitivity(code: &str) -> Option<&'static str> {
    match code {
        "105629000" => Some("STD"),
        "86406008" => Some("HIV"),
        "58214004" | "13746004" => Some("PSY"),
        "7200002" | "75544000" => Some("ETH"),
        _ => None,
    }
}

// --- Medicines (dm+d virtual medicinal products, SNOMED CT identifiers) ------

/// Metformin 500mg tablets.
pub(crate) const METFORMIN: Code = c("325278007", "Metformin 500mg tablets");
/// Amlodipine 5mg tablets.
pub(crate) const AMLODIPINE: Code = c("319283006", "Amlodipine 5mg tablets");
/// Ramipril 5mg capsules.
pub(crate) const RAMIPRIL: Code = c("318902004", "Ramipril 5mg capsules");
/// Simvastatin 40mg tablets.
pub(crate) const SIMVASTATIN: Code = c("320000009", "Simvastatin 40mg tablets");
/// Bisoprolol 5mg tablets.
pub(crate) const BISOPROLOL: Code = c("318590006", "Bisoprolol 5mg tablets");
/// Furosemide 40mg tablets.
pub(crate) const FUROSEMIDE: Code = c("317972000", "Furosemide 40mg tablets");
/// Paracetamol 500mg tablets.
pub(crate) const PARACETAMOL: Code = c("322236009", "Paracetamol 500mg tablets");
/// Citalopram 20mg tablets.
pub(crate) const CITALOPRAM: Code = c("321987003", "Citalopram 20mg tablets");
/// Salbutamol 100micrograms/dose inhaler.
pub(crate) const SALBUTAMOL: Code = c("320176004", "Salbutamol 100micrograms/dose inhaler");
/// Amoxicillin 500mg capsules (the current dm+d VMP code since 2021).
pub(crate) const AMOXICILLIN: Code = c("39732411000001106", "Amoxicillin 500mg capsules");
/// Inactivated influenza vaccine, as in the UK Core Immunization example (dm+d AMP).
pub(crate) const FLU_VACCINE: Code = c(
    "11278411000001109",
    "Influenza vaccine (split virion, inactivated) suspension for injection 0.5ml pre-filled syringes (Pfizer Ltd)",
);

// --- Allergy substances and reactions -----------------------------------------

/// Allergy substances: code, AllergyIntolerance.category, reaction-prone.
pub(crate) const ALLERGENS: &[(Code, &str)] = &[
    (c("372687004", "Amoxicillin"), "medication"),
    (c("764146007", "Penicillin"), "medication"),
    (c("387458008", "Aspirin"), "medication"),
    (c("387207008", "Ibuprofen"), "medication"),
    (c("111088007", "Latex"), "environment"),
    (c("256349002", "Peanut - dietary"), "food"),
    (c("256277009", "Grass pollen"), "environment"),
];

/// Reaction manifestations: code and typical severity.
pub(crate) const REACTIONS: &[(Code, &str)] = &[
    (c("247472004", "Urticarial rash"), "mild"),
    (c("271807003", "Eruption of skin"), "mild"),
    (c("418290006", "Itching"), "mild"),
    (c("422587007", "Nausea"), "mild"),
    (c("39579001", "Anaphylaxis"), "severe"),
];

// --- Observations ------------------------------------------------------------

/// Blood pressure panel (SNOMED, LOINC).
pub(crate) const BP: (Code, Code) = (
    c("75367002", "Blood pressure"),
    c("85354-9", "Blood pressure panel with all children optional"),
);
/// Systolic component (SNOMED, LOINC).
pub(crate) const SYSTOLIC: (Code, Code) = (
    c("72313002", "Systolic arterial pressure"),
    c("8480-6", "Systolic blood pressure"),
);
/// Diastolic component (SNOMED, LOINC).
pub(crate) const DIASTOLIC: (Code, Code) = (
    c("1091811000000102", "Diastolic arterial pressure"),
    c("8462-4", "Diastolic blood pressure"),
);
/// Body weight (SNOMED, LOINC).
pub(crate) const WEIGHT: (Code, Code) = (c("27113001", "Body weight"), c("29463-7", "Body weight"));
/// Body height (SNOMED, LOINC).
pub(crate) const HEIGHT: (Code, Code) = (
    c("50373000", "Body height measure"),
    c("8302-2", "Body height"),
);
/// Body mass index (SNOMED, LOINC).
pub(crate) const BMI: (Code, Code) = (
    c("60621009", "Body mass index"),
    c("39156-5", "Body mass index (BMI) [Ratio]"),
);
/// Heart rate (SNOMED, LOINC).
pub(crate) const HEART_RATE: (Code, Code) =
    (c("364075005", "Heart rate"), c("8867-4", "Heart rate"));
/// HbA1c, IFCC standardised (mmol/mol), the UK primary-care code.
pub(crate) const HBA1C: Code = c(
    "999791000000106",
    "Haemoglobin A1c level - International Federation of Clinical Chemistry and Laboratory Medicine standardised",
);
/// Length of wound.
pub(crate) const WOUND_LENGTH: Code = c("401238003", "Length of wound");
/// Width of wound.
pub(crate) const WOUND_WIDTH: Code = c("401239006", "Width of wound");

// --- Encounters, services and care plans (UK Core value sets) ----------------

/// Seen in GP's surgery (UK Core EncounterType).
pub(crate) const SEEN_IN_SURGERY: Code = c("185202000", "Seen in GP's surgery");
/// Telephone consultation (UK Core EncounterType).
pub(crate) const TELEPHONE_CONSULTATION: Code = c("386472008", "Telephone consultation");
/// Seen in own home (UK Core EncounterType).
pub(crate) const SEEN_AT_HOME: Code = c("270420001", "Seen in own home");
/// Seen in mental health clinic (UK Core EncounterType).
pub(crate) const SEEN_MENTAL_HEALTH: Code = c("431957001", "Seen in mental health clinic");
/// Seen in substance misuse clinic (UK Core EncounterType).
pub(crate) const SEEN_SUBSTANCE_MISUSE: Code =
    c("494041000000102", "Seen in substance misuse clinic");
/// Community nursing service (UK Core CareSettingType).
pub(crate) const COMMUNITY_NURSING: Code = c("931801000000101", "Community nursing service");
/// Community mental health team (UK Core CareSettingType).
pub(crate) const COMMUNITY_MENTAL_HEALTH: Code =
    c("89301000000108", "Community mental health team");
/// Social services (UK Core CareSettingType).
pub(crate) const SOCIAL_SERVICES: Code = c("310134006", "Social services");
/// Care plan (UK Core CompositionCategory).
pub(crate) const CARE_PLAN: Code = c("734163000", "Care plan");
/// Nursing care plan (record artifact).
pub(crate) const NURSING_CARE_PLAN: Code = c("773130005", "Nursing care plan");
