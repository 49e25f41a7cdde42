//! SMART on FHIR scopes: which resource types a token may read or search.
//!
//! v2 scopes (`patient/Observation.rs`, `user/*.rs`) and their v1 forms (`.read`, `.write`,
//! `.*`) are understood. Scopes with query parameters (`?category=…`) are not supported yet and
//! grant nothing (deny by default). Other scopes (`openid`, `fhirUser`, `launch`) grant no data
//! access.

/// Whose data a scope speaks of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    /// The person the token is for (`patient/…`).
    Patient,
    /// Whatever the user may see (`user/…`).
    User,
    /// A back-end system (`system/…`).
    System,
}

/// What a scope allows on resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interaction {
    /// Read one resource by id.
    Read,
    /// Search.
    Search,
    /// Create (recording a Consent; writing a CarePlan, Goal or Flag).
    Create,
    /// Update (a CarePlan, Goal or Flag).
    Update,
}

impl Interaction {
    fn letter(self) -> char {
        match self {
            Interaction::Read => 'r',
            Interaction::Search => 's',
            Interaction::Create => 'c',
            Interaction::Update => 'u',
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Scope {
    context: Context,
    /// `None` for `*`.
    resource_type: Option<String>,
    permissions: String,
}

/// The data-access scopes of a token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scopes {
    granted: Vec<Scope>,
    operator: bool,
}

/// The scope that lets a staff token see the operator's readiness view (`/readyz/detail`):
/// sources, breakers, the audit log's state and the policy set.
pub const OPERATOR: &str = "concord.operator";

fn parse_one(raw: &str) -> Option<Scope> {
    let (context, rest) = raw.split_once('/')?;
    let context = match context {
        "patient" => Context::Patient,
        "user" => Context::User,
        "system" => Context::System,
        _ => return None,
    };
    if rest.contains('?') {
        return None;
    }
    let (resource, permissions) = rest.split_once('.')?;
    let resource_type = match resource {
        "*" => None,
        t if crate::fhir::reference::is_resource_type_name(t) => Some(t.to_owned()),
        _ => return None,
    };
    let permissions = match permissions {
        "read" => "rs".to_owned(),
        "write" => "cud".to_owned(),
        "*" => "cruds".to_owned(),
        p if !p.is_empty() && p.chars().all(|c| "cruds".contains(c)) => p.to_owned(),
        _ => return None,
    };
    Some(Scope {
        context,
        resource_type,
        permissions,
    })
}

impl Scopes {
    /// Parses a space-separated `scope` claim; what is not a data-access scope is left out.
    pub fn parse(raw: &str) -> Scopes {
        Scopes {
            granted: raw.split_whitespace().filter_map(parse_one).collect(),
            operator: raw.split_whitespace().any(|s| s == OPERATOR),
        }
    }

    /// True when the token carries [`OPERATOR`].
    pub fn operator(&self) -> bool {
        self.operator
    }

    /// True when some scope of `context` allows `interaction` on `resource_type`.
    pub fn allows(&self, context: Context, resource_type: &str, interaction: Interaction) -> bool {
        self.granted.iter().any(|s| {
            s.context == context
                && s.resource_type
                    .as_deref()
                    .is_none_or(|t| t == resource_type)
                && s.permissions.contains(interaction.letter())
        })
    }

    /// True when any scope has this context.
    pub fn has_context(&self, context: Context) -> bool {
        self.granted.iter().any(|s| s.context == context)
    }

    /// True when no data-access scope was granted.
    pub fn is_empty(&self) -> bool {
        self.granted.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_and_v1_forms() {
        let s =
            Scopes::parse("openid fhirUser user/Observation.rs patient/*.read system/Condition.*");
        assert!(s.allows(Context::User, "Observation", Interaction::Read));
        assert!(s.allows(Context::User, "Observation", Interaction::Search));
        assert!(!s.allows(Context::User, "Condition", Interaction::Read));
        assert!(s.allows(Context::Patient, "Condition", Interaction::Search));
        assert!(s.allows(Context::System, "Condition", Interaction::Read));
        assert!(
            !s.allows(Context::Patient, "Condition", Interaction::Read)
                || s.has_context(Context::Patient)
        );
    }

    #[test]
    fn narrow_permissions() {
        let s = Scopes::parse("user/Observation.r");
        assert!(s.allows(Context::User, "Observation", Interaction::Read));
        assert!(!s.allows(Context::User, "Observation", Interaction::Search));
    }

    #[test]
    fn unsupported_or_malformed_scopes_grant_nothing() {
        for raw in [
            "user/Observation.rs?category=laboratory",
            "user/observation.rs",
            "doctor/*.rs",
            "user/*.x",
            "user/*.",
            "user/*",
            "",
        ] {
            assert!(Scopes::parse(raw).is_empty(), "{raw}");
        }
    }
}
