//! Recording and listing a person's sharing choices: who may, and what goes to IG review.
//!
//! The person records their own choices with a patient token; staff record them on the
//! person's behalf when the person is known to their own organisation (the same care
//! relationship agreements ask for). Carers cannot record choices for the person. Every
//! choice is stored before the answer and binds the very next request. Only the person lifts
//! their own objection; staff record a withdrawal only on the person's documented request,
//! never for an objection naming their own organisation, and each such record goes to IG
//! review ([`may_record`]).

use serde_json::{Value, json};
use uuid::Uuid;

use super::{AskError, Door};
use crate::auth::Principal;
use crate::fhir::ODS_SYSTEM;
use crate::policy::consent::{self, Kind};
use crate::store::{ConsentRecord, PersonRecord};

/// A sharing choice as recorded.
#[derive(Debug)]
pub struct Recorded {
    /// The Consent's id.
    pub id: Uuid,
    /// Whose choice.
    pub person: Uuid,
    /// The Consent resource as stored.
    pub resource: Value,
    /// Why the record of it goes to IG review, if it does.
    pub review: Option<&'static str>,
}

impl Door {
    /// The person a Consent request names, if this caller may manage their choices: the
    /// person themself, or staff of an organisation that knows them. Anyone else gets the
    /// same 404 as for a person who does not exist.
    pub async fn consent_subject(
        &self,
        principal: &Principal,
        id: &str,
    ) -> Result<PersonRecord, AskError> {
        let unknown = || AskError::NotKnown(format!("Patient/{id}"));
        let Ok(uuid) = Uuid::parse_str(id) else {
            return Err(unknown());
        };
        let person = self
            .federation
            .store()
            .person_by_id(uuid)
            .await?
            .ok_or_else(unknown)?;
        match &principal.patient {
            Some(p) if p.acting_for_relationship.is_some() => Err(AskError::Forbidden(
                "a carer cannot record or read the person's sharing choices".into(),
            )),
            Some(p) if p.nhs.as_str() == person.nhs_number => Ok(person),
            Some(_) => Err(unknown()),
            None => {
                let org = principal.org.as_deref().unwrap_or_default();
                let known = person.links.iter().any(|l| {
                    self.federation
                        .source(&l.source_id)
                        .is_some_and(|s| s.info().ods == org)
                });
                if known {
                    Ok(person)
                } else {
                    Err(AskError::Forbidden(
                        "staff record sharing choices only for people known to their own organisation".into(),
                    ))
                }
            }
        }
    }

    /// Every choice recorded for the person `id` names, oldest first.
    pub async fn consents(
        &self,
        principal: &Principal,
        id: &str,
    ) -> Result<(PersonRecord, Vec<ConsentRecord>), AskError> {
        let person = self.consent_subject(principal, id).await?;
        let records = self.federation.store().consents(person.id).await?;
        Ok((person, records))
    }

    /// Records the sharing choice a Consent resource states, for `principal`. It binds the
    /// next request of this instance at once.
    pub async fn record_consent(
        &self,
        principal: &Principal,
        value: &Value,
    ) -> Result<Recorded, AskError> {
        let (patient, choice) = consent::parse(value).map_err(|e| AskError::Invalid(e.0))?;
        let person = self.consent_subject(principal, &patient).await?;
        let review = may_record(principal, &person, &choice)?;
        if choice.kind == Kind::NotFrom
            && !self
                .federation
                .sources()
                .iter()
                .any(|s| s.info().ods == choice.org)
        {
            return Err(AskError::Invalid(format!(
                "no provider connected to this gateway has ODS code {}; a provider's records can only be withheld from a connected provider",
                choice.org
            )));
        }
        let now = jiff::Timestamp::now();
        let recorded = now.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
        let recorder = match (&principal.patient, &principal.org) {
            (Some(_), _) => json!({"reference": format!("Patient/{}", person.id)}),
            (None, Some(org)) => json!({"identifier": {"system": ODS_SYSTEM, "value": org}}),
            (None, None) => json!({"display": "staff"}),
        };
        let id = Uuid::new_v4();
        let resource = consent::render(
            &id.to_string(),
            &person.id.to_string(),
            &choice,
            &recorded,
            &recorder,
        );
        let record = ConsentRecord {
            id,
            person: person.id,
            kind: choice.kind.name().to_owned(),
            org: choice.org.clone(),
            active: choice.active,
            recorded_us: now.as_microsecond(),
            resource: resource.to_string(),
        };
        self.federation.store().record_consent(&record).await?;
        self.consents.evict(person.id);
        tracing::info!(
            consent.kind = choice.kind.name(),
            consent.active = choice.active,
            "sharing choice recorded"
        );
        Ok(Recorded {
            id,
            person: person.id,
            resource,
            review,
        })
    }
}

/// Whether this caller may record this choice, and whether it goes to IG review.
///
/// Recording an objection restricts sharing, and anyone who may manage the person's choices
/// may record one. Withdrawing an objection opens sharing again, so:
/// - the person themself (their own token) may withdraw their own objection at any time;
/// - staff may record a withdrawal only on the person's documented request
///   (`Consent.verification`: the person asked, when and how), and never for an objection
///   that names their own organisation: nobody lifts an objection aimed at themselves. Every
///   staff-recorded withdrawal is flagged for IG review, and the person sees it in their own
///   audit trail.
fn may_record(
    principal: &Principal,
    person: &PersonRecord,
    choice: &consent::Choice,
) -> Result<Option<&'static str>, AskError> {
    if choice.active || principal.patient.is_some() {
        // An objection; or the person themself (carers were refused in `consent_subject`).
        return Ok(None);
    }
    if principal.org.as_deref() == Some(choice.org.as_str()) {
        return Err(AskError::Forbidden(
            "an objection that names your own organisation can only be withdrawn by the person themself".into(),
        ));
    }
    let Some(request) = &choice.request else {
        return Err(AskError::Forbidden(format!(
            "staff may record the withdrawal of an objection only on the person's documented request: give Consent.verification (verified, verifiedWith the person, verificationDate, and how they asked in the extension `{}`)",
            consent::REQUEST_METHOD_URL
        )));
    };
    if request.by != person.id.to_string() {
        return Err(AskError::Forbidden(
            "Consent.verification.verifiedWith must be the person the Consent is about: only they can ask for their objection to be withdrawn".into(),
        ));
    }
    Ok(Some(crate::audit::REVIEW_CONSENT_WITHDRAWN_BY_STAFF))
}
