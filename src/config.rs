//! The one TOML config file: its shape, defaults and validation.
//!
//! Every table is `deny_unknown_fields`, so a misspelt key is an error that names it, and
//! [`Config::validate`] checks what types cannot (unique source ids, ODS code shape, URLs,
//! positive limits), naming the field in each error. Relative paths are resolved against the
//! directory of the config file, so the gateway behaves the same wherever it is started from.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Environment variable that overrides `[store] url` (handy for containers and CI).
pub const ENV_DATABASE_URL: &str = "CONCORD_DATABASE_URL";
/// Environment variable with the log filter (tracing `EnvFilter` syntax), over `[log] level`.
pub const ENV_LOG: &str = "CONCORD_LOG";

/// Why the config cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file `{path}`: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML does not fit the config's shape; the message names the key and line.
    #[error("config file `{path}`: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What toml said, with the key and position.
        message: String,
    },
    /// A value is of the right type but not usable.
    #[error("config field `{field}`: {message}")]
    Invalid {
        /// Dotted path of the field, e.g. `source[1].ods`.
        field: String,
        /// What is wrong.
        message: String,
    },
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

/// The whole config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[server]`: the HTTP listener and request limits.
    #[serde(default)]
    pub server: ServerConfig,
    /// `[store]`: where links (and later audit records) are kept.
    #[serde(default)]
    pub store: StoreConfig,
    /// `[log]`: logging.
    #[serde(default)]
    pub log: LogConfig,
    /// `[auth]`: how callers' bearer tokens are verified. Required: deny by default.
    pub auth: Option<AuthConfig>,
    /// `[audit]`: the audit log's key. Required: no disclosure without a record.
    pub audit: Option<AuditConfig>,
    /// `[policy]`: the data-sharing agreements the gateway enforces.
    #[serde(default)]
    pub policy: PolicyConfig,
    /// `[profiles]`: the FHIR profiles sources are held to.
    #[serde(default)]
    pub profiles: ProfilesConfig,
    /// `[[source]]`: the providers' systems.
    #[serde(default, rename = "source")]
    pub sources: Vec<SourceConfig>,
}

/// `[server]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// The public base URL of the FHIR API (for `fullUrl` and paging links), e.g.
    /// `https://concord.example.org/fhir`. Defaults to `http://{listen}/fhir`.
    pub public_base_url: Option<String>,
    /// One deadline for a whole request's fan-out to the sources, in milliseconds.
    pub request_timeout_ms: u64,
    /// Largest request body accepted, in bytes (413 beyond it).
    pub max_body_bytes: usize,
    /// Longest request URL accepted (path and query), in bytes (414 beyond it).
    pub max_url_bytes: usize,
    /// Page size when the caller gives no `_count`.
    pub default_page_size: usize,
    /// Largest page; a larger `_count` is reduced to it.
    pub max_page_size: usize,
    /// Require a verified bearer token (any valid token) for `/metrics`.
    pub metrics_require_token: bool,
    /// Requests without a valid token answered per client address per minute (401, or the
    /// CapabilityStatement), each audited; beyond it 429, counted in one audit record per
    /// client per minute. 0 turns the limit off. Behind a load balancer every caller shares
    /// its address: raise it there.
    pub unauthenticated_per_minute: u32,
    /// The rate limit's window, in seconds (default 60: the limit is per minute).
    pub rate_limit_window_secs: u64,
    /// `[server.tls]`: serve HTTPS (and optionally demand client certificates).
    pub tls: Option<ServerTlsConfig>,
    /// Longest a caller may take to send a request head (request line and headers), in
    /// milliseconds: from when the connection opens, or from the first byte of a later request
    /// on a kept-alive connection. Bytes trickling in do not extend it.
    pub header_read_timeout_ms: u64,
    /// Longest a caller may take to send a request body, from the end of its head, in
    /// milliseconds; a body not complete by then is answered 408 and the connection closed.
    pub body_read_timeout_ms: u64,
    /// Longest a kept-alive connection may wait for its next request, in milliseconds. Behind
    /// a load balancer, make the balancer's idle timeout shorter than this.
    pub idle_timeout_ms: u64,
    /// Longest a caller may go without taking any of its answer, in milliseconds (a client that
    /// stops reading is disconnected after this).
    pub send_timeout_ms: u64,
    /// Most connections open at once. When every one is in use, a new connection takes the
    /// place of the one that has waited longest without a request in progress; when all are
    /// busy with requests, it is refused (503).
    pub max_connections: usize,
    /// Most connections open at once from one client address (0: no cap, for a gateway behind
    /// a load balancer, where every connection comes from the balancer).
    pub max_connections_per_client: usize,
    /// On SIGTERM or ctrl-c, how long requests in flight may take to finish, in milliseconds;
    /// what is left is closed so that the process has ended by then.
    pub shutdown_deadline_ms: u64,
}

