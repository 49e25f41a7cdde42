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
use super::oauth::TokenClient;
use super::{
    Fetched, NhsPage, SetupError, Source, SourceError, SourceInfo, SourceWrite, SourceWritten,
    WriteFailure,
};
use crate::config::FhirSourceConfig;
use crate::fhir::reference::is_valid_id;
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
    oauth: Option<TokenClient>,
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
        let mut builder = reqwest::Client::builder()
            .default_headers(headers)
            .user_agent(concat!("concord/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(config.timeout.min(Duration::from_secs(5)))
            .timeout(config.timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::none());
        if let Some(tls) = &config.tls {
            let read = |path: &std::path::Path, what: &str| {
                std::fs::read(path).map_err(|e| {
                    client_error(format!("cannot read tls.{what} `{}`: {e}", path.display()))
                })
            };
            if let Some(path) = &tls.ca_file {
                let cas = reqwest::Certificate::from_pem_bundle(&read(path, "ca_file")?)
                    .ok()
                    .filter(|cas| !cas.is_empty())
                    .ok_or_else(|| {
                        client_error(format!(
                            "tls.ca_file `{}` holds no usable certificate",
                            path.display()
                        ))
                    })?;
                builder = builder.tls_certs_only(cas);
            }
            if let (Some(cert), Some(key)) = (&tls.client_cert_file, &tls.client_key_file) {
                let mut pem = read(cert, "client_cert_file")?;
                pem.push(b'\n');
                pem.extend(read(key, "client_key_file")?);
                let identity = reqwest::Identity::from_pem(&pem).map_err(|e| {
                    client_error(format!(
                        "tls.client_cert_file and tls.client_key_file are not a usable certificate and key: {e}"
                    ))
                })?;
                builder = builder.identity(identity);
            }
        }
        let client = builder.build().map_err(|e| client_error(e.to_string()))?;
        let oauth = config
            .oauth
            .clone()
            .map(|o| TokenClient::new(&info.id, o))
            .transpose()?;
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
            oauth,
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

    /// Runs one operation behind the breaker, recording its outcome (once, however many
    /// upstream calls it made) and metrics.
    async fn guarded<T>(
        &self,
        operation: &'static str,
        work: impl Future<Output = Result<T, SourceError>>,
    ) -> Result<T, SourceError> {
        let started = Instant::now();
        let result = if self.breaker.allow() {
            let result = work.await;
            match &result {
                Err(e) if e.is_upstream_failure() => self.breaker.failure(),
                // The gateway's own queue was full: says nothing about the upstream.
                Err(SourceError::Saturated) => {}
                // An answer, even a 4xx, shows the upstream is up.
                _ => self.breaker.success(),
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

    /// Runs upstream work under the concurrency limit and the source's timeout. Waiting for a
    /// place in the queue is bounded by the same timeout but reported apart
    /// ([`SourceError::Saturated`]), so that load on the gateway never opens the breaker of a
    /// healthy upstream.
    async fn limited<T>(
        &self,
        work: impl Future<Output = Result<T, SourceError>>,
    ) -> Result<T, SourceError> {
        let _permit = match tokio::time::timeout(self.config.timeout, self.permits.acquire()).await
        {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) | Err(_) => return Err(SourceError::Saturated),
        };
        match tokio::time::timeout(self.config.timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(SourceError::Timeout),
        }
    }

    /// A URL under the base: `{base}/{segment}/{segment}…` with query pairs. Segments are
    /// added one by one (never parsed as a relative path), and ids that are not valid FHIR ids
    /// (including `.` and `..`) are refused before any request is made.
    fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> Result<Url, SourceError> {
        let mut url = self.base.clone();
        for segment in segments {
            if !is_valid_id(segment) && !segment.starts_with('$') {
                return Err(SourceError::InvalidResponse(
                    "refused to build a URL from an invalid id".into(),
                ));
            }
        }
        url.path_segments_mut()
            .map_err(|()| SourceError::InvalidResponse("base URL cannot hold a path".into()))?
            .pop_if_empty()
            .extend(segments);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        Ok(url)
    }

    /// True when `url` is on the same origin and under the base path.
    fn is_own(&self, url: &Url) -> bool {
        url.origin() == self.base.origin() && url.path().starts_with(self.base.path())
    }

    /// Sends a GET, with the source's access token when it has `[source.oauth]`. A 401 drops
    /// the token and tries once more with a new one (the server may have revoked it early).
    async fn send(&self, url: Url) -> Result<reqwest::Response, SourceError> {
        self.send_with(|client| client.get(url.clone())).await
    }

    /// Sends the request `make` builds, with the source's access token when it has
    /// `[source.oauth]`; a 401 drops the token and sends it once more with a new one.
    async fn send_with(
        &self,
        make: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, SourceError> {
        let connect = |e: reqwest::Error| {
            if e.is_timeout() {
                SourceError::Timeout
            } else {
                SourceError::Connect(e.without_url().to_string())
            }
        };
        let Some(oauth) = &self.oauth else {
            return make(&self.client).send().await.map_err(connect);
        };
        let token = oauth.token(&self.client).await?;
        let response = make(&self.client)
            .bearer_auth(&token)
            .send()
            .await
            .map_err(connect)?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        oauth.invalidate(&token).await;
        let token = oauth.token(&self.client).await?;
        make(&self.client)
            .bearer_auth(&token)
            .send()
            .await
            .map_err(connect)
    }

    /// `POST {base}/{type}` or `PUT {base}/{type}/{id}` with `If-Match: W/"{version}"`; the
    /// new id and version from the answer's `Location`, `ETag` or body.
    async fn send_write(&self, write: SourceWrite<'_>) -> Result<SourceWritten, WriteFailure> {
        let (url, method) = match write.id {
            Some(id) => (
                self.url(&[write.resource_type, id], &[])?,
                reqwest::Method::PUT,
            ),
            None => (
                self.url(&[write.resource_type], &[])?,
                reqwest::Method::POST,
            ),
        };
        let if_match = write.if_match.map(|v| format!("W/\"{v}\""));
        // Sent only to a server configured to honour it (the door refuses it otherwise).
        let if_none_exist = write
            .if_none_exist
            .filter(|_| self.config.conditional_create && write.id.is_none())
            .map(|pairs| {
                form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                    .finish()
            });
        let bytes = bytes::Bytes::copy_from_slice(write.bytes);
        let mut response = self
            .send_with(|client| {
                let mut request = client
                    .request(method.clone(), url.clone())
                    .header(reqwest::header::CONTENT_TYPE, FHIR_JSON)
                    .header("Prefer", "return=representation")
                    .body(bytes.clone());
                if let Some(tag) = &if_match {
                    request = request.header(reqwest::header::IF_MATCH, tag);
                }
                if let Some(condition) = &if_none_exist {
                    request = request.header("If-None-Exist", condition);
                }
                request
            })
            .await?;
        let status = response.status();
        let header = |name: reqwest::header::HeaderName| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let location = header(reqwest::header::LOCATION);
        let etag = header(reqwest::header::ETAG);
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| SourceError::Connect(e.without_url().to_string()))?
        {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(SourceError::InvalidResponse("body too large".into()).into());
            }
            body.extend_from_slice(&chunk);
        }
        let json: Option<Value> = serde_json::from_slice(&body).ok();
        match status {
            // To a conditional create, 412 says the search found more than one match.
            StatusCode::PRECONDITION_FAILED if if_none_exist.is_some() => {
                return Err(WriteFailure::Ambiguous);
            }
            StatusCode::PRECONDITION_FAILED | StatusCode::CONFLICT => {
                return Err(WriteFailure::Conflict);
            }
            s if s.is_client_error() => {
                return Err(WriteFailure::Refused {
                    status: s.as_u16(),
                    diagnostics: json.as_ref().and_then(outcome_text),
                });
            }
            s if !s.is_success() => return Err(SourceError::Status(s.as_u16()).into()),
            _ => {}
        }
        let from_location = location.as_deref().and_then(|l| {
            let path = l.split_once(&format!("{}/", write.resource_type))?.1;
            let mut parts = path.split('/');
            let id = parts.next()?.to_owned();
            let version = match (parts.next(), parts.next()) {
                (Some("_history"), Some(v)) => Some(v.to_owned()),
                _ => None,
            };
            Some((id, version))
        });
        let body_id = json
            .as_ref()
            .and_then(|v| v.get("id"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let id = body_id
            .or_else(|| from_location.as_ref().map(|(id, _)| id.clone()))
            .or_else(|| write.id.map(str::to_owned))
            .filter(|id| is_valid_id(id))
            .ok_or_else(|| {
                SourceError::InvalidResponse("the write's answer names no valid id".into())
            })?;
        let version = etag
            .as_deref()
            .map(|t| t.trim_start_matches("W/").trim_matches('"').to_owned())
            .or_else(|| {
                json.as_ref()
                    .and_then(|v| v.pointer("/meta/versionId"))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .or_else(|| from_location.and_then(|(_, v)| v));
        // A create answered 200 rather than 201 found its one match and wrote nothing.
        let existed = write.id.is_none() && if_none_exist.is_some() && status == StatusCode::OK;
        Ok(SourceWritten {
            id,
            version,
            existed,
        })
    }

    async fn get(&self, url: Url) -> Result<Got, SourceError> {
        let mut response = self.send(url).await?;
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
            // A search or a next page that is not there is a failure, not an empty result:
            // a wrong base URL or an expired paging link must not look like "no records".
            let mut bundle = match self.get(url).await? {
                Got::Json(v) => v,
                Got::NotFound => return Err(SourceError::Status(404)),
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

    fn may_hold(&self, resource_type: &str) -> bool {
        self.serves(resource_type)
    }

    async fn find_patients(&self, nhs: &NhsNumber) -> Result<Fetched, SourceError> {
        let identifier = format!("{NHS_NUMBER_SYSTEM}|{}", nhs.as_str());
        let url = self.url(
            &["Patient"],
            &[("identifier", &identifier), ("_count", &self.count())],
        )?;
        self.guarded("find_patient", self.limited(self.search_pages(url)))
            .await
    }

    async fn sample(&self, resource_type: &str, count: usize) -> Result<Fetched, SourceError> {
        if !self.serves(resource_type) {
            return Ok(Fetched::default());
        }
        let url = self.url(&[resource_type], &[("_count", &count.to_string())])?;
        let mut fetched = self
            .guarded("sample", self.limited(self.search_pages(url)))
            .await?;
        fetched.resources.truncate(count);
        Ok(fetched)
    }

    async fn search(&self, resource_type: &str, patient_id: &str) -> Result<Fetched, SourceError> {
        if !self.serves(resource_type) {
            return Ok(Fetched::default());
        }
        self.guarded(
            "search",
            self.limited(self.search_type(resource_type, patient_id)),
        )
        .await
    }

    async fn everything(
        &self,
        patient_id: &str,
        types: &[&'static str],
    ) -> Result<Fetched, SourceError> {
        if self.config.everything_operation {
            let url = self.url(
                &["Patient", patient_id, "$everything"],
                &[("_count", &self.count())],
            )?;
            let mut fetched = self
                .guarded("everything", self.limited(self.search_pages(url)))
                .await?;
            fetched.resources.retain(|r| {
                r.get("resourceType")
                    .and_then(Value::as_str)
                    .is_some_and(|t| types.contains(&t))
            });
            return Ok(fetched);
        }
        self.guarded("everything", self.everything_by_type(patient_id, types))
            .await
    }

    async fn read(&self, resource_type: &str, id: &str) -> Result<Option<Value>, SourceError> {
        let url = self.url(&[resource_type, id], &[])?;
        let got = self.guarded("read", self.limited(self.get(url))).await?;
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

    fn lists_nhs_numbers(&self) -> bool {
        true
    }

    /// A `Patient` search for everyone with an NHS number, asking for identifiers only
    /// (`_elements=identifier`), one page at a time; the cursor is the searchset's `next`
    /// link, followed only when it points back into this source.
    async fn nhs_numbers(
        &self,
        cursor: Option<&str>,
        count: usize,
    ) -> Result<NhsPage, SourceError> {
        let url = match cursor {
            None => {
                let system = format!("{NHS_NUMBER_SYSTEM}|");
                self.url(
                    &["Patient"],
                    &[
                        ("identifier", system.as_str()),
                        ("_elements", "identifier"),
                        ("_count", &count.to_string()),
                    ],
                )?
            }
            Some(cursor) => Url::parse(cursor)
                .ok()
                .filter(|u| self.is_own(u))
                .ok_or_else(|| {
                    SourceError::InvalidResponse(
                        "the listing's next link is not on the source".into(),
                    )
                })?,
        };
        self.guarded("list_nhs_numbers", self.limited(self.nhs_page(url)))
            .await
    }

    fn breaker_state(&self) -> BreakerState {
        self.breaker.state()
    }

    fn accepts_writes(&self, resource_type: &str) -> bool {
        self.config.writes.iter().any(|t| t == resource_type)
    }

    fn conditional_create(&self) -> bool {
        self.config.conditional_create
    }

    /// Forwarded once (never retried: a write is not idempotent), under the source's
    /// deadline, concurrency limit and breaker.
    async fn write(&self, write: SourceWrite<'_>) -> Result<SourceWritten, WriteFailure> {
        if !self.accepts_writes(write.resource_type) {
            return Err(WriteFailure::NotAccepted);
        }
        let started = Instant::now();
        let result = if self.breaker.allow() {
            let _permit =
                match tokio::time::timeout(self.config.timeout, self.permits.acquire()).await {
                    Ok(Ok(permit)) => permit,
                    Ok(Err(_)) | Err(_) => return Err(SourceError::Saturated.into()),
                };
            let result =
                match tokio::time::timeout(self.config.timeout, self.send_write(write)).await {
                    Ok(r) => r,
                    Err(_) => Err(SourceError::Timeout.into()),
                };
            match &result {
                Err(WriteFailure::Failed(e)) if e.is_upstream_failure() => self.breaker.failure(),
                _ => self.breaker.success(),
            }
            result
        } else {
            Err(SourceError::Unavailable.into())
        };
        self.publish_breaker();
        let label = match &result {
            Ok(_) => "ok",
            Err(WriteFailure::Failed(e)) => e.kind(),
            Err(WriteFailure::Conflict) => "conflict",
            Err(WriteFailure::Ambiguous) => "ambiguous",
            Err(WriteFailure::Refused { .. }) => "refused",
            Err(WriteFailure::NotAccepted) => "not_accepted",
        };
        self.metrics
            .source_call(&self.info.id, "write", label, started.elapsed());
        if let Err(e) = &result {
            tracing::warn!(source.id = %self.info.id, operation = "write", error = %e, "source write not taken");
        }
        result
    }
}

/// The diagnostics of an OperationOutcome's issues, joined, at most 500 characters.
fn outcome_text(outcome: &Value) -> Option<String> {
    if outcome.get("resourceType").and_then(Value::as_str) != Some("OperationOutcome") {
        return None;
    }
    let text: Vec<&str> = outcome
        .get("issue")?
        .as_array()?
        .iter()
        .filter_map(|i| {
            i.get("diagnostics")
                .or_else(|| i.pointer("/details/text"))
                .and_then(Value::as_str)
        })
        .collect();
    let joined = text.join("; ");
    (!joined.is_empty()).then(|| joined.chars().take(500).collect())
}

impl FhirSource {
    async fn search_type(
        &self,
        resource_type: &str,
        patient_id: &str,
    ) -> Result<Fetched, SourceError> {
        let url = self.url(
            &[resource_type],
            &[("patient", patient_id), ("_count", &self.count())],
        )?;
        self.search_pages(url).await
    }

    /// `$everything` as one search per type, in parallel. A type the upstream does not
    /// support (400, 404, 405 or 501 to its search) is left out and counted; any other
    /// failure fails the whole answer from this source, so that it is reported as missing
    /// rather than silently partial.
    async fn everything_by_type(
        &self,
        patient_id: &str,
        types: &[&'static str],
    ) -> Result<Fetched, SourceError> {
        let wanted: Vec<&str> = types.iter().copied().filter(|t| self.serves(t)).collect();
        let patient = async {
            if wanted.contains(&"Patient") {
                let url = self.url(&["Patient", patient_id], &[])?;
                match self.limited(self.get(url)).await? {
                    Got::Json(p) => Ok(vec![Arc::new(p)]),
                    Got::NotFound => Ok(Vec::new()),
                }
            } else {
                Ok(Vec::new())
            }
        };
        let searches = futures_util::future::join_all(
            wanted
                .iter()
                .filter(|t| **t != "Patient")
                .map(|t| self.limited(self.search_type(t, patient_id))),
        );
        let (patient, results) = tokio::join!(patient, searches);
        let mut fetched = Fetched {
            resources: patient?,
            truncated: false,
        };
        for result in results {
            match result {
                Ok(part) => {
                    fetched.truncated |= part.truncated;
                    fetched.resources.extend(part.resources);
                }
                Err(SourceError::Status(400 | 404 | 405 | 501)) => {
                    self.metrics
                        .source_fault(&self.info.id, "type_not_supported", 1);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(fetched)
    }

    /// One page of a Patient listing: the valid NHS numbers its Patients carry, and its
    /// `next` link (refused when it points outside the source).
    async fn nhs_page(&self, url: Url) -> Result<NhsPage, SourceError> {
        let bundle = match self.get(url).await? {
            Got::Json(v) => v,
            Got::NotFound => return Err(SourceError::Status(404)),
        };
        if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
            return Err(SourceError::InvalidResponse(
                "search did not return a Bundle".into(),
            ));
        }
        let mut page = NhsPage::default();
        for entry in bundle
            .get("entry")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(patient) = entry
                .get("resource")
                .filter(|r| r.get("resourceType").and_then(Value::as_str) == Some("Patient"))
            else {
                continue;
            };
            page.numbers.extend(
                crate::fhir::nhs_number::carried_by(patient)
                    .filter(|n| NhsNumber::parse(n).is_ok()),
            );
        }
        page.numbers.sort_unstable();
        page.numbers.dedup();
        if let Some(href) = next_link(&bundle) {
            let next = self
                .base
                .join(href)
                .ok()
                .filter(|u| self.is_own(u))
                .ok_or_else(|| {
                    SourceError::InvalidResponse("next link points outside the source".into())
                })?;
            page.next = Some(next.to_string());
        }
        Ok(page)
    }

    fn serves(&self, resource_type: &str) -> bool {
        match &self.config.resource_types {
            Some(types) => resource_type == "Patient" || types.iter().any(|t| t == resource_type),
            None => true,
        }
    }
}
