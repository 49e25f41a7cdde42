//! Where records come from: the [`Source`] trait and its two kinds, [`fhir::FhirSource`] (an
//! upstream FHIR R4 REST server) and [`ndjson::NdjsonSource`] (FHIR Bulk Data export files).
//!
//! A source answers four questions about one provider's system: who has this NHS number, what
//! resources of a type does this patient have, everything about this patient, and one
//! resource by id. It returns resources exactly as the provider holds them; checking that
//! they are about the right person, and making them the gateway's, is `federation`'s job.

pub mod breaker;
pub mod fhir;
pub mod ndjson;
pub mod oauth;
pub mod store;

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use crate::config::{SourceConfig, SourceKind};
use crate::fhir::NhsNumber;
use crate::telemetry::Metrics;

pub use breaker::BreakerState;

/// Who a source is.
#[derive(Debug, Clone)]
pub struct SourceInfo {
    /// The configured id (prefix of gateway ids).
    pub id: String,
    /// The provider's display name.
    pub name: String,
    /// ODS code of the organisation that controls the data.
    pub ods: String,
    /// The upstream FHIR base URL, for recognising absolute references (fhir sources only).
    pub base_url: Option<String>,
    /// What happens to its resources that do not conform to their profiles.
    pub conformance: crate::config::Conformance,
}

impl SourceInfo {
    /// The URI the gateway puts in `meta.source` of this source's resources.
    pub fn uri(&self) -> String {
        format!("urn:concord:source:{}", self.id)
    }
}

/// Resources a source returned.
#[derive(Debug, Default)]
pub struct Fetched {
    /// The resources, as the source holds them (shared: an export's resources are not copied
    /// until they are normalised).
    pub resources: Vec<Arc<Value>>,
    /// True when the source had more than the configured page cap allowed to fetch.
    pub truncated: bool,
}

/// One page of the NHS numbers a source holds, for the record locator's sync.
#[derive(Debug, Default)]
pub struct NhsPage {
    /// Valid NHS numbers (Modulus 11 checked), as ten digits, on this page.
    pub numbers: Vec<String>,
    /// Where the listing goes on (a paging link on the source itself, or the source's own
    /// cursor); `None` on the last page.
    pub next: Option<String>,
}

/// Why a source could not answer. The text is for logs, never for callers.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SourceError {
    /// No answer within the source's deadline.
    #[error("timed out")]
    Timeout,
    /// The circuit breaker is open: the source kept failing and is resting.
    #[error("circuit breaker open")]
    Unavailable,
    /// The connection failed.
    #[error("connection failed: {0}")]
    Connect(String),
    /// The upstream answered with an error status.
    #[error("upstream answered HTTP {0}")]
    Status(u16),
    /// The body was not the FHIR JSON expected.
    #[error("invalid response: {0}")]
    InvalidResponse(String),
    /// The gateway's own concurrency limit for the source stayed full until the deadline.
    #[error("concurrency limit reached")]
    Saturated,
    /// No access token could be obtained for the source (`[source.oauth]`).
    #[error("no access token: {0}")]
    Token(String),
}

impl SourceError {
    /// A short, stable name for metrics labels.
    pub fn kind(&self) -> &'static str {
        match self {
            SourceError::Timeout => "timeout",
            SourceError::Unavailable => "unavailable",
            SourceError::Connect(_) => "connect_error",
            SourceError::Status(_) => "http_error",
            SourceError::InvalidResponse(_) => "invalid_response",
            SourceError::Saturated => "saturated",
            SourceError::Token(_) => "token_error",
        }
    }

    /// True when the error says the upstream is unwell (what the circuit breaker counts):
    /// timeouts, connection failures, 5xx and 429 answers, and bodies that are not FHIR.
    pub fn is_upstream_failure(&self) -> bool {
        match self {
            SourceError::Timeout
            | SourceError::Connect(_)
            | SourceError::InvalidResponse(_)
            | SourceError::Token(_) => true,
            SourceError::Status(code) => *code >= 500 || *code == 429,
            SourceError::Unavailable | SourceError::Saturated => false,
        }
    }
}

