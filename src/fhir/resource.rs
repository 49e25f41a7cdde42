//! A resource that can be shared between requests and is serialised at most once.
//!
//! Answers are assembled from many resources; when the same normalised resource is served
//! again (an NDJSON export does not change while the gateway runs), neither copying nor
//! re-serialising it is needed: the Bundle writer copies its JSON text.

use std::sync::{Arc, OnceLock};

use serde_json::Value;

/// A normalised FHIR resource with its JSON text, made on first use.
#[derive(Debug)]
pub struct Resource {
    value: Value,
    json: OnceLock<Box<str>>,
    problems: Box<[crate::fhir::conformance::Departure]>,
}

/// Resources are passed around shared.
pub type SharedResource = Arc<Resource>;

impl Resource {
    /// Wraps a resource.
    pub fn shared(value: Value) -> SharedResource {
        Self::flagged(value, Vec::new())
    }

    /// Wraps a resource that does not conform to its profile, with its problems, for the
    /// Bundle's OperationOutcome.
    pub fn flagged(
        value: Value,
        problems: Vec<crate::fhir::conformance::Departure>,
    ) -> SharedResource {
        Arc::new(Self {
            value,
            json: OnceLock::new(),
            problems: problems.into_boxed_slice(),
        })
    }

    /// How the resource does not conform to its profile (empty when it does, or was not
    /// checked).
    pub fn problems(&self) -> &[crate::fhir::conformance::Departure] {
        &self.problems
    }

    /// The resource.
    pub fn value(&self) -> &Value {
        &self.value
    }

    /// `resourceType`, or `""`.
    pub fn resource_type(&self) -> &str {
        self.value
            .get("resourceType")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    /// `id`, or `""`.
    pub fn id(&self) -> &str {
        self.value
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    /// Compact JSON text of the resource.
    pub fn json(&self) -> &str {
        // INVARIANT: a `Value` always serialises (its map keys are strings).
        self.json.get_or_init(|| {
            serde_json::to_string(&self.value)
                .unwrap_or_default()
                .into_boxed_str()
        })
    }
}
