//! A fleet: several `concord serve` processes (the real binary) on one PostgreSQL, over the
//! same upstream FHIR servers and policy set. Each test makes its own database and skips
//! without `CONCORD_TEST_DATABASE_URL`.
//!
//! The consent cache lives ten minutes here, far beyond any test, so that a choice recorded
//! through one instance can only reach another by its change notice (or, while the
//! listener is down, by reading the store), never by the cache running out.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::ops::{copy_shipped_policies, free_port};
use crate::read_path::{specs, three_sources};
use crate::support::app::{
    AUDIENCE, AUDIT_KEY, HEAD_KEY, ISSUER, TestApp, claims, matches, metric_sample, mint, postgres,
};
use crate::support::data::{ANN, BOB, NHS_SYSTEM};
use crate::support::upstream::Upstream;

/// What the instances of one test share: the database, the upstreams, the policy files and
/// the key their tokens are signed with.
struct Fleet {
    dir: tempfile::TempDir,
    db: String,
    key: jsonwebtoken::EncodingKey,
    upstreams: (Upstream, Upstream, Upstream),
    client: reqwest::Client,
}

/// One `concord serve` process of the fleet.
struct Instance {
    name: String,
    port: u16,
    child: tokio::process::Child,
}

impl Fleet {
    async fn new(db: &str) -> Fleet {
        let dir = tempfile::tempdir().expect("dir");
        copy_shipped_policies(&dir.path().join("policies"));
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("key");
        std::fs::write(dir.path().join("key.pub.pem"), pair.public_key_pem()).expect("key");
        let key = jsonwebtoken::EncodingKey::from_ed_pem(pair.serialize_pem().as_bytes())
            .expect("signing key");
        Fleet {
            dir,
            db: db.to_owned(),
            key,
            upstreams: three_sources().await,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .expect("client"),
        }
    }

