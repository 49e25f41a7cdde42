//! Admitting a resource a source sent: screening it against the profiles, making it the
//! gateway's ([`super::normalise`]), tagging it when it does not conform, and counting it when
//! it is dropped. Both the search path ([`Federation::collect`]) and the single read
//! ([`Federation::read`]) pass every resource through [`Federation::admit`].

use std::collections::HashSet;
use std::sync::{Arc, LazyLock};

use serde_json::Value;

use super::normalise::{self, Fault, Origin};
use super::{Federation, Person, Problem, SourceReport};
use crate::fhir::conformance::Departure;
use crate::policy::LabelMap;
use crate::sources::SourceInfo;

/// What the profiles say of a resource as its source sent it.
enum Screening {
    /// It conforms, or was not checked.
    Conforms,
    /// Pass it on, tagged, with these problems.
    Flag(Vec<Departure>),
    /// Withhold it.
    Drop,
}

/// No patient ids: a person not linked in a source.
static NO_IDS: LazyLock<HashSet<String>> = LazyLock::new(HashSet::new);

/// Where a source's resources for `person` come from, for normalising them.
pub(super) fn origin<'a>(
    source: &'a SourceInfo,
    person: &'a Person,
    labels: &'a LabelMap,
    peers: &'a [Arc<dyn crate::sources::Source>],
) -> Origin<'a> {
    Origin {
        source,
        person_id: person.id,
        nhs_number: person.nhs.as_str(),
        local_patient_ids: person.links.get(&source.id).unwrap_or(&NO_IDS),
        labels,
        peers,
    }
}

impl Federation {
    /// Checks a resource as its source sent it, as the source's `conformance` says. A flagged
    /// resource is counted here; a dropped one is counted by [`Federation::admit`].
    fn screen(&self, info: &SourceInfo, resource: &Value) -> Screening {
        use crate::config::Conformance;
        let Some(profiles) = self
            .profiles
            .as_ref()
            .filter(|_| info.conformance != Conformance::Off)
        else {
            return Screening::Conforms;
        };
        let problems = profiles.check(resource);
        self.metrics
            .conformance_checked(&info.id, problems.is_empty());
        if problems.is_empty() {
            return Screening::Conforms;
        }
        match info.conformance {
            // Counted with the other dropped resources (`Fault::Nonconformant`).
            Conformance::Drop => Screening::Drop,
            _ => {
                self.metrics
                    .source_fault(&info.id, Fault::Nonconformant.kind(), 1);
                Screening::Flag(problems)
            }
        }
    }

    /// Makes a resource from `origin.source` the gateway's: screens it against the profiles,
    /// normalises it, and tags it when it does not conform. Returns it with its profile
    /// problems (none when it conforms), or why it was dropped, having counted the drop.
    pub(super) fn admit(
        &self,
        resource: Arc<Value>,
        origin: &Origin<'_>,
    ) -> Result<(Value, Vec<Departure>), Fault> {
        let admitted = match self.screen(origin.source, &resource) {
            Screening::Drop => Err(Fault::Nonconformant),
            Screening::Conforms => normalise::normalise(resource, origin).map(|r| (r, Vec::new())),
            Screening::Flag(problems) => normalise::normalise(resource, origin).map(|mut r| {
                tag_nonconformant(&mut r);
                (r, problems)
            }),
        };
        if let Err(fault) = admitted {
            self.count_dropped(origin.source, fault);
        }
        admitted
    }

    /// Counts one resource a source sent that was not passed on.
    pub(super) fn count_dropped(&self, info: &SourceInfo, fault: Fault) {
        self.metrics.source_fault(&info.id, fault.kind(), 1);
    }

    /// Reports the resources a source sent that were dropped (already counted), when any was
    /// a fault: a type the gateway does not serve is left out without a report.
    pub(super) fn report_dropped(
        &self,
        info: &SourceInfo,
        dropped: &[Fault],
        reports: &mut Vec<SourceReport>,
    ) {
        let faults = dropped.iter().filter(|f| **f != Fault::Unserved).count();
        if faults == 0 {
            return;
        }
        tracing::warn!(source.id = %info.id, dropped = faults, "source returned resources that are not about the person asked for, invalid, or (conformance = drop) not conforming to their profiles; dropped");
        reports.push(SourceReport {
            source: info.clone(),
            problem: Problem::Dropped(faults),
        });
    }
}

/// Marks a resource that does not conform to its profile (`meta.tag`).
fn tag_nonconformant(resource: &mut Value) {
    if let Some(obj) = resource.as_object_mut() {
        normalise::add_tag(
            obj,
            serde_json::json!({
                "system": super::NONCONFORMANT_SYSTEM,
                "code": "nonconformant",
                "display": "Does not conform to its profile",
            }),
        );
    }
}
