use super::*;

/// The decision table, its generated rows and property tests (test code only).
mod decision_table;

/// A valid agreement; line numbers below refer to it.
const GOOD: &str = r#"[agreement]
id = "dsa-test"
title = "Test agreement"
version = "1.0.0"
status = "active"
legal_basis = ["UK GDPR 6(1)(e)"]
valid_from = "2026-01-01"
valid_until = "2027-12-31"
review_by = "2027-06-30"
owner = "Test IG"

[parties]
disclosers = ["A81001", "RY4"]
recipients = ["A81001"]

[[rule]]
id = "direct-care"
purpose_of_use = ["TREAT"]
roles = ["clinician"]
resources = ["Patient", "Observation"]
exclude_labels = ["HIV"]
requires_care_relationship = true
redact = ["note"]
"#;

fn today() -> jiff::civil::Date {
    jiff::civil::date(2026, 11, 25)
}

fn load(files: &[(&str, &str)]) -> Result<PolicySet, PolicyErrors> {
    let dir = tempfile::tempdir().expect("dir");
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).expect("write");
    }
    PolicySet::load(dir.path(), today())
}

/// Loads GOOD with `from` replaced by `to` and expects exactly one error, at `line` in
/// `field`, whose message contains `says`.
#[track_caller]
fn one_error(from: &str, to: &str, line: usize, field: &str, says: &str) {
    assert!(GOOD.contains(from), "{from}");
    let text = GOOD.replacen(from, to, 1);
    let errors = load(&[("dsa-test.toml", &text)]).expect_err(says).0;
    assert_eq!(errors.len(), 1, "{errors:?}");
    let e = &errors[0];
    assert!(e.file.ends_with("dsa-test.toml"), "{e}");
    assert_eq!(e.line, Some(line), "{e}");
    assert_eq!(e.field, field, "{e}");
    assert!(e.message.contains(says), "{e}");
    let shown = e.to_string();
    assert!(
        shown.contains(&format!("dsa-test.toml:{line}: ")),
        "{shown}"
    );
}

#[test]
fn a_good_set_loads_sorted_with_a_stable_hash() {
    let other = GOOD.replace("dsa-test", "a-first");
    let set = load(&[("z.toml", GOOD), ("b.toml", &other)]).expect("valid");
    let ids: Vec<&str> = set.agreements.iter().map(|a| &*a.id).collect();
    assert_eq!(ids, ["a-first", "dsa-test"]);
    assert!(set.warnings.is_empty(), "{:?}", set.warnings);
    assert!(set.agreements[0].in_force(today()));
    assert!(!set.agreements[0].in_force(jiff::civil::date(2028, 1, 1)));
    let again = load(&[("z.toml", GOOD), ("b.toml", &other)]).expect("valid");
    assert_eq!(set.hash, again.hash);
    let changed = load(&[
        ("z.toml", GOOD),
        ("b.toml", &other.replace("1.0.0", "1.0.1")),
    ])
    .expect("valid");
    assert_ne!(set.hash, changed.hash, "any edit changes the hash");
}

#[test]
fn unknown_fields_are_named_with_their_line() {
    one_error(
        "redact = [\"note\"]",
        "redact = [\"note\"]\nwher = \"x\"",
        24,
        "",
        "unknown field `wher`",
    );
    one_error(
        "owner = \"Test IG\"",
        "owner = \"Test IG\"\nsigned_by = \"x\"",
        11,
        "",
        "unknown field `signed_by`",
    );
}

