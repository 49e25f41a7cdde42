use super::*;
use std::time::Duration;

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
        SourceKind::Ndjson(_) | SourceKind::Store(_) => panic!("expected a fhir source"),
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
            format!("{MINIMAL}conditional_create = true\n"),
            "source[0].conditional_create",
        ),
        (
            MINIMAL.replace(
                "kind = \"fhir\"\nbase_url = \"http://127.0.0.1:9000/fhir\"",
                "kind = \"store\"\nconditional_create = true",
            ),
            "source[0].conditional_create",
        ),
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

#[test]
fn tls_and_oauth_settings_are_checked() {
    let oauth = "[source.oauth]\ntoken_url = \"https://auth.example/token\"\nclient_id = \"concord-gw\"\nkey_file = \"client.key\"\nalgorithm = \"ES384\"\nscope = \"system/*.rs\"\n";
    let tls = "[source.tls]\nca_file = \"hscn-ca.pem\"\nclient_cert_file = \"client.pem\"\nclient_key_file = \"client.key\"\n";
    let good = Config::parse(&format!("{MINIMAL}{tls}{oauth}")).expect("parses");
    good.validate().expect("valid");
    let cases = [
        (
            format!("{MINIMAL}{oauth}").replace("ES384", "HS256"),
            "source[0].oauth.algorithm",
        ),
        (
            format!("{MINIMAL}{oauth}").replace("https://auth.example/token", "not a url"),
            "source[0].oauth.token_url",
        ),
        (
            format!("{MINIMAL}{oauth}").replace("\"concord-gw\"", "\" \""),
            "source[0].oauth.client_id",
        ),
        (
            format!("{MINIMAL}{tls}").replace("client_key_file = \"client.key\"\n", ""),
            "source[0].tls.client_key_file",
        ),
        (
            format!(
                "[server.tls]\ncert_file = \"s.pem\"\nkey_file = \"s.key\"\nclient_auth = \"required\"\n{MINIMAL}"
            ),
            "server.tls.client_auth",
        ),
        (
            format!(
                "[server.tls]\ncert_file = \"s.pem\"\nkey_file = \"s.key\"\nhandshake_timeout_ms = 0\n{MINIMAL}"
            ),
            "server.tls.handshake_timeout_ms",
        ),
    ];
    for (text, field) in cases {
        let err = Config::parse(&text)
            .and_then(|c| c.validate())
            .expect_err(field);
        assert!(err.to_string().contains(field), "{field}: {err}");
    }
    // TLS and OAuth settings belong to FHIR sources only.
    let mut ndjson = Config::parse(&format!("{MINIMAL}{tls}")).expect("parses");
    ndjson.sources[0].kind = SourceKindName::Ndjson;
    ndjson.sources[0].base_url = None;
    ndjson.sources[0].path = Some(PathBuf::from("."));
    let err = ndjson.sources[0].kind(0).expect_err("tls on ndjson");
    assert!(err.to_string().contains("source[0].tls"), "{err}");
    // An unknown key in a subtable is named.
    let err = Config::parse(&format!("{MINIMAL}{tls}crl_file = \"x\"\n")).expect_err("unknown");
    assert!(err.to_string().contains("crl_file"), "{err}");
}

#[test]
fn https_changes_the_default_base_url_and_paths_resolve() {
    let mut c = Config::parse(&format!(
        "[server.tls]\ncert_file = \"tls/s.pem\"\nkey_file = \"/etc/s.key\"\n{MINIMAL}[source.oauth]\ntoken_url = \"https://a.example/t\"\nclient_id = \"c\"\nkey_file = \"keys/c.pem\"\nalgorithm = \"RS384\"\nscope = \"system/*.rs\"\n"
    ))
    .expect("parses");
    assert_eq!(c.server.base_url(), "https://127.0.0.1:8080/fhir");
    c.resolve_paths(Path::new("/srv/concord"));
    let tls = c.server.tls.as_ref().expect("tls");
    assert_eq!(tls.cert_file, Path::new("/srv/concord/tls/s.pem"));
    assert_eq!(tls.key_file, Path::new("/etc/s.key"));
    let oauth = c.sources[0].oauth.as_ref().expect("oauth");
    assert_eq!(oauth.key_file, Path::new("/srv/concord/keys/c.pem"));
}

