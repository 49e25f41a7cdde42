//! How a resource departs from the base FHIR structure or its profile: the findings the
//! profile checker ([`crate::profiles`]) makes and the resources carry with them when a
//! source's conformance is `flag`. Here, at the bottom layer, so that resources can hold them
//! without depending on the checker.

use std::fmt;

/// The kind of rule a departure breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Constraint {
    /// Resource type, element names, arrays versus single values, choice elements.
    Structure,
    /// A primitive's JSON type or lexical form.
    Format,
    /// Too few or too many values.
    Cardinality,
    /// A fixed or pattern value of the profile.
    Fixed,
    /// A required terminology binding.
    Binding,
    /// A reference to a resource type that is not allowed there.
    Reference,
}

impl Constraint {
    /// The rule's name as printed: `structure`, `format`, ….
    pub fn as_str(self) -> &'static str {
        match self {
            Constraint::Structure => "structure",
            Constraint::Format => "format",
            Constraint::Cardinality => "cardinality",
            Constraint::Fixed => "fixed",
            Constraint::Binding => "binding",
            Constraint::Reference => "reference",
        }
    }
}

impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One way a resource departs from the base structure or its profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Departure {
    /// Where, FHIRPath-like with indexes and JSON element names: `Patient.identifier[0].system`.
    pub path: String,
    /// The rule broken.
    pub rule: Constraint,
    /// What is wrong, naming the expected value or type.
    pub message: String,
}

impl fmt::Display for Departure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: [{}] {}", self.path, self.rule, self.message)
    }
}