#[test]
fn each_kind_of_error_names_file_line_and_field() {
    one_error(
        "\"Observation\"]",
        "\"Observaton\"]",
        20,
        "rule[0].resources[1]",
        "not a FHIR resource type",
    );
    one_error(
        "\"RY4\"]",
        "\"ry4\"]",
        13,
        "parties.disclosers[1]",
        "not an ODS code",
    );
    one_error(
        "recipients = [\"A81001\"]",
        "recipients = [\"A81001\", \"X\"]",
        14,
        "parties.recipients[1]",
        "not an ODS code",
    );
    one_error(
        "[\"TREAT\"]",
        "[\"TREATMENT\"]",
        18,
        "rule[0].purpose_of_use[0]",
        "PurposeOfUse",
    );
    one_error(
        "[\"HIV\"]",
        "[\"HIVV\"]",
        21,
        "rule[0].exclude_labels[0]",
        "sensitivity label",
    );
    one_error(
        "valid_until = \"2027-12-31\"",
        "valid_until = \"2025-12-31\"",
        8,
        "agreement.valid_until",
        "before valid_from",
    );
    one_error(
        "valid_from = \"2026-01-01\"",
        "valid_from = \"1 Jan 2026\"",
        7,
        "agreement.valid_from",
        "not a date",
    );
    one_error(
        "id = \"dsa-test\"",
        "id = \"DSA Test\"",
        2,
        "agreement.id",
        "a-z",
    );
    one_error(
        "legal_basis = [\"UK GDPR 6(1)(e)\"]",
        "legal_basis = []",
        6,
        "agreement.legal_basis",
        "no legal basis",
    );
    one_error(
        "redact = [\"note\"]",
        "redact = [\"meta.security\"]",
        23,
        "rule[0].redact[0]",
        "element path",
    );
    one_error(
        "redact = [\"note\"]",
        "where = \"status ~ 'final'\"",
        23,
        "rule[0].where",
        "the FHIRPath condition does not parse: `~` is not supported (at character 8)",
    );
    let with_condition = GOOD.replace("redact = [\"note\"]", "where = \"status = 'final'\"");
    let set = load(&[("dsa-test.toml", &with_condition)]).expect("a condition that parses");
    let condition = set.agreements[0].rules[0].where_.as_ref().expect("kept");
    assert!(
        condition.holds(&serde_json::json!({"resourceType": "Observation", "status": "final"}))
    );
    one_error(
        "status = \"active\"",
        "status = \"live\"",
        5,
        "",
        "unknown variant `live`",
    );
}

#[test]
fn rules_that_could_never_match_are_errors() {
    one_error(
        "roles = [\"clinician\"]",
        "roles = []",
        19,
        "rule[0].roles",
        "never match any role",
    );
    one_error(
        "purpose_of_use = [\"TREAT\"]",
        "purpose_of_use = []",
        18,
        "rule[0].purpose_of_use",
        "never match any purpose",
    );
    one_error(
        "resources = [\"Patient\", \"Observation\"]",
        "resources = []",
        20,
        "rule[0].resources",
        "never match any resource",
    );
    one_error(
        "disclosers = [\"A81001\", \"RY4\"]",
        "disclosers = []",
        13,
        "parties.disclosers",
        "never disclose",
    );
    // A patient-access agreement: staff roles and care relationships cannot match.
    let patient = GOOD
        .replace(
            "status = \"active\"",
            "status = \"active\"\naccess = \"patient\"",
        )
        .replace("recipients = [\"A81001\"]\n", "")
        .replace("roles = [\"clinician\"]\n", "")
        .replace("[\"TREAT\"]", "[\"PATRQT\"]");
    load(&[(
        "p.toml",
        &patient.replace("requires_care_relationship = true\n", ""),
    )])
    .expect("a patient-access agreement");
    let errors = load(&[("p.toml", &patient)])
        .expect_err("care relationship")
        .0;
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].field, "rule[0].requires_care_relationship");
    assert_eq!(errors[0].line, Some(21));
}

#[test]
fn duplicate_ids_are_errors() {
    let two_rules = GOOD.to_owned()
        + "\n[[rule]]\nid = \"direct-care\"\npurpose_of_use = [\"ETREAT\"]\nroles = [\"clinician\"]\nresources = [\"*\"]\n";
    let errors = load(&[("dsa-test.toml", &two_rules)])
        .expect_err("dup rule")
        .0;
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(
        (errors[0].line, errors[0].field.as_str()),
        (Some(26), "rule[1].id")
    );
    let errors = load(&[("a.toml", GOOD), ("b.toml", GOOD)])
        .expect_err("dup agreement")
        .0;
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].file.ends_with("b.toml"), "{}", errors[0]);
    assert_eq!(
        (errors[0].line, errors[0].field.as_str()),
        (Some(2), "agreement.id")
    );
    assert!(errors[0].message.contains("a.toml"), "{}", errors[0]);
}