/// A write sent to a source: a resource in the source's own ids.
#[derive(Debug, Clone, Copy)]
pub struct SourceWrite<'a> {
    /// Its type (`CarePlan`, `Goal`, `Flag`).
    pub resource_type: &'a str,
    /// For an update, its id in the source; `None` for a create.
    pub id: Option<&'a str>,
    /// The resource as the source is to hold it (its references in the source's own ids).
    pub body: &'a Value,
    /// The exact bytes sent (the audit record holds their SHA-256).
    pub bytes: &'a [u8],
    /// For an update, the version the caller read (`meta.versionId`, without `W/"…"`).
    pub if_match: Option<&'a str>,
    /// The person it is about (a store source files it under them).
    pub person: uuid::Uuid,
    /// For a conditional create (`If-None-Exist`), the search that must find nothing for the
    /// resource to be created: names and values, in the source's own ids, always narrowed to
    /// the person (`patient`). Only sent to a source whose [`Source::conditional_create`] is
    /// true.
    pub if_none_exist: Option<&'a [(String, String)]>,
}

/// What a source made of a write it accepted.
#[derive(Debug, Clone)]
pub struct SourceWritten {
    /// The resource's id in the source.
    pub id: String,
    /// Its new version, when the source said.
    pub version: Option<String>,
    /// True when a conditional create found one match: nothing was written, and `id` and
    /// `version` are the match's.
    pub existed: bool,
}

/// Why a source did not take a write. The text is for logs; callers are told in
/// `server::error`.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteFailure {
    /// The source does not accept writes of this type (config `writes`; never an NDJSON
    /// export).
    #[error("the source does not accept writes of this type")]
    NotAccepted,
    /// The resource changed since the caller read it (or was never there): nothing written.
    #[error("the resource is not at the version the caller read")]
    Conflict,
    /// A conditional create's search found more than one match: nothing written.
    #[error("more than one resource matches the conditional create")]
    Ambiguous,
    /// The source refused the write (a 4xx other than 412).
    #[error("the source refused the write with HTTP {status}")]
    Refused {
        /// The status it answered.
        status: u16,
        /// What its OperationOutcome said (at most 500 characters), for the caller only.
        diagnostics: Option<String>,
    },
    /// The source could not be reached or failed.
    #[error(transparent)]
    Failed(#[from] SourceError),
}

/// One provider's system.
#[async_trait]
pub trait Source: Send + Sync + Debug {
    /// Who this source is.
    fn info(&self) -> &SourceInfo;

    /// Patients holding this NHS number (normally one; none when the person is unknown here).
    async fn find_patients(&self, nhs: &NhsNumber) -> Result<Fetched, SourceError>;

    /// Resources of one type about the patient with this local id.
    async fn search(&self, resource_type: &str, patient_id: &str) -> Result<Fetched, SourceError>;

