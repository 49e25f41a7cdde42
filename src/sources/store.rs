//! A `kind = "store"` source: records no provider owns (a region's shared care plans, goals
//! and alerts), kept versioned in Concord's own store and read through the same door as any
//! other source.
//!
//! **How it knows the person.** It holds resources whose `subject` is
//! `Patient/{gateway person id}`: its own patient id for a person *is* their gateway id, so
//! no second identity is made. It says it knows an NHS number when the gateway has met that
//! person and it holds something about them; it then answers with a minimal Patient (that
//! id and the NHS number), which links the person to it like any source.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Value, json};
use uuid::Uuid;

use super::{Fetched, Source, SourceError, SourceInfo, SourceWrite, SourceWritten, WriteFailure};
use crate::fhir::NhsNumber;
use crate::store::Store;

/// The types a store source holds (and may accept writes of).
pub use crate::config::STORE_TYPES as HELD_TYPES;

/// Most resources of one type about one person it answers with; more is reported as
/// truncated.
const MAX_PER_TYPE: i64 = 1_000;

/// A source kept in the gateway's own store.
#[derive(Debug)]
pub struct StoreSource {
    info: SourceInfo,
    store: Store,
    writes: Vec<String>,
    /// Held by a conditional create from its search to its write.
    conditional: tokio::sync::Mutex<()>,
}

impl StoreSource {
    /// The source `info`, over `store`, accepting writes of the types in `writes`.
    pub fn new(info: SourceInfo, store: Store, writes: Vec<String>) -> Self {
        StoreSource {
            info,
            store,
            writes,
            conditional: tokio::sync::Mutex::new(()),
        }
    }

    /// The store it keeps its resources in.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// True when it accepts writes of `resource_type`.
    pub fn accepts_writes(&self, resource_type: &str) -> bool {
        self.writes.iter().any(|t| t == resource_type)
    }

    /// A conditional create's one match among the person's resources of the type (the
    /// search's `patient` is the person's gateway id, which is how this source files them):
    /// `None` when nothing matches, [`WriteFailure::Ambiguous`] when more than one does.
    async fn matching(
        &self,
        resource_type: &str,
        person: Uuid,
        pairs: &[(String, String)],
    ) -> Result<Option<SourceWritten>, WriteFailure> {
        let refused = |message: String| WriteFailure::Refused {
            status: 400,
            diagnostics: Some(message),
        };
        let def = crate::fhir::search::type_def(resource_type)
            .ok_or_else(|| refused(format!("{resource_type} takes no If-None-Exist")))?;
        if pairs
            .iter()
            .any(|(k, v)| k == "patient" && *v != person.to_string())
        {
            return Err(refused("If-None-Exist names another person".into()));
        }
        let condition = crate::fhir::condition::Condition::from_pairs(def, pairs)
            .map_err(|e| refused(e.to_string()))?;
        let bodies = self
            .store
            .held_for_person(&self.info.id, resource_type, person, MAX_PER_TYPE + 1)
            .await
            .map_err(failed)?;
        if bodies.len() as i64 > MAX_PER_TYPE {
            return Err(refused(format!(
                "the person has more than {MAX_PER_TYPE} {resource_type} resources here; If-None-Exist cannot be decided"
            )));
        }
        let found: Vec<Arc<Value>> = parse(bodies)?
            .into_iter()
            .filter(|r| condition.matches(r))
            .collect();
        let one = match found.as_slice() {
            [] => return Ok(None),
            [one] => one,
            _ => return Err(WriteFailure::Ambiguous),
        };
        Ok(Some(SourceWritten {
            id: one
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            version: one
                .pointer("/meta/versionId")
                .and_then(Value::as_str)
                .map(str::to_owned),
            existed: true,
        }))
    }
}

/// A store error as a source error (its text is for logs only).
fn failed(e: crate::store::StoreError) -> SourceError {
    SourceError::Connect(format!("store: {e}"))
}

/// Parses stored bodies; one that is not JSON is a fault of the store, reported as such.
fn parse(bodies: Vec<String>) -> Result<Vec<Arc<Value>>, SourceError> {
    bodies
        .iter()
        .map(|b| {
            serde_json::from_str(b)
                .map(Arc::new)
                .map_err(|_| SourceError::InvalidResponse("a held resource is not JSON".into()))
        })
        .collect()
}

#[async_trait]
impl Source for StoreSource {
    fn info(&self) -> &SourceInfo {
        &self.info
    }

    async fn find_patients(&self, nhs: &NhsNumber) -> Result<Fetched, SourceError> {
        let Some(person) = self
            .store
            .person_by_nhs(nhs.as_str())
            .await
            .map_err(failed)?
        else {
            return Ok(Fetched::default());
        };
        if !self
            .store
            .holds_any(&self.info.id, person.id)
            .await
            .map_err(failed)?
        {
            return Ok(Fetched::default());
        }
        Ok(Fetched {
            resources: vec![Arc::new(json!({
                "resourceType": "Patient",
                "id": person.id.to_string(),
                "identifier": [{
                    "system": crate::fhir::NHS_NUMBER_SYSTEM,
                    "value": nhs.as_str(),
                }],
            }))],
            truncated: false,
        })
    }

