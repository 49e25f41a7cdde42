//! The one door: what a caller is given of a person's record, and why.
//!
//! Every request for a person's record, whether over the FHIR API or from `concord policy
//! explain`, is an [`Ask`] that [`Door::answer`] runs through one pipeline:
//!
//! 1. **reach**: the agreements in force as they apply to the caller (`reach.rs`); 403 when
//!    none can ever give them anything;
//! 2. **plan**: which sources may be asked who the person is, and for which types;
//! 3. **resolve**: the person, by NHS number or gateway id (or the one resource read);
//! 4. **collect**: the person's resources from the planned sources, under one deadline;
//! 5. **consent**: the person's standing sharing choices, briefly cached (`consent_cache.rs`;
//!    what other instances change evicts them, `heard.rs`);
//! 6. **decide and redact**: each resource kept only when a rule permits it, as that rule
//!    lets it go;
//! 7. **facts**: what was disclosed under which agreement and rule, what was withheld, how
//!    each source answered, and the hash of the policy set that decided.
//!
//! The result, an [`Answer`], carries all of it; the audit facts come only from it
//! ([`Answer::facts`]), so an answer cannot be given without them. The HTTP layer parses,
//! calls the door and renders; it holds no planning, decision, redaction or consent logic.
//! The door knows nothing of HTTP: its refusals are typed ([`AskError`]) and turned into
//! OperationOutcomes in one place (`server::error`).

mod consent;
mod consent_cache;
mod heard;
mod reach;
pub mod settle;
mod write;

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;
use uuid::Uuid;

pub use consent::Recorded;
pub(crate) use consent_cache::ConsentCache;
pub use heard::Heard;
pub use reach::Notices;
use reach::{Asking, Reach};
pub use write::{Change, Done, PLAN_EXTENSION, Prepared, WRITABLE, WriteError, WriteRefused};

use crate::audit::{Disclosure, SourceOutcome};
use crate::auth::Principal;
use crate::federation::merge::MergedPatients;
use crate::federation::normalise::split_gateway_id;
use crate::federation::{Federation, FederationError, Person, Plan, SourceReport};
use crate::fhir::NhsNumber;
use crate::fhir::resource::{Resource, SharedResource};
use crate::fhir::search::{Filter, TypeDef};
use crate::policy::{Consent, Explanation, LivePolicies, PolicySet};
use crate::store::StoreError;

/// What a caller asks of a person's record: one variant per operation, all run by the same
/// pipeline.
#[derive(Debug, Clone, Copy)]
pub enum Ask<'a> {
    /// The person with this NHS number, as one merged Patient (`Patient?identifier=`).
    Person {
        /// Their NHS number.
        nhs: &'a NhsNumber,
    },
    /// The merged Patient of a person named by gateway id (`Patient/{uuid}`).
    Patient {
        /// The gateway id.
        id: &'a str,
    },
    /// Everything about the person of these types (`$everything`); `Patient` among them
    /// asks for the merged Patient too.
    Everything {
        /// The person's gateway id (or a source's own Patient id, `gp.123`).
        id: &'a str,
        /// The types asked for.
        types: &'a [&'static str],
    },
    /// One type about the person, keeping what matches every filter (`{type}?patient=`).
    Search {
        /// The person's gateway id (or a source's own Patient id).
        id: &'a str,
        /// The type.
        def: &'static TypeDef,
        /// Filters, all of which must match.
        filters: &'a [Filter],
    },
    /// One resource by its gateway id (`{type}/{source}.{id}`).
    Read {
        /// Its type.
        resource_type: &'static str,
        /// Its gateway id.
        id: &'a str,
    },
}

impl Ask<'_> {
    /// The types the ask may disclose.
    fn types(&self) -> Vec<&'static str> {
        match self {
            Ask::Person { .. } | Ask::Patient { .. } => vec!["Patient"],
            Ask::Everything { types, .. } => types.to_vec(),
            Ask::Search { def, .. } => vec![def.name],
            Ask::Read { resource_type, .. } => vec![resource_type],
        }
    }

    /// True when the disclosed Patient resources are answered as one merged Patient.
    fn merges_patient(&self) -> bool {
        !matches!(self, Ask::Search { .. } | Ask::Read { .. })
    }
}

