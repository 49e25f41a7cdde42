//! FHIR references (`Reference.reference`) and resource ids.

/// True when `id` is a valid FHIR id: 1 to 64 of `A-Z a-z 0-9 - .`. Ids made only of dots
/// (`.`, `..`) match FHIR's pattern but are refused: in a URL path they mean "this folder" and
/// "the folder above", and would turn a read into a search of everyone's records.
pub fn is_valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && !id.bytes().all(|b| b == b'.')
}

/// Splits a gateway id (`{source id}.{local id}`) into source id and local id.
pub fn split_gateway_id(id: &str) -> Option<(&str, &str)> {
    id.split_once('.')
        .filter(|(s, l)| !s.is_empty() && is_valid_id(l))
}

/// True when `name` looks like a FHIR resource type name (`Observation`, `CarePlan`).
pub fn is_resource_type_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'A'..=b'Z'))
        && bytes.all(|b| b.is_ascii_alphanumeric())
        && name.len() <= 64
}

/// A literal reference to a resource by type and id, as parsed from `Type/id`,
/// `Type/id/_history/v` or `{base}/Type/id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalRef<'a> {
    /// The resource type.
    pub resource_type: &'a str,
    /// The logical id.
    pub id: &'a str,
}

/// Parses a relative reference (`Type/id`, optionally with `/_history/v`). Absolute URLs,
/// contained references (`#x`) and URNs give `None`.
pub fn parse_relative(reference: &str) -> Option<LocalRef<'_>> {
    if reference.contains("://") || reference.starts_with('#') || reference.starts_with("urn:") {
        return None;
    }
    let mut parts = reference.split('/');
    let resource_type = parts.next()?;
    let id = parts.next()?;
    match (parts.next(), parts.next(), parts.next()) {
        (None, _, _) => {}
        (Some("_history"), Some(_), None) => {}
        _ => return None,
    }
    (is_resource_type_name(resource_type) && is_valid_id(id))
        .then_some(LocalRef { resource_type, id })
}

/// Parses a reference that is relative, or absolute under `base` (a server base URL without a
/// trailing slash).
pub fn parse_under_base<'a>(reference: &'a str, base: Option<&str>) -> Option<LocalRef<'a>> {
    if let Some(base) = base
        && let Some(rest) = reference
            .strip_prefix(base)
            .and_then(|r| r.strip_prefix('/'))
    {
        return parse_relative(rest);
    }
    parse_relative(reference)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_relative_and_versioned() {
        assert_eq!(
            parse_relative("Patient/123"),
            Some(LocalRef {
                resource_type: "Patient",
                id: "123"
            })
        );
        assert_eq!(
            parse_relative("Observation/a.b-c/_history/2"),
            Some(LocalRef {
                resource_type: "Observation",
                id: "a.b-c"
            })
        );
    }

    #[test]
    fn leaves_other_forms_alone() {
        for r in [
            "#contained",
            "urn:uuid:1234",
            "http://x/Patient/1",
            "Patient",
            "patient/1",
            "Patient/1/extra",
            "Patient/a b",
        ] {
            assert_eq!(parse_relative(r), None, "{r}");
        }
    }

    #[test]
    fn parses_absolute_under_base_only() {
        let base = Some("http://up.example/fhir");
        assert_eq!(
            parse_under_base("http://up.example/fhir/Patient/9", base),
            Some(LocalRef {
                resource_type: "Patient",
                id: "9"
            })
        );
        assert_eq!(
            parse_under_base("http://elsewhere/fhir/Patient/9", base),
            None
        );
    }

    #[test]
    fn id_syntax() {
        assert!(is_valid_id("gp.pat-001"));
        assert!(!is_valid_id(""));
        assert!(!is_valid_id(&"a".repeat(65)));
        assert!(!is_valid_id("a/b"));
        assert!(!is_valid_id("."));
        assert!(!is_valid_id(".."));
        assert!(is_valid_id("a.."));
    }
}
