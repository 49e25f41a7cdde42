//! `[server]` and `[server.tls]`: where and how the gateway listens.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, check_http_url, invalid};

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

impl ServerConfig {
    /// Checks `[server]` beyond its types.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let s = self;
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
        Ok(())
    }
}