/// Why the door gives nothing at all. Each becomes one OperationOutcome in `server::error`.
#[derive(Debug, thiserror::Error)]
pub enum AskError {
    /// Emergency access was asked for and no agreement gives it to the caller's role.
    #[error(
        "no data-sharing agreement in force gives emergency access to this role in this organisation"
    )]
    NoEmergencyAccess,
    /// No agreement in force can give this caller anything.
    #[error(
        "no data-sharing agreement in force lets this caller (organisation, role and purpose of use) see records"
    )]
    NoAgreement,
    /// A patient token asked about somebody else: answered as for nobody.
    #[error("no such patient")]
    NotThePatient,
    /// A consent request this caller may not make (403).
    #[error("{0}")]
    Forbidden(String),
    /// A sharing choice that cannot be recorded as sent (400).
    #[error("{0}")]
    Invalid(String),
    /// The person is not known, or not to this caller (404).
    #[error("{0} is not known")]
    NotKnown(String),
    /// A full look-up was asked for and this instance has made as many as it may this
    /// minute (429).
    #[error(transparent)]
    FullLookupsSpent(#[from] crate::federation::FullLookupsSpent),
    /// A source or the store failed.
    #[error(transparent)]
    Federation(#[from] FederationError),
}

impl From<StoreError> for AskError {
    fn from(e: StoreError) -> Self {
        AskError::Federation(FederationError::Store(e))
    }
}

/// What the door gives for one [`Ask`]: the disclosed resources, what was withheld and why,
/// the notices, how each source answered, and the audit facts.
#[derive(Debug)]
pub struct Answer {
    /// The person, when found and theirs to see; `None` looks the same whether nobody is
    /// known or the caller may not see them.
    pub person: Option<Person>,
    /// The merged Patient, when some Patient resource was disclosed and the ask merges them.
    pub patient: Option<SharedResource>,
    /// Every other resource disclosed (after the search's filters), as redacted for the caller.
    pub resources: Vec<SharedResource>,
    /// Every source that did not simply answer; the first `resolving` of them while the
    /// person was being found.
    pub reports: Vec<SourceReport>,
    resolving: usize,
    /// What the caller is told beyond the resources.
    pub notices: Notices,
    sources: Vec<SourceOutcome>,
    policy_hash: String,
}

impl Answer {
    fn nobody(policy_hash: String) -> Self {
        Answer {
            person: None,
            patient: None,
            resources: Vec::new(),
            reports: Vec::new(),
            resolving: 0,
            notices: Notices::default(),
            sources: Vec::new(),
            policy_hash,
        }
    }

    /// True when nothing at all is disclosed.
    pub fn is_empty(&self) -> bool {
        self.patient.is_none() && self.resources.is_empty()
    }

    /// The reports met while finding the person: the same sources are asked whether or not
    /// anyone holds the number, so they are all an answer that discloses nothing may name.
    pub fn resolving_reports(&self) -> &[SourceReport] {
        &self.reports[..self.resolving]
    }

    /// The audit facts of an answer that sent `sent` (`Type/id` of each resource in it; the
    /// merged Patient as `Patient/{person}`), out of what the agreements permitted.
    pub fn facts(&self, sent: &[Arc<str>]) -> Facts {
        let kept = self.sent(sent);
        let disclosed = self
            .notices
            .decisions
            .iter()
            .zip(kept)
            .filter(|(_, kept)| *kept)
            .map(|(d, _)| d.clone())
            .collect();
        self.facts_with(disclosed)
    }

    /// [`Answer::facts`] of an answer that is done with: its decisions move into the facts
    /// rather than being copied.
    pub fn into_facts(mut self, sent: &[Arc<str>]) -> Facts {
        let kept = self.sent(sent);
        let disclosed = std::mem::take(&mut self.notices.decisions)
            .into_iter()
            .zip(kept)
            .filter(|(_, kept)| *kept)
            .map(|(d, _)| d)
            .collect();
        self.facts_with(disclosed)
    }

    /// For each decision, whether its resource was sent.
    fn sent(&self, sent: &[Arc<str>]) -> Vec<bool> {
        let person = self.person.as_ref().map(|p| p.id);
        let sent: foldhash::HashSet<&str> = sent.iter().map(AsRef::as_ref).collect();
        let merged_sent = person.is_some_and(|p| sent.contains(format!("Patient/{p}").as_str()));
        self.notices
            .decisions
            .iter()
            .map(|d| {
                sent.contains(&*d.reference) || (merged_sent && d.reference.starts_with("Patient/"))
            })
            .collect()
    }

    fn facts_with(&self, disclosed: Vec<Disclosure>) -> Facts {
        Facts {
            person: self.person.as_ref().map(|p| p.id),
            sources: self.sources.clone(),
            disclosed,
            withheld: self.notices.withheld_count,
            review: None,
            policy_hash: Some(self.policy_hash.clone()),
            write: None,
        }
    }
}

/// What a request did, for its audit record.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// The person whose record it was.
    pub person: Option<Uuid>,
    /// How each source answered.
    pub sources: Vec<SourceOutcome>,
    /// What the response disclosed.
    pub disclosed: Vec<Disclosure>,
    /// How many resources were withheld.
    pub withheld: usize,
    /// Why the request is flagged for IG review, besides break-glass.
    pub review: Option<&'static str>,
    /// The policy set that decided (`None`: no decision was made; the record names the set
    /// in force when the request came in).
    pub policy_hash: Option<String>,
    /// For a write: what was written where, under which rule.
    pub write: Option<crate::audit::Written>,
}