#[test]
fn every_error_of_every_file_is_reported_at_once() {
    let bad = GOOD
        .replace("\"RY4\"]", "\"ry4\"]")
        .replace("[\"HIV\"]", "[\"HIVV\"]");
    let errors = load(&[("a.toml", &bad), ("b.toml", "not toml [")])
        .expect_err("bad")
        .0;
    assert_eq!(errors.len(), 3, "{errors:?}");
}

#[test]
fn lapsing_and_overdue_agreements_are_warnings() {
    let lapsing = GOOD.replace("2027-12-31", "2026-12-10");
    let set = load(&[("dsa-test.toml", &lapsing)]).expect("still valid");
    assert_eq!(set.warnings.len(), 1, "{:?}", set.warnings);
    assert_eq!(set.warnings[0].field, "agreement.valid_until");
    assert!(set.warnings[0].message.contains("2026-12-10"));
    let overdue = GOOD.replace("review_by = \"2027-06-30\"", "review_by = \"2026-06-30\"");
    let set = load(&[("dsa-test.toml", &overdue)]).expect("still valid");
    assert_eq!(set.warnings.len(), 1, "{:?}", set.warnings);
    assert_eq!(
        (set.warnings[0].line, set.warnings[0].field.as_str()),
        (Some(9), "agreement.review_by")
    );
}

#[test]
fn an_empty_directory_is_an_error() {
    let errors = load(&[]).expect_err("empty").0;
    assert!(errors[0].message.contains("no agreement"), "{errors:?}");
    let missing =
        PolicySet::load(Path::new("/nonexistent/policies"), today()).expect_err("missing");
    assert!(missing.0[0].message.contains("cannot read"), "{missing}");
}

#[test]
fn the_label_map_is_checked() {
    let labels = "local_labels = [\"SAFEGUARDING\"]\n\n[[map]]\nlabel = \"PSY\"\nsystem = \"http://hl7.org/fhir/sid/icd-10\"\nranges = [\"F20-F29\"]\n\n[[map]]\nlabel = \"SAFEGUARDING\"\nsystem = \"http://snomed.info/sct\"\ncodes = [\"713025008\"]\n";
    let with_local = GOOD.replace("[\"HIV\"]", "[\"SAFEGUARDING\"]");
    let set = load(&[("dsa-test.toml", &with_local), ("labels.toml", labels)]).expect("valid");
    assert_eq!(set.labels.mappings.len(), 2);
    let cases = [
        (labels.replace("\"PSY\"", "\"MENTAL\""), 4, "map[0].label"),
        (
            labels.replace("\"http://hl7.org/fhir/sid/icd-10\"", "\"icd-10\""),
            5,
            "map[0].system",
        ),
        (labels.replace("F20-F29", "F29-F20"), 6, "map[0].ranges[0]"),
        (labels.replace("713025008", "71A"), 11, "map[1].codes[0]"),
        (
            labels.replace("[\"SAFEGUARDING\"]", "[\"HIV\", \"SAFEGUARDING\"]"),
            1,
            "local_labels[0]",
        ),
    ];
    for (text, line, field) in cases {
        let errors = load(&[("dsa-test.toml", GOOD), ("labels.toml", &text)])
            .expect_err(field)
            .0;
        assert_eq!(errors.len(), 1, "{field}: {errors:?}");
        assert!(errors[0].file.ends_with("labels.toml"));
        assert_eq!(
            (errors[0].line, errors[0].field.as_str()),
            (Some(line), field),
            "{}",
            errors[0]
        );
    }
    // Without the local label declared, an agreement naming it is an error.
    let errors = load(&[("dsa-test.toml", &with_local)])
        .expect_err("unknown label")
        .0;
    assert_eq!(errors[0].field, "rule[0].exclude_labels[0]");
}

