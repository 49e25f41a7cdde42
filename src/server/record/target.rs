//! What the audit record keeps of a request's URL: never a credential or a secret.
//!
//! The record is hash-chained and can never be edited, so whatever it holds is held for ever.
//! It keeps the parameters the gateway recognises as the caller sent them; of any other
//! parameter only its name (when it looks like a parameter name) and a keyed hash of its
//! value, so that `?access_token=…` or a token pasted into a wrong parameter is never kept,
//! yet an IG lead can still tell two requests with the same value apart. Path segments are
//! kept when they are FHIR types, ids or operation names, and hashed otherwise (a token in
//! the path is longer than any FHIR id).

use uuid::Uuid;

use crate::fhir::reference::is_valid_id;
use crate::fhir::search::TYPES;
use crate::server::query::{CURSOR, RESULT_PARAMS};

/// Parameter names of the gateway's own endpoints that no type's search lists.
const ENDPOINT_PARAMS: [&str; 12] = [
    "_type",
    "_id",
    "identifier",
    "patient",
    "subject",
    "agent",
    "agent-org",
    "outcome",
    "purpose",
    "date",
    "review",
    CURSOR,
];

/// True for a parameter some FHIR endpoint of the gateway understands.
fn recognised(name: &str) -> bool {
    RESULT_PARAMS.contains(&name)
        || ENDPOINT_PARAMS.contains(&name)
        || TYPES.iter().any(|t| t.param(name).is_some())
}

/// True for a path segment kept as it is: a FHIR type or id, or an operation or a keyword
/// (`$everything`, `_history`).
fn plain_segment(segment: &str) -> bool {
    let word = |s: &str| {
        (1..=32).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    is_valid_id(segment)
        || segment
            .strip_prefix('$')
            .or_else(|| segment.strip_prefix('_'))
            .is_some_and(word)
}

/// True for a parameter name worth keeping as written (not a secret pasted as a name).
fn plain_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b':' | b'.'))
}

/// The path and query to record. `digest` is a keyed hash of what is not kept.
pub(crate) fn recordable(
    path: &str,
    query: Option<&str>,
    digest: &dyn Fn(&str) -> String,
) -> String {
    let mut out = String::with_capacity(path.len() + query.map_or(0, str::len) + 1);
    for (i, segment) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        if segment.is_empty() || plain_segment(segment) {
            out.push_str(segment);
        } else {
            out.push('~');
            out.push_str(&digest(segment));
        }
    }
    let Some(query) = query.filter(|q| !q.is_empty()) else {
        return out;
    };
    out.push('?');
    for (i, piece) in query.split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        let (raw_name, raw_value) = piece.split_once('=').unwrap_or((piece, ""));
        let name: String = form_urlencoded::parse(raw_name.as_bytes())
            .next()
            .map(|(n, _)| n.into_owned())
            .unwrap_or_default();
        if recognised(&name) {
            out.push_str(piece);
        } else if plain_name(&name) {
            out.push_str(raw_name);
            out.push_str("=~");
            out.push_str(&digest(raw_value));
        } else {
            out.push('~');
            out.push_str(&digest(piece));
        }
    }
    out
}

/// The person a request names by gateway id, so that a refused request for someone's
/// record is still recorded as about them: `Patient/{id}` and anything below it, or a
/// `patient` or `subject` parameter.
pub(crate) fn asked_person(path: &str, query: Option<&str>) -> Option<Uuid> {
    let from_path = path
        .strip_prefix("/fhir/Patient/")
        .and_then(|rest| rest.split('/').next())
        .and_then(|id| Uuid::parse_str(id).ok());
    from_path.or_else(|| {
        form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .filter(|(name, _)| name == "patient" || name == "subject")
            .find_map(|(_, value)| {
                let id = value.strip_prefix("Patient/").unwrap_or(&value);
                Uuid::parse_str(id).ok()
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const JWT: &str = "eyJhbGciOiJFZERTQSIsImtpZCI6ImRlbW8ifQ.eyJzdWIiOiJkZW1vLXVzZXIiLCJvcmciOiJBODEwMDEifQ.c2lnbmF0dXJlLXNpZ25hdHVyZS1zaWduYXR1cmUtc2lnbmF0dXJl";

    fn keep(path: &str, query: Option<&str>) -> String {
        recordable(path, query, &|v| format!("h{}", v.len()))
    }

    #[test]
    fn recognised_parameters_and_fhir_paths_are_kept_as_sent() {
        assert_eq!(
            keep(
                "/fhir/Observation",
                Some("patient=abc&date=ge2026-01-01&_count=5&code=http://loinc.org|1")
            ),
            "/fhir/Observation?patient=abc&date=ge2026-01-01&_count=5&code=http://loinc.org|1"
        );
        assert_eq!(
            keep(
                "/fhir/Patient/0b7c9c1e-6f7a-4a43-9b8e-2f0d8f6c9a11/$everything",
                None
            ),
            "/fhir/Patient/0b7c9c1e-6f7a-4a43-9b8e-2f0d8f6c9a11/$everything"
        );
        assert_eq!(
            keep("/fhir/Patient/x/_history", None),
            "/fhir/Patient/x/_history"
        );
    }

    #[test]
    fn secrets_are_never_kept() {
        for (path, query) in [
            ("/fhir/Observation", format!("patient=p&access_token={JWT}")),
            ("/fhir/Observation", format!("colour={JWT}")),
            ("/fhir/Observation", format!("{JWT}=1")),
            ("/fhir/Observation", JWT.to_owned()),
        ] {
            let kept = keep(path, Some(&query));
            assert!(!kept.contains("eyJ"), "{kept}");
        }
        let kept = keep(&format!("/fhir/Patient/{JWT}"), None);
        assert_eq!(kept, format!("/fhir/Patient/~h{}", JWT.len()));
        // The name of an unknown parameter is kept, its value hashed.
        assert_eq!(
            keep("/fhir/Observation", Some("access_token=abc")),
            "/fhir/Observation?access_token=~h3"
        );
    }

    #[test]
    fn the_person_asked_about_is_read_from_the_path_or_the_query() {
        let id = "0b7c9c1e-6f7a-4a43-9b8e-2f0d8f6c9a11";
        let uuid = Uuid::parse_str(id).ok();
        assert_eq!(
            asked_person(&format!("/fhir/Patient/{id}/_history"), None),
            uuid
        );
        assert_eq!(
            asked_person("/fhir/Observation", Some(&format!("subject=Patient/{id}"))),
            uuid
        );
        assert_eq!(
            asked_person("/fhir/Observation", Some(&format!("patient={id}"))),
            uuid
        );
        assert_eq!(
            asked_person("/fhir/Observation", Some("patient=gp.1")),
            None
        );
    }
}
