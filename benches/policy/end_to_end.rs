//! Part 2, end to end: two gateways in this process over the same NDJSON record, one
//! enforcing the generated agreements and one a permit-all set, driven alternately.

use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::civil::Date;
use serde_json::{Value, json};

use concord::auth::Principal;
use concord::auth::scopes::Scopes;
use concord::config::Config;
use concord::policy::engine::Acting;
use concord::server::tls::{Listener, serve};

use crate::{AGREEMENTS, NHS, RECORD, SOURCE_ODS, applicable_rules, date_from, load};

/// One person's record at one provider, as NDJSON files by type: the Patient and 20
/// resources of seven types, none with a code the label map knows.
fn write_record(dir: &Path) {
    std::fs::create_dir_all(dir).expect("record dir");
    let subject = json!({"reference": "Patient/g1"});
    let snomed = |code: &str, display: &str| json!({"coding": [{"system": "http://snomed.info/sct", "code": code, "display": display}]});
    let mut files: Vec<(&str, Vec<Value>)> = vec![(
        "Patient",
        vec![json!({"resourceType": "Patient", "id": "g1",
            "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": NHS}],
            "name": [{"family": "Bench", "given": ["Mark"]}], "gender": "male", "birthDate": "1950-01-01"})],
    )];
    let observations = (0..5)
        .map(|i| {
            json!({"resourceType": "Observation", "id": format!("o{i}"), "status": "final", "subject": subject,
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
            "code": snomed("27113001", "Body weight"),
            "effectiveDateTime": format!("2026-0{}-01T10:00:00Z", 1 + i),
            "valueQuantity": {"value": 70.5, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}})
        })
        .collect();
    files.push(("Observation", observations));
    let conditions = [
        ("38341003", "Hypertensive disorder"),
        ("44054006", "Diabetes mellitus type 2"),
        ("195967001", "Asthma"),
        ("709044004", "Chronic kidney disease"),
    ]
    .iter()
    .enumerate()
    .map(|(i, (code, display))| {
        json!({"resourceType": "Condition", "id": format!("c{i}"), "subject": subject,
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
            "code": snomed(code, display), "onsetDateTime": format!("201{i}-01-01")})
    })
    .collect();
    files.push(("Condition", conditions));
    let medicines = (0..3)
        .map(|i| {
            json!({"resourceType": "MedicationStatement", "id": format!("m{i}"), "status": "active", "subject": subject,
            "medicationCodeableConcept": snomed("318475005", "Amlodipine 5mg tablets"),
            "effectivePeriod": {"start": format!("202{i}-02-01")}, "dosage": [{"text": "One tablet daily"}]})
        })
        .collect();
    files.push(("MedicationStatement", medicines));
    let allergies = (0..2)
        .map(|i| {
            json!({"resourceType": "AllergyIntolerance", "id": format!("a{i}"), "patient": subject,
            "code": snomed("91936005", "Allergy to penicillin"), "recordedDate": format!("201{i}-05-01")})
        })
        .collect();
    files.push(("AllergyIntolerance", allergies));
    let immunisations = (0..2)
        .map(|i| {
            json!({"resourceType": "Immunization", "id": format!("i{i}"), "status": "completed", "patient": subject,
            "vaccineCode": snomed("1181000221105", "Influenza vaccine"),
            "occurrenceDateTime": format!("202{i}-10-20")})
        })
        .collect();
    files.push(("Immunization", immunisations));
    let encounters = (0..2)
        .map(|i| {
            json!({"resourceType": "Encounter", "id": format!("e{i}"), "status": "finished", "subject": subject,
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "type": [snomed("185202000", "Seen in GP's surgery")],
            "period": {"start": format!("202{i}-03-03T11:50:00Z"), "end": format!("202{i}-03-03T11:59:00Z")}})
        })
        .collect();
    files.push(("Encounter", encounters));
    let procedures = (0..2)
        .map(|i| {
            json!({"resourceType": "Procedure", "id": format!("p{i}"), "status": "completed", "subject": subject,
            "code": snomed("80146002", "Appendectomy"), "performedDateTime": format!("201{i}-07-07")})
        })
        .collect();
    files.push(("Procedure", procedures));
    let mut total = 0;
    for (ty, resources) in files {
        total += resources.len();
        let lines: Vec<String> = resources.iter().map(Value::to_string).collect();
        std::fs::write(dir.join(format!("{ty}.ndjson")), lines.join("\n") + "\n")
            .expect("write ndjson");
    }
    assert_eq!(total, RECORD);
}