#[test]
fn the_repository_policies_are_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let set = PolicySet::load(&dir, today()).expect("the shipped policies check");
    assert!(set.agreements.iter().any(|a| a.access == Audience::Patient));
    assert!(set.labels.mappings.len() >= 4);
}

#[test]
fn labels_come_from_any_coding_and_from_the_source_s_own_security_labels() {
    let labels = "local_labels = [\"SAFEGUARDING\"]\n\n\
        [[map]]\nlabel = \"PSY\"\nsystem = \"http://hl7.org/fhir/sid/icd-10\"\nranges = [\"F20-F39\"]\n\n\
        [[map]]\nlabel = \"SUD\"\nsystem = \"http://snomed.info/sct\"\ncodes = [\"494041000000102\"]\n\n\
        [[map]]\nlabel = \"SAFEGUARDING\"\nsystem = \"http://terminology.hl7.org/CodeSystem/flag-category\"\ncodes = [\"safety\"]\n";
    let set = load(&[("dsa-test.toml", GOOD), ("labels.toml", labels)]).expect("valid");
    let map = &set.labels;
    let encounter = serde_json::json!({
        "resourceType": "Encounter",
        "meta": {
            "tag": [{"system": "http://snomed.info/sct", "code": "494041000000102"}],
            "security": [
                {"system": ACT_CODE, "code": "HIV"},
                {"system": ACT_CODE, "code": "NOT-A-LABEL"},
                {"system": "http://example.org/other", "code": "SEX"}
            ]
        },
        "serviceType": {"coding": [{"system": "http://snomed.info/sct", "code": "494041000000102"}]},
        "reasonCode": [{"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "F32.1"}]}],
        "diagnosis": [{"use": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "F41.0"}]}}]
    });
    assert_eq!(map.labels_of(&encounter), ["HIV", "PSY", "SUD"]);
    // Codes only in meta do not label; neither does an unmapped code or system.
    let tagged = serde_json::json!({
        "resourceType": "Flag",
        "meta": {"tag": [{"system": "http://snomed.info/sct", "code": "494041000000102"}]},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "494041000000103"}]}
    });
    assert!(map.labels_of(&tagged).is_empty());
    let flag = serde_json::json!({"resourceType": "Flag", "category": [{"coding": [
        {"system": "http://terminology.hl7.org/CodeSystem/flag-category", "code": "safety"}]}]});
    let found = map.labels_of(&flag);
    assert_eq!(found, ["SAFEGUARDING"]);
    let mut obj = flag.as_object().cloned().expect("object");
    LabelMap::stamp(&mut obj, &found);
    LabelMap::stamp(&mut obj, &found);
    assert_eq!(
        obj["meta"]["security"],
        serde_json::json!([{"system": LOCAL_LABEL_SYSTEM, "code": "SAFEGUARDING"}]),
        "stamped once, with the local system"
    );
    let stamped = serde_json::Value::Object(obj);
    assert_eq!(
        labels_in_meta(&stamped).collect::<Vec<_>>(),
        ["SAFEGUARDING"]
    );
    // A non-URI system is refused by the checker; ranges only for ICD-10.
    let bad = labels.replace(
        "http://terminology.hl7.org/CodeSystem/flag-category",
        "flag-category",
    );
    assert!(load(&[("dsa-test.toml", GOOD), ("labels.toml", &bad)]).is_err());
}

/// A patient-access agreement whose rules name writes: the person may add and update their
/// own goals, a daughter may add goals too, a son may only read.
const PORTAL: &str = r#"[agreement]
id = "portal"
title = "Patient access"
version = "1.0.0"
status = "active"
access = "patient"
legal_basis = ["UK GDPR 6(1)(e)"]
valid_from = "2026-01-01"
valid_until = "2027-12-31"
owner = "Test IG"

[parties]
disclosers = ["A81001", "X26"]

