//! `TestApp`: the whole gateway on 127.0.0.1, built from a real config file over real
//! upstream FHIR servers and a real store, called over HTTP.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::Value;
use tokio::net::TcpListener;

use concord::config::Config;
use concord::testing::TestDatabase;

/// One source of a test gateway.
pub(crate) struct SourceSpec {
    pub(crate) id: &'static str,
    pub(crate) name: &'static str,
    pub(crate) ods: &'static str,
    /// `kind = "fhir"` settings as TOML lines (base_url is added), or an ndjson path.
    pub(crate) target: Target,
}

pub(crate) enum Target {
    Fhir {
        base_url: String,
        extra: String,
    },
    Ndjson(std::path::PathBuf),
    /// `kind = "store"`, with these TOML lines (e.g. `writes = ["Goal"]`).
    Store(String),
}

impl SourceSpec {
    pub(crate) fn fhir(
        id: &'static str,
        name: &'static str,
        ods: &'static str,
        base_url: String,
    ) -> Self {
        Self {
            id,
            name,
            ods,
            target: Target::Fhir {
                base_url,
                extra: String::new(),
            },
        }
    }

    pub(crate) fn ndjson(
        id: &'static str,
        name: &'static str,
        ods: &'static str,
        dir: std::path::PathBuf,
    ) -> Self {
        Self {
            id,
            name,
            ods,
            target: Target::Ndjson(dir),
        }
    }

    /// Adds TOML lines to a fhir source (e.g. `max_pages = 2`).
    pub(crate) fn with(mut self, lines: &str) -> Self {
        if let Target::Fhir { extra, .. } = &mut self.target {
            extra.push_str(lines);
            extra.push('\n');
        }
        self
    }
}

/// Which store a test gateway uses.
pub(crate) enum StoreChoice {
    Sqlite,
    Postgres(String),
}

pub(crate) struct TestApp {
    pub(crate) base: String,
    pub(crate) origin: String,
    pub(crate) client: reqwest::Client,
    /// The private key the gateway trusts (kid `test`, EdDSA), for minting tokens.
    pub(crate) signing_key: jsonwebtoken::EncodingKey,
    /// A staff token with `user/*.rs`, sent by `get` unless a test gives its own.
    pub(crate) token: String,
    /// The `iss` the gateway trusts and its tokens carry.
    issuer: String,
    /// The gateway's state, for tests that call the door as a library does.
    pub(crate) state: concord::server::AppState,
    _dir: tempfile::TempDir,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Value,
}

/// The agreements of a test gateway.
pub(crate) enum Policies {
    /// The read-path tests' set: staff `clinician`s of the GP (`A81001`) and of every source's
    /// organisation see everything from every source for `TREAT`; people see their own
    /// records, and carers (`DAU`, `SON`) theirs.
    ReadPath,
    /// Copies of these files.
    Files(Vec<(String, String)>),
}

