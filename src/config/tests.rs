use super::*;

const MINIMAL: &str = r#"
[auth]
issuer = "https://idp.example"
audience = "concord"

[[auth.key]]
kid = "k1"
algorithm = "EdDSA"
public_key_file = "k1.pem"

[[source]]
id = "gp"
name = "Riverside Medical Practice"
ods = "A81001"
kind = "fhir"
base_url = "http://127.0.0.1:9000/fhir"
"#;

#[test]
fn minimal_config_takes_defaults() {
    let c = Config::parse(MINIMAL).expect("parses");
    c.validate().expect("valid");
    assert_eq!(c.server.default_page_size, 50);
    assert_eq!(c.server.base_url(), "http://127.0.0.1:8080/fhir");
    match c.sources[0].kind(0).expect("typed") {
        SourceKind::Fhir(f) => assert_eq!(f.timeout, Duration::from_millis(3_000)),
        SourceKind::Ndjson(_) => panic!("expected a fhir source"),
    }
}

#[test]
fn unknown_keys_are_named() {
    let err = Config::parse(&format!("{MINIMAL}\ntimeout = 3\n")).expect_err("unknown key");
    assert!(err.to_string().contains("timeout"), "{err}");
    let err = Config::parse("[server]\nlisten_addr = \"x\"\n").expect_err("unknown key");
    assert!(err.to_string().contains("listen_addr"), "{err}");
}

#[test]
fn bad_values_name_their_field() {
    let cases = [
        (MINIMAL.replace("A81001", "a81"), "source[0].ods"),
        (MINIMAL.replace("\"gp\"", "\"GP practice\""), "source[0].id"),
        (
            MINIMAL.replace("http://127.0.0.1:9000/fhir", "ftp://x"),
            "source[0].base_url",
        ),
        (
            format!(
                "{MINIMAL}{}",
                &MINIMAL[MINIMAL.find("[[source]]").unwrap_or(0)..].replace("Riverside", "Other")
            ),
            "source[1].id",
        ),
        (
            format!("[server]\nrequest_timeout_ms = 0\n{MINIMAL}"),
            "server.request_timeout_ms",
        ),
        (
            format!("[store]\nurl = \"mysql://x\"\n{MINIMAL}"),
            "store.url",
        ),
        (
            format!("{MINIMAL}resource_types = [\"Spaceship\"]\n"),
            "source[0].resource_types",
        ),
        (String::new(), "source"),
        (MINIMAL.replace("EdDSA", "HS256"), "auth.key[0].algorithm"),
        (
            MINIMAL.replace("audience = \"concord\"", "audience = \"\""),
            "auth.audience",
        ),
        (format!("{MINIMAL}path = \"x\"\n"), "source[0].path"),
        (
            MINIMAL.replace("base_url = \"http://127.0.0.1:9000/fhir\"", ""),
            "source[0].base_url",
        ),
        (format!("{MINIMAL}max_pages = 0\n"), "source[0].max_pages"),
        (
            format!("[server]\nrequest_timeout_ms = 2000\n{MINIMAL}"),
            "source[0].timeout_ms",
        ),
    ];
    for (text, field) in cases {
        let err = Config::parse(&text)
            .and_then(|c| c.validate())
            .expect_err(field);
        assert!(
            matches!(&err, ConfigError::Invalid { field: f, .. } if f == field),
            "{field}: {err}"
        );
    }
}

#[test]
fn auth_is_required() {
    let no_auth = MINIMAL
        .split("[[source]]")
        .nth(1)
        .map(|rest| format!("[[source]]{rest}"))
        .expect("source part");
    let err = Config::parse(&no_auth)
        .and_then(|c| c.validate())
        .expect_err("no [auth]");
    assert!(
        matches!(&err, ConfigError::Invalid { field, .. } if field == "auth"),
        "{err}"
    );
}

#[test]
fn relative_paths_follow_the_config_file() {
    let mut c = Config::parse(MINIMAL).expect("parses");
    c.resolve_paths(Path::new("/etc/concord"));
    assert_eq!(c.store.url, "sqlite:///etc/concord/data/concord.db");
    let key = &c.auth.as_ref().expect("auth").keys[0];
    assert_eq!(key.public_key_file, Path::new("/etc/concord/k1.pem"));
}
