//! The listener: plain HTTP or HTTPS with rustls, optionally demanding client certificates
//! (mutual TLS).
//!
//! TLS handshakes run in their own tasks, never on the accept loop, so a client that opens a
//! connection and then stalls cannot hold up anyone else: each handshake has a deadline, and
//! at most [`MAX_PENDING_HANDSHAKES`] run at once (connections beyond that are closed at once).
//! Every connection carries a [`Peer`]: the caller's address and, with mutual TLS, the subject
//! and fingerprint of the certificate it presented, which becomes part of the
//! [`crate::auth::Principal`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::auth::ClientCertificate;
use crate::config::{ClientAuth, ServerTlsConfig};

/// Most TLS handshakes in progress at once; further connections are closed until one ends.
pub const MAX_PENDING_HANDSHAKES: usize = 1024;

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("`{path}`: {message}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// rustls refused the certificates or key.
    #[error("TLS setup failed: {0}")]
    Rustls(String),
}

/// Who is on the other end of a connection.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The caller's address.
    pub addr: SocketAddr,
    /// The verified client certificate, when the caller presented one (mutual TLS).
    pub client_certificate: Option<ClientCertificate>,
}

/// Reads every certificate in a PEM file (at least one).
pub fn load_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = |message: String| TlsError::Pem {
        path: path.to_owned(),
        message,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem(e.to_string()))?;
    if certs.is_empty() {
        return Err(pem("holds no CERTIFICATE".into()));
    }
    Ok(certs)
}

/// Reads the first private key in a PEM file.
pub fn load_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::Pem {
        path: path.to_owned(),
        message: format!("no usable private key: {e}"),
    })
}

/// The crypto provider every TLS config uses: aws-lc-rs, as the rest of the crate.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Builds the rustls server config from `[server.tls]`.
pub fn server_config(config: &ServerTlsConfig) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let rustls_error = |e: rustls::Error| TlsError::Rustls(e.to_string());
    let chain = load_certificates(&config.cert_file)?;
    let key = load_private_key(&config.key_file)?;
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(rustls_error)?;
    let builder = match &config.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in load_certificates(path)? {
                roots.add(cert).map_err(|e| TlsError::Pem {
                    path: path.clone(),
                    message: format!("not a usable CA certificate: {e}"),
                })?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider(),
            );
            let verifier = match config.client_auth.unwrap_or(ClientAuth::Required) {
                ClientAuth::Required => verifier,
                ClientAuth::Optional => verifier.allow_unauthenticated(),
            };
            let verifier = verifier
                .build()
                .map_err(|e| TlsError::Rustls(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut server = builder.with_single_cert(chain, key).map_err(rustls_error)?;
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(server))
}

/// Reads a verified certificate's subject and fingerprint. A certificate rustls accepted but
/// this parser cannot read still counts (its subject is then empty): the fingerprint alone
/// identifies it.
pub fn describe_certificate(der: &[u8]) -> ClientCertificate {
    let subject = x509_parser::parse_x509_certificate(der)
        .map(|(_, cert)| cert.subject().to_string())
        .unwrap_or_default();
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
    let sha256 = crate::hex(digest.as_ref());
    ClientCertificate { subject, sha256 }
}

/// A listening socket, plain or TLS.
#[derive(Debug)]
pub enum Listener {
    /// Plain HTTP.
    Plain(PlainListener),
    /// HTTPS.
    Tls(TlsListener),
}