impl Facts {
    /// The facts of a request about a person that disclosed nothing of their record.
    pub fn about(person: Uuid) -> Self {
        Facts {
            person: Some(person),
            ..Facts::default()
        }
    }
}

/// The door: sources, agreements and sharing choices, and the one pipeline that joins them.
#[derive(Debug)]
pub struct Door {
    federation: Federation,
    policies: Arc<LivePolicies>,
    consents: ConsentCache,
    /// The merged Patients of warm answers, kept for the parts they were made from.
    merged: MergedPatients,
    timeout: Duration,
}

impl Door {
    /// A door over `federation` under the live `policies`; sharing choices are kept
    /// `consent_ttl` in memory, and every ask ends within `timeout`.
    pub fn new(
        federation: Federation,
        policies: Arc<LivePolicies>,
        consent_ttl: Duration,
        timeout: Duration,
    ) -> Self {
        Door {
            federation,
            policies,
            consents: ConsentCache::new(consent_ttl),
            merged: MergedPatients::default(),
            timeout,
        }
    }

    /// Sources and store.
    pub fn federation(&self) -> &Federation {
        &self.federation
    }

    /// The agreements in force (and their reloads).
    pub fn policies(&self) -> &Arc<LivePolicies> {
        &self.policies
    }

    /// Runs `ask` for `principal` under the policy set in force now.
    pub async fn answer(&self, principal: &Principal, ask: Ask<'_>) -> Result<Answer, AskError> {
        if let Ask::Person { nhs } = ask
            && !principal.may_see_person(nhs)
        {
            // Refused before anything else: a patient token learns nothing about others.
            return Err(AskError::NotThePatient);
        }
        let set = self.policies.current();
        let Planned { reach, asking } = self.planned(&set, principal, &ask.types())?;
        let mut plan = reach.plan(&asking);
        if principal.full_lookup
            && let Some(locator) = self.federation.locator()
        {
            // A fan-out to every source: bounded per instance.
            locator.admit_full_lookup()?;
            plan.full_lookup = true;
        }
        let deadline = Instant::now() + self.timeout;
        let mut answer = Answer::nobody(set.hash.clone());
        let Found {
            person,
            mut reports,
            read,
            locator,
        } = self.find(&reach, &ask, &plan, deadline).await?;
        let Some(person) = person.filter(|p| principal.may_see_person(&p.nhs)) else {
            if let Ask::Person { .. } = ask {
                // Resolving an NHS number asks the same sources whether or not anyone holds
                // it: how each answered is about the providers, not the person.
                answer.sources = reach.source_outcomes(&asking, None, &reports);
                answer.resolving = reports.len();
                answer.reports = reports;
            }
            return Ok(answer);
        };
        answer.resolving = reports.len();
        let (resources, narrowed) = match read {
            Some(resource) => (vec![Resource::shared(resource)], false),
            None => {
                let collected = self.federation.collect(&person, &plan, deadline).await;
                reports.extend(collected.reports);
                let narrowed = !matches!(ask, Ask::Patient { .. })
                    && reach.narrowed(&asking, &self.federation, &person);
                (collected.resources, narrowed)
            }
        };
        let consent = self.consents.of(&self.federation, &person).await?;
        let (disclosed, mut notices) =
            reach.disclose(&self.federation, &person, &consent, resources);
        notices.withheld |= narrowed;
        // Said only in an answer about a person the caller may see (and rendered only in one
        // that shows them something): in one that discloses nothing it would tell whether,
        // and where, the index knows the NHS number.
        notices.locator = locator;
        answer.sources = reach.source_outcomes(&asking, Some(&person), &reports);
        let (patients, mut others): (Vec<_>, Vec<_>) = if ask.merges_patient() {
            disclosed
                .into_iter()
                .partition(|r| r.resource_type() == "Patient")
        } else {
            (Vec::new(), disclosed)
        };
        if let Ask::Search { filters, .. } = ask {
            others.retain(|r| filters.iter().all(|f| f.matches(r.value())));
        }
        answer.patient = (!patients.is_empty()).then(|| self.merged.merged(person.id, &patients));
        answer.resources = others;
        answer.reports = reports;
        answer.notices = notices;
        answer.person = Some(person);
        Ok(answer)
    }