    /// Writes the config of the instance `name` (its own directory, spool and log) serving
    /// `port` under the policy files in `policies`.
    fn config(&self, name: &str, port: u16, policies: &Path) -> PathBuf {
        let dir = self.dir.path().join(name);
        std::fs::create_dir_all(&dir).expect("instance dir");
        let mut toml = format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\nrequest_timeout_ms = 3000\nmax_connections_per_client = 0\n\n\
             [store]\nurl = \"{db}\"\nmax_connections = 4\nconsent_cache_ms = 600000\n\n\
             [log]\nlevel = \"info\"\n\n[policy]\ndir = \"{policies}\"\nreload_check_secs = 0\n\n\
             [audit]\nkey_file = \"{AUDIT_KEY}\"\nspool_dir = \"spool\"\nhead_signing_key_file = \"{HEAD_KEY}\"\nhead_interval_secs = 1\n\n\
             [auth]\nissuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\n\n\
             [[auth.key]]\nkid = \"test\"\nalgorithm = \"EdDSA\"\npublic_key_file = \"{key}\"\n",
            db = self.db,
            policies = policies.display(),
            key = self.dir.path().join("key.pub.pem").display(),
        );
        let (gp, community, social) = &self.upstreams;
        for spec in specs(gp, community, social) {
            let crate::support::app::Target::Fhir { base_url, .. } = spec.target else {
                unreachable!("fhir sources")
            };
            toml.push_str(&format!(
                "\n[[source]]\nid = \"{}\"\nname = \"{}\"\nods = \"{}\"\nkind = \"fhir\"\nbase_url = \"{base_url}\"\ntimeout_ms = 2000\nbreaker_failures = 1000\nconformance = \"off\"\neverything_operation = true\n",
                spec.id, spec.name, spec.ods
            ));
        }
        let path = dir.join("concord.toml");
        std::fs::write(&path, toml).expect("config");
        path
    }

    /// Starts (or restarts) the instance `name` on `port` under the shared policy files, and
    /// waits until it is ready.
    async fn start(&self, name: &str, port: u16) -> Instance {
        self.start_with(name, port, &self.dir.path().join("policies"))
            .await
    }

    async fn start_with(&self, name: &str, port: u16, policies: &Path) -> Instance {
        let config = self.config(name, port, policies);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(name))
            .expect("log");
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_concord"))
            .args(["serve", "--config"])
            .arg(&config)
            .current_dir(config.parent().expect("dir"))
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("concord starts");
        let instance = Instance {
            name: name.to_owned(),
            port,
            child,
        };
        for _ in 0..400 {
            if let Ok(r) = self.client.get(instance.url("/readyz")).send().await
                && r.status() == StatusCode::OK
            {
                return instance;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{name} did not become ready: {}", self.log(name));
    }

    fn log_path(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.log"))
    }

    /// What the instance `name` has logged (for failure messages and log checks).
    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.log_path(name)).unwrap_or_default()
    }

    fn token(&self, extra: &[(&str, Value)]) -> String {
        mint(&self.key, &claims(extra))
    }

    /// A community nurse (RY4): sees the GP's and social care's records of the people
    /// community services know, unless the person objected.
    fn nurse(&self) -> String {
        self.token(&[("org", json!("RY4")), ("role", json!("nurse"))])
    }

    /// The person themself, through the portal, allowed to record their choices.
    fn person(&self, nhs: &str) -> String {
        self.token(&[
            ("scope", json!("patient/*.rs patient/Consent.cs")),
            ("nhs_number", json!(nhs)),
            ("role", json!("patient")),
            ("org", Value::Null),
        ])
    }

    fn operator(&self) -> String {
        self.token(&[("scope", json!("user/*.rs concord.operator"))])
    }

    /// The gateway id of a person, found through `instance` by a GP clinician.
    async fn person_id(&self, instance: &Instance, nhs: &str) -> String {
        let url = instance.url(&format!("/fhir/Patient?identifier={NHS_SYSTEM}|{nhs}"));
        let r = self
            .client
            .get(url)
            .bearer_auth(self.token(&[]))
            .send()
            .await
            .expect("answer");
        assert_eq!(r.status(), StatusCode::OK);
        let body: Value = serde_json::from_slice(&r.bytes().await.expect("body")).expect("json");
        matches(&body)[0]["id"].as_str().expect("id").to_owned()
    }

    /// `$everything` about `id` through `instance`, as the community nurse: how many
    /// resources from each source were disclosed.
    async fn everything(&self, instance: &Instance, id: &str) -> HashMap<String, usize> {
        let r = self
            .client
            .get(instance.url(&format!("/fhir/Patient/{id}/$everything")))
            .bearer_auth(self.nurse())
            .send()
            .await
            .expect("answer");
        assert_eq!(r.status(), StatusCode::OK);
        let body: Value = serde_json::from_slice(&r.bytes().await.expect("body")).expect("json");
        let mut from = HashMap::new();
        for resource in matches(&body) {
            if resource["resourceType"] == "Patient" {
                continue;
            }
            let id = resource["id"].as_str().unwrap_or_default();
            let source = id.split('.').next().unwrap_or_default().to_owned();
            *from.entry(source).or_default() += 1;
        }
        from
    }

    /// Records `id`'s choice through `instance` with their own token: `role` CST (not from
    /// that provider) or PRCP (not with that organisation), `status` active or inactive.
    async fn choose(&self, instance: &Instance, nhs: &str, id: &str, choice: Choice) -> StatusCode {
        let (role, org, status) = choice;
        let body = json!({
            "resourceType": "Consent",
            "status": status,
            "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
            "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
            "patient": {"reference": format!("Patient/{id}")},
            "provision": {"type": "deny", "actor": [{
                "role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": role}]},
                "reference": {"identifier": {"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": org}}
            }]}
        });
        self.client
            .post(instance.url("/fhir/Consent"))
            .bearer_auth(self.person(nhs))
            .header("Content-Type", "application/fhir+json")
            .body(body.to_string())
            .send()
            .await
            .expect("answer")
            .status()
    }

    /// How many sharing-choice notices from other instances `instance` has acted on (the
    /// counter goes up after the person's cached choices are evicted).
    async fn consent_notices(&self, instance: &Instance) -> u64 {
        let metrics = self.metrics(instance).await;
        metric_sample(&metrics, "concord_change_notices_total{kind=\"consent\"}")
            .map_or(0, |n| n as u64)
    }

    /// `instance`'s `/metrics`.
    async fn metrics(&self, instance: &Instance) -> String {
        self.client
            .get(instance.url("/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    }

    /// Waits (up to 10 s) until `instance` has acted on a sharing-choice notice beyond the
    /// `heard` it had acted on before. The README's "well within 250 ms" is what it typically
    /// takes; a test on a loaded machine waits for the notice itself rather than a time.
    async fn hears_after(&self, instance: &Instance, heard: u64) {
        until(async || (self.consent_notices(instance).await > heard).then_some(()))
            .await
            .expect("the instance acts on the other's notice");
    }

    /// The operator's readiness view of `instance`.
    async fn readiness(&self, instance: &Instance) -> Value {
        let r = self
            .client
            .get(instance.url("/readyz/detail"))
            .bearer_auth(self.operator())
            .send()
            .await
            .expect("answer");
        assert_eq!(r.status(), StatusCode::OK);
        serde_json::from_slice(&r.bytes().await.expect("body")).expect("json")
    }

    /// The PostgreSQL backends serving `instance`'s change listener.
    async fn listeners(&self, pg: &sqlx::PgPool, chain: &str) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1")
            .bind(format!("concord-listener {chain}"))
            .fetch_one(pg)
            .await
            .expect("pg_stat_activity")
    }
}

/// A Consent's provision actor role, organisation and status.
type Choice = (&'static str, &'static str, &'static str);

impl Instance {
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Sends `signal` (`TERM`, `HUP`) to the process.
    fn signal(&self, signal: &str) {
        let pid = self.child.id().expect("running").to_string();
        let status = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Stops the process with SIGTERM and waits for it.
    async fn stop(mut self) {
        self.signal("TERM");
        let status = tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("{} stops", self.name))
            .expect("exit");
        assert!(status.success(), "{}: {status:?}", self.name);
    }
}

/// Polls `check` every 50 ms for up to 10 s; the last value it gave.
async fn until<T>(mut check: impl AsyncFnMut() -> Option<T>) -> Option<T> {
    for _ in 0..200 {
        if let Some(v) = check().await {
            return Some(v);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// Three instances take concurrent `$everything` and Consent requests, a few clients each;
/// one is killed with SIGKILL mid-load and restarted on its port. Every request answered
/// 200 or 201 has exactly one audit record (found by its request id), and `concord audit
/// verify` checks every chain: the three, and the restarted instance's new one.
#[tokio::test]
async fn three_instances_one_killed_mid_load_every_answer_recorded_once() {
    let Some(db) = postgres().await else {
        return;
    };
    let fleet = Arc::new(Fleet::new(db.url()).await);
    let ports = [free_port(), free_port(), free_port()];
    let a = fleet.start("a", ports[0]).await;
    let b = fleet.start("b", ports[1]).await;
    let c = fleet.start("c", ports[2]).await;
    let ann = fleet.person_id(&a, ANN).await;
    let bob = fleet.person_id(&a, BOB).await;

    let answered: Arc<Mutex<Vec<String>>> = Arc::default();
    let b = Arc::new(tokio::sync::Mutex::new(Some(b)));
    let mut clients = Vec::new();
    for (n, port) in ports.iter().enumerate() {
        for k in 0..3 {
            let (fleet, answered) = (fleet.clone(), answered.clone());
            let (ann, bob, port) = (ann.clone(), bob.clone(), *port);
            clients.push(tokio::spawn(async move {
                let (nurse, bob_token) = (fleet.nurse(), fleet.person(BOB));
                let mut failures = 0;
                let mut refused = Vec::new();
                let mut i = 0;
                while i < 30 {
                    // A new id for each attempt: a request whose answer was lost in the kill
                    // may have been recorded, and its retry is another request.
                    let id = format!("fleet-{n}-{k}-{i}-{failures}");
                    let base = format!("http://127.0.0.1:{port}/fhir");
                    let request = if i % 5 == 4 {
                        // Bob changes his mind about his GP record, again and again.
                        let status = if i % 10 == 4 { "active" } else { "inactive" };
                        let consent = json!({
                            "resourceType": "Consent", "status": status,
                            "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
                            "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
                            "patient": {"reference": format!("Patient/{bob}")},
                            "provision": {"type": "deny", "actor": [{
                                "role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "CST"}]},
                                "reference": {"identifier": {"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "A81001"}}}]}
                        });
                        fleet
                            .client
                            .post(format!("{base}/Consent"))
                            .bearer_auth(&bob_token)
                            .header("Content-Type", "application/fhir+json")
                            .body(consent.to_string())
                    } else {
                        fleet
                            .client
                            .get(format!("{base}/Patient/{ann}/$everything"))
                            .bearer_auth(&nurse)
                    };
                    match request.header("X-Request-Id", &id).send().await {
                        Ok(r) => {
                            if matches!(r.status(), StatusCode::OK | StatusCode::CREATED) {
                                let echoed = r.headers().get("x-request-id").cloned();
                                assert_eq!(echoed.as_ref().and_then(|v| v.to_str().ok()), Some(id.as_str()));
                                answered.lock().expect("ids").push(id);
                            } else {
                                refused.push((id, r.status()));
                            }
                            i += 1;
                        }
                        Err(_) => {
                            // The instance is down (killed, restarting): try again shortly.
                            failures += 1;
                            assert!(failures < 400, "{port} did not come back");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
                refused
            }));
        }
    }
    // Mid-load, b is killed and started again on its port (a new process: a new chain).
    let killer = {
        let (fleet, answered, b) = (fleet.clone(), answered.clone(), b.clone());
        let port = ports[1];
        tokio::spawn(async move {
            for _ in 0..1200 {
                if answered.lock().expect("ids").len() >= 60 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let mut old = b.lock().await.take().expect("b");
            old.child.start_kill().expect("SIGKILL");
            old.child.wait().await.expect("killed");
            *b.lock().await = Some(fleet.start("b", port).await);
        })
    };
    let mut refused = Vec::new();
    for client in clients {
        refused.extend(client.await.expect("client"));
    }
    killer.await.expect("the kill and the restart");
    assert_eq!(refused, [], "every request is answered 200 or 201");
    let answered = answered.lock().expect("ids").clone();
    assert_eq!(answered.len(), 270);

    let b = b.lock().await.take().expect("b");
    for instance in [a, b, c] {
        instance.stop().await;
    }
    let store = concord::store::Store::connect(db.url(), 1)
        .await
        .expect("store");
    use futures_util::TryStreamExt;
    let records: Vec<concord::audit::Record> =
        store.audit_rows().try_collect().await.expect("rows");
    let mut recorded: HashMap<String, usize> = HashMap::new();
    for r in &records {
        let body: Value = serde_json::from_str(&r.body).expect("a body");
        let id = body["request_id"].as_str().unwrap_or_default().to_owned();
        *recorded.entry(id).or_default() += 1;
    }
    for id in &answered {
        assert_eq!(recorded.get(id), Some(&1), "request {id}: one record");
    }
    let chains: BTreeSet<&str> = records.iter().map(|r| r.chain.as_str()).collect();
    assert_eq!(chains.len(), 4, "a, b, c and b restarted: {chains:?}");
    let verify = tokio::process::Command::new(env!("CARGO_BIN_EXE_concord"))
        .args(["audit", "verify", "--config"])
        .arg(fleet.dir.path().join("a/concord.toml"))
        .output()
        .await
        .expect("audit verify");
    let out = String::from_utf8_lossy(&verify.stdout);
    assert!(verify.status.success(), "{out}");
    assert!(
        out.contains(&format!("{} record(s) in 4 chain(s)", records.len())),
        "{out}"
    );
    drop(store);
    db.drop().await;
}

/// A choice recorded through instance a binds a request that instance b starts once it has
/// acted on a's notice (typically milliseconds after a's 201), although b had the person's
/// choices cached; with b's listening connection cut, b honours the next choice at once (it
/// reads the store on every request), and after it reconnects, by notice again.
#[tokio::test]
async fn a_choice_recorded_on_one_instance_binds_the_others() {
    let Some(db) = postgres().await else {
        return;
    };
    let fleet = Fleet::new(db.url()).await;
    let a = fleet.start("a", free_port()).await;
    let b = fleet.start("b", free_port()).await;
    let ann = fleet.person_id(&a, ANN).await;
    let pg = sqlx::PgPool::connect(db.url()).await.expect("pg");
    let chain = fleet.readiness(&b).await["fleet"]["instance"]
        .as_str()
        .expect("b's chain")
        .to_owned();
    assert_eq!(
        fleet.listeners(&pg, &chain).await,
        1,
        "b listens on its own connection"
    );

    // b reads Ann's record (and caches her choices: none yet).
    let before = fleet.everything(&b, &ann).await;
    assert!(
        before.get("gp") > Some(&0) && before.get("social") > Some(&0),
        "{before:?}"
    );
    assert_eq!(
        fleet.readiness(&b).await["fleet"]["change_listener"],
        "listening"
    );

    // Ann asks, through a, that her GP record is not shared.
    let heard = fleet.consent_notices(&b).await;
    let status = fleet
        .choose(&a, ANN, &ann, ("CST", "A81001", "active"))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    fleet.hears_after(&b, heard).await;
    let after = fleet.everything(&b, &ann).await;
    assert_eq!(after.get("gp"), None, "b honours a's choice: {after:?}");
    assert_eq!(after.get("social"), before.get("social"));

    // b's listening connection is cut: b knows at once that it is not listening.
    let cut: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
    )
    .bind(format!("concord-listener {chain}"))
    .fetch_all(&pg)
    .await
    .expect("terminate");
    assert_eq!(cut, [true]);
    until(async || (fleet.readiness(&b).await["fleet"]["change_listener"] == "down").then_some(()))
        .await
        .expect("b says its listener is down");
    // Ann asks, through a, that nothing is shared with community services; b, whose cache
    // held her choices from before, honours it on its very next request.
    let status = fleet.choose(&a, ANN, &ann, ("PRCP", "RY4", "active")).await;
    assert_eq!(status, StatusCode::CREATED);
    let deaf = fleet.everything(&b, &ann).await;
    assert_eq!(deaf.get("social"), None, "b honours it at once: {deaf:?}");
    assert_eq!(deaf.get("gp"), None);
    assert!(
        deaf.get("community") > Some(&0),
        "RY4 still sees its own records"
    );

    // b listens again (on a new connection of the same name), its caches cleared.
    until(async || {
        (fleet.readiness(&b).await["fleet"]["change_listener"] == "listening").then_some(())
    })
    .await
    .expect("b listens again");
    assert_eq!(fleet.listeners(&pg, &chain).await, 1);
    assert_eq!(fleet.everything(&b, &ann).await.get("social"), None);
    // Ann lifts her objection to sharing with community services, through a: b, its cache
    // warm again, honours that too once it hears of it.
    let heard = fleet.consent_notices(&b).await;
    let status = fleet
        .choose(&a, ANN, &ann, ("PRCP", "RY4", "inactive"))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    fleet.hears_after(&b, heard).await;
    let lifted = fleet.everything(&b, &ann).await;
    assert_eq!(lifted.get("social"), before.get("social"), "{lifted:?}");
    assert_eq!(lifted.get("gp"), None, "her GP objection stands");

    let metrics = fleet.metrics(&b).await;
    assert!(
        metrics.contains("concord_change_listener_state 2")
            && metrics.contains("concord_change_notices_total{kind=\"consent\"}"),
        "{metrics}"
    );
    assert!(!metrics.contains(&ann) && !metrics.contains(ANN));
    let log = fleet.log("b");
    assert!(
        log.contains("not listening for changes made through other instances")
            && log.contains("listening for changes made through other instances again"),
        "{log}"
    );
    assert!(
        !log.contains(&ann) && !log.contains(ANN),
        "no person in the log"
    );
    a.stop().await;
    b.stop().await;
    pg.close().await;
    db.drop().await;
}

/// Every instance's readiness view lists the fleet with each instance's policy set; an
/// instance started with another set makes every view say that the sets disagree (and each
/// instance warns in its log), until it reloads the same set.
#[tokio::test]
async fn the_readiness_view_shows_the_fleet_and_when_its_policy_sets_disagree() {
    let Some(db) = postgres().await else {
        return;
    };
    let fleet = Fleet::new(db.url()).await;
    let mut instances = Vec::new();
    for name in ["a", "b", "c"] {
        instances.push(fleet.start(name, free_port()).await);
    }
    let mut chains = BTreeSet::new();
    let mut hash = Value::Null;
    for instance in &instances {
        let view = fleet.readiness(instance).await;
        chains.insert(
            view["fleet"]["instance"]
                .as_str()
                .expect("chain")
                .to_owned(),
        );
        hash = view["policy"]["hash"].clone();
    }
    for instance in &instances {
        // Each instance says it is alive as it starts; wait for every word to be in.
        let view = until(async || {
            let view = fleet.readiness(instance).await["fleet"].clone();
            (view["instances"].as_array().map(Vec::len) == Some(3)).then_some(view)
        })
        .await
        .expect("three instances");
        let listed: BTreeSet<String> = view["instances"]
            .as_array()
            .expect("instances")
            .iter()
            .map(|i| {
                assert_eq!(i["policy_hash"], hash, "{view}");
                assert!(
                    i["listen"]
                        .as_str()
                        .is_some_and(|l| l.starts_with("127.0.0.1:"))
                );
                i["instance"].as_str().expect("chain").to_owned()
            })
            .collect();
        assert_eq!(listed, chains, "{view}");
        assert_eq!(view["change_listener"], "listening");
        assert_eq!(view["policy_sets_disagree"], false, "{view}");
        assert_eq!(view["policy_hash"], hash);
    }

    // A fourth instance with another policy set: one file is not the same.
    let other = fleet.dir.path().join("other-policies");
    copy_shipped_policies(&other);
    let labels = other.join("labels.toml");
    let text = std::fs::read_to_string(&labels).expect("labels");
    std::fs::write(&labels, format!("{text}\n# changed on one instance only\n")).expect("edit");
    let d = fleet.start_with("d", free_port(), &other).await;
    let odd = fleet.readiness(&d).await["policy"]["hash"].clone();
    assert_ne!(odd, hash);
    instances.push(d);
    let both = json!(BTreeSet::from([
        hash.as_str().expect("hash"),
        odd.as_str().expect("hash")
    ]));
    for instance in &instances {
        let view = until(async || {
            let view = fleet.readiness(instance).await["fleet"].clone();
            (view["instances"].as_array().map(Vec::len) == Some(4)).then_some(view)
        })
        .await
        .expect("four instances");
        assert_eq!(view["policy_sets_disagree"], true, "{view}");
        assert_eq!(view["policy_hashes"], both, "{view}");
    }
    until(async || {
        fleet
            .log("a")
            .contains("enforce different policy sets")
            .then_some(())
    })
    .await
    .expect("a warns");

    // d is given the fleet's set and reloads it (SIGHUP): they agree again.
    std::fs::write(&labels, text).expect("restore");
    instances[3].signal("HUP");
    until(async || {
        let view = fleet.readiness(&instances[0]).await;
        (view["fleet"]["policy_sets_disagree"] == false).then_some(())
    })
    .await
    .expect("they agree again");
    until(async || {
        fleet
            .log("a")
            .contains("enforce one policy set again")
            .then_some(())
    })
    .await
    .expect("a says so");
    for instance in instances {
        instance.stop().await;
    }
    db.drop().await;
}

/// On SQLite (one process per file) no listener is needed, and the readiness view lists the
/// one instance.
#[tokio::test]
async fn one_instance_on_sqlite_lists_itself_and_needs_no_listener() {
    let (gp, community, social) = three_sources().await;
    let app = TestApp::start(specs(&gp, &community, &social)).await;
    let view = until(async || {
        let view: Value = serde_json::from_str(&app.readiness().await.1).expect("json");
        (view["fleet"]["instances"].as_array().map(Vec::len) == Some(1)).then_some(view)
    })
    .await
    .expect("the instance says it is alive as it starts");
    let fleet = &view["fleet"];
    assert_eq!(fleet["change_listener"], "not needed", "{view}");
    let instances = fleet["instances"].as_array().expect("instances");
    assert_eq!(instances.len(), 1, "{view}");
    assert_eq!(instances[0]["instance"], view["audit"]["chain"]);
    assert_eq!(instances[0]["policy_hash"], view["policy"]["hash"]);
    assert_eq!(fleet["policy_sets_disagree"], false);
}
