//! `[[source]]`: each provider's system, its kind and settings.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, check_http_url, invalid, is_ods_code, is_slug};

/// What happens to a source's resource that does not conform to its profile.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Conformance {
    /// Disclosed, tagged in `meta.tag`, and each problem named in the Bundle's
    /// OperationOutcome.
    #[default]
    Flag,
    /// Withheld and counted.
    Drop,
    /// Not checked.
    Off,
}

/// One `[[source]]`, as written. Both kinds share one flat table so that a misspelt key is
/// always reported with its line; [`SourceConfig::kind`] gives the typed settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Short id, `[a-z0-9-]`, at most 16 characters; it prefixes the gateway ids of the
    /// source's resources (`gp.obs-1`), so it must never change once in use.
    pub id: String,
    /// Display name of the provider, shown in outcomes and tags.
    pub name: String,
    /// ODS code of the organisation that controls the source's data.
    pub ods: String,
    /// `fhir` (an upstream FHIR R4 REST server) or `ndjson` (a directory of Bulk Data files).
    pub kind: SourceKindName,
    /// fhir: the server's FHIR base URL.
    pub base_url: Option<String>,
    /// fhir: deadline for one operation against the source (all its pages), in milliseconds.
    pub timeout_ms: Option<u64>,
    /// fhir: most requests in flight to this source at once.
    pub max_concurrency: Option<usize>,
    /// fhir: most searchset pages followed for one search; more is reported as truncated.
    pub max_pages: Option<usize>,
    /// fhir: `_count` asked of the upstream per page.
    pub page_size: Option<usize>,
    /// fhir: use the upstream's `Patient/{id}/$everything` rather than one search per type.
    pub everything_operation: Option<bool>,
    /// fhir: resource types to ask this source for; defaults to every type the gateway serves.
    pub resource_types: Option<Vec<String>>,
    /// fhir: consecutive failures that open the circuit breaker.
    pub breaker_failures: Option<u32>,
    /// fhir: how long an open breaker skips the source, in seconds.
    pub breaker_cool_down_secs: Option<u64>,
    /// store and fhir: the types it accepts writes of (of `CarePlan`, `Goal`, `Flag`); none
    /// when left out. An NDJSON export never accepts writes.
    pub writes: Option<Vec<String>>,
    /// store and fhir: where a new resource that belongs to no plan and to no source of the
    /// author's organisation is written (at most one source says `true`; it must accept
    /// writes).
    pub write_default: Option<bool>,
    /// fhir: the server honours a conditional create (`If-None-Exist`), so the gateway
    /// forwards it (default false: a conditional create routed here is refused). A store
    /// source always honours it.
    pub conditional_create: Option<bool>,
    /// ndjson: directory holding `{ResourceType}.ndjson` files (relative to the config file).
    pub path: Option<PathBuf>,
    /// What happens to a resource that does not conform to its profile: `flag` (default),
    /// `drop` or `off`.
    #[serde(default)]
    pub conformance: Conformance,
    /// fhir: `[source.tls]`, the CAs to trust and the client certificate to present.
    pub tls: Option<SourceTlsConfig>,
    /// fhir: `[source.oauth]`, OAuth 2.0 client credentials with a signed JWT assertion.
    pub oauth: Option<OAuthConfig>,
    /// fhir and ndjson: how often the record locator syncs this source, in seconds, over
    /// `[locator] sync_interval_secs`; 0: never (the source is then always asked).
    pub locator_sync_secs: Option<u64>,
}

/// `[source.tls]`: TLS towards one upstream.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceTlsConfig {
    /// PEM bundle of the CAs to trust for this source *instead of* the system's roots (a
    /// provider on a private network such as HSCN usually has its own CA).
    pub ca_file: Option<PathBuf>,
    /// PEM file with the certificate chain the gateway presents (mutual TLS).
    pub client_cert_file: Option<PathBuf>,
    /// PEM file with that certificate's private key.
    pub client_key_file: Option<PathBuf>,
}

/// `[source.oauth]`: the SMART Backend Services pattern. The gateway signs a short-lived JWT
/// assertion with its private key, exchanges it at the token endpoint for an access token
/// (`grant_type=client_credentials`) and sends that token to the source until shortly before
/// it expires.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthConfig {
    /// The authorisation server's token endpoint.
    pub token_url: String,
    /// The gateway's client id, registered with that server (`iss` and `sub` of the assertion).
    pub client_id: String,
    /// PEM file with the private key the assertion is signed with.
    pub key_file: PathBuf,
    /// `RS384` or `ES384` (what SMART Backend Services names), or `RS256`, `ES256`, `EdDSA`.
    pub algorithm: String,
    /// `kid` put in the assertion's header, naming the key in the server's JWKS.
    pub kid: Option<String>,
    /// Scopes asked for, e.g. `system/*.rs`.
    pub scope: String,
}

