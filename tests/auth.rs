//! Every FHIR request carries a verified bearer token: each bad token gets a 401 with an
//! RFC 6750 challenge, scopes limit what a token reaches (403), and a patient token only ever
//! reaches its own person (404 for anyone else, never a hint).

use base64::Engine;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::read_path::{specs, three_sources};
use crate::support::app::{TestApp, claims, entries, matches};
use crate::support::data::{ANN, BOB, NOBODY};
use crate::support::upstream::Upstream;

async fn app() -> (TestApp, (Upstream, Upstream, Upstream)) {
    let ups = three_sources().await;
    let app = TestApp::start(specs(&ups.0, &ups.1, &ups.2)).await;
    (app, ups)
}

/// A 401 whose challenge carries `error="invalid_token"` and `description`, and which never
/// repeats the credentials.
async fn refused(app: &TestApp, authorization: Option<&str>, description: &str) {
    let headers: Vec<(&str, &str)> = authorization
        .map(|a| ("Authorization", a))
        .into_iter()
        .collect();
    let a = app.get_raw("Observation?patient=x", &headers).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
    assert_eq!(a.body["resourceType"], "OperationOutcome");
    let challenge = a.headers["www-authenticate"].to_str().expect("ascii");
    assert!(challenge.starts_with("Bearer "), "{challenge}");
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    assert!(
        challenge.contains(description),
        "`{challenge}` should say `{description}`"
    );
    if let Some(credentials) = authorization {
        let secret = credentials.split_whitespace().last().unwrap_or_default();
        if secret.len() > 8 {
            assert!(
                !challenge.contains(secret) && !a.body.to_string().contains(secret),
                "the token was echoed"
            );
        }
    }
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

#[tokio::test]
async fn a_missing_token_is_401() {
    let (app, _ups) = app().await;
    refused(&app, None, "no bearer token").await;
}

#[tokio::test]
async fn a_malformed_token_is_401() {
    let (app, _ups) = app().await;
    refused(&app, Some("Bearer not-a-jwt"), "malformed").await;
    refused(&app, Some("Bearer a.b.c"), "malformed").await;
    refused(&app, Some("Bearer a b"), "malformed").await;
}

#[tokio::test]
async fn an_expired_token_is_401() {
    let (app, _ups) = app().await;
    let t = app.token_with(&[("exp", json!(now() - 120))]);
    refused(&app, Some(&bearer(&t)), "expired").await;
}

#[tokio::test]
async fn a_token_not_yet_valid_is_401() {
    let (app, _ups) = app().await;
    let t = app.token_with(&[("nbf", json!(now() + 120))]);
    refused(&app, Some(&bearer(&t)), "not valid yet").await;
}

#[tokio::test]
async fn a_token_from_another_issuer_is_401() {
    let (app, _ups) = app().await;
    let t = app.token_with(&[("iss", json!("https://evil.example"))]);
    refused(&app, Some(&bearer(&t)), "issuer").await;
}

#[tokio::test]
async fn a_token_for_another_audience_is_401() {
    let (app, _ups) = app().await;
    let t = app.token_with(&[("aud", json!("someone-else"))]);
    refused(&app, Some(&bearer(&t)), "audience").await;
}

#[tokio::test]
async fn a_token_naming_an_unknown_key_is_401() {
    let (app, _ups) = app().await;
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.kid = Some("rotated-away".into());
    let t = jsonwebtoken::encode(&header, &claims(&[]), &app.signing_key).expect("sign");
    refused(&app, Some(&bearer(&t)), "key id is not known").await;
}

#[tokio::test]
async fn a_token_with_a_bad_signature_is_401() {
    let (app, _ups) = app().await;
    let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("key");
    let key =
        jsonwebtoken::EncodingKey::from_ed_pem(other.serialize_pem().as_bytes()).expect("key");
    let t = crate::support::app::mint(&key, &claims(&[]));
    refused(&app, Some(&bearer(&t)), "signature").await;
}

#[tokio::test]
async fn a_token_in_an_algorithm_not_pinned_for_its_key_is_401() {
    let (app, _ups) = app().await;
    let ec = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let key = jsonwebtoken::EncodingKey::from_ec_pem(ec.serialize_pem().as_bytes()).expect("key");
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some("test".into());
    let t = jsonwebtoken::encode(&header, &claims(&[]), &key).expect("sign");
    refused(&app, Some(&bearer(&t)), "algorithm").await;
}

#[tokio::test]
async fn alg_none_is_401() {
    let (app, _ups) = app().await;
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let t = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "kid": "test"})),
        b64(&Value::Object(claims(&[])))
    );
    refused(&app, Some(&bearer(&t)), "algorithm").await;
    let t = format!(
        "{}.{}.x",
        b64(&json!({"alg": "none", "kid": "test"})),
        b64(&Value::Object(claims(&[])))
    );
    refused(&app, Some(&bearer(&t)), "algorithm").await;
}

#[tokio::test]
async fn hs256_signed_with_the_public_key_is_401() {
    // Algorithm confusion: an attacker who has the public key signs with it as an HMAC secret.
    let (app, _ups) = app().await;
    let public = std::fs::read(app.dir().join("test-key.pub.pem")).expect("public key");
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some("test".into());
    let t = jsonwebtoken::encode(
        &header,
        &claims(&[]),
        &jsonwebtoken::EncodingKey::from_secret(&public),
    )
    .expect("sign");
    refused(&app, Some(&bearer(&t)), "algorithm").await;
}