/// The read-path tests' agreements for these source organisations.
fn read_path_policies(ods: &[&str]) -> Vec<(String, String)> {
    let mut orgs: Vec<&str> = ods.to_vec();
    orgs.push("A81001");
    orgs.sort_unstable();
    orgs.dedup();
    let list = orgs
        .iter()
        .map(|o| format!("\"{o}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let staff = format!(
        "[agreement]\nid = \"test-read-path\"\ntitle = \"Read-path tests\"\nversion = \"1\"\nstatus = \"active\"\n\
         legal_basis = [\"test\"]\nvalid_from = \"2020-01-01\"\nvalid_until = \"2099-12-31\"\nowner = \"tests\"\n\n\
         [parties]\ndisclosers = [{list}]\nrecipients = [{list}]\n\n\
         [[rule]]\nid = \"everything\"\npurpose_of_use = [\"TREAT\"]\nroles = [\"clinician\"]\nresources = [\"*\"]\n"
    );
    let patients = format!(
        "[agreement]\nid = \"test-patient-access\"\ntitle = \"Patient access tests\"\nversion = \"1\"\nstatus = \"active\"\n\
         access = \"patient\"\nlegal_basis = [\"test\"]\nvalid_from = \"2020-01-01\"\nvalid_until = \"2099-12-31\"\nowner = \"tests\"\n\n\
         [parties]\ndisclosers = [{list}]\n\n\
         [[rule]]\nid = \"own-record\"\npurpose_of_use = [\"PATRQT\"]\nresources = [\"*\"]\n\n\
         [[rule]]\nid = \"carers\"\npurpose_of_use = [\"FAMRQT\"]\nrelationships = [\"DAU\", \"SON\"]\nresources = [\"*\"]\n"
    );
    vec![
        ("test-read-path.toml".into(), staff),
        ("test-patient-access.toml".into(), patients),
    ]
}

impl TestApp {
    pub(crate) async fn start(sources: Vec<SourceSpec>) -> TestApp {
        Self::start_with(sources, StoreChoice::Sqlite, "").await
    }

    /// Starts a gateway; `server_toml` adds lines to `[server]`.
    pub(crate) async fn start_with(
        sources: Vec<SourceSpec>,
        store: StoreChoice,
        server_toml: &str,
    ) -> TestApp {
        Self::start_full(sources, store, server_toml, Policies::ReadPath).await
    }

    /// Starts a gateway: sources, store, lines for `[server]` and the agreements.
    pub(crate) async fn start_full(
        sources: Vec<SourceSpec>,
        store: StoreChoice,
        server_toml: &str,
        policies: Policies,
    ) -> TestApp {
        Self::start_config(sources, store, server_toml, policies, "").await
    }

    /// Starts a gateway as [`TestApp::start_full`] does, with `extra_toml` (tables such as
    /// `[console]`, or more `[[auth.key]]`s) at the end of its config file.
    pub(crate) async fn start_config(
        sources: Vec<SourceSpec>,
        store: StoreChoice,
        server_toml: &str,
        policies: Policies,
        extra_toml: &str,
    ) -> TestApp {
        Self::start_gateway(
            sources,
            store,
            server_toml,
            policies,
            "",
            extra_toml,
            ISSUER,
        )
        .await
    }

    /// Starts a gateway as [`TestApp::start_config`] does, whose bearer tokens come from
    /// `issuer` (`[auth] issuer`; the test OpenID Connect provider's, say, so that one identity
    /// both calls the FHIR API and signs in to the console). Its tokens carry that `iss`.
    pub(crate) async fn start_trusting(
        sources: Vec<SourceSpec>,
        store: StoreChoice,
        server_toml: &str,
        policies: Policies,
        extra_toml: &str,
        issuer: &str,
    ) -> TestApp {
        Self::start_gateway(
            sources,
            store,
            server_toml,
            policies,
            "",
            extra_toml,
            issuer,
        )
        .await
    }

    /// [`TestApp::start_config`] with `audit_toml` added to `[audit]` (e.g. `region_roles`).
    pub(crate) async fn start_audited(
        sources: Vec<SourceSpec>,
        store: StoreChoice,
        server_toml: &str,
        policies: Policies,
        audit_toml: &str,
        extra_toml: &str,
    ) -> TestApp {
        Self::start_gateway(
            sources,
            store,
            server_toml,
            policies,
            audit_toml,
            extra_toml,
            ISSUER,
        )
        .await
    }

    /// Starts a gateway: `audit_toml` added to `[audit]`, `extra_toml` at the end of its
    /// config file, bearer tokens from `issuer`.
    async fn start_gateway(
        sources: Vec<SourceSpec>,
        store: StoreChoice,
        server_toml: &str,
        policies: Policies,
        audit_toml: &str,
        extra_toml: &str,
        issuer: &str,
    ) -> TestApp {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = match policies {
            Policies::ReadPath => {
                read_path_policies(&sources.iter().map(|s| s.ods).collect::<Vec<_>>())
            }
            Policies::Files(files) => files,
        };
        std::fs::create_dir(dir.path().join("policies")).expect("policy dir");
        for (name, text) in files {
            std::fs::write(dir.path().join("policies").join(name), text).expect("policy file");
        }
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind gateway");
        let addr = listener.local_addr().expect("addr");
        let store_url = match store {
            StoreChoice::Sqlite => "sqlite://data/concord.db".to_owned(),
            StoreChoice::Postgres(url) => url,
        };
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("test key");
        std::fs::write(dir.path().join("test-key.pub.pem"), pair.public_key_pem())
            .expect("write key");
        let signing_key = jsonwebtoken::EncodingKey::from_ed_pem(pair.serialize_pem().as_bytes())
            .expect("signing key");
        // A test that sets its own request timeout (many sources, say) keeps it.
        let request_timeout = if server_toml.contains("request_timeout_ms") {
            ""
        } else {
            "request_timeout_ms = 1500\n"
        };
        let mut toml = format!(
            "[server]\nlisten = \"{addr}\"\n{request_timeout}{server_toml}\n\n[store]\nurl = \"{store_url}\"\nmax_connections = 4\n\n[log]\nlevel = \"warn\"\n\n[policy]\nreload_check_secs = 1\n\n[profiles]\ndir = \"{PROFILES}\"\n\n[audit]\nkey_file = \"{AUDIT_KEY}\"\nhead_signing_key_file = \"{HEAD_KEY}\"\nhead_interval_secs = 1\nwitness_file = \"data/audit-witness.ndjson\"\n{audit_toml}\n\n\
             [auth]\nissuer = \"{issuer}\"\naudience = \"{AUDIENCE}\"\nleeway_secs = 5\n\n[[auth.key]]\nkid = \"test\"\nalgorithm = \"EdDSA\"\npublic_key_file = \"test-key.pub.pem\"\n"
        );
        for s in &sources {
            toml.push_str(&format!(
                "\n[[source]]\nid = \"{}\"\nname = \"{}\"\nods = \"{}\"\n",
                s.id, s.name, s.ods
            ));
            match &s.target {
                Target::Fhir { base_url, extra } => {
                    toml.push_str(&format!("kind = \"fhir\"\nbase_url = \"{base_url}\"\n"));
                    // Test defaults: a short source timeout, and a breaker that only the
                    // breaker test trips. They come before `extra`, which may open subtables
                    // such as `[source.tls]`.
                    if !extra.contains("timeout_ms") {
                        toml.push_str("timeout_ms = 1000\n");
                    }
                    if !extra.contains("breaker_failures") {
                        toml.push_str("breaker_failures = 100\n");
                    }
                    toml.push_str(extra);
                }
                Target::Store(extra) => {
                    toml.push_str("kind = \"store\"\n");
                    toml.push_str(extra);
                    toml.push('\n');
                }
                Target::Ndjson(path) => toml.push_str(&format!(
                    "kind = \"ndjson\"\npath = \"{}\"\n",
                    path.display()
                )),
            }
        }
        toml.push('\n');
        toml.push_str(extra_toml);
        let path = dir.path().join("concord.toml");
        std::fs::write(&path, toml).expect("write config");
        let config = Config::load(&path).expect("valid test config");
        let state = concord::server::build_state(&config)
            .await
            .expect("gateway starts");
        state.spawn_fleet();
        state.spawn_locator();
        let scheme = if config.server.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let listener = concord::server::tls::Listener::new(listener, config.server.tls.as_ref())
            .expect("the gateway's TLS config");
        let served = state.clone();
        let server = tokio::spawn(async move {
            let watch = served.door.policies().clone().watch(Duration::from_secs(1));
            let app = concord::server::app(served);
            tokio::select! {
                _ = concord::server::tls::serve(listener, app, std::future::pending()) => {}
                () = watch => {}
            }
        });
        let origin = format!("{scheme}://{addr}");
        let token = mint(&signing_key, &claims(&[("iss", Value::from(issuer))]));
        TestApp {
            base: format!("{origin}/fhir"),
            origin,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .expect("client"),
            signing_key,
            token,
            issuer: issuer.to_owned(),
            state,
            _dir: dir,
            server,
        }
    }

    /// The gateway's temporary directory (its config, key and store).
    pub(crate) fn dir(&self) -> &std::path::Path {
        self._dir.path()
    }

    /// Runs `concord {args} --config {this gateway's config}`: whether it succeeded, what it
    /// printed to stdout and to stderr.
    pub(crate) async fn concord(&self, args: &[&str]) -> (bool, String, String) {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_concord"))
            .args(args)
            .arg("--config")
            .arg(self.dir().join("concord.toml"))
            .output()
            .await
            .expect("run concord");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// A token signed by the key this gateway trusts, with the default claims changed or
    /// added by `extra` (a `null` value removes a claim).
    pub(crate) fn token_with(&self, extra: &[(&str, Value)]) -> String {
        let mut all = vec![("iss", Value::from(self.issuer.as_str()))];
        all.extend_from_slice(extra);
        mint(&self.signing_key, &claims(&all))
    }

    /// GET with the default staff token, plus extra headers.
    pub(crate) async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Answer {
        let bearer = format!("Bearer {}", self.token);
        let mut all = vec![("Authorization", bearer.as_str())];
        all.extend_from_slice(headers);
        self.get_raw(path, &all).await
    }

    /// GET `{base}/{path}` (or an absolute URL) with exactly these headers (no token unless
    /// given).
    pub(crate) async fn get_raw(&self, path: &str, headers: &[(&str, &str)]) -> Answer {
        let url = if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}/{}", self.base, path.trim_start_matches('/'))
        };
        send(self.client.get(url), headers).await
    }

    /// POST a body to `{base}/{path}` with exactly these headers.
    pub(crate) async fn post_raw(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Answer {
        let url = format!("{}/{}", self.base, path.trim_start_matches('/'));
        send(self.client.post(url).body(body), headers).await
    }

    pub(crate) async fn get(&self, path: &str) -> Answer {
        self.get_with(path, &[]).await
    }

    /// GET a path on the gateway's origin (not under /fhir).
    pub(crate) async fn get_root(&self, path: &str) -> (StatusCode, String) {
        let resp = self
            .client
            .get(format!("{}{}", self.origin, path))
            .send()
            .await
            .expect("gateway answers");
        (resp.status(), resp.text().await.expect("body"))
    }

    /// The operator's readiness view (`/readyz/detail`, with an operator token).
    pub(crate) async fn readiness(&self) -> (StatusCode, String) {
        let token = self.token_with(&[("scope", Value::from("user/*.rs concord.operator"))]);
        let resp = self
            .client
            .get(format!("{}/readyz/detail", self.origin))
            .bearer_auth(token)
            .send()
            .await
            .expect("gateway answers");
        (resp.status(), resp.text().await.expect("body"))
    }

    /// The merged Patient's gateway id for an NHS number (asserting it is found).
    pub(crate) async fn patient_id(&self, nhs: &str) -> String {
        let a = self
            .get(&format!(
                "Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|{nhs}"
            ))
            .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        let patient = entries(&a.body, "Patient");
        assert_eq!(patient.len(), 1, "one merged Patient: {}", a.body);
        patient[0]["id"].as_str().expect("id").to_owned()
    }
}

/// Sends a request with these headers and reads the answer (JSON when it is JSON).
async fn send(mut req: reqwest::RequestBuilder, headers: &[(&str, &str)]) -> Answer {
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("gateway answers");
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.bytes().await.expect("body");
    let body = serde_json::from_slice(&bytes)
        .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Answer {
        status,
        headers,
        body,
    }
}

/// The audit key test gateways hash their records with.
/// The profiles every test gateway checks its sources against.
pub(crate) const PROFILES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fhir-profiles");

/// The demo's key for signing audit chain heads.
pub(crate) const HEAD_KEY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/examples/demo/keys/demo-audit-heads.pem"
);

