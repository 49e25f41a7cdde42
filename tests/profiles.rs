//! Profiles (issue 6): the official UK Core examples against `fhir-profiles/`, with a
//! known-failures list that fails when it goes stale, and `concord profile check` as a user
//! runs it.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use concord::profiles::Profiles;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn fixtures() -> std::path::PathBuf {
    Path::new(ROOT).join("tests/fixtures/ukcore")
}

#[test]
fn official_uk_core_examples_conform_but_for_known_failures() {
    let profiles = Profiles::load(&Path::new(ROOT).join("fhir-profiles")).expect("profiles load");
    let known: BTreeSet<String> = std::fs::read_to_string(fixtures().join("known-failures.txt"))
        .expect("known failures")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(str::to_owned)
        .collect();
    let mut found = BTreeSet::new();
    let mut files = 0;
    for entry in std::fs::read_dir(fixtures()).expect("fixtures") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        files += 1;
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let resource: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
        for problem in profiles.check(&resource) {
            found.insert(format!("{name} {} {}", problem.path, problem.rule));
        }
    }
    assert_eq!(files, 67, "every served type's official examples");
    let unexpected: Vec<_> = found.difference(&known).collect();
    let stale: Vec<_> = known.difference(&found).collect();
    assert!(
        unexpected.is_empty() && stale.is_empty(),
        "unexpected problems: {unexpected:#?}\nknown failures that no longer occur: {stale:#?}"
    );
}

fn concord(dir: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_concord"))
        .current_dir(dir)
        .args(args)
        .output()
        .expect("concord runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn profile_check_prints_each_problem_and_fails_on_any() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = r#"{"resourceType":"Patient","id":"p1","identifier":[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9990465630"}],"gender":"male","birthDate":"1961-02-09"}"#;
    let bad = r#"{"resourceType":"Condition","id":"c1","clinicalStatus":{"text":"active"},"subject":{"reference":"Practitioner/x"},"onsetDateTime":"25/07/2024"}"#;
    std::fs::write(dir.path().join("one.json"), good).expect("write");
    std::fs::write(
        dir.path().join("export.ndjson"),
        format!("{good}\n{bad}\nnot json\n"),
    )
    .expect("write");
    let bundle = format!(
        r#"{{"resourceType":"Bundle","type":"searchset","entry":[{{"resource":{good}}},{{"resource":{bad}}}]}}"#
    );
    std::fs::write(dir.path().join("bundle.json"), bundle).expect("write");
    let profiles = format!("{ROOT}/fhir-profiles");

    let (code, out) = concord(
        dir.path(),
        &["profile", "check", "--profiles", &profiles, "one.json"],
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with("Patient/p1  (one.json): conforms\n"),
        "{out}"
    );
    assert!(
        out.lines().last().is_some_and(|l| l.starts_with(&format!(
            "checked 1 resource(s) in 1 file(s) against {profiles}: 1 conform, 0 do not (0 problem(s)), "
        ))),
        "{out}"
    );

    let (code, out) = concord(
        dir.path(),
        &[
            "profile",
            "check",
            "--profiles",
            &profiles,
            "--problems-only",
            "export.ndjson",
            "bundle.json",
        ],
    );
    assert_eq!(code, 1, "{out}");
    let condition = [
        "  Condition.clinicalStatus: [binding] no coding at all (text only); expected one of http://terminology.hl7.org/CodeSystem/condition-clinical|active, http://terminology.hl7.org/CodeSystem/condition-clinical|inactive, http://terminology.hl7.org/CodeSystem/condition-clinical|recurrence, http://terminology.hl7.org/CodeSystem/condition-clinical|relapse, http://terminology.hl7.org/CodeSystem/condition-clinical|remission, http://terminology.hl7.org/CodeSystem/condition-clinical|resolved (required binding to http://hl7.org/fhir/ValueSet/condition-clinical)",
        "  Condition.subject.reference: [reference] refers to a `Practitioner`; allowed: Group | Patient",
        "  Condition.onsetDateTime: [format] `25/07/2024` is not a valid dateTime (YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm:ss with a time zone)",
    ]
    .join("\n");
    let expected = format!(
        "Condition/c1  (export.ndjson:2): 3 problem(s)\n{condition}\n\
         (not JSON)  (export.ndjson:3): 1 problem(s)\n  \
         Resource: [structure] not JSON: expected ident at line 1 column 2\n\
         Condition/c1  (bundle.json entry[1]): 3 problem(s)\n{condition}\n\
         most common problems:\n\
         \x20      2 × Condition.clinicalStatus [binding]\n\
         \x20      2 × Condition.onsetDateTime [format]\n\
         \x20      2 × Condition.subject.reference [reference]\n\
         \x20      1 × Resource [structure]\n"
    );
    assert!(out.starts_with(&expected), "{out}");
    assert!(
        out.lines().last().is_some_and(|l| l.starts_with(&format!(
            "checked 5 resource(s) in 2 file(s) against {profiles}: 2 conform, 3 do not (7 problem(s): structure 1, format 2, binding 2, reference 2), "
        ))),
        "{out}"
    );
}

#[test]
fn profile_check_reads_fhir_profiles_in_the_working_directory_by_default() {
    let (code, out) = concord(
        Path::new(ROOT),
        &[
            "profile",
            "check",
            "--problems-only",
            "tests/fixtures/ukcore/UKCore-Patient-BabyPatient-Example.json",
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with("checked 1 resource(s) in 1 file(s) against fhir-profiles: 1 conform"),
        "{out}"
    );
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_concord"))
        .current_dir(elsewhere.path())
        .args(["profile", "check", "x.json"])
        .output()
        .expect("concord runs");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot load the profiles in `fhir-profiles`"),
        "{stderr}"
    );
}