/// The agreement that lets the benchmark's caller (a clinician of `A81001`, TREAT) see the
/// record: with a care relationship, every type. Its id sorts after every generated one, so
/// each decision first tries every other rule kept for the caller.
fn caller_agreement(today: Date) -> String {
    format!(
        "[agreement]\nid = \"zz-bench-direct-care\"\ntitle = \"Benchmark caller's direct care\"\n\
         version = \"1.0.0\"\nstatus = \"active\"\nlegal_basis = [\"UK GDPR 6(1)(e)\"]\n\
         valid_from = \"{}\"\nvalid_until = \"{}\"\nowner = \"Benchmark\"\n\n\
         [parties]\ndisclosers = [\"{SOURCE_ODS}\"]\nrecipients = [\"{SOURCE_ODS}\"]\n\n\
         [[rule]]\nid = \"direct-care\"\npurpose_of_use = [\"TREAT\"]\nroles = [\"clinician\"]\n\
         resources = [\"*\"]\nrequires_care_relationship = true\n",
        date_from(today, -400),
        date_from(today, 700)
    )
}

/// The permit-all set: one agreement, the source's organisation to itself, every type.
fn permit_all(today: Date) -> String {
    format!(
        "[agreement]\nid = \"permit-all\"\ntitle = \"Everything\"\nversion = \"1.0.0\"\n\
         status = \"active\"\nlegal_basis = [\"benchmark\"]\nvalid_from = \"{}\"\n\
         valid_until = \"{}\"\nowner = \"Benchmark\"\n\n\
         [parties]\ndisclosers = [\"{SOURCE_ODS}\"]\nrecipients = [\"{SOURCE_ODS}\"]\n\n\
         [[rule]]\nid = \"everything\"\npurpose_of_use = [\"TREAT\"]\nroles = [\"clinician\"]\n\
         resources = [\"*\"]\n",
        date_from(today, -400),
        date_from(today, 700)
    )
}

/// A gateway config in `dir` over the record in `data`, enforcing the agreements in
/// `policies`.
fn config(dir: &Path, data: &Path, policies: &Path) -> Config {
    std::fs::create_dir_all(dir).expect("gateway dir");
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("key");
    std::fs::write(dir.join("bench.pub.pem"), pair.public_key_pem()).expect("write key");
    let audit_key = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/demo/keys/demo-audit.key"
    );
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:8080\"\n\n[store]\nurl = \"sqlite://concord.db\"\n\n\
         [log]\nlevel = \"error\"\n\n[policy]\ndir = \"{}\"\nreload_check_secs = 0\n\n\
         [audit]\nkey_file = \"{audit_key}\"\n\n[auth]\nissuer = \"https://idp.bench.invalid\"\naudience = \"concord-bench\"\n\n\
         [[auth.key]]\nkid = \"bench\"\nalgorithm = \"EdDSA\"\npublic_key_file = \"bench.pub.pem\"\n\n\
         [[source]]\nid = \"gp\"\nname = \"Bench GP\"\nods = \"{SOURCE_ODS}\"\nkind = \"ndjson\"\npath = \"{}\"\n",
        policies.display(),
        data.display()
    );
    let path = dir.join("concord.toml");
    std::fs::write(&path, toml).expect("write config");
    Config::load(&path).expect("valid config")
}

/// The benchmark's caller, as a verified token would give it.
fn principal() -> Principal {
    Principal {
        user: "dr-bench".into(),
        issuer: None,
        name: Some("Dr Bench".into()),
        org: Some(SOURCE_ODS.into()),
        role: Some("clinician".into()),
        purpose_of_use: "TREAT".into(),
        scopes: Scopes::parse("user/*.rs"),
        patient: None,
        client_certificate: None,
        break_glass: None,
        full_lookup: false,
    }
}

