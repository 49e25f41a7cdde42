//! An upstream FHIR R4 REST server as a source.
//!
//! One pooled HTTP client (rustls) per source, sending `Accept: application/fhir+json`. Every
//! operation runs under the source's own deadline, behind its concurrency limit and circuit
//! breaker. Searchset `next` links are followed up to `max_pages`, and only when they point
//! back into the same server: a source cannot make the gateway fetch from elsewhere.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::{StatusCode, Url};
use serde_json::Value;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::breaker::{Breaker, BreakerState};
use super::{Fetched, SetupError, Source, SourceError, SourceInfo};
use crate::config::FhirSourceConfig;
use crate::fhir::{FHIR_JSON, NHS_NUMBER_SYSTEM, NhsNumber};
use crate::telemetry::Metrics;

/// Largest upstream response body accepted, per page.
const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// A FHIR REST source.
#[derive(Debug)]
pub struct FhirSource {
    info: SourceInfo,
    config: FhirSourceConfig,
    base: Url,
    client: reqwest::Client,
    permits: Arc<Semaphore>,
    breaker: Breaker,
    metrics: Arc<Metrics>,
}

/// The result of one GET.
enum Got {
    Json(Value),
    NotFound,
}

impl FhirSource {
    /// Builds the source and its HTTP client.
    pub fn new(
        info: SourceInfo,
        config: FhirSourceConfig,
        metrics: Arc<Metrics>,
    ) -> Result<Self, SetupError> {
        let client_error = |message: String| SetupError::Client {
            source_id: info.id.clone(),
            message,
        };
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::ACCEPT,
            reqwest::header::HeaderValue::from_static(FHIR_JSON),
        );
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .user_agent(concat!("concord/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(config.timeout.min(Duration::from_secs(5)))
            .timeout(config.timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| client_error(e.to_string()))?;
        let base = Url::parse(&format!("{}/", config.base_url))
            .map_err(|e| client_error(e.to_string()))?;
        let metrics_ = metrics.clone();
        let source = Self {
            permits: Arc::new(Semaphore::new(config.max_concurrency)),
            breaker: Breaker::new(config.breaker_failures, config.breaker_cool_down),
            info,
            config,
            base,
            client,
            metrics: metrics_,
        };
        source.publish_breaker();
        Ok(source)
    }

    fn publish_breaker(&self) {
        self.metrics
            .breaker_state
            .get_or_create(&crate::telemetry::SourceLabels {
                source: self.info.id.clone(),
            })
            .set(self.breaker.state().gauge());
    }

    /// Runs one operation behind the breaker and under the source deadline, recording metrics.
    async fn guarded<T>(
        &self,
        operation: &'static str,
        work: impl Future<Output = Result<T, SourceError>>,
    ) -> Result<T, SourceError> {
        let started = Instant::now();
        let result = if self.breaker.allow() {
            let result = match tokio::time::timeout(self.config.timeout, work).await {
                Ok(r) => r,
                Err(_) => Err(SourceError::Timeout),
            };
            match &result {
                Ok(_) | Err(SourceError::Status(400..=428 | 430..=499)) => self.breaker.success(),
                Err(_) => self.breaker.failure(),
            }
            result
        } else {
            Err(SourceError::Unavailable)
        };
        self.publish_breaker();
        let label = match &result {
            Ok(_) => "ok",
            Err(e) => e.kind(),
        };
        self.metrics
            .source_call(&self.info.id, operation, label, started.elapsed());
        if let Err(e) = &result {
            tracing::warn!(source.id = %self.info.id, operation, error = %e, "source call failed");
        }
        result
    }

    /// A URL under the base: `{base}/{path}` with query pairs.
    fn url(&self, path: &str, query: &[(&str, &str)]) -> Result<Url, SourceError> {
        let mut url = self
            .base
            .join(path)
            .map_err(|e| SourceError::InvalidResponse(format!("bad url: {e}")))?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        Ok(url)
    }

    /// True when `url` is on the same origin and under the base path.
    fn is_own(&self, url: &Url) -> bool {
        url.origin() == self.base.origin() && url.path().starts_with(self.base.path())
    }

    async fn get(&self, url: Url) -> Result<Got, SourceError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| SourceError::Unavailable)?;
        let mut response = self.client.get(url).send().await.map_err(|e| {
            if e.is_timeout() {
                SourceError::Timeout
            } else {
                SourceError::Connect(e.without_url().to_string())
            }
        })?;
        match response.status() {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND | StatusCode::GONE => return Ok(Got::NotFound),
            other => return Err(SourceError::Status(other.as_u16())),
        }
        if response
            .content_length()
            .is_some_and(|n| n > MAX_BODY_BYTES as u64)
        {
            return Err(SourceError::InvalidResponse("body too large".into()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| {
            if e.is_timeout() {
                SourceError::Timeout
            } else {
                SourceError::Connect(e.without_url().to_string())
            }
        })? {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(SourceError::InvalidResponse("body too large".into()));
            }
            body.extend_from_slice(&chunk);
        }
        let value: Value = serde_json::from_slice(&body)
            .map_err(|e| SourceError::InvalidResponse(format!("not JSON: {e}")))?;
        if !value.is_object() {
            return Err(SourceError::InvalidResponse("not a JSON object".into()));
        }
        Ok(Got::Json(value))
    }

