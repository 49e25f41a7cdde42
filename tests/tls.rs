//! TLS on both sides: the gateway serving HTTPS with (optional or required) client
//! certificates, and upstream sources behind mutual TLS and OAuth 2.0 client credentials with
//! a signed JWT assertion. Every certificate and key is made in the test.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::support::app::{SourceSpec, StoreChoice, TestApp, entries, outcomes};
use crate::support::data::{self, ANN, NHS_SYSTEM};
use crate::support::pki::{Ca, Issued};
use crate::support::upstream::{OAuthServer, Secure, Upstream};

fn search_ann() -> String {
    format!("Patient?identifier={NHS_SYSTEM}|{ANN}")
}

/// A gateway over HTTPS with one plain upstream; `client_auth` is `None` (no client
/// certificates), `Some("required")` or `Some("optional")`.
async fn https_gateway(ca: &Ca, client_auth: Option<&str>) -> (TestApp, Upstream) {
    let gp = Upstream::start(data::gp()).await;
    let server = ca.server();
    let mut tls = format!(
        "\n[server.tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
        server.cert.display(),
        server.key.display()
    );
    if let Some(mode) = client_auth {
        tls.push_str(&format!(
            "client_ca_file = \"{}\"\nclient_auth = \"{mode}\"\n",
            ca.cert.display()
        ));
    }
    let app = TestApp::start_with(
        vec![SourceSpec::fhir(
            "gp",
            "Riverside GP",
            "A81001",
            gp.base_url(),
        )],
        StoreChoice::Sqlite,
        &tls,
    )
    .await;
    (app, gp)
}

async fn get_with(client: &reqwest::Client, app: &TestApp, path: &str) -> reqwest::Result<Value> {
    let response = client
        .get(format!("{}/{path}", app.base))
        .bearer_auth(&app.token)
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = response.bytes().await?;
    Ok(serde_json::from_slice(&bytes).expect("JSON"))
}

#[tokio::test]
async fn the_gateway_serves_https() {
    let dir = tempfile::tempdir().expect("dir");
    let ca = Ca::new(dir.path(), "gateway");
    let (app, _gp) = https_gateway(&ca, None).await;
    assert!(app.base.starts_with("https://"), "{}", app.base);
    let client = ca.client_trusting(None);
    let bundle = get_with(&client, &app, &search_ann())
        .await
        .expect("HTTPS answer");
    assert_eq!(entries(&bundle, "Patient").len(), 1, "{bundle}");
    // Paging and fullUrl links advertise https.
    let full_url = bundle["entry"][0]["fullUrl"].as_str().expect("fullUrl");
    assert!(full_url.starts_with("https://"), "{full_url}");
    // Plain HTTP to the HTTPS port gets no HTTP answer.
    let plain = reqwest::Client::new()
        .get(app.base.replace("https://", "http://") + "/metadata")
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(plain.is_err(), "plain HTTP must not be served: {plain:?}");
}

