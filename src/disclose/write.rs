//! Writes through the door (issue 18): a CarePlan, Goal or Flag created or updated by the
//! care team or the person, routed to the source that owns it, under the write rules of an
//! agreement, checked against its profile, with its references in the target source's ids.
//!
//! A write is two steps, so that its intent can be recorded durably between them:
//! [`Door::prepare_write`] decides everything and sends nothing; [`Door::commit_write`]
//! sends it. Each gives the audit facts of where it got to.
//!
//! **Where a write goes.** An update goes to the source that holds the resource (its gateway
//! id is `{source}.{id}`). A new resource goes, in this order:
//! 1. to the source of the plan it belongs to: a CarePlan's first `basedOn` or `partOf`
//!    reference to a CarePlan, or a Goal's or Flag's [`PLAN_EXTENSION`] (a reference to the
//!    CarePlan it belongs to); so the plan's references resolve where it lives. When that
//!    source does not take writes of the type, the write is refused (never put elsewhere);
//! 2. for the person or a carer, to the source the first patient-access rule that could
//!    permit the create names (`write_to`);
//! 3. for staff, to the first source of the author's own organisation that takes writes of
//!    the type;
//! 4. to the source the config names (`write_default = true`).

use std::sync::Arc;

use serde_json::{Map, Value};
use tokio::time::Instant;
use uuid::Uuid;

use super::Door;
use super::Facts;
use super::reach::{Asking, caller, plan_of};
use crate::audit::{SourceOutcome, WRITE_INTENT, WRITE_OUTCOME, Written};
use crate::auth::Principal;
use crate::federation::normalise::{
    contributor_tag, gateway_id, has_contributor_tag, split_gateway_id,
};
use crate::federation::{FederationError, Person};
use crate::fhir::condition::Condition;
use crate::fhir::reference::parse_relative;
use crate::policy::Interaction;
use crate::policy::engine::Item;
use crate::sources::{Source, SourceWrite, WriteFailure};

mod body;
use body::{
    check_shape, conditional, map_references, mark_theirs, name_author, plan_reference,
    prepare_meta, refuse_unless_accepts, subject_person, unprocessable,
};

/// The extension by which a new Goal or Flag names the CarePlan it belongs to
/// (`valueReference`), so that it is written to the source that holds that plan.
pub const PLAN_EXTENSION: &str = "https://fhir.concord.health/StructureDefinition/care-plan";

/// The types that can be written.
pub const WRITABLE: &[&str] = crate::sources::store::HELD_TYPES;

/// What is written.
#[derive(Debug, Clone, Copy)]
pub enum Change<'a> {
    /// `POST /fhir/{type}`, with `If-None-Exist` when the request had one.
    Create {
        /// The conditional create's search.
        if_none_exist: Option<&'a Condition>,
    },
    /// `PUT /fhir/{type}/{id}` with `If-Match`.
    Update {
        /// The resource's gateway id.
        id: &'a str,
        /// The version the caller read (the `If-Match` value without `W/"…"`); `None` when
        /// the request had no `If-Match`.
        if_match: Option<&'a str>,
    },
}

impl Change<'_> {
    fn interaction(self) -> Interaction {
        match self {
            Change::Create { .. } => Interaction::Create,
            Change::Update { .. } => Interaction::Update,
        }
    }

    fn action(self) -> &'static str {
        match self {
            Change::Create { .. } => "C",
            Change::Update { .. } => "U",
        }
    }
}