/// Starts a gateway over `config` running every request as the benchmark's caller; the URL of
/// the person's `$everything`, checked to hold the whole record.
async fn start(config: &Config) -> String {
    let state = concord::server::build_state(config)
        .await
        .expect("gateway starts");
    let app = concord::testing::app_with_fixed_principal(state, principal());
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}/fhir", tcp.local_addr().expect("addr"));
    let listener = Listener::new(tcp, None).expect("listener");
    tokio::spawn(serve(listener, app, std::future::pending()));
    let client = reqwest::Client::new();
    let get = |url: String| {
        let client = client.clone();
        async move {
            let answer = client.get(&url).send().await.expect("answer");
            assert!(answer.status().is_success(), "{url}: {}", answer.status());
            let bytes = answer.bytes().await.expect("body");
            serde_json::from_slice::<Value>(&bytes).expect("json")
        }
    };
    let found = get(format!(
        "{base}/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|{NHS}"
    ))
    .await;
    let id = found["entry"][0]["resource"]["id"]
        .as_str()
        .expect("the person is found")
        .to_owned();
    let url = format!("{base}/Patient/{id}/$everything");
    let bundle = get(url.clone()).await;
    let entries = bundle["entry"].as_array().map_or(&[][..], Vec::as_slice);
    let resources = entries
        .iter()
        .filter(|e| e["resource"]["resourceType"] != "OperationOutcome")
        .count();
    assert_eq!(
        (resources, entries.len()),
        (RECORD, RECORD),
        "the whole record and nothing withheld: {bundle}"
    );
    url
}

/// Part 2: the gateway's throughput with the generated agreements (and the caller's) and
/// with a permit-all set, side by side, from the files `decisions` left in `dir`.
pub(crate) async fn throughput(dir: &Path, today: Date) {
    let data = dir.join("gp");
    write_record(&data);
    let enforced: PathBuf = dir.join("policies-a");
    std::fs::create_dir_all(&enforced).expect("dir");
    for entry in std::fs::read_dir(dir.join("generated")).expect("generated set") {
        let path = entry.expect("entry").path();
        let name = path.file_name().expect("file name");
        std::fs::copy(&path, enforced.join(name)).expect("copy policy");
    }
    std::fs::write(
        enforced.join("zz-bench-direct-care.toml"),
        caller_agreement(today),
    )
    .expect("write agreement");
    let open = dir.join("policies-b");
    std::fs::create_dir_all(&open).expect("dir");
    std::fs::write(open.join("permit-all.toml"), permit_all(today)).expect("write agreement");
    let set = load(&enforced, today);
    let caller = concord::policy::engine::Caller {
        org: Some(SOURCE_ODS),
        role: Some("clinician"),
        purpose: "TREAT",
        emergency: false,
        acting: Acting::Staff,
    };
    let kept = applicable_rules(&set, &caller, today);

    let urls = [
        start(&config(&dir.join("a"), &data, &enforced)).await,
        start(&config(&dir.join("b"), &data, &open)).await,
    ];
    let has_wrk = load::has_wrk();
    let seconds = load::seconds();
    println!(
        "\n2. throughput, $everything of one person ({RECORD} resources, all disclosed by both) from \
         an NDJSON source, every request as one fixed principal (no token verified), {}",
        if has_wrk {
            format!("wrk -t1 -c32 -d{seconds}s per run")
        } else {
            "wrk not found: in-process closed loop, 32 clients x 20,000 requests".into()
        }
    );
    println!(
        "A: {} agreements ({AGREEMENTS} generated + the caller's, sorted last), {kept} rules kept \
         for the caller; B: one permit-all agreement",
        set.agreements.len()
    );
    println!(
        "{:<6} {:<40} {:>12} {:>10} {:>10}",
        "round", "agreements", "requests/s", "median", "p99"
    );
    let labels = [
        format!("A: {} agreements enforced", set.agreements.len()),
        "B: permit-all".to_owned(),
    ];
    let mut sums = [0.0, 0.0];
    for round in 1..=3 {
        for (i, url) in urls.iter().enumerate() {
            let load = if has_wrk {
                load::wrk(url, &[], seconds).await
            } else {
                load::closed_loop(url, None, 20_000).await
            };
            sums[i] += load.rps;
            println!(
                "{round:<6} {:<40} {:>12.0} {:>10} {:>10}",
                labels[i], load.rps, load.p50, load.p99
            );
        }
    }
    println!(
        "mean of 3: A (agreements) {:.0} req/s, B (permit-all) {:.0} req/s (A = {:.1}% of B)",
        sums[0] / 3.0,
        sums[1] / 3.0,
        100.0 * sums[0] / sums[1]
    );
    tokio::time::sleep(Duration::from_millis(10)).await;
}