#[test]
fn connection_limits_have_safe_defaults_and_are_checked() {
    let c = Config::parse(MINIMAL).expect("parses");
    assert_eq!(c.server.header_read_timeout_ms, 10_000);
    assert_eq!(c.server.idle_timeout_ms, 60_000);
    assert!(
        c.server.max_connections < 1_024,
        "room under the usual open-file limit"
    );
    assert_eq!(c.server.max_connections_per_client, 64);
    let no_cap = Config::parse(&format!(
        "[server]\nmax_connections_per_client = 0\n{MINIMAL}"
    ))
    .expect("parses");
    no_cap.validate().expect("0 means no per-client cap");
    for (line, field) in [
        (
            "header_read_timeout_ms = 0",
            "server.header_read_timeout_ms",
        ),
        ("body_read_timeout_ms = 0", "server.body_read_timeout_ms"),
        ("idle_timeout_ms = 0", "server.idle_timeout_ms"),
        ("send_timeout_ms = 0", "server.send_timeout_ms"),
        ("shutdown_deadline_ms = 0", "server.shutdown_deadline_ms"),
        ("max_connections = 0", "server.max_connections"),
        (
            "max_connections = 10\nmax_connections_per_client = 11",
            "server.max_connections_per_client",
        ),
    ] {
        let err = Config::parse(&format!("[server]\n{line}\n{MINIMAL}"))
            .and_then(|c| c.validate())
            .expect_err(field);
        assert!(
            matches!(&err, ConfigError::Invalid { field: f, .. } if f == field),
            "{field}: {err}"
        );
    }
    let err =
        Config::parse(&format!("[server]\nidle_timeout = 5\n{MINIMAL}")).expect_err("unknown key");
    assert!(err.to_string().contains("idle_timeout"), "{err}");
}

#[test]
fn the_console_table_is_checked() {
    let ok = format!(
        "{MINIMAL}\n[console]\nissuer = \"https://login.example.nhs.uk/\"\nclient_id = \"concord\"\n"
    );
    let c = Config::parse(&ok).expect("parses");
    c.validate().expect("valid");
    let console = c.console.expect("console");
    assert_eq!(console.allowed_roles, ["ig-lead"]);
    assert_eq!(console.scopes, ["openid", "profile"]);
    assert_eq!(
        (console.idle_timeout_secs, console.absolute_timeout_secs),
        (900, 28_800)
    );
    assert_eq!(console.lapsing_within_days, 30);
    Config::parse(&format!("{MINIMAL}\n[console]\n"))
        .expect("parses")
        .validate()
        .expect("no issuer: the demo sign-in only");
    for (table, field) in [
        ("issuer = \"https://idp.example\"", "console.client_id"),
        ("client_id = \"c\"", "console.issuer"),
        (
            "issuer = \"http://idp.example\"\nclient_id = \"c\"",
            "console.issuer",
        ),
        ("scopes = [\"profile\"]", "console.scopes"),
        ("allowed_roles = []", "console.allowed_roles"),
        ("idle_timeout_secs = 10", "console.idle_timeout_secs"),
        ("lapsing_within_days = 4000", "console.lapsing_within_days"),
        (
            "idle_timeout_secs = 600\nabsolute_timeout_secs = 60",
            "console.absolute_timeout_secs",
        ),
        (
            "client_secret = \"a\"\nclient_secret_env = \"B\"",
            "console.client_secret",
        ),
    ] {
        let err = Config::parse(&format!("{MINIMAL}\n[console]\n{table}\n"))
            .expect("parses")
            .validate()
            .expect_err(table);
        assert!(err.to_string().contains(field), "{table}: {err}");
    }
    let plain_local =
        format!("{MINIMAL}\n[console]\nissuer = \"http://127.0.0.1:9999\"\nclient_id = \"c\"\n");
    Config::parse(&plain_local)
        .expect("parses")
        .validate()
        .expect("http on a loopback host");
}