#[tokio::test]
async fn required_client_certificates_keep_out_callers_without_one() {
    let dir = tempfile::tempdir().expect("dir");
    let ca = Ca::new(dir.path(), "gateway");
    let (app, _gp) = https_gateway(&ca, Some("required")).await;

    let with_cert = ca.client_trusting(Some(&ca.client("ehr.riverside.test", "Riverside GP")));
    let bundle = get_with(&with_cert, &app, &search_ann())
        .await
        .expect("a caller with a certificate from the client CA is served");
    assert_eq!(entries(&bundle, "Patient").len(), 1, "{bundle}");

    // No certificate: the handshake fails, so not even open endpoints answer.
    let without = ca.client_trusting(None);
    let refused = without.get(format!("{}/metadata", app.base)).send().await;
    assert!(
        refused.is_err(),
        "no certificate must mean no connection: {refused:?}"
    );

    // A certificate from a CA the gateway does not trust.
    let other = Ca::new(dir.path(), "other");
    let stranger = ca.client_trusting(Some(&other.client("intruder.test", "Nobody")));
    let refused = stranger.get(format!("{}/metadata", app.base)).send().await;
    assert!(
        refused.is_err(),
        "an untrusted certificate must mean no connection: {refused:?}"
    );

    // A certificate still needs a bearer token.
    let response = with_cert
        .get(format!("{}/{}", app.base, search_ann()))
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn optional_client_certificates_admit_callers_without_one() {
    let dir = tempfile::tempdir().expect("dir");
    let ca = Ca::new(dir.path(), "gateway");
    let (app, _gp) = https_gateway(&ca, Some("optional")).await;
    for client in [
        ca.client_trusting(None),
        ca.client_trusting(Some(&ca.client("portal.test", "Portal"))),
    ] {
        let bundle = get_with(&client, &app, &search_ann())
            .await
            .expect("served");
        assert_eq!(entries(&bundle, "Patient").len(), 1, "{bundle}");
    }
    // Optional still means checked: a certificate from an untrusted CA is refused.
    let other = Ca::new(dir.path(), "other");
    let stranger = ca.client_trusting(Some(&other.client("intruder.test", "Nobody")));
    let refused = stranger.get(format!("{}/metadata", app.base)).send().await;
    assert!(refused.is_err(), "{refused:?}");
}

/// The connection's certificate reaches handlers as the `Peer` the gateway builds the
/// principal from: subject and fingerprint of exactly the certificate presented.
#[tokio::test]
async fn the_client_certificate_subject_reaches_the_request() {
    use axum::extract::ConnectInfo;
    use concord::server::tls::{Listener, Peer, serve};
    use rustls::pki_types::pem::PemObject;

    let dir = tempfile::tempdir().expect("dir");
    let ca = Ca::new(dir.path(), "gateway");
    let server = ca.server();
    let config = concord::config::ServerTlsConfig {
        cert_file: server.cert.clone(),
        key_file: server.key.clone(),
        client_ca_file: Some(ca.cert.clone()),
        client_auth: Some(concord::config::ClientAuth::Optional),
        handshake_timeout_ms: 5_000,
    };
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = tcp.local_addr().expect("addr");
    let listener = Listener::new(tcp, Some(&config)).expect("TLS listener");
    let router = axum::Router::new().route(
        "/whoami",
        axum::routing::get(|ConnectInfo(peer): ConnectInfo<Peer>| async move {
            match peer.client_certificate {
                Some(c) => format!("{}\n{}", c.subject, c.sha256),
                None => "anonymous".to_owned(),
            }
        }),
    );
    let task = tokio::spawn(serve(listener, router, std::future::pending()));

    let issued: Issued = ca.client("ehr.riverside.test", "Riverside GP");
    let der = rustls::pki_types::CertificateDer::from_pem_file(&issued.cert).expect("DER");
    let expected = concord::server::tls::describe_certificate(&der);
    let whoami = |client: reqwest::Client| async move {
        client
            .get(format!("https://{addr}/whoami"))
            .send()
            .await
            .expect("answer")
            .text()
            .await
            .expect("text")
    };
    let answer = whoami(ca.client_trusting(Some(&issued))).await;
    assert!(answer.contains("CN=ehr.riverside.test"), "{answer}");
    assert!(answer.contains("O=Riverside GP"), "{answer}");
    assert!(answer.ends_with(&expected.sha256), "{answer}");
    assert_eq!(whoami(ca.client_trusting(None)).await, "anonymous");
    task.abort();
}

/// What the secure upstream trusts and the gateway presents.
struct SecureSetup {
    _dir: tempfile::TempDir,
    upstream: Upstream,
    /// The CA the upstream's certificate comes from.
    ca_cert: PathBuf,
    /// `[source.tls]` and `[source.oauth]` lines for the gateway's source.
    source_toml: String,
}

/// An upstream over HTTPS that demands a client certificate from its CA and a bearer token
/// from its token endpoint, which trusts one ES384 client key. `gateway_key_is_registered`
/// false makes the gateway sign with another key; `present_certificate` false leaves the
/// client certificate out of the gateway's config.
async fn secure_upstream(
    expires_in: u64,
    gateway_key_is_registered: bool,
    present_certificate: bool,
) -> SecureSetup {
    let dir = tempfile::tempdir().expect("dir");
    let ca = Ca::new(dir.path(), "hscn");
    let server = ca.server();
    let client = ca.client("concord.gateway.test", "Concord");
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).expect("client key");
    let signing = if gateway_key_is_registered {
        key.serialize_pem()
    } else {
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384)
            .expect("other key")
            .serialize_pem()
    };
    let key_file = dir.path().join("concord-client.key");
    std::fs::write(&key_file, signing).expect("write key");
    let upstream = Upstream::start_secure(
        data::gp(),
        Secure {
            tls: concord::config::ServerTlsConfig {
                cert_file: server.cert,
                key_file: server.key,
                client_ca_file: Some(ca.cert.clone()),
                client_auth: None,
                handshake_timeout_ms: 5_000,
            },
            oauth: Some(OAuthServer {
                client_id: "concord-test-client".into(),
                public_key_pem: key.public_key_pem().into_bytes(),
                algorithm: jsonwebtoken::Algorithm::ES384,
                expires_in,
            }),
        },
    )
    .await;
    let mut source_toml = format!("[source.tls]\nca_file = \"{}\"\n", ca.cert.display());
    if present_certificate {
        source_toml.push_str(&format!(
            "client_cert_file = \"{}\"\nclient_key_file = \"{}\"\n",
            client.cert.display(),
            client.key.display()
        ));
    }
    source_toml.push_str(&format!(
        "[source.oauth]\ntoken_url = \"{}\"\nclient_id = \"concord-test-client\"\nkey_file = \"{}\"\nalgorithm = \"ES384\"\nkid = \"concord-1\"\nscope = \"system/*.rs\"\n",
        upstream.token_url(),
        key_file.display()
    ));
    SecureSetup {
        _dir: dir,
        upstream,
        ca_cert: ca.cert.clone(),
        source_toml,
    }
}

