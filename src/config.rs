//! The one TOML config file: its shape, defaults and validation.
//!
//! One file per subsystem under `config/` (`server`, `store`, `auth`, `console`, `audit`,
//! `sources`, `policy`, `profiles`, `locator`, `log`), each with its table's types, defaults and checks; this file
//! holds the whole, loading, path resolution and the validation that asks each in turn.
//!
//! Every table is `deny_unknown_fields`, so a misspelt key is an error that names it, and
//! [`Config::validate`] checks what types cannot (unique source ids, ODS code shape, URLs,
//! positive limits), naming the field in each error. Relative paths are resolved against the
//! directory of the config file, so the gateway behaves the same wherever it is started from.

use std::path::{Path, PathBuf};

use serde::Deserialize;

mod audit;
mod auth;
mod console;
mod locator;
mod log;
mod policy;
mod profiles;
mod server;
mod sources;
mod store;

pub use audit::AuditConfig;
pub use auth::{AuthConfig, ClaimNames, KeyConfig};
pub use console::ConsoleConfig;
pub use locator::{LocatorConfig, LocatorFallback, MAX_CONCURRENT_SYNCS, MAX_LOCATOR_PAGE_SIZE};
pub use log::{LogConfig, LogFormat};
pub use policy::PolicyConfig;
pub use profiles::ProfilesConfig;
pub use server::{ClientAuth, ServerConfig, ServerTlsConfig};
pub use sources::{
    ASSERTION_ALGORITHMS, Conformance, FhirSourceConfig, NdjsonSourceConfig, OAuthConfig,
    STORE_TYPES, SourceConfig, SourceKind, SourceKindName, SourceTlsConfig,
};
pub use store::StoreConfig;

/// The identifier checks moved to [`crate::fhir`] (the bottom layer); kept here for callers.
pub use crate::fhir::{is_ods_code, is_slug};

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
    /// `[console]`: the IG console's sign-in and sessions; without it no console is served.
    pub console: Option<ConsoleConfig>,
    /// `[profiles]`: the FHIR profiles sources are held to.
    #[serde(default)]
    pub profiles: ProfilesConfig,
    /// `[locator]`: the record locator (which sources hold which NHS numbers).
    #[serde(default)]
    pub locator: LocatorConfig,
    /// `[[source]]`: the providers' systems.
    #[serde(default, rename = "source")]
    pub sources: Vec<SourceConfig>,
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

    /// Checks everything that types cannot, subsystem by subsystem.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.server.validate()?;
        if let Some(audit) = &self.audit {
            audit.validate()?;
        }
        self.store.validate()?;
        self.locator.validate()?;
        if self.sources.is_empty() {
            return Err(invalid("source", "at least one [[source]] is needed"));
        }
        let Some(auth) = &self.auth else {
            return Err(invalid(
                "auth",
                "is required: every FHIR request must carry a verified bearer token",
            ));
        };
        auth.validate()?;
        if let Some(console) = &self.console {
            console.validate()?;
        }
        sources::validate(&self.sources, &self.server)
    }

    /// The roles that read the whole audit log, in the AuditEvent API and the IG console:
    /// `[audit] region_roles`, with `[console] region_roles` (the console's own list from
    /// before there was one for both) read as part of the same list.
    pub fn audit_region_roles(&self) -> Vec<String> {
        let mut roles: Vec<String> = self
            .audit
            .iter()
            .flat_map(|a| a.region_roles.iter())
            .chain(self.console.iter().flat_map(|c| c.region_roles.iter()))
            .cloned()
            .collect();
        roles.sort_unstable();
        roles.dedup();
        roles
    }

    /// Each source's id and the ODS code of the organisation that controls its data.
    pub fn source_controllers(&self) -> Vec<(String, String)> {
        self.sources
            .iter()
            .map(|s| (s.id.clone(), s.ods.clone()))
            .collect()
    }
}

fn resolve(dir: &Path, path: &mut PathBuf) {
    if path.is_relative() {
        *path = dir.join(&*path);
    }
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
