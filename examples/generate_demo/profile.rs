//! Health profile odds: how likely each long-term condition is at a given
//! age, and how likely community and social care involvement is. Rough
//! shapes of English prevalence, tuned so that about 35% of people are known
//! to community services and 15% to social care.

use crate::codes::{self, Code};

/// Probabilities of community and social care involvement by age.
pub(crate) fn involvement(age: i64) -> (f64, f64) {
    match age {
        ..40 => (0.12, 0.03),
        40..60 => (0.22, 0.05),
        60..75 => (0.45, 0.11),
        75..90 => (0.75, 0.30),
        _ => (0.85, 0.50),
    }
}

/// Chance of each long-term condition at a given age and gender.
pub(crate) fn risk(code: Code, age: i64, female: bool) -> f64 {
    let band = |young: f64, mid: f64, old: f64| match age {
        ..45 => young,
        45..65 => mid,
        _ => old,
    };
    match code.code {
        "59621000" => band(0.05, 0.22, 0.45),
        "44054006" => band(0.03, 0.10, 0.18),
        "195967001" => 0.10,
        "13645005" => band(0.0, 0.04, 0.09),
        "35489007" => 0.12,
        "197480006" => 0.10,
        "49436004" => band(0.0, 0.02, 0.12),
        "84114007" => band(0.0, 0.01, if age >= 75 { 0.12 } else { 0.04 }),
        "709044004" => band(0.0, 0.03, 0.15),
        "52448006" => band(0.0, 0.0, if age >= 80 { 0.22 } else { 0.04 }),
        "396275006" => band(0.02, 0.15, 0.30),
        "55822004" => band(0.02, 0.15, 0.20),
        "40930008" if female => 0.06,
        "40930008" => 0.015,
        "105629000" if age < 35 => 0.10,
        "86406008" => 0.012,
        "58214004" if age < 70 => 0.012,
        "58214004" => 0.004,
        "13746004" => 0.012,
        "7200002" => band(0.02, 0.04, 0.02),
        "75544000" if age < 60 => 0.018,
        "75544000" => 0.003,
        _ => 0.0,
    }
}

/// The conditions a person may have, in output order.
pub(crate) const PROBLEM_LIST: &[Code] = &[
    codes::HYPERTENSION,
    codes::T2DM,
    codes::ASTHMA,
    codes::COPD,
    codes::DEPRESSION,
    codes::ANXIETY,
    codes::AF,
    codes::HEART_FAILURE,
    codes::CKD,
    codes::DEMENTIA,
    codes::OSTEOARTHRITIS,
    codes::HYPERLIPIDAEMIA,
    codes::HYPOTHYROIDISM,
    codes::CHLAMYDIA,
    codes::HIV,
    codes::SCHIZOPHRENIA,
    codes::BIPOLAR,
    codes::ALCOHOL_DEPENDENCE,
    codes::OPIOID_DEPENDENCE,
];