[[rule]]
id = "own-goals"
purpose_of_use = ["PATRQT"]
resources = ["Goal"]
interactions = ["read", "search", "create", "update"]

[[rule]]
id = "carer-goals"
purpose_of_use = ["FAMRQT"]
relationships = ["DAU"]
resources = ["Goal"]
interactions = ["create"]

[[rule]]
id = "carer-reads"
purpose_of_use = ["FAMRQT"]
relationships = ["SON"]
resources = ["Goal"]
"#;

fn write_item<'a>(consent: &'a engine::Consent, org: &'a str, rtype: &'a str) -> Item<'a> {
    Item {
        source_org: org,
        resource_type: rtype,
        labels: &[],
        resource: None,
        care_relationship: true,
        consent,
    }
}

fn staff<'a>(role: &'a str) -> Caller<'a> {
    Caller {
        org: Some("A81001"),
        role: Some(role),
        purpose: "TREAT",
        emergency: false,
        acting: Acting::Staff,
    }
}

#[test]
fn an_unknown_or_empty_list_of_interactions_is_an_error_with_its_line() {
    one_error(
        r#"resources = ["Patient", "Observation"]"#,
        "resources = [\"Patient\", \"Observation\"]\ninteractions = [\"read\", \"delete\"]",
        21,
        "rule[0].interactions[1]",
        "`delete` is not an interaction (read, search, create, update)",
    );
    one_error(
        r#"resources = ["Patient", "Observation"]"#,
        "resources = [\"Patient\", \"Observation\"]\ninteractions = []",
        21,
        "rule[0].interactions",
        "could never match any interaction",
    );
}

#[test]
fn a_rule_that_names_no_interactions_permits_reading_and_no_writes() {
    let set = load(&[("dsa-test.toml", GOOD)]).expect("valid");
    assert_eq!(
        set.agreements[0].rules[0].interactions,
        Interaction::DEFAULT
    );
    let consent = engine::Consent::default();
    let item = write_item(&consent, "A81001", "Observation");
    let caller = staff("clinician");
    assert!(set.for_caller(&caller, today()).decide(&item).is_some());
    for write in [Interaction::Create, Interaction::Update] {
        let why = engine::explain_for(&set, &caller, &item, &[write], today());
        assert!(why.permit.is_none(), "{write:?}");
        assert_eq!(
            why.refusals[0].failure,
            Failure::Interaction(write.name().to_owned())
        );
        assert_eq!(
            why.refusals[0].failure.to_string(),
            format!("the rule does not permit {}", write.name())
        );
    }
}

#[test]
fn a_rule_that_names_writes_permits_exactly_those() {
    let writer = GOOD.replace(
        r#"resources = ["Patient", "Observation"]"#,
        "resources = [\"Patient\", \"Observation\"]\ninteractions = [\"create\"]",
    );
    let set = load(&[("dsa-test.toml", &writer)]).expect("valid");
    let consent = engine::Consent::default();
    let item = write_item(&consent, "A81001", "Observation");
    let caller = staff("clinician");
    let policy = set.for_interaction(&caller, &[Interaction::Create], today());
    let permit = policy.decide(&item).expect("create permitted");
    assert_eq!(&*permit.rule.id, "direct-care");
    assert!(
        set.for_interaction(&caller, &[Interaction::Update], today())
            .decide(&item)
            .is_none(),
        "update is not named"
    );
    assert!(
        set.for_caller(&caller, today()).decide(&item).is_none(),
        "a rule that names only create permits no reading"
    );
    // The other conditions still hold for writes: another role, another organisation's
    // source, another type are each refused.
    assert!(
        set.for_interaction(&staff("nurse"), &[Interaction::Create], today())
            .decide(&item)
            .is_none()
    );
    assert!(
        policy
            .decide(&write_item(&consent, "B99999", "Observation"))
            .is_none()
    );
    assert!(
        policy
            .decide(&write_item(&consent, "A81001", "Goal"))
            .is_none()
    );
}

