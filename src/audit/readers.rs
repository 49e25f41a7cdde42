//! Who reads which audit records: one rule for the AuditEvent API and the IG console.
//!
//! - A reader whose role is one of the region roles (`[audit] region_roles`) reads every
//!   record.
//! - Anyone else reads the records of accesses made by their own organisation's staff (the
//!   record's organisation is theirs) and of accesses to the data their organisation
//!   discloses (a resource disclosed from a source the config says their organisation
//!   controls). A reader with no organisation reads none.
//!
//! A search asks the store for exactly that ([`AuditScope`], over the search projection's
//! indexed columns and side tables); one record read by its id is checked against its body
//! with [`Readers::may_read`], by the same rule.

use super::{Body, disclosing_source};
use crate::store::AuditScope;

/// The region roles, and which organisation controls each source's data.
#[derive(Debug, Clone, Default)]
pub struct Readers {
    region_roles: Vec<String>,
    /// (source id, the ODS code of the organisation that controls its data).
    sources: Vec<(String, String)>,
}

impl Readers {
    /// The rule for these region roles and sources (`(source id, organisation)`, as the
    /// config's `[[source]]` tables say).
    pub fn new(region_roles: Vec<String>, sources: Vec<(String, String)>) -> Readers {
        Readers {
            region_roles,
            sources,
        }
    }

    /// True when `role` reads every record.
    pub fn sees_everything(&self, role: Option<&str>) -> bool {
        role.is_some_and(|role| self.region_roles.iter().any(|r| r == role))
    }

    /// The records a reader with `role` at `org` may read: `None` for every record.
    pub fn scope(&self, role: Option<&str>, org: Option<&str>) -> Option<AuditScope> {
        if self.sees_everything(role) {
            return None;
        }
        let Some(org) = org else {
            return Some(AuditScope::default());
        };
        Some(AuditScope {
            orgs: vec![org.to_owned()],
            sources: self
                .sources
                .iter()
                .filter(|(_, controller)| controller == org)
                .map(|(source, _)| source.clone())
                .collect(),
        })
    }

    /// True when a reader with `role` at `org` may read the record `body`.
    pub fn may_read(&self, role: Option<&str>, org: Option<&str>, body: &Body) -> bool {
        let Some(scope) = self.scope(role, org) else {
            return true;
        };
        let by_staff = body.org.as_ref().is_some_and(|o| scope.orgs.contains(o));
        by_staff
            || body.disclosed.iter().any(|d| {
                disclosing_source(&d.reference)
                    .is_some_and(|source| scope.sources.iter().any(|s| s == source))
            })
    }
}

#[cfg(test)]
mod tests;