#[test]
fn the_break_glass_review_overdue_days_are_checked() {
    let c = Config::parse(&format!("{MINIMAL}\n[console]\n")).expect("parses");
    assert_eq!(c.console.expect("console").review_overdue_days, 7);
    for days in ["0", "3651"] {
        let err = Config::parse(&format!(
            "{MINIMAL}\n[console]\nreview_overdue_days = {days}\n"
        ))
        .expect("parses")
        .validate()
        .expect_err(days);
        assert!(
            err.to_string().contains("console.review_overdue_days"),
            "{err}"
        );
    }
    Config::parse(&format!("{MINIMAL}\n[console]\nreview_overdue_days = 30\n"))
        .expect("parses")
        .validate()
        .expect("30 days");
}

#[test]
fn the_locator_is_off_by_default_and_its_table_is_checked() {
    let c = Config::parse(MINIMAL).expect("parses");
    assert!(
        !c.locator.enabled,
        "off unless configured: every source is asked"
    );
    assert_eq!(c.locator.fallback, LocatorFallback::All);
    assert_eq!(c.locator.full_lookups_per_minute, 30);
    let on = Config::parse(&format!(
        "[locator]\nenabled = true\nfallback = \"none\"\nsync_interval_secs = 900\n{MINIMAL}locator_sync_secs = 0\n"
    ))
    .expect("parses");
    on.validate().expect("valid");
    assert_eq!(on.locator.fallback, LocatorFallback::None);
    assert_eq!(on.sources[0].locator_sync_secs, Some(0));
    for (table, field) in [
        ("page_size = 0", "locator.page_size"),
        ("page_size = 10001", "locator.page_size"),
        ("sync_interval_secs = 0", "locator.sync_interval_secs"),
        ("round_secs = 0", "locator.round_secs"),
        ("retry_secs = 0", "locator.retry_secs"),
        ("max_pages_per_round = 0", "locator.max_pages_per_round"),
        ("max_concurrent_syncs = 0", "locator.max_concurrent_syncs"),
        ("max_concurrent_syncs = 65", "locator.max_concurrent_syncs"),
        (
            "full_lookups_per_minute = 601",
            "locator.full_lookups_per_minute",
        ),
    ] {
        let c = Config::parse(&format!("[locator]\n{table}\n{MINIMAL}")).expect("parses");
        match c.validate() {
            Err(ConfigError::Invalid { field: f, .. }) => assert_eq!(f, field, "{table}"),
            other => panic!("{table}: expected an error naming {field}, got {other:?}"),
        }
    }
    for bad in ["fallback = \"some\"", "enabeld = true", "page_size = -1"] {
        let err = Config::parse(&format!("[locator]\n{bad}\n{MINIMAL}")).expect_err(bad);
        assert!(matches!(err, ConfigError::Parse { .. }), "{bad}: {err}");
    }
    let store_source = MINIMAL.replace(
        "kind = \"fhir\"\nbase_url = \"http://127.0.0.1:9000/fhir\"",
        "kind = \"store\"\nlocator_sync_secs = 60",
    );
    match Config::parse(&store_source).expect("parses").validate() {
        Err(ConfigError::Invalid { field, .. }) => assert_eq!(field, "source[0].locator_sync_secs"),
        other => panic!("a store source cannot be synced: {other:?}"),
    }
}

#[test]
fn the_sqlite_page_cache_is_bounded() {
    let c = Config::parse(MINIMAL).expect("parses");
    assert_eq!(c.store.sqlite_cache_mib, 8);
    let set = Config::parse(&format!("[store]\nsqlite_cache_mib = 64\n{MINIMAL}")).expect("parses");
    set.validate().expect("64 MiB is allowed");
    assert_eq!(set.store.sqlite_cache_mib, 64);
    for value in ["0", "1025"] {
        let err = Config::parse(&format!("[store]\nsqlite_cache_mib = {value}\n{MINIMAL}"))
            .and_then(|c| c.validate())
            .expect_err(value);
        assert!(
            matches!(&err, ConfigError::Invalid { field, .. } if field == "store.sqlite_cache_mib"),
            "{value}: {err}"
        );
    }
}