/// `[server.tls]`: HTTPS for callers, with rustls.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTlsConfig {
    /// PEM file with the server's certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM file with the server's private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// PEM file with the CA certificates that issue callers' client certificates; setting it
    /// turns on mutual TLS.
    pub client_ca_file: Option<PathBuf>,
    /// `required` (the default with `client_ca_file`): a caller without a certificate from
    /// those CAs cannot connect. `optional`: a certificate is checked and recorded when
    /// presented, and callers without one still connect (they still need a bearer token).
    pub client_auth: Option<ClientAuth>,
    /// Longest a TLS handshake may take, in milliseconds (default 10 000).
    #[serde(default = "default_handshake_timeout")]
    pub handshake_timeout_ms: u64,
}

fn default_handshake_timeout() -> u64 {
    10_000
}

/// Whether callers must present a client certificate.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    /// No connection without a valid client certificate.
    Required,
    /// A presented certificate must be valid and is recorded; none is also accepted.
    Optional,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_base_url: None,
            request_timeout_ms: 5_000,
            max_body_bytes: 1024 * 1024,
            max_url_bytes: 8 * 1024,
            default_page_size: 50,
            max_page_size: 1_000,
            metrics_require_token: false,
            unauthenticated_per_minute: 120,
            rate_limit_window_secs: 60,
            tls: None,
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 30_000,
            idle_timeout_ms: 60_000,
            send_timeout_ms: 30_000,
            // Under the common open-file limit of 1,024, leaving room for the store's pool,
            // sources, spool, policy reloads and logs.
            max_connections: 768,
            max_connections_per_client: 64,
            shutdown_deadline_ms: 10_000,
        }
    }
}

impl ServerConfig {
    /// The request deadline.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// The FHIR base URL the gateway advertises, without a trailing slash.
    pub fn base_url(&self) -> String {
        match &self.public_base_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None if self.tls.is_some() => format!("https://{}/fhir", self.listen),
            None => format!("http://{}/fhir", self.listen),
        }
    }
}

/// `[store]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `sqlite://path/to/file.db` (relative to the config file) or `postgres://…`.
    pub url: String,
    /// Pool size.
    pub max_connections: u32,
    /// How long a person's links to the sources are trusted before they are looked up again.
    pub link_max_age_secs: u64,
    /// How long a person's links are kept in memory before the store is read again (0: never
    /// kept). Other instances' changes reach this one within this time.
    pub link_cache_secs: u64,
    /// How long a person's sharing choices (Consent) are kept in memory, in milliseconds (0:
    /// read from the store on every request). A choice recorded through this instance is
    /// honoured on its next request regardless; other instances honour it within this time.
    pub consent_cache_ms: u64,
    /// Apply migrations at start-up (`concord migrate` does it on demand).
    pub migrate_on_start: bool,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://data/concord.db".into(),
            max_connections: 8,
            link_max_age_secs: 3_600,
            link_cache_secs: 30,
            consent_cache_ms: 1_000,
            migrate_on_start: true,
        }
    }
}

