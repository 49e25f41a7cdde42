use super::*;
use crate::config::KeyConfig;

struct Minted {
    config: AuthConfig,
    _dir: tempfile::TempDir,
    keys: Vec<(String, Algorithm, EncodingKey)>,
}

fn mint() -> Minted {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut keys = Vec::new();
    let mut configs = Vec::new();
    for (kid, alg, rc, name) in [
        ("ed", Algorithm::EdDSA, &rcgen::PKCS_ED25519, "EdDSA"),
        (
            "ec",
            Algorithm::ES256,
            &rcgen::PKCS_ECDSA_P256_SHA256,
            "ES256",
        ),
        ("rsa", Algorithm::RS256, &rcgen::PKCS_RSA_SHA256, "RS256"),
    ] {
        let pair = rcgen::KeyPair::generate_for(rc).expect("key generation");
        let public = dir.path().join(format!("{kid}.pem"));
        std::fs::write(&public, pair.public_key_pem()).expect("write");
        let private = pair.serialize_pem();
        let enc = match alg {
            Algorithm::EdDSA => EncodingKey::from_ed_pem(private.as_bytes()),
            Algorithm::ES256 => EncodingKey::from_ec_pem(private.as_bytes()),
            _ => EncodingKey::from_rsa_pem(private.as_bytes()),
        }
        .expect("encoding key");
        keys.push((kid.to_owned(), alg, enc));
        configs.push(KeyConfig {
            kid: kid.into(),
            algorithm: name.into(),
            public_key_file: public,
        });
    }
    let config = AuthConfig {
        issuer: "https://idp.example".into(),
        audience: "concord".into(),
        leeway_secs: 5,
        keys: configs,
        jwks_file: None,
        claims: ClaimNames::default(),
        dev_signing_key: None,
    };
    Minted {
        config,
        _dir: dir,
        keys,
    }
}

fn claims(extra: &[(&str, Value)]) -> Map<String, Value> {
    let now = jiff::Timestamp::now().as_second();
    let mut c = Map::new();
    c.insert("iss".into(), "https://idp.example".into());
    c.insert("aud".into(), "concord".into());
    c.insert("exp".into(), (now + 600).into());
    c.insert("sub".into(), "u1".into());
    c.insert("scope".into(), "user/*.rs".into());
    for (k, v) in extra {
        c.insert((*k).into(), v.clone());
    }
    c
}

fn sign(m: &Minted, kid: &str, c: &Map<String, Value>) -> String {
    let (_, alg, key) = m.keys.iter().find(|(k, _, _)| k == kid).expect("kid");
    let mut h = Header::new(*alg);
    h.kid = Some(kid.into());
    jsonwebtoken::encode(&h, c, key).expect("sign")
}

#[test]
fn each_algorithm_verifies_with_its_own_key() {
    let m = mint();
    let v = Verifier::from_config(&m.config).expect("keys load");
    for kid in ["ed", "ec", "rsa"] {
        let p = v.verify(&sign(&m, kid, &claims(&[]))).expect(kid);
        assert_eq!(p.user, "u1");
        assert_eq!(p.purpose_of_use, "TREAT");
        assert!(p.may("Observation", Interaction::Search));
    }
    assert!(!v.trusts_demo_key());
}

#[test]
fn a_token_signed_by_one_key_but_naming_another_fails() {
    let m = mint();
    let v = Verifier::from_config(&m.config).expect("keys load");
    let token = sign(&m, "ed", &claims(&[]));
    // Re-label the header to name the EC key: the algorithm no longer matches its pin.
    let mut parts = token.splitn(2, '.');
    let _ = parts.next();
    let forged_head =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"alg":"EdDSA","kid":"ec"}"#);
    let forged = format!("{forged_head}.{}", parts.next().expect("rest"));
    assert_eq!(v.verify(&forged).err(), Some(AuthError::Algorithm));
}

#[test]
fn patient_tokens_carry_their_person() {
    let m = mint();
    let v = Verifier::from_config(&m.config).expect("keys load");
    let t = sign(
        &m,
        "ed",
        &claims(&[
            ("scope", "patient/*.rs".into()),
            ("nhs_number", "9434765919".into()),
            ("acting_for_relationship", "SON".into()),
        ]),
    );
    let p = v.verify(&t).expect("valid");
    let ctx = p.patient.clone().expect("patient token");
    assert_eq!(ctx.acting_for_relationship.as_deref(), Some("SON"));
    assert!(p.may("Condition", Interaction::Read));
    assert!(p.may_see_person(&NhsNumber::parse("9434765919").expect("valid")));
    assert!(!p.may_see_person(&NhsNumber::parse("9990000018").expect("valid")));
    // patient scopes without a person, or with a bad NHS number, are refused
    let no_person = sign(&m, "ed", &claims(&[("scope", "patient/*.rs".into())]));
    assert_eq!(
        v.verify(&no_person).err(),
        Some(AuthError::Claim("nhs_number".into()))
    );
    let bad = sign(
        &m,
        "ed",
        &claims(&[
            ("scope", "patient/*.rs".into()),
            ("nhs_number", "9434765918".into()),
        ]),
    );
    assert_eq!(
        v.verify(&bad).err(),
        Some(AuthError::Claim("nhs_number".into()))
    );
}

