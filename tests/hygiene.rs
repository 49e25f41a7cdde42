//! Logs never carry personal data: no NHS numbers, names or query strings, even when sources
//! fail and upstream errors are logged, and none of what the IG console is asked or shows
//! (an NHS number searched for, the signed-in user's name, the session cookie, the OpenID
//! Connect client's secret). The real `concord` binary runs with every log level on, and its
//! stderr is read.

use std::process::Stdio;
use std::time::Duration;

use crate::console::{Visitor, console_toml};
use crate::read_path::three_sources;
use crate::support::data::{ANN, NOBODY};
use crate::support::oidc::{CLIENT_SECRET, OidcProvider};
use crate::support::upstream::Mode;

#[tokio::test]
async fn logs_never_carry_personal_data() {
    let (gp, community, social) = three_sources().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
        l.local_addr().expect("addr").port()
    };
    let keys = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/demo/keys");
    let policies = concat!(env!("CARGO_MANIFEST_DIR"), "/policies");
    let profiles = crate::support::app::PROFILES;
    let audit_key = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/demo/keys/demo-audit.key"
    );
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\nrequest_timeout_ms = 5000\n\n[store]\nurl = \"sqlite://concord.db\"\n\n\
         [policy]\ndir = \"{policies}\"\n\n[profiles]\ndir = \"{profiles}\"\n\n\
         [audit]\nkey_file = \"{audit_key}\"\n\n[auth]\nissuer = \"https://concord.demo.invalid\"\naudience = \"concord\"\ndev_signing_key = \"{keys}/demo-signing-key.pem\"\n\n\
         [[auth.key]]\nkid = \"concord-demo\"\nalgorithm = \"EdDSA\"\npublic_key_file = \"{keys}/demo-signing-key.pub.pem\"\n\n\
         [[source]]\nid = \"gp\"\nname = \"GP\"\nods = \"A81001\"\nkind = \"fhir\"\nbase_url = \"{}\"\n\n\
         [[source]]\nid = \"community\"\nname = \"Community\"\nods = \"RY4\"\nkind = \"fhir\"\nbase_url = \"{}\"\n\n\
         [[source]]\nid = \"social\"\nname = \"Social care\"\nods = \"LA001\"\nkind = \"fhir\"\nbase_url = \"{}\"\n",
        gp.base_url(),
        community.base_url(),
        social.base_url()
    );
    let idp = OidcProvider::start("127.0.0.1").await;
    let config = format!("{config}\n{}", console_toml(&idp));
    std::fs::write(dir.path().join("concord.toml"), config).expect("config");
    let log = std::fs::File::create(dir.path().join("stderr.log")).expect("log file");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_concord"))
        .args(["serve", "--config"])
        .arg(dir.path().join("concord.toml"))
        .env("CONCORD_LOG", "trace")
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("concord starts");
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}/fhir");
    let mut up = false;
    // Up to 20 s: a debug build starting with every log line on, beside the other tests.
    for _ in 0..400 {
        if client
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
            .is_ok()
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(up, "the gateway came up");

    let parsed = concord::config::Config::load(&dir.path().join("concord.toml")).expect("config");
    let token = crate::support::app::dev_token(&parsed);
    let get = |path: String| {
        let client = client.clone();
        let base = base.clone();
        let token = token.clone();
        async move {
            let r = client
                .get(format!("{base}/{path}"))
                .bearer_auth(token)
                .send()
                .await
                .expect("answers");
            serde_json::from_slice::<serde_json::Value>(&r.bytes().await.expect("body"))
                .expect("json")
        }
    };
    let found = get(format!(
        "Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|{ANN}"
    ))
    .await;
    let id = found["entry"][0]["resource"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("found: {found}"))
        .to_owned();
    community.set_mode(Mode::Garbage);
    social.set_mode(Mode::Status(500));
    get(format!("Patient/{id}/$everything")).await;
    get(format!("Observation?patient={id}&code=271649006")).await;
    drop(gp);
    get(format!(
        "Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|{NOBODY}"
    ))
    .await;
    // An IG lead signs in to the console, searches the audit for the person, reads their
    // access report and its CSV, and mistypes an NHS number.
    let origin = format!("http://127.0.0.1:{port}");
    let mut v = Visitor::new();
    let login = v.get(&format!("{origin}/console/login")).await;
    let at_idp = v.get(login.location()).await;
    let back = v.get(at_idp.location()).await;
    assert_eq!(back.status, reqwest::StatusCode::OK, "{}", back.body);
    let session = v.cookie("concord_console").expect("a session").clone();
    for path in [
        format!("/console/audit?nhs={ANN}"),
        format!("/console/person?nhs={ANN}"),
        format!("/console/person/{ANN}/report"),
        format!("/console/audit.csv?nhs={ANN}"),
        "/console/audit?nhs=9990465631&from=yesterday".to_owned(),
    ] {
        let page = v.get(&format!("{origin}{path}")).await;
        assert!(page.status.as_u16() < 500, "{path}: {}", page.body);
    }
    child.start_kill().expect("stop");
    let _ = child.wait().await;

    let logs = std::fs::read_to_string(dir.path().join("stderr.log")).expect("read log");
    assert!(
        logs.contains("source call failed"),
        "the failures were logged:\n{logs}"
    );
    assert!(logs.contains("http.route"), "requests were logged:\n{logs}");
    assert!(
        logs.contains("/console/person/{nhs}/report") && logs.contains("/console/audit.csv"),
        "the console's requests were logged, by route:\n{logs}"
    );
    assert!(
        logs.contains("DEMO SIGNING KEY IS TRUSTED"),
        "the demo key warning:\n{logs}"
    );
    for secret in [
        ANN,
        NOBODY,
        "Smith",
        "01632 960001",
        "identifier=",
        "271649006",
        id.as_str(),
        token.as_str(),
        "Isla Governance",
        session.as_str(),
        CLIENT_SECRET,
        "9990465631",
        "nhs=",
    ] {
        assert!(
            !logs.contains(secret),
            "`{secret}` appeared in the logs:\n{logs}"
        );
    }
}
