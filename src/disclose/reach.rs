//! What one caller may see: the plan made from the agreements before any source is asked,
//! and the decision on every resource the sources return.

use std::collections::{HashMap, HashSet};

use super::AskError;
use crate::auth::Principal;
use crate::federation::normalise::split_gateway_id;
use crate::federation::{Federation, Person, Plan};
use crate::fhir::resource::{Resource, SharedResource};
use crate::policy::engine::{Acting, Caller, CallerPolicy, Consent, Item, Permit};
use crate::policy::redact::{ACT_REASON, OBSERVATION_VALUE, add_security, redact};
use crate::policy::{PolicySet, labels_in_meta};

/// The agreements as they apply to one caller.
pub(crate) struct Reach<'p> {
    set: &'p PolicySet,
    policy: CallerPolicy<'p>,
    caller_org: Option<&'p str>,
}

/// The caller as agreements see it.
pub(crate) fn caller(principal: &Principal) -> Caller<'_> {
    Caller {
        org: principal.org.as_deref(),
        role: principal.role.as_deref(),
        purpose: &principal.purpose_of_use,
        emergency: principal.break_glass.is_some(),
        acting: match &principal.patient {
            None => Acting::Staff,
            Some(p) => match &p.acting_for_relationship {
                None => Acting::Person,
                Some(rel) => Acting::Carer(rel),
            },
        },
    }
}

/// What a request was given, beyond the resources: said in the answer, and recorded.
#[derive(Debug, Clone, Default)]
pub struct Notices {
    /// Something was withheld, or not asked for, under the agreements.
    pub withheld: bool,
    /// Something was disclosed only under emergency access.
    pub emergency: bool,
    /// Each permitted resource with its agreement and rule (before searching and paging).
    pub decisions: Vec<crate::audit::Disclosure>,
    /// How many resources were withheld.
    pub withheld_count: usize,
    /// What the record locator did: the sources it ruled out (and how fresh their index
    /// entries were), its fallback, a full look-up.
    pub locator: Option<crate::federation::LocatorNote>,
}

/// Which sources a request may ask, and for which types.
pub(crate) struct Asking {
    identify: HashSet<String>,
    types: HashMap<String, Vec<&'static str>>,
    requested: Vec<&'static str>,
}

impl Asking {
    /// Every source, for every type: how an operator asks (`policy explain`), so that what the
    /// agreements withhold is fetched too and can be explained.
    pub(crate) fn everything(federation: &Federation) -> Self {
        let mut requested: Vec<&'static str> =
            crate::fhir::search::TYPES.iter().map(|t| t.name).collect();
        requested.push("Patient");
        let identify: HashSet<String> = federation
            .sources()
            .iter()
            .map(|s| s.info().id.clone())
            .collect();
        let types = identify
            .iter()
            .map(|id| (id.clone(), requested.clone()))
            .collect();
        Asking {
            identify,
            types,
            requested,
        }
    }
}

/// `asking` in the federation's terms, labelling what is fetched with `set`'s label map.
pub(crate) fn plan_of<'a>(set: &'a PolicySet, asking: &'a Asking) -> Plan<'a> {
    Plan {
        identify: &asking.identify,
        types: &asking.types,
        labels: &set.labels,
        labels_key: set.labels_key(),
        full_lookup: false,
    }
}

impl<'p> Reach<'p> {
    /// The agreements in `set` as they apply to `principal` today. 403 when none can ever
    /// disclose anything to this caller, or when emergency access was asked for and no
    /// agreement gives it to the caller's role.
    pub(crate) fn new(set: &'p PolicySet, principal: &'p Principal) -> Result<Self, AskError> {
        let caller = caller(principal);
        let policy = set.for_caller(&caller, crate::policy::live::today());
        if caller.emergency && !policy.has_emergency() {
            return Err(AskError::NoEmergencyAccess);
        }
        if policy.is_empty() {
            return Err(AskError::NoAgreement);
        }
        Ok(Self {
            set,
            policy,
            caller_org: caller.org,
        })
    }