pub(crate) const AUDIT_KEY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/examples/demo/keys/demo-audit.key"
);

/// The issuer and audience test gateways trust.
pub(crate) const ISSUER: &str = "https://idp.test.invalid";
pub(crate) const AUDIENCE: &str = "concord-test";

/// Default claims: a clinician at the GP with `user/*.rs`, valid for ten minutes; `extra`
/// replaces or adds claims, and a `null` removes one.
pub(crate) fn claims(extra: &[(&str, Value)]) -> serde_json::Map<String, Value> {
    let now = jiff::Timestamp::now().as_second();
    let mut c = serde_json::Map::new();
    for (k, v) in [
        ("iss", Value::from(ISSUER)),
        ("aud", Value::from(AUDIENCE)),
        ("iat", Value::from(now)),
        ("exp", Value::from(now + 600)),
        ("sub", Value::from("dr-test")),
        ("name", Value::from("Dr Test")),
        ("org", Value::from("A81001")),
        ("role", Value::from("clinician")),
        ("scope", Value::from("user/*.rs")),
    ] {
        c.insert(k.into(), v);
    }
    for (k, v) in extra {
        if v.is_null() {
            c.remove(*k);
        } else {
            c.insert((*k).into(), v.clone());
        }
    }
    c
}

/// Signs claims with an EdDSA key as kid `test`.
pub(crate) fn mint(
    key: &jsonwebtoken::EncodingKey,
    claims: &serde_json::Map<String, Value>,
) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.kid = Some("test".into());
    jsonwebtoken::encode(&header, claims, key).expect("sign a test token")
}