    async fn search(&self, resource_type: &str, patient_id: &str) -> Result<Fetched, SourceError> {
        if !HELD_TYPES.contains(&resource_type) {
            return Ok(Fetched::default());
        }
        let Ok(person) = Uuid::parse_str(patient_id) else {
            return Ok(Fetched::default());
        };
        let bodies = self
            .store
            .held_for_person(&self.info.id, resource_type, person, MAX_PER_TYPE + 1)
            .await
            .map_err(failed)?;
        let truncated = bodies.len() as i64 > MAX_PER_TYPE;
        let mut resources = parse(bodies)?;
        resources.truncate(MAX_PER_TYPE as usize);
        Ok(Fetched {
            resources,
            truncated,
        })
    }

    async fn everything(
        &self,
        patient_id: &str,
        types: &[&'static str],
    ) -> Result<Fetched, SourceError> {
        let mut out = Fetched::default();
        for t in types.iter().filter(|t| HELD_TYPES.contains(t)) {
            let fetched = self.search(t, patient_id).await?;
            out.truncated |= fetched.truncated;
            out.resources.extend(fetched.resources);
        }
        Ok(out)
    }

    async fn sample(&self, resource_type: &str, count: usize) -> Result<Fetched, SourceError> {
        let limit = i64::try_from(count)
            .unwrap_or(MAX_PER_TYPE)
            .min(MAX_PER_TYPE);
        let bodies = self
            .store
            .held_sample(&self.info.id, resource_type, limit)
            .await
            .map_err(failed)?;
        Ok(Fetched {
            resources: parse(bodies)?,
            truncated: false,
        })
    }

    async fn read(&self, resource_type: &str, id: &str) -> Result<Option<Value>, SourceError> {
        let held = self
            .store
            .held_read(&self.info.id, resource_type, id)
            .await
            .map_err(failed)?;
        match held {
            Some((version, _)) => serde_json::from_str(&version.body)
                .map(Some)
                .map_err(|_| SourceError::InvalidResponse("a held resource is not JSON".into())),
            None => Ok(None),
        }
    }

    fn may_hold(&self, resource_type: &str) -> bool {
        HELD_TYPES.contains(&resource_type)
    }

    fn accepts_writes(&self, resource_type: &str) -> bool {
        StoreSource::accepts_writes(self, resource_type)
    }

    fn own_patient_id(&self, person: Uuid) -> Option<String> {
        Some(person.to_string())
    }

    fn conditional_create(&self) -> bool {
        true
    }

    /// A create is version 1 under a new id; an update is the next version, only when the
    /// resource is at the version the caller read and about the same person. The version
    /// check and the write are one transaction ([`Store::held_write`]).
    async fn write(&self, write: SourceWrite<'_>) -> Result<SourceWritten, WriteFailure> {
        if !self.accepts_writes(write.resource_type) {
            return Err(WriteFailure::NotAccepted);
        }
        // One conditional create at a time in this instance, so that two cannot both find
        // nothing and both write.
        let _conditional = match write.if_none_exist {
            Some(_) if write.id.is_none() => Some(self.conditional.lock().await),
            _ => None,
        };
        if let (Some(pairs), None) = (write.if_none_exist, write.id)
            && let Some(found) = self
                .matching(write.resource_type, write.person, pairs)
                .await?
        {
            return Ok(found);
        }
        let (id, version) = match write.id {
            None => (Uuid::new_v4().to_string(), 1),
            Some(id) => {
                let current = self
                    .store
                    .held_read(&self.info.id, write.resource_type, id)
                    .await
                    .map_err(failed)?;
                let Some((current, person)) = current else {
                    return Err(WriteFailure::Conflict);
                };
                if person != write.person {
                    return Err(WriteFailure::Refused {
                        status: 409,
                        diagnostics: Some("the resource is about another person".into()),
                    });
                }
                if write.if_match != Some(current.version.to_string().as_str()) {
                    return Err(WriteFailure::Conflict);
                }
                (id.to_owned(), current.version + 1)
            }
        };
        let now = jiff::Timestamp::now();
        let mut body = write.body.clone();
        let Some(obj) = body.as_object_mut() else {
            return Err(WriteFailure::Refused {
                status: 400,
                diagnostics: Some("the body is not a JSON object".into()),
            });
        };
        obj.insert("id".into(), Value::String(id.clone()));
        let meta = obj.entry("meta").or_insert_with(|| json!({}));
        if !meta.is_object() {
            *meta = json!({});
        }
        if let Some(meta) = meta.as_object_mut() {
            meta.insert("versionId".into(), Value::String(version.to_string()));
            meta.insert(
                "lastUpdated".into(),
                Value::String(now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()),
            );
        }
        let text = serde_json::to_string(&body)
            .map_err(|e| SourceError::InvalidResponse(format!("cannot encode: {e}")))?;
        let written = self
            .store
            .held_write(
                (&self.info.id, write.resource_type, &id),
                write.person,
                version,
                &text,
                now.as_second(),
            )
            .await
            .map_err(failed)?;
        match written {
            crate::store::HeldWrite::Written(v) => Ok(SourceWritten {
                id,
                version: Some(v.to_string()),
                existed: false,
            }),
            crate::store::HeldWrite::Conflict { .. } => Err(WriteFailure::Conflict),
        }
    }
}
