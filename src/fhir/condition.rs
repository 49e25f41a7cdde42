//! A conditional create's search (`If-None-Exist`): what it may name, its bounds, and how it
//! matches a resource where the region's store evaluates it itself.
//!
//! It may name `identifier` (a token), the resource type's own search parameters (tokens and
//! dates, as [`super::search`] defines them) and `patient` or `subject`, which must be the
//! person the resource is about (`Patient/{gateway id}`). The search is always narrowed to
//! that person: a match about somebody else is never found, and so never named.

use serde_json::Value;

use super::search::{Filter, ParamDef, ParamKind, TypeDef};

/// Longest `If-None-Exist` value taken, in bytes.
pub const MAX_CONDITION_BYTES: usize = 1_024;
/// Most parameters in one `If-None-Exist`.
pub const MAX_CONDITION_PARAMS: usize = 8;

/// `identifier`, which a conditional create may name on every type.
pub static IDENTIFIER: ParamDef = ParamDef {
    name: "identifier",
    kind: ParamKind::Token,
    paths: &["identifier"],
};

/// Why an `If-None-Exist` cannot be honoured as sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConditionError {
    /// Too long, too many parameters, or empty.
    #[error(
        "If-None-Exist must name 1 to {MAX_CONDITION_PARAMS} parameters in at most {MAX_CONDITION_BYTES} bytes"
    )]
    Bounds,
    /// A parameter a conditional create here cannot name.
    #[error(
        "If-None-Exist cannot name `{0}` here (only identifier, patient or subject, and the type's own search parameters)"
    )]
    Unknown(String),
    /// A value that does not parse.
    #[error("If-None-Exist `{name}`: {message}")]
    Value {
        /// The parameter.
        name: String,
        /// What is wrong.
        message: String,
    },
}

/// A parsed `If-None-Exist`.
#[derive(Debug, Clone)]
pub struct Condition {
    /// Each parameter other than the person's, as sent (decoded), in order.
    pairs: Vec<(String, String)>,
    /// The person's id, when `patient` or `subject` named one (`Patient/{id}` or `{id}`).
    person: Option<String>,
    filters: Vec<Filter>,
}

impl Condition {
    /// Parses the header's value (a query string) for a create of `def`.
    pub fn parse(def: &'static TypeDef, raw: &str) -> Result<Condition, ConditionError> {
        if raw.is_empty() || raw.len() > MAX_CONDITION_BYTES {
            return Err(ConditionError::Bounds);
        }
        let raw = raw.strip_prefix('?').unwrap_or(raw);
        let pairs: Vec<(String, String)> = form_urlencoded::parse(raw.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        Self::from_pairs(def, &pairs)
    }

    /// A condition from its decoded parameters (as a store source is given them).
    pub fn from_pairs(
        def: &'static TypeDef,
        pairs: &[(String, String)],
    ) -> Result<Condition, ConditionError> {
        if pairs.is_empty() || pairs.len() > MAX_CONDITION_PARAMS {
            return Err(ConditionError::Bounds);
        }
        let mut condition = Condition {
            pairs: Vec::new(),
            person: None,
            filters: Vec::new(),
        };
        for (name, value) in pairs {
            let bad = |message: &str| ConditionError::Value {
                name: name.clone(),
                message: message.to_owned(),
            };
            if name == "patient" || name == "subject" {
                let id = value.strip_prefix("Patient/").unwrap_or(value);
                if !super::reference::is_valid_id(id) {
                    return Err(bad("must name the person as `Patient/{id}`"));
                }
                if condition.person.as_deref().is_some_and(|p| p != id) {
                    return Err(bad("names two people"));
                }
                condition.person = Some(id.to_owned());
                continue;
            }
            let param = if name == IDENTIFIER.name {
                &IDENTIFIER
            } else {
                def.param(name)
                    .ok_or_else(|| ConditionError::Unknown(name.clone()))?
            };
            if super::search::alternatives(value).len() > super::search::MAX_ALTERNATIVES {
                return Err(bad("has too many alternatives"));
            }
            let filter = Filter::parse(param, value).map_err(|e| bad(&e.to_string()))?;
            condition.filters.push(filter);
            condition.pairs.push((name.clone(), value.clone()));
        }
        Ok(condition)
    }

    /// The person `patient` or `subject` named, when either did.
    pub fn person(&self) -> Option<&str> {
        self.person.as_deref()
    }

    /// The parameters other than the person's, as sent.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }

    /// The search as sent to a source: its parameters, narrowed to the person's patient id
    /// there (`patient`).
    pub fn for_source(&self, patient: &str) -> Vec<(String, String)> {
        let mut out = self.pairs.clone();
        out.push(("patient".to_owned(), patient.to_owned()));
        out
    }

    /// Whether `resource` matches every parameter other than the person's (the caller
    /// narrows to the person).
    pub fn matches(&self, resource: &Value) -> bool {
        self.filters.iter().all(|f| f.matches(resource))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn goal() -> &'static TypeDef {
        super::super::search::type_def("Goal").expect("Goal")
    }

    #[test]
    fn parses_matches_and_narrows() {
        let c = Condition::parse(
            goal(),
            "identifier=https%3A%2F%2Fportal%7Cg-1&lifecycle-status=active&patient=Patient/abc",
        )
        .expect("parses");
        assert_eq!(c.person(), Some("abc"));
        assert_eq!(c.pairs().len(), 2);
        assert_eq!(
            c.for_source("p-9").last(),
            Some(&("patient".to_owned(), "p-9".to_owned()))
        );
        let hit = json!({"resourceType": "Goal", "lifecycleStatus": "active",
            "identifier": [{"system": "https://portal", "value": "g-1"}]});
        assert!(c.matches(&hit));
        let miss = json!({"resourceType": "Goal", "lifecycleStatus": "active",
            "identifier": [{"system": "https://portal", "value": "g-2"}]});
        assert!(!c.matches(&miss));
    }

    #[test]
    fn bounded_and_checked() {
        for bad in [
            String::new(),
            "x".repeat(MAX_CONDITION_BYTES + 1),
            (0..=MAX_CONDITION_PARAMS)
                .map(|i| format!("identifier={i}"))
                .collect::<Vec<_>>()
                .join("&"),
        ] {
            assert_eq!(
                Condition::parse(goal(), &bad).err(),
                Some(ConditionError::Bounds),
                "{bad}"
            );
        }
        assert!(matches!(
            Condition::parse(goal(), "code=x"),
            Err(ConditionError::Unknown(_))
        ));
        assert!(matches!(
            Condition::parse(goal(), "start-date=yesterday"),
            Err(ConditionError::Value { .. })
        ));
        assert!(matches!(
            Condition::parse(goal(), "patient=Patient/a&subject=Patient/b"),
            Err(ConditionError::Value { .. })
        ));
        assert!(matches!(
            Condition::parse(goal(), "identifier="),
            Err(ConditionError::Value { .. })
        ));
    }
}