/// A clinician's token signed as `concord dev-token` signs it, with a config's
/// `dev_signing_key` (the demo key).
pub(crate) fn dev_token(config: &Config) -> String {
    let spec = concord::auth::DevToken {
        user: "demo".into(),
        name: "Demo Clinician".into(),
        org: "A81001".into(),
        role: "clinician".into(),
        purpose_of_use: "TREAT".into(),
        patient: None,
        relationship: None,
        scope: "user/*.rs".into(),
        ttl_secs: 600,
    };
    let auth = config.auth.as_ref().expect("the config has [auth]");
    concord::auth::sign_dev_token(auth, &spec).expect("the demo key signs")
}

/// Resources of a type in a Bundle's match entries.
pub(crate) fn entries(bundle: &Value, resource_type: &str) -> Vec<Value> {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| {
            e["search"]["mode"] == "match" && e["resource"]["resourceType"] == resource_type
        })
        .map(|e| e["resource"].clone())
        .collect()
}

/// Every match entry's resource.
pub(crate) fn matches(bundle: &Value) -> Vec<Value> {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["search"]["mode"] == "match")
        .map(|e| e["resource"].clone())
        .collect()
}

/// The issues of OperationOutcome entries (search.mode = outcome).
pub(crate) fn outcome_issues(bundle: &Value) -> Vec<Value> {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["search"]["mode"] == "outcome")
        .flat_map(|e| {
            e["resource"]["issue"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .collect()
}

/// The diagnostics of OperationOutcome entries (search.mode = outcome).
pub(crate) fn outcomes(bundle: &Value) -> Vec<String> {
    outcome_issues(bundle)
        .iter()
        .map(|i| i["diagnostics"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// The `next` link of a Bundle.
pub(crate) fn next_link(bundle: &Value) -> Option<String> {
    bundle["link"]
        .as_array()?
        .iter()
        .find(|l| l["relation"] == "next")
        .and_then(|l| l["url"].as_str())
        .map(str::to_owned)
}

/// The value of the sample `name` (with its labels, e.g. `concord_x_total{kind="a"}`) in a
/// `/metrics` text, or `None` when there is no such line (a counter never incremented).
pub(crate) fn metric_sample(metrics: &str, name: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let value = line.strip_prefix(name)?.strip_prefix(' ')?;
        Some(
            value
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("`{name}` has no number: {line}")),
        )
    })
}

/// A PostgreSQL store for a test, when `CONCORD_TEST_DATABASE_URL` is set.
pub(crate) async fn postgres() -> Option<TestDatabase> {
    TestDatabase::create().await
}