async fn gateway_over(setup: &SecureSetup) -> TestApp {
    TestApp::start(vec![
        SourceSpec::fhir("gp", "Riverside GP", "A81001", setup.upstream.base_url())
            .with(&setup.source_toml),
    ])
    .await
}

#[tokio::test]
async fn a_source_behind_mutual_tls_and_client_credentials_is_read() {
    let setup = secure_upstream(3600, true, true).await;
    assert!(setup.upstream.base_url().starts_with("https://"));
    let app = gateway_over(&setup).await;
    let id = app.patient_id(ANN).await;
    let everything = app.get(&format!("Patient/{id}/$everything")).await;
    assert_eq!(everything.status, StatusCode::OK);
    assert!(outcomes(&everything.body).is_empty(), "{}", everything.body);
    assert!(
        !entries(&everything.body, "Observation").is_empty(),
        "{}",
        everything.body
    );
    // Many upstream requests, one token: it is cached until shortly before it expires.
    assert!(setup.upstream.request_count() > 2);
    assert_eq!(setup.upstream.token_requests(), 1);
    assert_eq!(setup.upstream.refused_requests(), 0);
}

#[tokio::test]
async fn a_token_is_renewed_before_it_expires() {
    // A 5 s token is renewed 1 s before it expires: the first look-up's requests all fall
    // well inside its 4 s (a 1 s token left a loaded machine 0.8 s, and it fetched twice).
    let setup = secure_upstream(5, true, true).await;
    let app = gateway_over(&setup).await;
    app.patient_id(ANN).await;
    assert_eq!(setup.upstream.token_requests(), 1);
    tokio::time::sleep(Duration::from_millis(4_300)).await;
    app.patient_id(ANN).await;
    assert_eq!(setup.upstream.token_requests(), 2);
    // The old token was never sent once it had expired.
    assert_eq!(setup.upstream.refused_requests(), 0);
}

#[tokio::test]
async fn a_revoked_token_is_replaced_and_the_request_retried() {
    let setup = secure_upstream(3600, true, true).await;
    let app = gateway_over(&setup).await;
    app.patient_id(ANN).await;
    setup.upstream.revoke_tokens();
    let found = app.get(&search_ann()).await;
    assert_eq!(found.status, StatusCode::OK);
    assert!(outcomes(&found.body).is_empty(), "{}", found.body);
    assert_eq!(entries(&found.body, "Patient").len(), 1);
    assert_eq!(setup.upstream.token_requests(), 2);
    assert_eq!(setup.upstream.refused_requests(), 1);
}

/// The source cannot be reached (no client certificate, or a token endpoint that refuses
/// the gateway's key): the answer says so, naming the source, and carries no error detail.
#[tokio::test]
async fn a_source_the_gateway_cannot_authenticate_to_is_reported() {
    for (label, registered, certificate) in [
        ("no client certificate", true, false),
        ("key not registered", false, true),
    ] {
        let setup = secure_upstream(3600, registered, certificate).await;
        let app = gateway_over(&setup).await;
        let found = app.get(&search_ann()).await;
        assert_eq!(found.status, StatusCode::OK, "{label}");
        assert!(entries(&found.body, "Patient").is_empty(), "{label}");
        let why = outcomes(&found.body);
        assert_eq!(why.len(), 2, "{label}: {why:?}");
        assert_eq!(why[0], concord::server::api::NOTHING_TO_SHOW, "{label}");
        assert!(why[1].contains("Riverside GP (gp)"), "{label}: {why:?}");
        let text = found.body.to_string();
        let upstream = setup.upstream.base_url().replace("/fhir", "");
        for secret in ["invalid_client", "token", "certificate", upstream.as_str()] {
            assert!(!text.contains(secret), "{label}: `{secret}` leaked: {text}");
        }
        // No FHIR request ever reached the upstream without a token.
        assert_eq!(setup.upstream.refused_requests(), 0, "{label}");
        if !certificate {
            assert_eq!(
                setup.upstream.token_requests(),
                0,
                "{label}: no handshake, no request"
            );
        }
    }
}

#[tokio::test]
async fn a_source_whose_certificate_is_not_from_its_ca_is_refused() {
    let setup = secure_upstream(3600, true, true).await;
    let dir = tempfile::tempdir().expect("dir");
    let other = Ca::new(dir.path(), "elsewhere");
    let toml = setup.source_toml.replace(
        &setup.ca_cert.display().to_string(),
        &other.cert.display().to_string(),
    );
    assert_ne!(toml, setup.source_toml);
    let app = TestApp::start(vec![
        SourceSpec::fhir("gp", "Riverside GP", "A81001", setup.upstream.base_url()).with(&toml),
    ])
    .await;
    let found = app.get(&search_ann()).await;
    assert!(entries(&found.body, "Patient").is_empty());
    // The notice every empty answer carries, and the source that could not be asked.
    assert_eq!(outcomes(&found.body).len(), 2, "{}", found.body);
    assert_eq!(setup.upstream.request_count(), 0);
    assert_eq!(setup.upstream.token_requests(), 0);
}