#[test]
fn the_person_and_only_named_carers_may_write_their_goals() {
    let set = load(&[("portal.toml", PORTAL)]).expect("valid");
    let consent = engine::Consent::default();
    let goal = write_item(&consent, "X26", "Goal");
    let person = Caller {
        org: None,
        role: None,
        purpose: "PATRQT",
        emergency: false,
        acting: Acting::Person,
    };
    for write in [Interaction::Create, Interaction::Update] {
        let permit = set
            .for_interaction(&person, &[write], today())
            .decide(&goal)
            .expect("the person writes their own goals");
        assert_eq!(&*permit.rule.id, "own-goals");
    }
    let carer = |rel| Caller {
        org: None,
        role: None,
        purpose: "FAMRQT",
        emergency: false,
        acting: Acting::Carer(rel),
    };
    let daughter = carer("DAU");
    let permit = set
        .for_interaction(&daughter, &[Interaction::Create], today())
        .decide(&goal)
        .expect("a daughter may add a goal");
    assert_eq!(&*permit.rule.id, "carer-goals");
    assert!(
        set.for_interaction(&daughter, &[Interaction::Update], today())
            .decide(&goal)
            .is_none()
    );
    let son = carer("SON");
    assert!(set.for_caller(&son, today()).decide(&goal).is_some());
    let why = engine::explain_for(&set, &son, &goal, &[Interaction::Create], today());
    assert!(why.permit.is_none());
    let reasons: Vec<String> = why
        .refusals
        .iter()
        .map(|r| format!("{}: {}", r.rule.as_deref().unwrap_or("-"), r.failure))
        .collect();
    assert_eq!(
        reasons,
        [
            "own-goals: relationship `SON` is not among the rule's",
            "carer-goals: relationship `SON` is not among the rule's",
            "carer-reads: the rule does not permit create",
        ]
    );
}

#[test]
fn a_portal_rule_names_where_the_persons_new_resources_go() {
    let portal = PORTAL.replace(
        "interactions = [\"read\", \"search\", \"create\", \"update\"]",
        "interactions = [\"read\", \"search\", \"create\", \"update\"]\nwrite_to = \"region\"",
    );
    let set = load(&[("portal.toml", &portal)]).expect("valid");
    let person = Caller {
        org: None,
        role: None,
        purpose: "PATRQT",
        emergency: false,
        acting: Acting::Person,
    };
    let creating = set.for_interaction(&person, &[Interaction::Create], today());
    assert_eq!(creating.write_to("Goal"), Some("region"));
    assert_eq!(creating.write_to("Flag"), None, "no rule permits a Flag");
    let daughter = Caller {
        org: None,
        role: None,
        purpose: "FAMRQT",
        emergency: false,
        acting: Acting::Carer("DAU"),
    };
    assert_eq!(
        set.for_interaction(&daughter, &[Interaction::Create], today())
            .write_to("Goal"),
        None,
        "the carers' rule names none"
    );

    let errors = |text: &str| {
        load(&[("portal.toml", text)])
            .expect_err("refused")
            .0
            .into_iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect::<Vec<_>>()
    };
    let reading = PORTAL.replace(
        "relationships = [\"SON\"]\nresources = [\"Goal\"]",
        "relationships = [\"SON\"]\nresources = [\"Goal\"]\nwrite_to = \"region\"",
    );
    assert_eq!(
        errors(&reading),
        [
            "rule[2].write_to: the rule does not permit `create`, so nothing it permits is written anywhere"
        ]
    );
    let not_an_id = portal.replace("write_to = \"region\"", "write_to = \"The Region\"");
    assert_eq!(
        errors(&not_an_id),
        ["rule[0].write_to: `The Region` is not a source id (a-z, 0-9 and -)"]
    );
    let staff = GOOD.replace(
        "redact = [\"note\"]",
        "redact = [\"note\"]\nwrite_to = \"region\"",
    );
    let found = load(&[("dsa-test.toml", &staff)]).expect_err("refused").0;
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0]
            .message
            .contains("only a patient-access rule takes it"),
        "{}",
        found[0]
    );
}