    /// The patient and every resource about them, of the given types.
    async fn everything(
        &self,
        patient_id: &str,
        types: &[&'static str],
    ) -> Result<Fetched, SourceError>;

    /// Up to `count` resources of one type, whoever they are about: a sample for
    /// `concord source check`, never used to answer a request.
    async fn sample(&self, resource_type: &str, count: usize) -> Result<Fetched, SourceError>;

    /// One resource by type and local id; `None` when the source does not have it.
    async fn read(&self, resource_type: &str, id: &str) -> Result<Option<Value>, SourceError>;

    /// False when the source is known never to hold resources of this type (a FHIR server
    /// configured with `resource_types`, an export without that file): leaving such a type
    /// unasked hides nothing.
    fn may_hold(&self, resource_type: &str) -> bool {
        let _ = resource_type;
        true
    }

    /// True when the source's resources never change while the gateway runs (an export read
    /// at start-up), so their normalised form can be reused between requests.
    fn is_static(&self) -> bool {
        false
    }

    /// True when the source can list the NHS numbers it holds ([`Source::nhs_numbers`]), so
    /// that the record locator can index it; a source that cannot is always asked.
    fn lists_nhs_numbers(&self) -> bool {
        false
    }

    /// One page of the NHS numbers the source holds, about `count` of them, from `cursor`
    /// (the `next` of the page before; `None` for the first page). Only called when
    /// [`Source::lists_nhs_numbers`]; the default lists nobody.
    async fn nhs_numbers(
        &self,
        cursor: Option<&str>,
        count: usize,
    ) -> Result<NhsPage, SourceError> {
        let _ = (cursor, count);
        Ok(NhsPage::default())
    }

    /// The circuit breaker's state (sources without one are always closed).
    fn breaker_state(&self) -> BreakerState {
        BreakerState::Closed
    }

    /// True when the source accepts writes of `resource_type` (config `writes`).
    fn accepts_writes(&self, resource_type: &str) -> bool {
        let _ = resource_type;
        false
    }

    /// True when the source honours a conditional create (`If-None-Exist`): the region's
    /// store always; a FHIR server when its config says `conditional_create = true`.
    fn conditional_create(&self) -> bool {
        false
    }

    /// The person's patient id in this source when it is known without asking it (a store
    /// source knows people by their gateway id).
    fn own_patient_id(&self, person: uuid::Uuid) -> Option<String> {
        let _ = person;
        None
    }

    /// Creates or updates one resource. An update carries the version the caller read and
    /// is refused ([`WriteFailure::Conflict`]) when the resource is at another.
    async fn write(&self, write: SourceWrite<'_>) -> Result<SourceWritten, WriteFailure> {
        let _ = write;
        Err(WriteFailure::NotAccepted)
    }
}

/// Why a source could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The config is wrong.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// An NDJSON export could not be loaded.
    #[error("source `{source_id}`: {message}")]
    Ndjson {
        /// The source.
        source_id: String,
        /// What went wrong.
        message: String,
    },
    /// The HTTP client could not be built.
    #[error("source `{source_id}`: cannot build HTTP client: {message}")]
    Client {
        /// The source.
        source_id: String,
        /// What went wrong.
        message: String,
    },
}

/// Builds every configured source, in config order (which is also merge priority);
/// `kind = "store"` sources keep their resources in `store`.
pub async fn build(
    configs: &[SourceConfig],
    metrics: &Arc<Metrics>,
    store: &crate::store::Store,
) -> Result<Vec<Arc<dyn Source>>, SetupError> {
    let mut out: Vec<Arc<dyn Source>> = Vec::with_capacity(configs.len());
    for (i, cfg) in configs.iter().enumerate() {
        let mut info = SourceInfo {
            id: cfg.id.clone(),
            name: cfg.name.clone(),
            ods: cfg.ods.clone(),
            base_url: None,
            conformance: cfg.conformance,
        };
        match cfg.kind(i)? {
            SourceKind::Fhir(f) => {
                info.base_url = Some(f.base_url.clone());
                out.push(Arc::new(fhir::FhirSource::new(info, *f, metrics.clone())?));
            }
            SourceKind::Store(s) => {
                out.push(Arc::new(store::StoreSource::new(
                    info,
                    store.clone(),
                    s.writes,
                )));
            }
            SourceKind::Ndjson(n) => {
                let path = n.path.clone();
                let loaded =
                    tokio::task::spawn_blocking(move || ndjson::NdjsonSource::load(info, &path))
                        .await
                        .map_err(|e| SetupError::Ndjson {
                            source_id: cfg.id.clone(),
                            message: e.to_string(),
                        })??;
                out.push(Arc::new(loaded));
            }
        }
    }
    Ok(out)
}