#[test]
fn renamed_claims_are_read() {
    let mut m = mint();
    m.config.claims.org = "https://idp.example/org".into();
    m.config.claims.scope = "scp".into();
    let v = Verifier::from_config(&m.config).expect("keys load");
    let t = sign(
        &m,
        "ed",
        &claims(&[
            ("https://idp.example/org", "A81001".into()),
            ("scp", Value::Array(vec!["user/Observation.rs".into()])),
        ]),
    );
    let p = v.verify(&t).expect("valid");
    assert_eq!(p.org.as_deref(), Some("A81001"));
    assert!(p.may("Observation", Interaction::Read));
    assert!(!p.may("Condition", Interaction::Read));
}

#[test]
fn bearer_header_forms() {
    assert_eq!(bearer_token(Some("Bearer abc.def.ghi")), Ok("abc.def.ghi"));
    assert_eq!(
        bearer_token(Some("bearer   abc.def.ghi ")),
        Ok("abc.def.ghi")
    );
    assert_eq!(bearer_token(Some("BEARER\tabc.def.ghi")), Ok("abc.def.ghi"));
    assert_eq!(
        bearer_token(Some("Basic dXNlcjpwYXNz")),
        Err(AuthError::WrongScheme)
    );
    assert_eq!(bearer_token(Some("Bearer")), Err(AuthError::Missing));
    assert_eq!(bearer_token(None), Err(AuthError::Missing));
    assert_eq!(bearer_token(Some("Bearer a b")), Err(AuthError::Malformed));
}

#[test]
fn the_demo_key_is_recognised() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("demo.pem");
    std::fs::write(&path, DEMO_PUBLIC_KEY_PEM).expect("write");
    let config = AuthConfig {
        issuer: "i".into(),
        audience: "a".into(),
        leeway_secs: 0,
        keys: vec![KeyConfig {
            kid: "demo".into(),
            algorithm: "EdDSA".into(),
            public_key_file: path,
        }],
        jwks_file: None,
        claims: ClaimNames::default(),
        dev_signing_key: None,
    };
    assert!(
        Verifier::from_config(&config)
            .expect("loads")
            .trusts_demo_key()
    );
}

#[test]
fn a_remembered_token_is_not_trusted_past_its_expiry() {
    let mut m = mint();
    m.config.leeway_secs = 0;
    let v = Verifier::from_config(&m.config).expect("keys load");
    let exp = jiff::Timestamp::now().as_second() + 1;
    let t = sign(&m, "ed", &claims(&[("exp", exp.into())]));
    assert!(v.verify(&t).is_ok());
    assert!(v.verify(&t).is_ok(), "the second time from the cache");
    // Wait until the token has expired (the cache must not outlive it).
    while jiff::Timestamp::now().as_second() <= exp {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(v.verify(&t).err(), Some(AuthError::Expired));
}

#[test]
fn empty_claims_count_as_absent_and_control_characters_are_refused() {
    let m = mint();
    let v = Verifier::from_config(&m.config).expect("keys load");
    // Identity providers send "" for claims they have no value for.
    let blank = sign(
        &m,
        "ed",
        &claims(&[
            ("org", "".into()),
            ("name", "  ".into()),
            ("role", "".into()),
            ("purpose_of_use", "".into()),
        ]),
    );
    let p = v.verify(&blank).expect("valid");
    assert_eq!((p.org, p.name, p.role), (None, None, None));
    assert_eq!(p.purpose_of_use, "TREAT");
    // A blank user is no user.
    let nobody = sign(&m, "ed", &claims(&[("sub", " ".into())]));
    assert_eq!(
        v.verify(&nobody).err(),
        Some(AuthError::Claim("sub".into()))
    );
    // Control characters would reach the audit log and FHIR strings.
    let nul = sign(&m, "ed", &claims(&[("org", "A81\u{0}001".into())]));
    assert_eq!(v.verify(&nul).err(), Some(AuthError::Claim("org".into())));
    let number = sign(&m, "ed", &claims(&[("org", 81001.into())]));
    assert_eq!(
        v.verify(&number).err(),
        Some(AuthError::Claim("org".into()))
    );
    // An empty relationship never makes a carer's token the person's own.
    let carer = sign(
        &m,
        "ed",
        &claims(&[
            ("scope", "patient/*.rs".into()),
            ("nhs_number", "9434765919".into()),
            ("acting_for_relationship", "".into()),
        ]),
    );
    assert_eq!(
        v.verify(&carer).err(),
        Some(AuthError::Claim("acting_for_relationship".into()))
    );
}