/// `[auth]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// The `iss` every token must carry.
    pub issuer: String,
    /// The `aud` every token must carry (the gateway's own identifier).
    pub audience: String,
    /// Clock skew allowed on `exp` and `nbf`, in seconds.
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
    /// Public keys, each pinned to one algorithm and selected by `kid`.
    #[serde(default, rename = "key")]
    pub keys: Vec<KeyConfig>,
    /// A JWKS file (every key needs `kid` and `alg`); may be used with `[[auth.key]]`.
    pub jwks_file: Option<PathBuf>,
    /// Claim names, for tokens from an identity provider that names them differently.
    #[serde(default)]
    pub claims: ClaimNames,
    /// The private key `concord dev-token` signs with (demo only; never used by `serve`).
    pub dev_signing_key: Option<PathBuf>,
}

fn default_leeway() -> u64 {
    30
}

/// One `[[auth.key]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// The key id tokens name in their header.
    pub kid: String,
    /// `RS256`, `ES256` or `EdDSA`: the only algorithm this key verifies.
    pub algorithm: String,
    /// PEM file with the public key (SubjectPublicKeyInfo, or PKCS#1 for RSA).
    pub public_key_file: PathBuf,
}

/// `[auth.claims]`: where each part of the principal is found in a token.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClaimNames {
    /// The user's id (default `sub`).
    pub user: String,
    /// The user's display name (default `name`).
    pub name: String,
    /// The user's organisation, an ODS code (default `org`).
    pub org: String,
    /// The user's role (default `role`).
    pub role: String,
    /// HL7 v3 PurposeOfUse code (default `purpose_of_use`; `TREAT` when absent).
    pub purpose_of_use: String,
    /// SMART scopes, space separated (default `scope`).
    pub scope: String,
    /// Patient tokens: the person's NHS number (default `nhs_number`).
    pub nhs_number: String,
    /// A carer's token: their relationship to the person (default `acting_for_relationship`).
    pub relationship: String,
}

impl Default for ClaimNames {
    fn default() -> Self {
        Self {
            user: "sub".into(),
            name: "name".into(),
            org: "org".into(),
            role: "role".into(),
            purpose_of_use: "purpose_of_use".into(),
            scope: "scope".into(),
            nhs_number: "nhs_number".into(),
            relationship: "acting_for_relationship".into(),
        }
    }
}

/// `[audit]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// A file holding the HMAC key audit records are hashed with (at least 32 bytes), kept
    /// outside the database.
    pub key_file: Option<PathBuf>,
    /// Or the name of an environment variable holding it.
    pub key_env: Option<String>,
    /// Where records go while the store cannot take them (default `data/audit-spool`, beside
    /// the config file). Keep it on a local disk of the gateway's own.
    #[serde(default = "default_spool_dir")]
    pub spool_dir: PathBuf,
    /// An Ed25519 private key (PKCS#8 PEM) the chain's head is signed with now and then.
    /// Without it a cut-off tail of the log cannot be detected; the gateway warns at start.
    pub head_signing_key_file: Option<PathBuf>,
    /// How often the head is signed when it moved, in seconds.
    #[serde(default = "default_head_interval")]
    pub head_interval_secs: u64,
    /// A file signed heads are appended to (one JSON line each). Put it where those who can
    /// write to the database cannot.
    pub witness_file: Option<PathBuf>,
    /// A URL each signed head is POSTed to as JSON.
    pub witness_url: Option<String>,
    /// Longest an audit batch waits for the store before its records go to the spool
    /// instead, in milliseconds: a store that hangs (a lock held elsewhere, a stalled
    /// network) costs callers this much, not the store's own timeouts.
    #[serde(default = "default_store_wait")]
    pub store_wait_ms: u64,
}

fn default_store_wait() -> u64 {
    250
}

fn default_spool_dir() -> PathBuf {
    PathBuf::from("data/audit-spool")
}

fn default_head_interval() -> u64 {
    60
}

/// `[profiles]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProfilesConfig {
    /// The directory of StructureDefinitions, ValueSets and CodeSystems (default
    /// `fhir-profiles`, beside the config file), loaded and compiled at start-up when any
    /// source's `conformance` is not `off`.
    pub dir: PathBuf,
}

impl Default for ProfilesConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("fhir-profiles"),
        }
    }
}

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

/// `[policy]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// The directory of agreement files and `labels.toml` (default `policies`, beside the
    /// config file). Nothing is disclosed that no agreement there permits.
    pub dir: PathBuf,
    /// How often to look for changed files, in seconds (0: only on `SIGHUP`).
    pub reload_check_secs: u64,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("policies"),
            reload_check_secs: 5,
        }
    }
}