    /// The plan for `requested` types: each source is asked only for the types some rule could
    /// permit from its organisation, and asked who the person is only when it could disclose
    /// something or belongs to the caller's own organisation (which shows a care
    /// relationship).
    pub(crate) fn asking(&self, federation: &Federation, requested: &[&'static str]) -> Asking {
        let mut identify = HashSet::new();
        let mut types = HashMap::new();
        for source in federation.sources() {
            let info = source.info();
            let allowed: Vec<&'static str> = requested
                .iter()
                .copied()
                .filter(|t| self.policy.may_disclose(&info.ods, t))
                .collect();
            if self.policy.may_disclose_any(&info.ods) || self.caller_org == Some(&info.ods) {
                identify.insert(info.id.clone());
            }
            if !allowed.is_empty() {
                types.insert(info.id.clone(), allowed);
            }
        }
        Asking {
            identify,
            types,
            requested: requested.to_vec(),
        }
    }

    /// How each source that holds the person and was asked answered, for the audit record.
    pub(crate) fn source_outcomes(
        &self,
        asking: &Asking,
        person: Option<&Person>,
        reports: &[crate::federation::SourceReport],
    ) -> Vec<crate::audit::SourceOutcome> {
        use crate::federation::Problem;
        let mut out: Vec<crate::audit::SourceOutcome> = Vec::new();
        let mut ids: Vec<&String> = asking.identify.iter().collect();
        ids.sort();
        for id in ids {
            let knows = person.is_some_and(|p| p.links.get(id).is_some_and(|l| !l.is_empty()));
            let problem = reports
                .iter()
                .find(|r| &r.source.id == id)
                .map(|r| match r.problem {
                    Problem::Failed(crate::sources::SourceError::Timeout)
                    | Problem::DeadlineExceeded => "timeout",
                    Problem::Failed(_) => "failed",
                    Problem::Truncated => "truncated",
                    Problem::Dropped(_) => "dropped",
                });
            let outcome = match (problem, knows, asking.types.contains_key(id)) {
                (Some(p), _, _) => p,
                (None, true, true) => "ok",
                (None, true, false) => "identified",
                (None, false, _) => "not-known",
            };
            out.push(crate::audit::SourceOutcome {
                source: id.clone(),
                outcome: outcome.to_owned(),
            });
        }
        out
    }

    /// The plan in the federation's terms.
    pub(crate) fn plan<'a>(&'a self, asking: &'a Asking) -> Plan<'a> {
        plan_of(self.set, asking)
    }

    /// True when the plan left out a type asked for from a source that knows the person and
    /// may hold that type: the answer may then be incomplete under the agreements.
    pub(crate) fn narrowed(
        &self,
        asking: &Asking,
        federation: &Federation,
        person: &Person,
    ) -> bool {
        federation.sources().iter().any(|s| {
            let id = &s.info().id;
            let knows = person.links.get(id).is_some_and(|l| !l.is_empty());
            let asked = asking.types.get(id).map_or(&[][..], Vec::as_slice);
            knows
                && asking
                    .requested
                    .iter()
                    .any(|t| !asked.contains(t) && s.may_hold(t))
        })
    }

    /// True when some rule could permit `resource_type` from the source of `gateway_id`: a read
    /// of anything else is not even sent to the source.
    pub(crate) fn may_read(
        &self,
        federation: &Federation,
        resource_type: &str,
        gateway_id: &str,
    ) -> bool {
        split_gateway_id(gateway_id)
            .and_then(|(source, _)| federation.source(source))
            .is_some_and(|s| self.policy.may_disclose(&s.info().ods, resource_type))
    }

    /// True when the person is known to a source of the caller's own organisation.
    fn care_relationship(&self, federation: &Federation, person: &Person) -> bool {
        care_relationship(federation, person, self.caller_org)
    }

    /// The decision on one resource about `person`.
    fn decide(
        &self,
        federation: &Federation,
        resource: &Resource,
        care_relationship: bool,
        consent: &Consent,
    ) -> Option<Permit<'p>> {
        let labels = labels_of(resource);
        let item = item(federation, resource, &labels, care_relationship, consent)?;
        self.policy.decide(&item)
    }

    /// Keeps the resources some rule permits, each with that rule's redactions applied; says
    /// whether anything was withheld and whether emergency access was used.
    pub(crate) fn disclose(
        &self,
        federation: &Federation,
        person: &Person,
        consent: &Consent,
        resources: Vec<SharedResource>,
    ) -> (Vec<SharedResource>, Notices) {
        let care = self.care_relationship(federation, person);
        let mut notices = Notices::default();
        let mut kept = Vec::with_capacity(resources.len());
        for resource in resources {
            match self.decide(federation, &resource, care, consent) {
                Some(permit) => {
                    notices.emergency |= permit.emergency;
                    notices.decisions.push(crate::audit::Disclosure {
                        reference: resource.shared_reference().clone(),
                        agreement: permit.agreement.id.clone(),
                        rule: permit.rule.id.clone(),
                        emergency: permit.emergency,
                    });
                    kept.push(apply(resource, &permit));
                }
                None => {
                    notices.withheld = true;
                    notices.withheld_count += 1;
                }
            }
        }
        (kept, notices)
    }
}