/// Algorithms an OAuth client assertion may be signed with.
pub const ASSERTION_ALGORITHMS: &[&str] = &["RS384", "ES384", "RS256", "ES256", "EdDSA"];

/// The types a `kind = "store"` source holds, and the types any source may accept writes of.
pub const STORE_TYPES: &[&str] = &["CarePlan", "Goal", "Flag"];

/// The kinds of source.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SourceKindName {
    /// An upstream FHIR R4 REST server.
    Fhir,
    /// A directory of FHIR Bulk Data export files.
    Ndjson,
    /// Resources kept in Concord's own store (what no provider owns).
    Store,
}

/// A source's typed settings.
#[derive(Debug, Clone)]
pub enum SourceKind {
    /// An upstream FHIR R4 REST server.
    Fhir(Box<FhirSourceConfig>),
    /// A directory of FHIR Bulk Data export files.
    Ndjson(NdjsonSourceConfig),
    /// Resources kept in Concord's own store.
    Store(StoreSourceConfig),
}

/// Settings of a `kind = "store"` source.
#[derive(Debug, Clone)]
pub struct StoreSourceConfig {
    /// The types it accepts writes of.
    pub writes: Vec<String>,
}

/// Settings of a `kind = "fhir"` source, with defaults applied.
#[derive(Debug, Clone)]
pub struct FhirSourceConfig {
    /// The server's FHIR base URL, without a trailing slash.
    pub base_url: String,
    /// Deadline for one operation (default 3000 ms).
    pub timeout: Duration,
    /// Most requests in flight at once (default 32).
    pub max_concurrency: usize,
    /// Most pages followed for one search (default 20).
    pub max_pages: usize,
    /// `_count` per page (default 200).
    pub page_size: usize,
    /// Use `$everything` upstream (default false).
    pub everything_operation: bool,
    /// Types to ask for (default: all the gateway serves).
    pub resource_types: Option<Vec<String>>,
    /// Consecutive failures that open the breaker (default 5).
    pub breaker_failures: u32,
    /// Cool-down of an open breaker (default 30 s).
    pub breaker_cool_down: Duration,
    /// TLS settings towards the upstream.
    pub tls: Option<SourceTlsConfig>,
    /// Client-credentials settings.
    pub oauth: Option<OAuthConfig>,
    /// The types it accepts writes of (`POST` and `PUT` forwarded to it).
    pub writes: Vec<String>,
    /// It honours `If-None-Exist` (default false).
    pub conditional_create: bool,
}

/// Settings of a `kind = "ndjson"` source.
#[derive(Debug, Clone)]
pub struct NdjsonSourceConfig {
    /// Directory holding `{ResourceType}.ndjson` files.
    pub path: PathBuf,
}

impl SourceConfig {
    /// The typed settings; errors name the field (`index` is the source's position).
    pub fn kind(&self, index: usize) -> Result<SourceKind, ConfigError> {
        match self.kind {
            SourceKindName::Ndjson => self.ndjson(index).map(SourceKind::Ndjson),
            SourceKindName::Fhir => self.fhir(index).map(|f| SourceKind::Fhir(Box::new(f))),
            SourceKindName::Store => self.store(index).map(SourceKind::Store),
        }
    }

    /// The settings of a `kind = "store"` source: none of the fhir or ndjson settings, and
    /// `writes` only of the types it holds.
    fn store(&self, index: usize) -> Result<StoreSourceConfig, ConfigError> {
        let fhir_only = self.fhir_only_settings();
        if let Some((name, _)) = fhir_only.iter().find(|(_, set)| *set) {
            return Err(invalid(
                field(index, name),
                "applies only to kind = \"fhir\"",
            ));
        }
        if self.path.is_some() {
            return Err(invalid(
                field(index, "path"),
                "applies only to kind = \"ndjson\"",
            ));
        }
        if self.locator_sync_secs.is_some() {
            return Err(invalid(
                field(index, "locator_sync_secs"),
                "applies only to kind = \"fhir\" and kind = \"ndjson\" (a store source is always asked)",
            ));
        }
        let writes = self.writes(index)?;
        Ok(StoreSourceConfig { writes })
    }

