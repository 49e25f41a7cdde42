//! Reading one resource by gateway id: it is fetched from its source, whose it is is worked
//! out (a Patient by its NHS number, anything else by its patient reference), that person is
//! found, and the resource is admitted ([`Federation::admit`]) for them.

use serde_json::Value;
use tokio::time::Instant;

use super::admit::origin;
use super::normalise::split_gateway_id;
use super::{Federation, FederationError, Person, Plan, Problem, within};
use crate::fhir::NhsNumber;
use crate::sources::{Source, SourceError};

impl Federation {
    /// Reads one resource by gateway id (`{source}.{local id}`), provided it is about a person
    /// the gateway can find. Returns the normalised resource and that person.
    pub async fn read(
        &self,
        resource_type: &str,
        gateway_id: &str,
        plan: &Plan<'_>,
        deadline: Instant,
    ) -> Result<Option<(Value, Person)>, FederationError> {
        let Some((source_id, local_id)) = split_gateway_id(gateway_id) else {
            return Ok(None);
        };
        let Some(source) = self.source(source_id) else {
            return Ok(None);
        };
        let resource = match within(deadline, source.read(resource_type, local_id)).await {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(None),
            Err(problem) => return Err(source_failed(source.as_ref(), problem)),
        };
        let Some(nhs) = self
            .owner(source.as_ref(), resource_type, &resource, deadline)
            .await?
        else {
            return Ok(None);
        };
        let resolution = self.resolve_nhs(&nhs, plan, deadline).await?;
        let Some(person) = resolution.person else {
            return Ok(None);
        };
        let origin = origin(source.info(), &person, plan.labels, &self.sources);
        match self.admit(std::sync::Arc::new(resource), &origin) {
            Ok((r, _)) => Ok(Some((r, person))),
            // Not the person's after all, invalid, or withheld: counted by `admit`, not found.
            Err(_) => Ok(None),
        }
    }

    /// Whose `resource` (of `resource_type`, from `source`) is: a Patient says by the NHS
    /// number it carries; anything else by its patient reference, looked up in the store or,
    /// when the gateway has not linked that patient, read from the source.
    async fn owner(
        &self,
        source: &dyn Source,
        resource_type: &str,
        resource: &Value,
        deadline: Instant,
    ) -> Result<Option<NhsNumber>, FederationError> {
        if resource_type == "Patient" {
            return Ok(carried_nhs(resource));
        }
        let info = source.info();
        let Some(patient_local) =
            crate::fhir::search::patient_id_of(resource, info.base_url.as_deref())
        else {
            return Ok(None);
        };
        match self.store.person_by_link(&info.id, patient_local).await? {
            Some(id) => Ok(self
                .store
                .person_by_id(id)
                .await?
                .and_then(|p| NhsNumber::parse(&p.nhs_number).ok())),
            None => match within(deadline, source.read("Patient", patient_local)).await {
                Ok(Some(p)) => Ok(carried_nhs(&p)),
                Ok(None) => Ok(None),
                Err(problem) => Err(source_failed(source, problem)),
            },
        }
    }
}

/// The first valid NHS number a resource carries.
fn carried_nhs(resource: &Value) -> Option<NhsNumber> {
    crate::fhir::nhs_number::carried_by(resource).find_map(|n| NhsNumber::parse(&n).ok())
}

/// The error for a read whose only source could not answer (a missed deadline is a timeout).
fn source_failed(source: &dyn Source, problem: Problem) -> FederationError {
    let error = match problem {
        Problem::Failed(e) => e,
        _ => SourceError::Timeout,
    };
    FederationError::SourceFailed {
        source_id: source.info().id.clone(),
        source_name: source.info().name.clone(),
        error,
    }
}