/// `[log]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Filter, e.g. `info` or `concord=debug,tower_http=info`.
    pub level: String,
    /// `text` for people, `json` for log shippers.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
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

/// The kinds of source.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SourceKindName {
    /// An upstream FHIR R4 REST server.
    Fhir,
    /// A directory of FHIR Bulk Data export files.
    Ndjson,
}

/// A source's typed settings.
#[derive(Debug, Clone)]
pub enum SourceKind {
    /// An upstream FHIR R4 REST server.
    Fhir(Box<FhirSourceConfig>),
    /// A directory of FHIR Bulk Data export files.
    Ndjson(NdjsonSourceConfig),
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
        let field = |name: &str| format!("source[{index}].{name}");
        let fhir_only = [
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
        ];
        match self.kind {
            SourceKindName::Ndjson => {
                if let Some((name, _)) = fhir_only.iter().find(|(_, set)| *set) {
                    return Err(invalid(field(name), "applies only to kind = \"fhir\""));
                }
                let path = self
                    .path
                    .clone()
                    .ok_or_else(|| invalid(field("path"), "is required for kind = \"ndjson\""))?;
                Ok(SourceKind::Ndjson(NdjsonSourceConfig { path }))
            }
            SourceKindName::Fhir => {
                if self.path.is_some() {
                    return Err(invalid(field("path"), "applies only to kind = \"ndjson\""));
                }
                let base_url = self
                    .base_url
                    .clone()
                    .ok_or_else(|| invalid(field("base_url"), "is required for kind = \"fhir\""))?;
                check_http_url(&field("base_url"), &base_url)?;
                let positive = |name: &str, v: u64| {
                    if v == 0 {
                        Err(invalid(field(name), "must be greater than 0"))
                    } else {
                        Ok(v)
                    }
                };
                let timeout = positive("timeout_ms", self.timeout_ms.unwrap_or(3_000))?;
                let cool_down = positive(
                    "breaker_cool_down_secs",
                    self.breaker_cool_down_secs.unwrap_or(30),
                )?;
                let max_concurrency =
                    positive("max_concurrency", self.max_concurrency.unwrap_or(32) as u64)?
                        as usize;
                let max_pages =
                    positive("max_pages", self.max_pages.unwrap_or(20) as u64)? as usize;
                let page_size =
                    positive("page_size", self.page_size.unwrap_or(200) as u64)? as usize;
                let breaker_failures = positive(
                    "breaker_failures",
                    u64::from(self.breaker_failures.unwrap_or(5)),
                )? as u32;
                for t in self.resource_types.iter().flatten() {
                    if crate::fhir::search::type_def(t).is_none() {
                        return Err(invalid(
                            field("resource_types"),
                            format!("`{t}` is not a resource type the gateway serves"),
                        ));
                    }
                }
                if let Some(tls) = &self.tls
                    && tls.client_cert_file.is_some() != tls.client_key_file.is_some()
                {
                    return Err(invalid(
                        field("tls.client_key_file"),
                        "client_cert_file and client_key_file go together",
                    ));
                }
                if let Some(oauth) = &self.oauth {
                    check_http_url(&field("oauth.token_url"), &oauth.token_url)?;
                    if oauth.client_id.trim().is_empty() {
                        return Err(invalid(field("oauth.client_id"), "must not be empty"));
                    }
                    if !ASSERTION_ALGORITHMS.contains(&oauth.algorithm.as_str()) {
                        return Err(invalid(
                            field("oauth.algorithm"),
                            format!(
                                "`{}` is not one of {}",
                                oauth.algorithm,
                                ASSERTION_ALGORITHMS.join(", ")
                            ),
                        ));
                    }
                }
                Ok(SourceKind::Fhir(Box::new(FhirSourceConfig {
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
                })))
            }
        }
    }
}

