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
    /// `{resourceType}/{id}`, read once: every step of a request asks for the type, the id
    /// or both (decision, sort, Bundle, audit facts), and each ask was a lookup in the
    /// resource's map. `type_len` is where the type ends.
    reference: Arc<str>,
    type_len: usize,
    /// Where the source ends in a gateway id (`{source}.{id}`), when the id is one: the
    /// source a resource came from is asked on every decision on it.
    source_len: Option<usize>,
    has_type_and_id: bool,
    /// Its security labels, read once for every decision on the resource.
    labels: OnceLock<Box<[Box<str>]>>,
    json: OnceLock<Box<str>>,
    /// When the resource happened, for ordering a whole record (`$everything`): a function
    /// of the resource alone, so worked out once however many answers it goes into.
    clinical_time: OnceLock<Option<i64>>,
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
        let text = |key: &str| value.get(key).and_then(Value::as_str);
        let has_type_and_id = text("resourceType").is_some() && text("id").is_some();
        let (resource_type, id) = (
            text("resourceType").unwrap_or_default(),
            text("id").unwrap_or_default(),
        );
        let mut reference = String::with_capacity(resource_type.len() + 1 + id.len());
        reference.push_str(resource_type);
        reference.push('/');
        reference.push_str(id);
        let source_len = super::reference::split_gateway_id(id).map(|(s, _)| s.len());
        Arc::new(Self {
            reference: reference.into(),
            type_len: resource_type.len(),
            source_len,
            has_type_and_id,
            labels: OnceLock::new(),
            value,
            json: OnceLock::new(),
            clinical_time: OnceLock::new(),
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
        self.reference.get(..self.type_len).unwrap_or_default()
    }

    /// `id`, or `""`.
    pub fn id(&self) -> &str {
        self.reference.get(self.type_len + 1..).unwrap_or_default()
    }

    /// The source of its gateway id (`{source}.{id}`), or `None` when its id is not one.
    pub fn gateway_source(&self) -> Option<&str> {
        self.id().get(..self.source_len?)
    }

    /// True when it has a `resourceType` and an `id`, both strings.
    pub fn has_type_and_id(&self) -> bool {
        self.has_type_and_id
    }

    /// `{resourceType}/{id}`, as the audit record names it.
    pub fn reference(&self) -> &str {
        &self.reference
    }

    /// [`Resource::reference`], shared.
    pub fn shared_reference(&self) -> &Arc<str> {
        &self.reference
    }

    /// Its security labels as `read` finds them (the policy's reading of `meta.security`),
    /// read on the first call and kept: the resource does not change, and it is decided on
    /// in every answer it goes into. Every caller passes the same reader.
    pub fn labels(&self, read: fn(&Value) -> Box<[Box<str>]>) -> &[Box<str>] {
        self.labels.get_or_init(|| read(&self.value))
    }

    /// The start of its clinical date (its type's `clinical_date` elements, the earliest),
    /// in milliseconds; `None` when it has none or its type is not served.
    pub fn clinical_time(&self) -> Option<i64> {
        *self.clinical_time.get_or_init(|| {
            crate::fhir::search::type_def(self.resource_type())
                .and_then(|d| crate::fhir::search::sort_time(&self.value, d.clinical_date))
        })
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::Resource;

    #[test]
    fn the_clinical_time_is_the_earliest_clinical_date_and_none_without_one() {
        let observation = Resource::shared(json!({
            "resourceType": "Observation", "id": "gp.1",
            "effectivePeriod": {"start": "2026-03-01", "end": "2026-03-09"}
        }));
        let first = observation.clinical_time();
        assert_eq!(
            first,
            crate::fhir::date::parse("2026-03-01").map(|r| r.start)
        );
        // Asked again, the same answer (worked out once).
        assert_eq!(observation.clinical_time(), first);
        let undated = Resource::shared(json!({"resourceType": "Observation", "id": "gp.2"}));
        assert_eq!(undated.clinical_time(), None);
        let unserved = Resource::shared(json!({"resourceType": "Basic", "id": "gp.3"}));
        assert_eq!(unserved.clinical_time(), None);
    }

    #[test]
    fn the_gateway_source_is_the_part_before_the_first_dot_of_a_gateway_id() {
        let source = |id: serde_json::Value| {
            Resource::shared(json!({"resourceType": "Observation", "id": id}))
                .gateway_source()
                .map(str::to_owned)
        };
        assert_eq!(source(json!("gp.1")).as_deref(), Some("gp"));
        assert_eq!(source(json!("community.a.b")).as_deref(), Some("community"));
        // Not gateway ids: no source, as `split_gateway_id` says.
        assert_eq!(source(json!("123")), None);
        assert_eq!(source(json!(".1")), None);
        assert_eq!(source(json!("gp.")), None);
        assert_eq!(source(json!("gp.a/b")), None);
        assert_eq!(source(json!(7)), None);
        let untyped = Resource::shared(json!({"id": "gp.1"}));
        assert_eq!(untyped.gateway_source(), Some("gp"));
    }
}
