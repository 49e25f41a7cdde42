//! FHIR helpers over `serde_json::Value`: NHS numbers, references, dates, OperationOutcome,
//! Bundles and the search parameters the gateway understands.
//!
//! There is no typed FHIR model: a gateway passes resources through, so it reads and edits the
//! few elements it needs and leaves the rest exactly as the source wrote it.

pub mod bundle;
pub mod condition;
pub mod conformance;
pub mod date;
pub mod json;
pub mod nhs_number;
pub mod outcome;
pub mod reference;
pub mod resource;
pub mod search;

pub use nhs_number::{NHS_NUMBER_SYSTEM, NhsNumber};
pub use outcome::{Issue, Severity, operation_outcome};

/// The FHIR JSON media type.
pub const FHIR_JSON: &str = "application/fhir+json";

/// Canonical base of the extensions and tags Concord defines.
pub const CONCORD_CANONICAL: &str = "https://fhir.concord.health";

/// The code system of ODS organisation codes.
pub const ODS_SYSTEM: &str = "https://fhir.nhs.uk/Id/ods-organization-code";

/// The current time as a FHIR `instant`, to the millisecond.
pub fn now_instant() -> String {
    let now = jiff::Timestamp::now();
    now.round(jiff::Unit::Millisecond)
        .unwrap_or(now)
        .to_string()
}

/// Ids people write and other things are keyed by (source, agreement and rule ids): one or
/// more of `a-z`, `0-9` and `-`.
pub fn is_slug(id: &str) -> bool {
    !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// ODS codes: 3 to 10 upper-case letters and digits (e.g. `A81001`, `RY4`, `RY4AB`).
pub fn is_ods_code(code: &str) -> bool {
    (3..=10).contains(&code.len())
        && code
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}