/// The labels in a resource's `meta.security` ([`labels_in_meta`]), read once per resource.
fn labels_of(resource: &Resource) -> Vec<&str> {
    resource
        .labels(|value| labels_in_meta(value).map(Box::from).collect())
        .iter()
        .map(AsRef::as_ref)
        .collect()
}

/// True when the person is known to a source of `org` (a record of them there).
fn care_relationship(federation: &Federation, person: &Person, org: Option<&str>) -> bool {
    let Some(org) = org else {
        return false;
    };
    person.links.iter().any(|(source, ids)| {
        !ids.is_empty()
            && federation
                .source(source)
                .is_some_and(|s| s.info().ods == org)
    })
}

/// A normalised resource as agreements see it: its provider (from its gateway id), type and
/// labels (from `meta.security`). `None` for a resource of no configured source.
fn item<'a>(
    federation: &'a Federation,
    resource: &'a Resource,
    labels: &'a [&'a str],
    care_relationship: bool,
    consent: &'a Consent,
) -> Option<Item<'a>> {
    let source = federation.source(resource.gateway_source()?)?;
    Some(Item {
        source_org: &source.info().ods,
        resource_type: resource.resource_type(),
        labels,
        resource: Some(resource.value()),
        care_relationship,
        consent,
    })
}

/// `concord policy explain`: for each resource, the decision the gateway would make for this
/// principal today and why, with the same code the gateway decides with.
pub(crate) fn explain_all<'p>(
    set: &'p PolicySet,
    principal: &Principal,
    federation: &Federation,
    person: &Person,
    consent: &Consent,
    resources: &[SharedResource],
) -> Vec<(String, crate::policy::Explanation<'p>)> {
    let caller = caller(principal);
    let care = care_relationship(federation, person, caller.org);
    let today = crate::policy::live::today();
    resources
        .iter()
        .filter_map(|r| {
            let labels = labels_of(r);
            let item = item(federation, r, &labels, care, consent)?;
            Some((
                r.reference().to_owned(),
                crate::policy::engine::explain(set, &caller, &item, today),
            ))
        })
        .collect()
}

/// `concord policy explain --write`: whether `principal` may `interaction` (create, update) a
/// resource of `resource_type` about `person` in a source of `source_org`, and why: decided
/// like a disclosure of it by that organisation, under the rules that name the interaction.
/// Without the resource itself, rules with a `where` condition do not permit.
pub(crate) fn explain_write<'p>(
    set: &'p PolicySet,
    principal: &Principal,
    federation: &Federation,
    person: &Person,
    consent: &Consent,
    write: (crate::policy::Interaction, &str, &str),
) -> crate::policy::Explanation<'p> {
    let (interaction, resource_type, source_org) = write;
    let caller = caller(principal);
    let item = Item {
        source_org,
        resource_type,
        labels: &[],
        resource: None,
        care_relationship: care_relationship(federation, person, caller.org),
        consent,
    };
    crate::policy::engine::explain_for(
        set,
        &caller,
        &item,
        &[interaction],
        crate::policy::live::today(),
    )
}

/// The resource as the permitting rule lets it go: redacted paths removed and marked
/// `REDACTED`, and marked `ETREAT` when given under emergency access. Unchanged resources are
/// not copied.
fn apply(resource: SharedResource, permit: &Permit<'_>) -> SharedResource {
    if permit.rule.redact.is_empty() && !permit.emergency {
        return resource;
    }
    let mut value = resource.value().clone();
    let removed = redact(&mut value, &permit.rule.redact);
    if let Some(obj) = value.as_object_mut() {
        if removed {
            add_security(obj, OBSERVATION_VALUE, "REDACTED");
        }
        if permit.emergency {
            add_security(obj, ACT_REASON, crate::policy::engine::EMERGENCY);
        }
    }
    Resource::flagged(value, resource.problems().to_vec())
}
