//! The listener: plain HTTP or HTTPS with rustls, optionally demanding client certificates
//! (mutual TLS), and the limits every connection is held to (caps on open connections,
//! header, body, idle and send timeouts, in `tls/connection.rs`), and graceful shutdown.
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
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::auth::ClientCertificate;
use crate::config::{ClientAuth, ServerTlsConfig};
use crate::telemetry::Metrics;
pub use connection::Limits;
use connection::{Admission, Guarded, Ticket};
pub(crate) use connection::{BodyExpired, body_timeout_answer};

mod connection;

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

/// A listening socket, plain or TLS, with the limits its connections are held to.
#[derive(Debug)]
pub struct Listener {
    tcp: TcpListener,
    /// The TLS config and the handshake deadline, for HTTPS.
    tls: Option<(Arc<rustls::ServerConfig>, Duration)>,
    limits: Limits,
    metrics: Arc<Metrics>,
}

impl Listener {
    /// Wraps a bound socket, with TLS when `tls` is given, under the default [`Limits`].
    pub fn new(tcp: TcpListener, tls: Option<&ServerTlsConfig>) -> Result<Listener, TlsError> {
        let tls = match tls {
            None => None,
            Some(config) => Some((
                server_config(config)?,
                Duration::from_millis(config.handshake_timeout_ms),
            )),
        };
        Ok(Listener {
            tcp,
            tls,
            limits: Limits::default(),
            metrics: Metrics::new(),
        })
    }

    /// Holds connections to `limits`.
    pub fn with_limits(mut self, limits: Limits) -> Listener {
        self.limits = limits;
        self
    }

    /// Counts connections (open, refused, closed) in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Listener {
        self.metrics = metrics;
        self
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}

/// Serves `app` on `listener` until `shutdown` completes; then stops accepting, lets requests
/// in flight finish and closes what is left at the listener's shutdown deadline (less a
/// reserve for closing the audit log, see [`Limits::shutdown_grace`]).
pub async fn serve(
    listener: Listener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let Listener {
        tcp,
        tls,
        limits,
        metrics,
    } = listener;
    let admission = Arc::new(Admission::new(limits, Arc::clone(&metrics)));
    let (stop, stopping) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    match tls {
        None => {
            loop {
                tokio::select! {
                    () = &mut shutdown => break,
                    accepted = tcp.accept() => match accepted {
                        Ok((io, addr)) => {
                            let _ = io.set_nodelay(true);
                            match admission.admit(addr.ip()) {
                                Ok(ticket) => {
                                    let peer = Peer { addr, client_certificate: None };
                                    connections.spawn(connection(io, peer, ticket, app.clone(), stopping.clone()));
                                }
                                Err(_) => {
                                    // One write that cannot block; then the connection closes.
                                    let _ = io.try_write(connection::refusal_bytes());
                                }
                            }
                        }
                        Err(e) => accept_failed(&e).await,
                    },
                    Some(_) = connections.join_next(), if !connections.is_empty() => {}
                }
            }
            // Stops accepting: the socket closes, and callers are refused rather than queued.
            drop(tcp);
        }
        Some((config, deadline)) => {
            let (ready_tx, mut ready) = mpsc::channel(64);
            let acceptor = tokio::spawn(accept_tls(
                tcp,
                TlsAcceptor::from(config),
                deadline,
                Arc::clone(&admission),
                ready_tx,
            ));
            loop {
                tokio::select! {
                    () = &mut shutdown => break,
                    Some((io, peer, ticket)) = ready.recv() => {
                        connections.spawn(connection(io, peer, ticket, app.clone(), stopping.clone()));
                    }
                    Some(_) = connections.join_next(), if !connections.is_empty() => {}
                }
            }
            // Stops accepting (the socket closes); handshakes still in progress find the
            // channel closed and drop their connections.
            acceptor.abort();
            drop(ready);
        }
    }
    let _ = stop.send(true);
    let grace = limits.shutdown_grace();
    let drained = tokio::time::timeout(grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await
    .is_ok();
    if !drained {
        let left = connections.len();
        metrics
            .connections_closed
            .get_or_create(&crate::telemetry::ConnectionLabels { reason: "shutdown" })
            .inc_by(left as u64);
        tracing::info!(
            connections = left,
            "closing connections still open at the shutdown deadline"
        );
        connections.shutdown().await;
    }
    Ok(())
}

/// Accepting failed: most often the process is out of file descriptors. Waits a moment
/// rather than spin (connection errors, such as a caller that gave up, are skipped at once).
async fn accept_failed(e: &std::io::Error) {
    use std::io::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::ConnectionAborted | ErrorKind::ConnectionRefused | ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::warn!(error = %e, "cannot accept connections; retrying shortly");
    tokio::time::sleep(Duration::from_millis(250)).await;
}

/// Serves one connection until it ends, it is evicted, or shutdown closes it.
async fn connection<I>(
    io: I,
    peer: Peer,
    ticket: Ticket,
    app: Router,
    mut stopping: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::clone(&ticket.activity);
    let service = connection::Service {
        app,
        peer,
        activity: Arc::clone(&activity),
        admission: ticket.admission(),
    };
    let io = TokioIo::new(Guarded::new(io, &ticket));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // The timeouts are kept by `Guarded`, hyper's own header timer is not used.
    builder.http1().keep_alive(true).header_read_timeout(None);
    let conn = builder.serve_connection(io, service);
    let mut conn = std::pin::pin!(conn);
    let evicted = activity.evict.notified();
    let mut evicted = std::pin::pin!(evicted);
    let mut graceful = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                break;
            }
            changed = stopping.changed(), if !graceful => {
                graceful = true;
                if changed.is_ok() {
                    // Idle, or still sending a head: nothing to finish, so close now rather
                    // than wait for a request that may never come (a slowloris).
                    if !activity.busy() {
                        break;
                    }
                    conn.as_mut().graceful_shutdown();
                }
            }
            // Dropping the connection closes it.
            () = &mut evicted => break,
        }
    }
    drop(ticket);
}

/// Accepts TCP connections, admits them and handshakes TLS in tasks of their own, handing
/// finished handshakes to [`serve`].
async fn accept_tls(
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    deadline: Duration,
    admission: Arc<Admission>,
    ready: mpsc::Sender<(TlsStream<TcpStream>, Peer, Ticket)>,
) {
    let pending = Arc::new(Semaphore::new(MAX_PENDING_HANDSHAKES));
    loop {
        let (io, addr) = match tcp.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                accept_failed(&e).await;
                continue;
            }
        };
        let Ok(ticket) = admission.admit(addr.ip()) else {
            continue;
        };
        let Ok(permit) = Arc::clone(&pending).try_acquire_owned() else {
            tracing::warn!("too many TLS handshakes in progress; connection closed");
            continue;
        };
        let _ = io.set_nodelay(true);
        let (acceptor, ready) = (acceptor.clone(), ready.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let stream = {
                let evicted = ticket.activity.evict.notified();
                let handshake = tokio::time::timeout(deadline, acceptor.accept(io));
                tokio::select! {
                    done = handshake => done,
                    () = evicted => return,
                }
            };
            match stream {
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
                    let _ = ready.send((stream, peer, ticket)).await;
                }
                // Scanners and misconfigured clients fail handshakes all day: debug, not warn.
                Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!("TLS handshake timed out"),
            }
        });
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