    /// The settings only a `kind = "fhir"` source takes, each with whether it is set, in the
    /// order they are reported.
    fn fhir_only_settings(&self) -> [(&'static str, bool); 12] {
        [
            ("base_url", self.base_url.is_some()),
            ("timeout_ms", self.timeout_ms.is_some()),
            ("max_concurrency", self.max_concurrency.is_some()),
            ("max_pages", self.max_pages.is_some()),
            ("page_size", self.page_size.is_some()),
            ("everything_operation", self.everything_operation.is_some()),
            ("resource_types", self.resource_types.is_some()),
            ("breaker_failures", self.breaker_failures.is_some()),
            (
                "breaker_cool_down_secs",
                self.breaker_cool_down_secs.is_some(),
            ),
            ("tls", self.tls.is_some()),
            ("oauth", self.oauth.is_some()),
            ("conditional_create", self.conditional_create.is_some()),
        ]
    }

    /// The settings of a `kind = "ndjson"` source: its path, and none of the fhir settings.
    fn ndjson(&self, index: usize) -> Result<NdjsonSourceConfig, ConfigError> {
        let fhir_only = self.fhir_only_settings();
        if let Some((name, _)) = fhir_only.iter().find(|(_, set)| *set) {
            return Err(invalid(
                field(index, name),
                "applies only to kind = \"fhir\"",
            ));
        }
        self.no_writes(index)?;
        let path = self
            .path
            .clone()
            .ok_or_else(|| invalid(field(index, "path"), "is required for kind = \"ndjson\""))?;
        Ok(NdjsonSourceConfig { path })
    }

    /// An NDJSON export never takes writes.
    fn no_writes(&self, index: usize) -> Result<(), ConfigError> {
        if self.writes.is_some() {
            return Err(invalid(
                field(index, "writes"),
                "an NDJSON export never accepts writes (only kind = \"store\" or \"fhir\")",
            ));
        }
        if self.write_default.is_some() {
            return Err(invalid(
                field(index, "write_default"),
                "an NDJSON export never accepts writes (only kind = \"store\" or \"fhir\")",
            ));
        }
        Ok(())
    }

    /// The types a store or fhir source accepts writes of: only CarePlan, Goal and Flag,
    /// each once.
    fn writes(&self, index: usize) -> Result<Vec<String>, ConfigError> {
        let writes = self.writes.clone().unwrap_or_default();
        for (i, t) in writes.iter().enumerate() {
            if !STORE_TYPES.contains(&t.as_str()) {
                return Err(invalid(
                    field(index, "writes"),
                    format!("`{t}`: writes are accepted only of CarePlan, Goal and Flag"),
                ));
            }
            if writes[..i].contains(t) {
                return Err(invalid(
                    field(index, "writes"),
                    format!("`{t}` is named twice"),
                ));
            }
        }
        if self.write_default == Some(true) && writes.is_empty() {
            return Err(invalid(
                field(index, "write_default"),
                "the default source for writes must accept some (`writes`)",
            ));
        }
        Ok(writes)
    }

    /// The settings of a `kind = "fhir"` source, checked, with defaults applied.
    fn fhir(&self, index: usize) -> Result<FhirSourceConfig, ConfigError> {
        let writes = self.writes(index)?;
        if self.path.is_some() {
            return Err(invalid(
                field(index, "path"),
                "applies only to kind = \"ndjson\"",
            ));
        }
        let base_url = self
            .base_url
            .clone()
            .ok_or_else(|| invalid(field(index, "base_url"), "is required for kind = \"fhir\""))?;
        check_http_url(&field(index, "base_url"), &base_url)?;
        let timeout = positive(index, "timeout_ms", self.timeout_ms.unwrap_or(3_000))?;
        let cool_down = positive(
            index,
            "breaker_cool_down_secs",
            self.breaker_cool_down_secs.unwrap_or(30),
        )?;
        let max_concurrency = positive(
            index,
            "max_concurrency",
            self.max_concurrency.unwrap_or(32) as u64,
        )? as usize;
        let max_pages = positive(index, "max_pages", self.max_pages.unwrap_or(20) as u64)? as usize;
        let page_size =
            positive(index, "page_size", self.page_size.unwrap_or(200) as u64)? as usize;
        let breaker_failures = positive(
            index,
            "breaker_failures",
            u64::from(self.breaker_failures.unwrap_or(5)),
        )? as u32;
        self.check_resource_types(index)?;
        self.check_tls(index)?;
        self.check_oauth(index)?;
        let conditional_create = self.conditional_create.unwrap_or(false);
        if conditional_create && writes.is_empty() {
            return Err(invalid(
                field(index, "conditional_create"),
                "applies only to a source that accepts writes (`writes`)",
            ));
        }
        Ok(FhirSourceConfig {
            base_url: base_url.trim_end_matches('/').to_owned(),
            timeout: Duration::from_millis(timeout),
            max_concurrency,
            max_pages,
            page_size,
            everything_operation: self.everything_operation.unwrap_or(false),
            resource_types: self.resource_types.clone(),
            breaker_failures,
            breaker_cool_down: Duration::from_secs(cool_down),
            tls: self.tls.clone(),
            oauth: self.oauth.clone(),
            writes,
            conditional_create,
        })
    }

    /// Checks that every type in `resource_types` is one the gateway serves.
    fn check_resource_types(&self, index: usize) -> Result<(), ConfigError> {
        for t in self.resource_types.iter().flatten() {
            if crate::fhir::search::type_def(t).is_none() {
                return Err(invalid(
                    field(index, "resource_types"),
                    format!("`{t}` is not a resource type the gateway serves"),
                ));
            }
        }
        Ok(())
    }

    /// Checks that `[source.tls]` names a client certificate and its key together or
    /// neither.
    fn check_tls(&self, index: usize) -> Result<(), ConfigError> {
        if let Some(tls) = &self.tls
            && tls.client_cert_file.is_some() != tls.client_key_file.is_some()
        {
            return Err(invalid(
                field(index, "tls.client_key_file"),
                "client_cert_file and client_key_file go together",
            ));
        }
        Ok(())
    }

    /// Checks `[source.oauth]`: an http(s) token URL, a client id, and an algorithm of
    /// [`ASSERTION_ALGORITHMS`].
    fn check_oauth(&self, index: usize) -> Result<(), ConfigError> {
        let Some(oauth) = &self.oauth else {
            return Ok(());
        };
        check_http_url(&field(index, "oauth.token_url"), &oauth.token_url)?;
        if oauth.client_id.trim().is_empty() {
            return Err(invalid(
                field(index, "oauth.client_id"),
                "must not be empty",
            ));
        }
        if !ASSERTION_ALGORITHMS.contains(&oauth.algorithm.as_str()) {
            return Err(invalid(
                field(index, "oauth.algorithm"),
                format!(
                    "`{}` is not one of {}",
                    oauth.algorithm,
                    ASSERTION_ALGORITHMS.join(", ")
                ),
            ));
        }
        Ok(())
    }
}

/// The name of a setting of the `index`th source in errors: `source[2].base_url`.
fn field(index: usize, name: &str) -> String {
    format!("source[{index}].{name}")
}

/// `value` when it is greater than 0; otherwise an error naming the `index`th source's
/// setting `name`.
fn positive(index: usize, name: &str, value: u64) -> Result<u64, ConfigError> {
    if value == 0 {
        Err(invalid(field(index, name), "must be greater than 0"))
    } else {
        Ok(value)
    }
}

/// Checks every `[[source]]` beyond its types: unique ids, names, ODS codes, and timeouts
/// shorter than the request's.
pub(super) fn validate(
    sources: &[SourceConfig],
    server: &super::ServerConfig,
) -> Result<(), ConfigError> {
    let mut ids = HashSet::new();
    let defaults = sources
        .iter()
        .filter(|s| s.write_default == Some(true))
        .count();
    if defaults > 1 {
        return Err(invalid(
            "source.write_default",
            format!("{defaults} sources say `write_default = true`; at most one may"),
        ));
    }
    for (i, src) in sources.iter().enumerate() {
        let field = |name: &str| format!("source[{i}].{name}");
        if src.id.len() > 16 || !is_slug(&src.id) {
            return Err(invalid(
                field("id"),
                format!("`{}` must be 1 to 16 characters of a-z, 0-9 and -", src.id),
            ));
        }
        if !ids.insert(src.id.as_str()) {
            return Err(invalid(
                field("id"),
                format!("`{}` is used by another source", src.id),
            ));
        }
        if src.name.trim().is_empty() {
            return Err(invalid(field("name"), "must not be empty"));
        }
        if !is_ods_code(&src.ods) {
            return Err(invalid(
                field("ods"),
                format!(
                    "`{}` is not an ODS code (3 to 10 upper-case letters and digits)",
                    src.ods
                ),
            ));
        }
        if let SourceKind::Fhir(f) = src.kind(i)?
            && f.timeout >= server.request_timeout()
        {
            return Err(invalid(
                field("timeout_ms"),
                format!(
                    "{} ms must be shorter than server.request_timeout_ms ({} ms), so that a slow source is caught by its own timeout and circuit breaker",
                    f.timeout.as_millis(),
                    server.request_timeout_ms
                ),
            ));
        }
        if let SourceKind::Ndjson(n) = src.kind(i)?
            && !n.path.is_dir()
        {
            return Err(invalid(
                field("path"),
                format!("`{}` is not a directory", n.path.display()),
            ));
        }
    }
    Ok(())
}