impl Listener {
    /// Wraps a bound socket, with TLS when `tls` is given.
    pub fn new(tcp: TcpListener, tls: Option<&ServerTlsConfig>) -> Result<Listener, TlsError> {
        Ok(match tls {
            None => Listener::Plain(PlainListener(tcp)),
            Some(config) => Listener::Tls(TlsListener::new(
                tcp,
                server_config(config)?,
                Duration::from_millis(config.handshake_timeout_ms),
            )),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        match self {
            Listener::Plain(l) => l.0.local_addr(),
            Listener::Tls(l) => Ok(l.local),
        }
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then lets requests in flight finish.
pub async fn serve(
    listener: Listener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let make = app.into_make_service_with_connect_info::<Peer>();
    match listener {
        Listener::Plain(l) => axum::serve(l, make).with_graceful_shutdown(shutdown).await,
        Listener::Tls(l) => axum::serve(l, make).with_graceful_shutdown(shutdown).await,
    }
}

/// Plain HTTP connections.
#[derive(Debug)]
pub struct PlainListener(TcpListener);

impl axum::serve::Listener for PlainListener {
    type Io = TcpStream;
    type Addr = Peer;

    async fn accept(&mut self) -> (TcpStream, Peer) {
        let (io, addr) = axum::serve::Listener::accept(&mut self.0).await;
        let _ = io.set_nodelay(true);
        (
            io,
            Peer {
                addr,
                client_certificate: None,
            },
        )
    }

    fn local_addr(&self) -> std::io::Result<Peer> {
        Ok(Peer {
            addr: self.0.local_addr()?,
            client_certificate: None,
        })
    }
}

/// TLS connections, handshaken off the accept loop.
#[derive(Debug)]
pub struct TlsListener {
    local: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, Peer)>,
    acceptor: tokio::task::JoinHandle<()>,
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

impl TlsListener {
    fn new(tcp: TcpListener, config: Arc<rustls::ServerConfig>, deadline: Duration) -> Self {
        let local = tcp
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let (tx, ready) = mpsc::channel(64);
        let acceptor = tokio::spawn(accept_loop(tcp, TlsAcceptor::from(config), deadline, tx));
        Self {
            local,
            ready,
            acceptor,
        }
    }
}

async fn accept_loop(
    mut tcp: TcpListener,
    acceptor: TlsAcceptor,
    deadline: Duration,
    ready: mpsc::Sender<(TlsStream<TcpStream>, Peer)>,
) {
    let pending = Arc::new(Semaphore::new(MAX_PENDING_HANDSHAKES));
    loop {
        // axum's own accept retries (and backs off on errors such as too many open files).
        let (io, addr) = axum::serve::Listener::accept(&mut tcp).await;
        let Ok(permit) = Arc::clone(&pending).try_acquire_owned() else {
            tracing::warn!("too many TLS handshakes in progress; connection closed");
            continue;
        };
        let _ = io.set_nodelay(true);
        let (acceptor, ready) = (acceptor.clone(), ready.clone());
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(deadline, acceptor.accept(io)).await {
                Ok(Ok(stream)) => {
                    let client_certificate = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(<[_]>::first)
                        .map(|c| describe_certificate(c.as_ref()));
                    let peer = Peer {
                        addr,
                        client_certificate,
                    };
                    // A closed channel means the server is shutting down.
                    let _ = ready.send((stream, peer)).await;
                }
                // Scanners and misconfigured clients fail handshakes all day: debug, not warn.
                Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!("TLS handshake timed out"),
            }
        });
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = Peer;

    async fn accept(&mut self) -> (Self::Io, Peer) {
        match self.ready.recv().await {
            Some(connection) => connection,
            // The accept loop only ends when the listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Peer> {
        Ok(Peer {
            addr: self.local,
            client_certificate: None,
        })
    }
}

impl Connected<IncomingStream<'_, PlainListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, PlainListener>) -> Self {
        stream.remote_addr().clone()
    }
}

impl Connected<IncomingStream<'_, TlsListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Self {
        stream.remote_addr().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_is_described_by_subject_and_fingerprint() {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::new()).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "ehr.riverside.test");
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Riverside GP");
        let cert = params.self_signed(&key).expect("cert");
        let described = describe_certificate(cert.der());
        assert!(described.subject.contains("CN=ehr.riverside.test"));
        assert!(described.subject.contains("O=Riverside GP"));
        assert_eq!(described.sha256.len(), 64);
        assert_eq!(describe_certificate(cert.der()), described);
    }

    #[test]
    fn an_unparseable_certificate_still_has_a_fingerprint() {
        let described = describe_certificate(b"not DER");
        assert_eq!(described.subject, "");
        assert_eq!(described.sha256.len(), 64);
    }

    #[test]
    fn a_pem_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("empty.pem");
        std::fs::write(&path, "nothing here\n").expect("write");
        let e = load_certificates(&path).expect_err("no certificate");
        assert!(e.to_string().contains("empty.pem"), "{e}");
        let e = load_private_key(&path).expect_err("no key");
        assert!(e.to_string().contains("private key"), "{e}");
        let e = load_certificates(&dir.path().join("missing.pem")).expect_err("missing");
        assert!(e.to_string().contains("missing.pem"), "{e}");
    }
}
