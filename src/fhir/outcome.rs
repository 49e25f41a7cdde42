//! OperationOutcome: how FHIR says what went wrong.

use serde_json::{Value, json};

/// How bad an issue is (`OperationOutcome.issue.severity`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The request could not be done.
    Error,
    /// Done, but something is missing or doubtful.
    Warning,
    /// For information only.
    Information,
}

impl Severity {
    fn code(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Information => "information",
        }
    }
}

/// One issue of an OperationOutcome.
#[derive(Debug, Clone)]
pub struct Issue {
    /// How bad it is.
    pub severity: Severity,
    /// The FHIR `IssueType` code, e.g. `invalid`, `not-found`, `timeout`, `transient`.
    pub code: &'static str,
    /// Human-readable detail. Must never carry personal data or upstream error text.
    pub diagnostics: String,
    /// Element or parameter the issue is about (`OperationOutcome.issue.expression`).
    pub expression: Option<String>,
}

impl Issue {
    /// An issue with no expression.
    pub fn new(severity: Severity, code: &'static str, diagnostics: impl Into<String>) -> Self {
        Self {
            severity,
            code,
            diagnostics: diagnostics.into(),
            expression: None,
        }
    }

    /// Names the element or search parameter the issue is about.
    pub fn at(mut self, expression: impl Into<String>) -> Self {
        self.expression = Some(expression.into());
        self
    }

    fn to_json(&self) -> Value {
        let mut issue = json!({
            "severity": self.severity.code(),
            "code": self.code,
            "diagnostics": self.diagnostics,
        });
        if let (Some(expr), Some(obj)) = (&self.expression, issue.as_object_mut()) {
            obj.insert("expression".into(), json!([expr]));
        }
        issue
    }
}

/// An OperationOutcome resource with the given issues.
pub fn operation_outcome(issues: &[Issue]) -> Value {
    json!({
        "resourceType": "OperationOutcome",
        "issue": issues.iter().map(Issue::to_json).collect::<Vec<_>>(),
    })
}