    /// Follows a searchset from `first`, collecting entry resources, up to `max_pages` pages.
    async fn search_pages(&self, first: Url) -> Result<Fetched, SourceError> {
        let mut fetched = Fetched::default();
        let mut next = Some(first);
        let mut pages = 0;
        while let Some(url) = next.take() {
            if pages == self.config.max_pages {
                fetched.truncated = true;
                self.metrics.source_fault(&self.info.id, "truncated", 1);
                break;
            }
            pages += 1;
            let mut bundle = match self.get(url).await? {
                Got::Json(v) => v,
                Got::NotFound => break,
            };
            if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
                return Err(SourceError::InvalidResponse(
                    "search did not return a Bundle".into(),
                ));
            }
            if let Some(Value::Array(entries)) = bundle.get_mut("entry") {
                for mut entry in entries.drain(..) {
                    let mode = entry.pointer("/search/mode").and_then(Value::as_str);
                    if mode == Some("outcome") {
                        continue;
                    }
                    match entry.get_mut("resource").map(Value::take) {
                        Some(r) if r.is_object() => fetched.resources.push(Arc::new(r)),
                        _ => {}
                    }
                }
            }
            next = next_link(&bundle).and_then(|href| self.base.join(href).ok());
            if let Some(url) = &next
                && !self.is_own(url)
            {
                return Err(SourceError::InvalidResponse(
                    "next link points outside the source".into(),
                ));
            }
        }
        Ok(fetched)
    }

    fn count(&self) -> String {
        self.config.page_size.to_string()
    }
}

fn next_link(bundle: &Value) -> Option<&str> {
    bundle
        .get("link")?
        .as_array()?
        .iter()
        .find(|l| l.get("relation").and_then(Value::as_str) == Some("next"))?
        .get("url")?
        .as_str()
}

#[async_trait]
impl Source for FhirSource {
    fn info(&self) -> &SourceInfo {
        &self.info
    }

    async fn find_patients(&self, nhs: &NhsNumber) -> Result<Fetched, SourceError> {
        let identifier = format!("{NHS_NUMBER_SYSTEM}|{}", nhs.as_str());
        let url = self.url(
            "Patient",
            &[("identifier", &identifier), ("_count", &self.count())],
        )?;
        self.guarded("find_patient", self.search_pages(url)).await
    }

    async fn search(&self, resource_type: &str, patient_id: &str) -> Result<Fetched, SourceError> {
        if !self.serves(resource_type) {
            return Ok(Fetched::default());
        }
        let url = self.url(
            resource_type,
            &[("patient", patient_id), ("_count", &self.count())],
        )?;
        self.guarded("search", self.search_pages(url)).await
    }

    async fn everything(
        &self,
        patient_id: &str,
        types: &[&'static str],
    ) -> Result<Fetched, SourceError> {
        if self.config.everything_operation {
            let url = self.url(
                &format!("Patient/{patient_id}/$everything"),
                &[("_count", &self.count())],
            )?;
            let mut fetched = self.guarded("everything", self.search_pages(url)).await?;
            fetched.resources.retain(|r| {
                r.get("resourceType")
                    .and_then(Value::as_str)
                    .is_some_and(|t| types.contains(&t))
            });
            return Ok(fetched);
        }
        let wanted: Vec<&str> = types.iter().copied().filter(|t| self.serves(t)).collect();
        let patient = async {
            if wanted.contains(&"Patient") {
                self.read("Patient", patient_id)
                    .await
                    .map(|p| p.into_iter().map(Arc::new).collect::<Vec<_>>())
            } else {
                Ok(Vec::new())
            }
        };
        let searches = futures_util::future::join_all(
            wanted
                .iter()
                .filter(|t| **t != "Patient")
                .map(|t| self.search(t, patient_id)),
        );
        let (patient, results) = tokio::join!(patient, searches);
        let mut fetched = Fetched {
            resources: patient?,
            truncated: false,
        };
        for result in results {
            let part = result?;
            fetched.truncated |= part.truncated;
            fetched.resources.extend(part.resources);
        }
        Ok(fetched)
    }

    async fn read(&self, resource_type: &str, id: &str) -> Result<Option<Value>, SourceError> {
        let url = self.url(&format!("{resource_type}/{id}"), &[])?;
        let got = self.guarded("read", self.get(url)).await?;
        match got {
            Got::NotFound => Ok(None),
            Got::Json(v)
                if v.get("resourceType").and_then(Value::as_str) == Some(resource_type) =>
            {
                Ok(Some(v))
            }
            Got::Json(_) => Err(SourceError::InvalidResponse(
                "read returned another resource type".into(),
            )),
        }
    }

    fn breaker_state(&self) -> BreakerState {
        self.breaker.state()
    }
}

impl FhirSource {
    fn serves(&self, resource_type: &str) -> bool {
        match &self.config.resource_types {
            Some(types) => resource_type == "Patient" || types.iter().any(|t| t == resource_type),
            None => true,
        }
    }
}