#[tokio::test]
async fn a_token_over_8_kib_is_401() {
    let (app, _ups) = app().await;
    let t = app.token_with(&[("padding", json!("x".repeat(9000)))]);
    refused(&app, Some(&bearer(&t)), "8 KiB").await;
}

#[tokio::test]
async fn a_basic_header_is_401() {
    let (app, _ups) = app().await;
    refused(
        &app,
        Some("Basic ZHI6cGFzc3dvcmQ="),
        "scheme must be Bearer",
    )
    .await;
}

#[tokio::test]
async fn bearer_with_extra_spaces_or_lowercase_is_accepted() {
    let (app, _ups) = app().await;
    for header in [
        format!("bearer {}", app.token),
        format!("Bearer    {}", app.token),
        format!("BEARER {}  ", app.token),
    ] {
        let a = app
            .get_raw(
                &format!("Patient?identifier={ANN}"),
                &[("Authorization", header.as_str())],
            )
            .await;
        assert_eq!(a.status, StatusCode::OK, "{header:.12}: {}", a.body);
    }
}

#[tokio::test]
async fn open_endpoints_need_no_token() {
    let (app, _ups) = app().await;
    assert_eq!(app.get_raw("metadata", &[]).await.status, StatusCode::OK);
    assert_eq!(app.get_root("/healthz").await.0, StatusCode::OK);
    assert_eq!(app.get_root("/readyz").await.0, StatusCode::OK);
}

#[tokio::test]
async fn scopes_limit_types_with_403() {
    let (app, _ups) = app().await;
    let id = app.patient_id(ANN).await;
    let only_conditions =
        bearer(&app.token_with(&[("scope", json!("user/Condition.rs user/Patient.rs"))]));
    let h = [("Authorization", only_conditions.as_str())];
    let obs = app.get_raw(&format!("Observation?patient={id}"), &h).await;
    assert_eq!(obs.status, StatusCode::FORBIDDEN, "{}", obs.body);
    let challenge = obs.headers["www-authenticate"].to_str().expect("ascii");
    assert!(
        challenge.contains("error=\"insufficient_scope\""),
        "{challenge}"
    );
    assert_eq!(
        app.get_raw("Observation/gp.o1", &h).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.get_raw(&format!("Condition?patient={id}"), &h)
            .await
            .status,
        StatusCode::OK
    );
    // $everything returns only the permitted types.
    let all = app.get_raw(&format!("Patient/{id}/$everything"), &h).await;
    assert_eq!(all.status, StatusCode::OK);
    let types: std::collections::BTreeSet<String> = matches(&all.body)
        .iter()
        .filter_map(|r| r["resourceType"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        types.into_iter().collect::<Vec<_>>(),
        vec!["Condition", "Patient"]
    );
    // Read-only scopes do not allow searching.
    let read_only = bearer(&app.token_with(&[("scope", json!("user/Observation.r"))]));
    let a = app
        .get_raw(
            &format!("Observation?patient={id}"),
            &[("Authorization", read_only.as_str())],
        )
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    // No data scopes at all.
    let none = bearer(&app.token_with(&[("scope", json!("openid fhirUser"))]));
    let a = app
        .get_raw(
            &format!("Patient/{id}/$everything"),
            &[("Authorization", none.as_str())],
        )
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_patient_token_reaches_only_its_own_person() {
    let (app, ups) = app().await;
    let ann = app.patient_id(ANN).await;
    let bob = app.patient_id(BOB).await;
    let ann_token = bearer(&app.token_with(&[
        ("scope", json!("patient/*.rs")),
        ("nhs_number", json!(ANN)),
        ("role", json!("patient")),
    ]));
    let h = [("Authorization", ann_token.as_str())];

    let own = app
        .get_raw(
            &format!("Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|{ANN}"),
            &h,
        )
        .await;
    assert_eq!(own.status, StatusCode::OK);
    assert_eq!(entries(&own.body, "Patient")[0]["id"], ann);
    assert_eq!(
        app.get_raw(&format!("Patient/{ann}/$everything"), &h)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        app.get_raw("Observation/gp.o1", &h).await.status,
        StatusCode::OK
    );

    let before = ups.0.request_count();
    for path in [
        format!("Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|{BOB}"),
        format!("Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|{NOBODY}"),
    ] {
        let a = app.get_raw(&path, &h).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{path}: {}", a.body);
    }
    assert_eq!(
        ups.0.request_count(),
        before,
        "another person's NHS number never reaches a source"
    );
    for path in [
        format!("Patient/{bob}"),
        format!("Patient/{bob}/$everything"),
        format!("Observation?patient={bob}"),
        "Observation/gp.o3".to_owned(),
        "Patient/gp.g-bob".to_owned(),
        "Observation?patient=00000000-0000-0000-0000-000000000000".to_owned(),
    ] {
        let a = app.get_raw(&path, &h).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{path}: {}", a.body);
    }
    // user/ scopes in a patient token grant nothing beyond the person.
    let mixed = bearer(&app.token_with(&[
        ("scope", json!("patient/*.rs user/*.rs")),
        ("nhs_number", json!(ANN)),
    ]));
    let a = app
        .get_raw(
            &format!("Patient/{bob}"),
            &[("Authorization", mixed.as_str())],
        )
        .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
}