    /// Steps 1 and 2: the agreements in `set` as they apply to `principal`, and which
    /// sources may be asked for which of the `types`. Public (hidden) only for the step
    /// benchmark (`benches/steps.rs`).
    #[doc(hidden)]
    pub fn planned<'a>(
        &self,
        set: &'a PolicySet,
        principal: &'a Principal,
        types: &[&'static str],
    ) -> Result<Planned<'a>, AskError> {
        let reach = Reach::new(set, principal)?;
        let asking = reach.asking(&self.federation, types);
        Ok(Planned { reach, asking })
    }

    /// Step 5 alone: the person's standing sharing choices, as [`Door::answer`] reads them
    /// (briefly cached). Public (hidden) only for the step benchmark (`benches/steps.rs`).
    #[doc(hidden)]
    pub async fn consent_of(&self, person: &Person) -> Result<Arc<Consent>, StoreError> {
        self.consents.of(&self.federation, person).await
    }

    /// Step 3: the person the ask names (nobody when no source knows them), with the
    /// reports of the sources asked and, for a read, the resource.
    async fn find(
        &self,
        reach: &Reach<'_>,
        ask: &Ask<'_>,
        plan: &Plan<'_>,
        deadline: Instant,
    ) -> Result<Found, AskError> {
        match *ask {
            Ask::Person { nhs } => {
                let resolution = self.federation.resolve_nhs(nhs, plan, deadline).await?;
                Ok(Found {
                    person: resolution.person,
                    reports: resolution.reports,
                    read: None,
                    locator: resolution.locator,
                })
            }
            Ask::Patient { id } | Ask::Everything { id, .. } | Ask::Search { id, .. } => {
                self.find_person(id, plan, deadline).await
            }
            Ask::Read { resource_type, id } => {
                // A read no rule could permit is not even sent to the source.
                if !reach.may_read(&self.federation, resource_type, id) {
                    return Ok(Found::nobody());
                }
                let read = self
                    .federation
                    .read(resource_type, id, plan, deadline)
                    .await?;
                Ok(match read {
                    Some((resource, person)) => Found {
                        person: Some(person),
                        reports: Vec::new(),
                        read: Some(resource),
                        locator: None,
                    },
                    None => Found::nobody(),
                })
            }
        }
    }

    /// Resolves a gateway patient id to a person.
    async fn find_person(
        &self,
        id: &str,
        plan: &Plan<'_>,
        deadline: Instant,
    ) -> Result<Found, AskError> {
        let Ok(uuid) = Uuid::parse_str(id) else {
            // A source's own Patient id (`gp.123`, as in the merged Patient's links) names the
            // person too, when the plan may ask that source.
            let asked =
                split_gateway_id(id).is_some_and(|(source, _)| plan.identify.contains(source));
            if !asked {
                return Ok(Found::nobody());
            }
            let read = self.federation.read("Patient", id, plan, deadline).await?;
            return Ok(Found {
                person: read.map(|(_, person)| person),
                reports: Vec::new(),
                read: None,
                locator: None,
            });
        };
        Ok(
            match self.federation.resolve_id(uuid, plan, deadline).await? {
                Some(r) => Found {
                    person: r.person,
                    reports: r.reports,
                    read: None,
                    locator: r.locator,
                },
                None => Found::nobody(),
            },
        )
    }

    /// `concord policy explain`: for every resource any source holds about the person with
    /// `nhs`, the decision the door would make for `principal` today and why. Asks as an
    /// operator (every source, every type), so that what is withheld is seen too.
    /// `set` is the policy set to decide by (normally [`LivePolicies::current`]).
    pub async fn explain<'s>(
        &self,
        principal: &Principal,
        nhs: &NhsNumber,
        set: &'s PolicySet,
    ) -> Result<Explained<'s>, AskError> {
        let asking = Asking::everything(&self.federation);
        let plan = reach::plan_of(set, &asking);
        let deadline = Instant::now() + self.timeout;
        let resolution = self.federation.resolve_nhs(nhs, &plan, deadline).await?;
        let mut explained = Explained {
            person: None,
            resolving: resolution.reports,
            collecting: Vec::new(),
            decisions: Vec::new(),
        };
        let Some(person) = resolution.person else {
            return Ok(explained);
        };
        if principal.may_see_person(&person.nhs) {
            let collected = self.federation.collect(&person, &plan, deadline).await;
            explained.collecting = collected.reports;
            let consent = self.consents.of(&self.federation, &person).await?;
            explained.decisions = reach::explain_all(
                set,
                principal,
                &self.federation,
                &person,
                &consent,
                &collected.resources,
            );
        }
        explained.person = Some(person);
        Ok(explained)
    }
}

