//! NHS numbers: ten digits whose last digit is a Modulus 11 check digit.

use std::fmt;

/// The identifier system of NHS numbers in FHIR.
pub const NHS_NUMBER_SYSTEM: &str = "https://fhir.nhs.uk/Id/nhs-number";

/// Why a string is not an NHS number. The messages never repeat the number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NhsNumberError {
    /// Not exactly ten ASCII digits (spaces are allowed between groups).
    #[error("an NHS number has exactly 10 digits")]
    Format,
    /// The Modulus 11 check digit does not match.
    #[error("the NHS number's check digit is wrong")]
    CheckDigit,
}

/// A valid NHS number. `Debug` hides the digits so the value cannot leak into logs by accident.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct NhsNumber(String);

impl NhsNumber {
    /// Parses ten digits, optionally written in the 3-3-4 groups people use (`943 476 5919`).
    pub fn parse(input: &str) -> Result<Self, NhsNumberError> {
        let digits: String = input.chars().filter(|c| *c != ' ').collect();
        if digits.len() != 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(NhsNumberError::Format);
        }
        let expected = check_digit(&digits.as_bytes()[..9]).ok_or(NhsNumberError::CheckDigit)?;
        if digits.as_bytes()[9] - b'0' != expected {
            return Err(NhsNumberError::CheckDigit);
        }
        Ok(Self(digits))
    }

    /// The ten digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The Modulus 11 check digit for nine digits, or `None` where the algorithm gives 10 (such
/// numbers are never issued).
pub fn check_digit(first_nine: &[u8]) -> Option<u8> {
    let sum: u32 = first_nine
        .iter()
        .zip((2..=10).rev())
        .map(|(d, w)| u32::from(d - b'0') * w)
        .sum();
    match 11 - (sum % 11) {
        11 => Some(0),
        10 => None,
        n => u8::try_from(n).ok(),
    }
}

/// The NHS numbers a Patient resource carries in `identifier` (spaces removed, not checked).
pub fn carried_by(patient: &serde_json::Value) -> impl Iterator<Item = String> + '_ {
    patient
        .get("identifier")
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
        .filter(|i| i.get("system").and_then(serde_json::Value::as_str) == Some(NHS_NUMBER_SYSTEM))
        .filter_map(|i| i.get("value").and_then(serde_json::Value::as_str))
        .map(|v| v.replace(' ', ""))
}

impl fmt::Debug for NhsNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NhsNumber(<redacted>)")
    }
}

#[cfg(test)]
mod tests;