impl Config {
    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config = Config::parse(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_owned(),
                message,
            },
            other => other,
        })?;
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        config.resolve_paths(dir);
        if let Ok(url) = std::env::var(ENV_DATABASE_URL) {
            config.store.url = url;
        }
        config.validate()?;
        Ok(config)
    }

    /// Parses TOML text (no path resolution, no validation).
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::new(),
            message: e.to_string(),
        })
    }

    /// Makes relative paths relative to `dir`.
    pub fn resolve_paths(&mut self, dir: &Path) {
        if let Some(auth) = &mut self.auth {
            for key in &mut auth.keys {
                resolve(dir, &mut key.public_key_file);
            }
            for path in [&mut auth.jwks_file, &mut auth.dev_signing_key]
                .into_iter()
                .flatten()
            {
                resolve(dir, path);
            }
        }
        resolve(dir, &mut self.policy.dir);
        resolve(dir, &mut self.profiles.dir);
        if let Some(audit) = &mut self.audit {
            resolve(dir, &mut audit.spool_dir);
            for path in [
                &mut audit.key_file,
                &mut audit.head_signing_key_file,
                &mut audit.witness_file,
            ]
            .into_iter()
            .flatten()
            {
                resolve(dir, path);
            }
        }
        if let Some(tls) = &mut self.server.tls {
            for path in [Some(&mut tls.cert_file), Some(&mut tls.key_file)]
                .into_iter()
                .chain([tls.client_ca_file.as_mut()])
                .flatten()
            {
                resolve(dir, path);
            }
        }
        for source in &mut self.sources {
            if let Some(path) = &mut source.path {
                resolve(dir, path);
            }
            if let Some(tls) = &mut source.tls {
                for path in [
                    &mut tls.ca_file,
                    &mut tls.client_cert_file,
                    &mut tls.client_key_file,
                ]
                .into_iter()
                .flatten()
                {
                    resolve(dir, path);
                }
            }
            if let Some(oauth) = &mut source.oauth {
                resolve(dir, &mut oauth.key_file);
            }
        }
        if let Some(rest) = self.store.url.strip_prefix("sqlite://") {
            let file = Path::new(rest.split('?').next().unwrap_or(rest));
            if file.is_relative() && rest != ":memory:" {
                self.store.url = format!("sqlite://{}", dir.join(rest).display());
            }
        }
    }

    /// Checks everything that types cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let s = &self.server;
        if s.request_timeout_ms == 0 {
            return Err(invalid(
                "server.request_timeout_ms",
                "must be greater than 0",
            ));
        }
        if s.default_page_size == 0 || s.max_page_size == 0 {
            return Err(invalid(
                "server.default_page_size",
                "page sizes must be greater than 0",
            ));
        }
        if s.default_page_size > s.max_page_size {
            return Err(invalid(
                "server.default_page_size",
                "must not be larger than server.max_page_size",
            ));
        }
        if s.rate_limit_window_secs == 0 || s.rate_limit_window_secs > 3_600 {
            return Err(invalid(
                "server.rate_limit_window_secs",
                "must be from 1 to 3600",
            ));
        }
        for (field, ms) in [
            ("server.header_read_timeout_ms", s.header_read_timeout_ms),
            ("server.body_read_timeout_ms", s.body_read_timeout_ms),
            ("server.idle_timeout_ms", s.idle_timeout_ms),
            ("server.send_timeout_ms", s.send_timeout_ms),
            ("server.shutdown_deadline_ms", s.shutdown_deadline_ms),
        ] {
            if ms == 0 {
                return Err(invalid(field, "must be greater than 0"));
            }
        }
        if s.max_connections == 0 {
            return Err(invalid("server.max_connections", "must be greater than 0"));
        }
        if s.max_connections_per_client > s.max_connections {
            return Err(invalid(
                "server.max_connections_per_client",
                format!(
                    "{} must not be larger than server.max_connections ({}); 0 means no cap",
                    s.max_connections_per_client, s.max_connections
                ),
            ));
        }
        if s.max_url_bytes < 256 {
            return Err(invalid("server.max_url_bytes", "must be at least 256"));
        }
        if let Some(url) = &s.public_base_url {
            check_http_url("server.public_base_url", url)?;
        }
        if let Some(audit) = &self.audit {
            if audit.head_interval_secs == 0 {
                return Err(invalid("audit.head_interval_secs", "must be at least 1"));
            }
            if !(10..=60_000).contains(&audit.store_wait_ms) {
                return Err(invalid(
                    "audit.store_wait_ms",
                    "must be from 10 to 60000 (milliseconds)",
                ));
            }
            if let Some(url) = &audit.witness_url {
                check_http_url("audit.witness_url", url)?;
            }
        }
        if let Some(tls) = &s.tls {
            if tls.client_auth.is_some() && tls.client_ca_file.is_none() {
                return Err(invalid(
                    "server.tls.client_auth",
                    "needs server.tls.client_ca_file (the CAs client certificates must come from)",
                ));
            }
            if tls.handshake_timeout_ms == 0 {
                return Err(invalid(
                    "server.tls.handshake_timeout_ms",
                    "must be greater than 0",
                ));
            }
        }
        if !(self.store.url.starts_with("sqlite:")
            || self.store.url.starts_with("postgres://")
            || self.store.url.starts_with("postgresql://"))
        {
            return Err(invalid(
                "store.url",
                "must start with `sqlite:` or `postgres://`",
            ));
        }
        if self.store.max_connections == 0 {
            return Err(invalid("store.max_connections", "must be greater than 0"));
        }
        if self.sources.is_empty() {
            return Err(invalid("source", "at least one [[source]] is needed"));
        }
        let Some(auth) = &self.auth else {
            return Err(invalid(
                "auth",
                "is required: every FHIR request must carry a verified bearer token",
            ));
        };
        if auth.issuer.trim().is_empty() {
            return Err(invalid("auth.issuer", "must not be empty"));
        }
        if auth.audience.trim().is_empty() {
            return Err(invalid("auth.audience", "must not be empty"));
        }
        if auth.keys.is_empty() && auth.jwks_file.is_none() {
            return Err(invalid(
                "auth.key",
                "at least one [[auth.key]] or auth.jwks_file is needed",
            ));
        }
        let mut kids = HashSet::new();
        for (i, key) in auth.keys.iter().enumerate() {
            if !matches!(key.algorithm.as_str(), "RS256" | "ES256" | "EdDSA") {
                return Err(invalid(
                    format!("auth.key[{i}].algorithm"),
                    format!("`{}` is not one of RS256, ES256, EdDSA", key.algorithm),
                ));
            }
            if key.kid.is_empty() || !kids.insert(key.kid.as_str()) {
                return Err(invalid(
                    format!("auth.key[{i}].kid"),
                    format!("`{}` is empty or used by another key", key.kid),
                ));
            }
        }
        let mut ids = HashSet::new();
        for (i, src) in self.sources.iter().enumerate() {
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
                && f.timeout >= s.request_timeout()
            {
                return Err(invalid(
                    field("timeout_ms"),
                    format!(
                        "{} ms must be shorter than server.request_timeout_ms ({} ms), so that a slow source is caught by its own timeout and circuit breaker",
                        f.timeout.as_millis(),
                        s.request_timeout_ms
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
}

fn resolve(dir: &Path, path: &mut PathBuf) {
    if path.is_relative() {
        *path = dir.join(&*path);
    }
}

/// Ids people write and other things are keyed by (source, agreement and rule ids): one or
/// more of `a-z`, `0-9` and `-`.
pub fn is_slug(id: &str) -> bool {
    !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// ODS codes: 3 to 10 upper-case letters and digits (e.g. `A81001`, `RY4`, `RY4AB`).
pub fn is_ods_code(code: &str) -> bool {
    (3..=10).contains(&code.len())
        && code
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

fn check_http_url(field: &str, url: &str) -> Result<(), ConfigError> {
    match reqwest::Url::parse(url) {
        Ok(u)
            if matches!(u.scheme(), "http" | "https")
                && u.host().is_some()
                && u.query().is_none() =>
        {
            Ok(())
        }
        Ok(_) => Err(invalid(
            field,
            format!("`{url}` must be an http or https URL with no query"),
        )),
        Err(e) => Err(invalid(field, format!("`{url}` is not a URL: {e}"))),
    }
}

#[cfg(test)]
mod tests;