impl Door {
    /// `concord policy explain --write`: whether `principal` may `interaction` a resource of
    /// `resource_type` about the person with `nhs` in the source `source_id`, and why.
    /// `None` when no source knows the person or the token is a patient token for somebody
    /// else; [`AskError::NotKnown`] for a source that is not configured.
    pub async fn explain_write<'s>(
        &self,
        principal: &Principal,
        nhs: &NhsNumber,
        set: &'s PolicySet,
        write: (crate::policy::Interaction, &str, &str),
    ) -> Result<Option<Explanation<'s>>, AskError> {
        let (interaction, resource_type, source_id) = write;
        let source = self
            .federation
            .source(source_id)
            .ok_or_else(|| AskError::NotKnown(format!("source `{source_id}`")))?;
        let asking = Asking::everything(&self.federation);
        let plan = reach::plan_of(set, &asking);
        let deadline = Instant::now() + self.timeout;
        let resolution = self.federation.resolve_nhs(nhs, &plan, deadline).await?;
        let Some(person) = resolution
            .person
            .filter(|p| principal.may_see_person(&p.nhs))
        else {
            return Ok(None);
        };
        let consent = self.consents.of(&self.federation, &person).await?;
        Ok(Some(reach::explain_write(
            set,
            principal,
            &self.federation,
            &person,
            &consent,
            (interaction, resource_type, &source.info().ods),
        )))
    }
}

/// Steps 1 and 2 of [`Door::answer`] as made for one caller: the agreements as they apply
/// to them and which sources may be asked for what. [`Door::answer`] makes one per ask; it
/// is public (hidden) only so that the step benchmark (`benches/steps.rs`) can time the plan,
/// and decide and redact, on their own: not part of the gateway's API.
#[doc(hidden)]
pub struct Planned<'a> {
    reach: Reach<'a>,
    asking: Asking,
}

impl Planned<'_> {
    /// The plan in the federation's terms (for [`Federation::resolve_id`] and
    /// [`Federation::collect`]).
    pub fn plan(&self) -> Plan<'_> {
        self.reach.plan(&self.asking)
    }

    /// Step 6 alone: the resources some rule permits, each as that rule lets it go, as
    /// [`Door::answer`] decides and redacts them.
    pub fn disclose(
        &self,
        door: &Door,
        person: &Person,
        consent: &Consent,
        resources: Vec<SharedResource>,
    ) -> (Vec<SharedResource>, Notices) {
        self.reach
            .disclose(&door.federation, person, consent, resources)
    }
}

/// The person an ask names, as found.
struct Found {
    /// `None`: no source knows them.
    person: Option<Person>,
    /// Sources that did not simply answer.
    reports: Vec<SourceReport>,
    /// The resource read, for [`Ask::Read`].
    read: Option<Value>,
    /// What the record locator did, when there is something to say.
    locator: Option<crate::federation::LocatorNote>,
}

impl Found {
    fn nobody() -> Self {
        Found {
            person: None,
            reports: Vec::new(),
            read: None,
            locator: None,
        }
    }
}

/// What `policy explain` finds: for each resource, the decision and why.
#[derive(Debug)]
pub struct Explained<'s> {
    /// The person, when some source knows them.
    pub person: Option<Person>,
    /// Sources that could not be asked who the person is.
    pub resolving: Vec<SourceReport>,
    /// Sources that did not answer fully when their records were fetched.
    pub collecting: Vec<SourceReport>,
    /// `Type/id` and the decision, per resource; empty when the principal is a patient token
    /// for somebody else.
    pub decisions: Vec<(String, Explanation<'s>)>,
}