/// Why a write was not made. Each becomes one OperationOutcome in `server::error`.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The body is not a resource that can be written here (400).
    #[error("{0}")]
    Invalid(String),
    /// An update without `If-Match` (428).
    #[error(
        "an update needs If-Match with the version you read (ETag or meta.versionId), so that no change is overwritten unseen"
    )]
    PreconditionRequired,
    /// The resource is not at the version the caller read: nothing was written (412).
    #[error(
        "the resource has changed since it was read (If-Match does not match its version); nothing was written: read it again and reapply your change"
    )]
    Conflict,
    /// The body does not conform to its profile, or names what the target source cannot
    /// resolve (422).
    #[error("{summary}")]
    Unprocessable {
        /// One line.
        summary: String,
        /// Each problem.
        problems: Vec<String>,
    },
    /// The target cannot take this write (405).
    #[error("{0}")]
    NotAllowed(String),
    /// A conditional create routed to a source that does not honour `If-None-Exist` (400):
    /// nothing was written, rather than a resource created regardless.
    #[error(
        "{source_name} ({source_id}) does not honour conditional creates (If-None-Exist); nothing was written"
    )]
    NotConditional {
        /// The source.
        source_id: String,
        /// Its name.
        source_name: String,
    },
    /// A conditional create whose search found more than one match (412): nothing written.
    #[error(
        "more than one {0} matches If-None-Exist; nothing was written: make the search name one"
    )]
    Ambiguous(&'static str),
    /// No agreement permits it, or the token may not write about this person (403).
    #[error("{0}")]
    Forbidden(String),
    /// The resource to update is not known, or not to this caller (404).
    #[error("{0} is not known")]
    NotKnown(String),
    /// The source refused the write (422, with what it said).
    #[error("{source_name} ({source_id}) refused the write (HTTP {status})")]
    Refused {
        /// The source.
        source_id: String,
        /// Its name.
        source_name: String,
        /// What it answered.
        status: u16,
        /// What it said.
        diagnostics: Option<String>,
    },
    /// The profiles are not loaded: nothing can be checked, so nothing is written (500).
    #[error("the profiles are not loaded; writes cannot be checked")]
    NoProfiles,
    /// A source or the store failed.
    #[error(transparent)]
    Federation(#[from] FederationError),
}

impl From<crate::store::StoreError> for WriteError {
    fn from(e: crate::store::StoreError) -> Self {
        WriteError::Federation(FederationError::Store(e))
    }
}

impl From<super::AskError> for WriteError {
    fn from(e: super::AskError) -> Self {
        match e {
            super::AskError::Federation(f) => WriteError::Federation(f),
            other => WriteError::Forbidden(other.to_string()),
        }
    }
}

/// A write refused, with the facts of how far it got (for its audit record).
#[derive(Debug)]
pub struct WriteRefused {
    /// Why.
    pub error: WriteError,
    /// What the audit record says.
    pub facts: Facts,
}

/// A write decided and ready to send: nothing has left the gateway yet.
#[derive(Debug)]
pub struct Prepared {
    source: Arc<dyn Source>,
    resource_type: &'static str,
    change_action: &'static str,
    local_id: Option<String>,
    if_match: Option<String>,
    /// A conditional create's search, in the source's ids.
    if_none_exist: Option<Vec<(String, String)>>,
    /// What is sent, in the source's ids.
    bytes: Vec<u8>,
    body: Value,
    /// What the caller sent, in gateway ids (the answer's body).
    gateway_body: Value,
    person: Uuid,
    facts: Facts,
}

impl Prepared {
    /// The facts of the intent: recorded durably before [`Door::commit_write`].
    pub fn intent(&self) -> Facts {
        self.facts.clone()
    }
}

/// A write the source took.
#[derive(Debug)]
pub struct Done {
    /// The resource as written, in gateway ids, with its new id and version.
    pub resource: Value,
    /// Its gateway id.
    pub id: String,
    /// Its new version, when the source said.
    pub version: Option<String>,
    /// True when a conditional create found its one match: nothing was written, and `id`
    /// and `version` are the match's (`resource` is not it: it is not disclosed by a write).
    pub existed: bool,
    /// The audit facts of the outcome.
    pub facts: Facts,
}

/// SHA-256 of `bytes`, lower-case hex.
fn sha256(bytes: &[u8]) -> String {
    crate::hex(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref())
}

impl Door {
    /// Decides a write of `body` (a `resource_type`) by `principal`: the body's shape, the
    /// profile, the person, the target source, the agreements, and the references in the
    /// target's ids. Sends nothing.
    pub async fn prepare_write(
        &self,
        principal: &Principal,
        resource_type: &'static str,
        change: Change<'_>,
        body: Value,
    ) -> Result<Prepared, WriteRefused> {
        let set = self.policies.current();
        let mut facts = Facts {
            policy_hash: Some(set.hash.clone()),
            write: Some(Written {
                stage: WRITE_OUTCOME.to_owned(),
                action: change.action().to_owned(),
                source: None,
                resource: match change {
                    Change::Create { .. } => None,
                    Change::Update { id, .. } => Some(format!("{resource_type}/{id}")),
                },
                version: None,
                sha256: None,
                agreement: None,
                rule: None,
                read_version: None,
            }),
            ..Facts::default()
        };
        match self
            .decide_write(principal, resource_type, change, body, &set, &mut facts)
            .await
        {
            Ok(prepared) => Ok(prepared),
            Err(error) => Err(WriteRefused { error, facts }),
        }
    }

    async fn decide_write(
        &self,
        principal: &Principal,
        resource_type: &'static str,
        change: Change<'_>,
        mut body: Value,
        set: &crate::policy::PolicySet,
        facts: &mut Facts,
    ) -> Result<Prepared, WriteError> {
        check_shape(&body, resource_type, change)?;
        let subject = subject_person(&body)?;
        let asking = Asking::everything(&self.federation);
        let plan = plan_of(set, &asking);
        let deadline = Instant::now() + self.timeout;
        let person = self
            .federation
            .resolve_id(subject, &plan, deadline)
            .await?
            .and_then(|r| r.person)
            .ok_or_else(|| unprocessable("`subject` names a person the gateway does not know"))?;
        facts.person = Some(person.id);
        if !principal.may_see_person(&person.nhs) {
            return Err(WriteError::Forbidden(
                "a patient token writes only to its own person's record".into(),
            ));
        }
        // Checked before any source sees the write: a body that does not conform never leaves.
        let profiles = self.federation.profiles().ok_or(WriteError::NoProfiles)?;
        let problems: Vec<String> = profiles
            .check(&body)
            .iter()
            .map(ToString::to_string)
            .collect();
        if !problems.is_empty() {
            return Err(WriteError::Unprocessable {
                summary: format!("the {resource_type} does not conform to its profile"),
                problems,
            });
        }
        if let (Change::Update { id, .. }, Some(w)) = (change, facts.write.as_mut()) {
            w.source = split_gateway_id(id).map(|(s, _)| s.to_owned());
        }
        let if_match = match change {
            Change::Update { if_match: None, .. } => {
                return Err(WriteError::PreconditionRequired);
            }
            Change::Update {
                if_match: Some(v), ..
            } => Some(v.to_owned()),
            Change::Create { .. } => None,
        };
        let (source, current, was_theirs) = match change {
            Change::Update { id, .. } => {
                let (source, current, was_theirs) = self
                    .update_target(resource_type, id, &person, &plan)
                    .await?;
                (source, Some(current), was_theirs)
            }
            Change::Create { .. } => (
                self.create_target(principal, resource_type, &body, set)?,
                None,
                false,
            ),
        };
        let info = source.info().clone();
        if let Some(w) = facts.write.as_mut() {
            w.source = Some(info.id.clone());
        }
        // Agreements: decided like a disclosure of the resource by the target's organisation,
        // under rules that name the interaction.
        let consent = self.consents.of(&self.federation, &person).await?;
        let who = caller(principal);
        // The labels it carries and those its codes give (as a read of it would be labelled).
        let derived = set.labels.labels_of(&body);
        let mut labels: Vec<&str> = crate::policy::labels_in_meta(&body).collect();
        labels.extend(derived.iter().map(String::as_str));
        let care = person.links.iter().any(|(s, ids)| {
            !ids.is_empty()
                && self
                    .federation
                    .source(s)
                    .is_some_and(|s| Some(s.info().ods.as_str()) == who.org)
        });
        let item = Item {
            source_org: &info.ods,
            resource_type,
            labels: &labels,
            resource: Some(&body),
            care_relationship: care,
            consent: &consent,
        };
        let permit = set
            .for_interaction(
                &who,
                &[change.interaction()],
                crate::policy::live::today(),
            )
            .decide(&item)
            .ok_or_else(|| {
                WriteError::Forbidden(format!(
                    "no data-sharing agreement in force lets this caller {} a {resource_type} in the record held by {} ({})",
                    change.interaction().name(),
                    info.name,
                    info.id
                ))
            })?;
        if let Some(w) = facts.write.as_mut() {
            w.agreement = Some(permit.agreement.id.to_string());
            w.rule = Some(permit.rule.id.to_string());
        }
        // Only a caller the agreements let write learns that the version has moved on.
        if current.is_some() && current != if_match {
            return Err(WriteError::Conflict);
        }
        // What the person writes themselves is marked as theirs (and stays so when the care
        // team updates it); nobody else can put the mark on.
        let by_person = principal
            .patient
            .as_ref()
            .is_some_and(|p| p.acting_for_relationship.is_none());
        if by_person {
            name_author(&mut body, resource_type, person.id);
        }
        let theirs = by_person || was_theirs;
        let mut gateway_body = body.clone();
        mark_theirs(&mut gateway_body, theirs);
        map_references(&mut body, &source, &person)?;
        let if_none_exist = match change {
            Change::Create {
                if_none_exist: Some(condition),
            } => Some(conditional(condition, &source, &person)?),
            _ => None,
        };
        let local_id = match change {
            Change::Update { id, .. } => split_gateway_id(id).map(|(_, l)| l.to_owned()),
            Change::Create { .. } => None,
        };
        prepare_meta(&mut body, local_id.as_deref());
        if theirs && let Some(obj) = body.as_object_mut() {
            crate::federation::normalise::add_tag(obj, contributor_tag());
        }
        let bytes = serde_json::to_vec(&body)
            .map_err(|e| WriteError::Invalid(format!("the body cannot be encoded: {e}")))?;
        if let Some(w) = facts.write.as_mut() {
            w.sha256 = Some(sha256(&bytes));
        }
        let mut intent = facts.clone();
        if let Some(w) = intent.write.as_mut() {
            w.stage = WRITE_INTENT.to_owned();
            w.read_version.clone_from(&if_match);
        }
        intent.sources = vec![SourceOutcome {
            source: info.id.clone(),
            outcome: "pending".into(),
        }];
        Ok(Prepared {
            source,
            resource_type,
            change_action: change.action(),
            local_id,
            if_match,
            if_none_exist,
            bytes,
            body,
            gateway_body,
            person: person.id,
            facts: intent,
        })
    }

    /// The source holding the resource to update, its current version, read there (through
    /// the door's read, for the same person), and whether it is marked as the person's own.
    async fn update_target(
        &self,
        resource_type: &'static str,
        id: &str,
        person: &Person,
        plan: &crate::federation::Plan<'_>,
    ) -> Result<(Arc<dyn Source>, String, bool), WriteError> {
        let not_known = || WriteError::NotKnown(format!("{resource_type}/{id}"));
        let (source_id, _) = split_gateway_id(id).ok_or_else(not_known)?;
        let source = self
            .federation
            .source(source_id)
            .ok_or_else(not_known)?
            .clone();
        refuse_unless_accepts(source.as_ref(), resource_type)?;
        let deadline = Instant::now() + self.timeout;
        let (current, owner) = self
            .federation
            .read(resource_type, id, plan, deadline)
            .await?
            .ok_or_else(not_known)?;
        if owner.id != person.id {
            return Err(unprocessable(
                "`subject` must stay the person the resource is about",
            ));
        }
        let Some(version) = current.pointer("/meta/versionId").and_then(Value::as_str) else {
            return Err(WriteError::NotAllowed(format!(
                "{} ({}) does not version its {resource_type} resources, so it takes no updates through Concord",
                source.info().name,
                source.info().id
            )));
        };
        Ok((source, version.to_owned(), has_contributor_tag(&current)))
    }

    /// The source a new resource goes to (see the module's documentation).
    fn create_target(
        &self,
        principal: &Principal,
        resource_type: &'static str,
        body: &Value,
        set: &crate::policy::PolicySet,
    ) -> Result<Arc<dyn Source>, WriteError> {
        if let Some(plan) = plan_reference(body, resource_type) {
            let (source_id, _) = parse_relative(&plan)
                .and_then(|r| split_gateway_id(r.id))
                .ok_or_else(|| unprocessable(format!("the plan `{plan}` is not a gateway id")))?;
            let source = self
                .federation
                .source(source_id)
                .ok_or_else(|| unprocessable(format!("the plan `{plan}` is held by no source")))?;
            refuse_unless_accepts(source.as_ref(), resource_type)?;
            return Ok(source.clone());
        }
        if principal.patient.is_some()
            && let Some(id) = set
                .for_interaction(
                    &caller(principal),
                    &[Interaction::Create],
                    crate::policy::live::today(),
                )
                .write_to(resource_type)
        {
            let source = self.federation.source(id).ok_or_else(|| {
                WriteError::NotAllowed(format!(
                    "the portal agreement sends a new {resource_type} to `{id}`, which is not a configured source; the write was not made anywhere"
                ))
            })?;
            refuse_unless_accepts(source.as_ref(), resource_type)?;
            return Ok(source.clone());
        }
        if principal.patient.is_none()
            && let Some(org) = principal.org.as_deref()
            && let Some(own) = self
                .federation
                .sources()
                .iter()
                .find(|s| s.info().ods == org && s.accepts_writes(resource_type))
        {
            return Ok(own.clone());
        }
        match self.federation.write_default() {
            Some(source) if source.accepts_writes(resource_type) => Ok(source.clone()),
            _ => Err(WriteError::NotAllowed(format!(
                "no source takes a new {resource_type} that belongs to no plan from this caller: name its plan, or configure `write_default`"
            ))),
        }
    }

    /// Sends a prepared write. The source's answer becomes the outcome's facts, whatever it is.
    pub async fn commit_write(&self, prepared: Prepared) -> Result<Done, WriteRefused> {
        let Prepared {
            source,
            resource_type,
            change_action,
            local_id,
            if_match,
            if_none_exist,
            bytes,
            body,
            mut gateway_body,
            person,
            facts,
        } = prepared;
        let mut facts = facts;
        let info = source.info().clone();
        if let Some(w) = facts.write.as_mut() {
            w.stage = WRITE_OUTCOME.to_owned();
        }
        let result = source
            .write(SourceWrite {
                resource_type,
                id: local_id.as_deref(),
                body: &body,
                bytes: &bytes,
                if_match: if_match.as_deref(),
                person,
                if_none_exist: if_none_exist.as_deref(),
            })
            .await;
        let outcome = match &result {
            Ok(w) if w.existed => "exists",
            Ok(_) => "ok",
            Err(WriteFailure::Conflict) => "conflict",
            Err(WriteFailure::Ambiguous) => "ambiguous",
            Err(WriteFailure::Refused { .. } | WriteFailure::NotAccepted) => "refused",
            Err(WriteFailure::Failed(crate::sources::SourceError::Timeout)) => "timeout",
            Err(WriteFailure::Failed(_)) => "failed",
        };
        facts.sources = vec![SourceOutcome {
            source: info.id.clone(),
            outcome: outcome.to_owned(),
        }];
        let written = match result {
            Ok(w) => w,
            Err(failure) => {
                let error = match failure {
                    WriteFailure::Conflict => WriteError::Conflict,
                    WriteFailure::Ambiguous => WriteError::Ambiguous(resource_type),
                    WriteFailure::NotAccepted => WriteError::NotAllowed(format!(
                        "{} ({}) does not accept writes of {resource_type}",
                        info.name, info.id
                    )),
                    WriteFailure::Refused {
                        status,
                        diagnostics,
                    } => WriteError::Refused {
                        source_id: info.id.clone(),
                        source_name: info.name.clone(),
                        status,
                        diagnostics,
                    },
                    WriteFailure::Failed(error) => {
                        WriteError::Federation(FederationError::SourceFailed {
                            source_id: info.id.clone(),
                            source_name: info.name.clone(),
                            error,
                        })
                    }
                };
                return Err(WriteRefused { error, facts });
            }
        };
        let Some(id) = gateway_id(&info.id, &written.id) else {
            let error = WriteError::Federation(FederationError::SourceFailed {
                source_id: info.id.clone(),
                source_name: info.name.clone(),
                error: crate::sources::SourceError::InvalidResponse(
                    "the new id is too long for a gateway id".into(),
                ),
            });
            return Err(WriteRefused { error, facts });
        };
        if let Some(w) = facts.write.as_mut() {
            w.resource = Some(format!("{resource_type}/{id}"));
            w.version = written.version.clone();
        }
        if written.existed {
            tracing::info!(source.id = %info.id, "conditional create matched; nothing written");
            return Ok(Done {
                resource: gateway_body,
                id,
                version: written.version,
                existed: true,
                facts,
            });
        }
        // A source that knows people by their gateway id (the store) now holds something
        // about this person: link them, so that the next read asks it.
        if let Some(own) = source.own_patient_id(person) {
            let now = jiff::Timestamp::now().as_second();
            if let Err(e) = self
                .federation
                .store()
                .record_links(person, &info.id, &[own], now)
                .await
            {
                tracing::warn!(source.id = %info.id, error = %e, "the new link could not be recorded");
            }
            self.federation.forget_person(person);
        }
        if let Some(obj) = gateway_body.as_object_mut() {
            obj.insert("id".into(), Value::String(id.clone()));
            let meta = obj
                .entry("meta")
                .or_insert_with(|| Value::Object(Map::new()));
            if let (Some(meta), Some(v)) = (meta.as_object_mut(), &written.version) {
                meta.insert("versionId".into(), Value::String(v.clone()));
                meta.insert("source".into(), Value::String(info.uri()));
            }
        }
        tracing::info!(source.id = %info.id, action = change_action, "write taken by source");
        Ok(Done {
            resource: gateway_body,
            id,
            version: written.version,
            existed: false,
            facts,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_plan_is_named_by_based_on_part_of_or_the_extension() {
        let plan = json!({"resourceType": "CarePlan", "partOf": [{"reference": "CarePlan/gp.p1"}]});
        assert_eq!(
            plan_reference(&plan, "CarePlan").as_deref(),
            Some("CarePlan/gp.p1")
        );
        let goal = json!({"resourceType": "Goal", "extension": [
            {"url": "http://other", "valueReference": {"reference": "CarePlan/x.1"}},
            {"url": PLAN_EXTENSION, "valueReference": {"reference": "CarePlan/gp.p2"}}
        ]});
        assert_eq!(
            plan_reference(&goal, "Goal").as_deref(),
            Some("CarePlan/gp.p2")
        );
        let none = json!({"resourceType": "Goal", "addresses": [{"reference": "Condition/gp.c"}]});
        assert_eq!(plan_reference(&none, "Goal"), None);
    }

    #[test]
    fn shapes_that_cannot_be_written_are_refused() {
        let create = Change::Create {
            if_none_exist: None,
        };
        let update = Change::Update {
            id: "gp.g1",
            if_match: Some("1"),
        };
        for (body, change) in [
            (json!([]), create),
            (json!({"id": "x"}), create),
            (json!({"resourceType": "Flag"}), create),
            (json!({"resourceType": "Goal"}), update),
            (json!({"resourceType": "Goal", "id": "gp.g2"}), update),
        ] {
            assert!(
                matches!(
                    check_shape(&body, "Goal", change),
                    Err(WriteError::Invalid(_))
                ),
                "{body}"
            );
        }
        assert!(
            check_shape(
                &json!({"resourceType": "Goal", "id": "gp.g1"}),
                "Goal",
                update
            )
            .is_ok()
        );
    }

    #[test]
    fn what_the_gateway_added_is_not_sent_back() {
        let mut body = json!({"resourceType": "Goal", "id": "gp.g1", "meta": {
            "versionId": "3", "source": "urn:concord:source:gp",
            "tag": [{"system": crate::fhir::ODS_SYSTEM, "code": "A81001"}],
            "security": [{"code": "R"}]
        }});
        prepare_meta(&mut body, Some("g1"));
        assert_eq!(
            body,
            json!({"resourceType": "Goal", "id": "g1", "meta": {"security": [{"code": "R"}]}})
        );
        prepare_meta(&mut body, None);
        assert!(body.get("id").is_none());
    }
}
