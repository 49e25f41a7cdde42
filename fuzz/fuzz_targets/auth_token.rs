//! Bearer tokens, along two paths chosen by the first byte's lowest bit:
//!
//! - 0: the rest is an `Authorization` header value for `Verifier::verify_header` (scheme,
//!   token characters, the JWT header's `alg` and `kid`); random tokens stop at the
//!   signature.
//! - 1: the rest is a JSON object of claims, signed with the published demo key (Ed25519)
//!   so that it passes the signature and reaches the claims checks and the claims-to-
//!   `Principal` mapping. Bits 1 to 3 fill in a valid `iss`, `aud` and `exp` when the claims
//!   lack them, so that the fuzzer need not find them first.

#![no_main]

use std::path::Path;
use std::sync::LazyLock;

use concord::auth::Verifier;
use concord::config::{AuthConfig, ClaimNames, KeyConfig};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};

const ISSUER: &str = "https://idp.example";
const AUDIENCE: &str = "concord";
const KID: &str = "concord-demo";

fn demo_key(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/demo/keys")
        .join(name)
}

static VERIFIER: LazyLock<Verifier> = LazyLock::new(|| {
    let config = AuthConfig {
        issuer: ISSUER.into(),
        audience: AUDIENCE.into(),
        leeway_secs: 30,
        keys: vec![KeyConfig {
            kid: KID.into(),
            algorithm: "EdDSA".into(),
            public_key_file: demo_key("demo-signing-key.pub.pem"),
        }],
        jwks_file: None,
        claims: ClaimNames::default(),
        dev_signing_key: None,
    };
    match Verifier::from_config(&config) {
        Ok(verifier) => verifier,
        Err(e) => panic!("the demo key does not load: {e}"),
    }
});

static SIGNER: LazyLock<EncodingKey> = LazyLock::new(|| {
    let pem = match std::fs::read(demo_key("demo-signing-key.pem")) {
        Ok(pem) => pem,
        Err(e) => panic!("cannot read the demo signing key: {e}"),
    };
    match EncodingKey::from_ed_pem(&pem) {
        Ok(key) => key,
        Err(e) => panic!("the demo signing key does not load: {e}"),
    }
});

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        let Ok(header) = std::str::from_utf8(rest) else {
            return;
        };
        let _ = VERIFIER.verify_header(Some(header));
        return;
    }
    let Ok(mut claims) = serde_json::from_slice::<Map<String, Value>>(rest) else {
        return;
    };
    if mode & 2 != 0 {
        claims.entry("iss").or_insert_with(|| ISSUER.into());
    }
    if mode & 4 != 0 {
        claims.entry("aud").or_insert_with(|| AUDIENCE.into());
    }
    if mode & 8 != 0 {
        let exp = jiff::Timestamp::now().as_second() + 600;
        claims.entry("exp").or_insert_with(|| exp.into());
    }
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(KID.into());
    let Ok(token) = jsonwebtoken::encode(&header, &claims, &SIGNER) else {
        return;
    };
    if let Ok(principal) = VERIFIER.verify(&token) {
        assert!(!principal.user.is_empty());
        assert!(!principal.purpose_of_use.is_empty());
    }
});
