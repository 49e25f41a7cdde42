//! Per constraint kind: a conforming and a non-conforming resource, with the exact path, rule
//! and message expected. The repository's own `fhir-profiles/` is used, plus a small test
//! profile (in a temporary directory) for the constraints UK Core does not use.

use std::path::Path;
use std::sync::OnceLock;

use serde_json::{Value, json};

use super::{LoadError, Profiles};

const NHS: &str = "https://fhir.nhs.uk/Id/nhs-number";

fn repo_profiles() -> &'static Profiles {
    static PROFILES: OnceLock<Profiles> = OnceLock::new();
    PROFILES.get_or_init(|| {
        Profiles::load(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fhir-profiles"
        )))
        .expect("fhir-profiles loads")
    })
}

fn problems_with(profiles: &Profiles, resource: &Value) -> Vec<String> {
    profiles
        .check(resource)
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn problems(resource: &Value) -> Vec<String> {
    problems_with(repo_profiles(), resource)
}

fn patient() -> Value {
    json!({
        "resourceType": "Patient",
        "id": "p1",
        "identifier": [
            {"system": NHS, "value": "9990465630"},
            {"system": "https://riverside-medical.example/Id/patient", "value": "100000"}
        ],
        "name": [{"family": "Quinn", "given": ["Thomas"]}],
        "gender": "male",
        "birthDate": "1961-02-09",
        "generalPractitioner": [{"reference": "Practitioner/gp1"}]
    })
}

fn observation() -> Value {
    json!({
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "category": [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "vital-signs"
        }]}],
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "27113001"}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2026-01-02T10:00:00Z",
        "valueQuantity": {"value": 72.5, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}
    })
}

fn condition() -> Value {
    json!({
        "resourceType": "Condition",
        "id": "c1",
        "clinicalStatus": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
            "code": "active"
        }]},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "709044004"}]},
        "subject": {"reference": "Patient/p1"},
        "onsetDateTime": "2024-07-25"
    })
}

/// Sets `pointer` (a JSON pointer) in a copy of `resource` (removes it when `value` is None).
fn with(mut resource: Value, pointer: &str, value: Option<Value>) -> Value {
    let (parent, key) = pointer.rsplit_once('/').expect("a pointer");
    let target = resource.pointer_mut(parent).expect("the parent exists");
    match (target, value) {
        (Value::Object(o), Some(v)) => {
            o.insert(key.to_owned(), v);
        }
        (Value::Object(o), None) => {
            o.remove(key);
        }
        (Value::Array(a), Some(v)) => a[key.parse::<usize>().expect("an index")] = v,
        _ => panic!("cannot set {pointer}"),
    }
    resource
}

#[test]
fn the_repository_profiles_load() {
    let profiles = repo_profiles();
    let mut types: Vec<&str> = profiles
        .profiles()
        .iter()
        .map(|p| p.resource_type.as_str())
        .collect();
    types.sort_unstable();
    assert_eq!(
        types,
        [
            "AllergyIntolerance",
            "CarePlan",
            "Condition",
            "DocumentReference",
            "Encounter",
            "EpisodeOfCare",
            "Flag",
            "Immunization",
            "MedicationRequest",
            "MedicationStatement",
            "Observation",
            "Patient",
            "RelatedPerson"
        ]
    );
    assert_eq!(profiles.resource_types().count(), 14);
}

#[test]
fn conforming_resources_have_no_problems() {
    assert_eq!(problems(&patient()), Vec::<String>::new());
    assert_eq!(problems(&observation()), Vec::<String>::new());
    assert_eq!(problems(&condition()), Vec::<String>::new());
}

#[test]
fn structure() {
    assert_eq!(
        problems(&with(patient(), "/nickname", Some(json!("Tom")))),
        ["Patient.nickname: [structure] `nickname` is not an element of R4 `Patient`"]
    );
    assert_eq!(
        problems(&with(patient(), "/name", Some(json!({"family": "Quinn"})))),
        ["Patient.name: [structure] expected an array of HumanName, found an object"]
    );
    assert_eq!(
        problems(&with(patient(), "/gender", Some(json!(["male"])))),
        ["Patient.gender: [structure] expected a single code, found an array"]
    );
    assert_eq!(
        problems(&with(patient(), "/name/0/given", Some(json!([])))),
        ["Patient.name[0].given: [structure] an array must not be empty"]
    );
    assert_eq!(
        problems(&with(observation(), "/valueString", Some(json!("72.5 kg")))),
        ["Observation.value[x]: [structure] more than one value for the choice element `value[x]`"]
    );
    assert_eq!(
        problems(&with(observation(), "/subject", Some(json!("Patient/p1")))),
        ["Observation.subject: [structure] expected an object (Reference), found a string"]
    );
    assert_eq!(
        problems(&json!({"resourceType": "Practitioner", "id": "x"})),
        [
            "Resource.resourceType: [structure] `Practitioner` is not a resource type Concord checks (AllergyIntolerance, CarePlan, Condition, DocumentReference, Encounter, EpisodeOfCare, Flag, Goal, Immunization, MedicationRequest, MedicationStatement, Observation, Patient, RelatedPerson)"
        ]
    );
    assert_eq!(
        problems(&json!({"id": "x"})),
        ["Resource: [structure] no `resourceType`"]
    );
    assert_eq!(
        problems(&json!([1, 2])),
        ["Resource: [structure] expected a resource (a JSON object), found an array"]
    );
    // A primitive's extensions go in `_name`; only primitives have one.
    let extended = with(
        patient(),
        "/_birthDate",
        Some(json!({"extension": [{
            "url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime",
            "valueDateTime": "1961-02-09T06:10:00Z"
        }]})),
    );
    assert_eq!(problems(&extended), Vec::<String>::new());
    assert_eq!(
        problems(&with(patient(), "/_name", Some(json!({})))),
        ["Patient._name: [structure] `_name` is not an element of R4 `Patient`"]
    );
    // Resource.id and Element.id are not FHIR primitives in R4 (`System.String`): no `_id`,
    // as in the R4 JSON schema.
    let note = json!({"extension": [{"url": "http://example.org/note", "valueString": "x"}]});
    assert_eq!(
        problems(&with(patient(), "/_id", Some(note.clone()))),
        [
            "Patient._id: [structure] `_id` is not an element of R4 `Patient` (`id` cannot have extensions)"
        ]
    );
    assert_eq!(
        problems(&with(patient(), "/name/0/_id", Some(note.clone()))),
        [
            "Patient.name[0]._id: [structure] `_id` is not an element of R4 `HumanName` (`id` cannot have extensions)"
        ]
    );
    assert_eq!(
        problems(&with(
            patient(),
            "/_birthDate",
            Some(json!({"id": "b1", "_id": note}))
        )),
        [
            "Patient._birthDate._id: [structure] `_id` is not an element of R4 `Element` (`id` cannot have extensions)"
        ]
    );
}

#[test]
fn format() {
    let cases = [
        (
            "/birthDate",
            json!("1961-02-30"),
            "Patient.birthDate: [format] `1961-02-30` is not a valid date (YYYY, YYYY-MM or YYYY-MM-DD)",
        ),
        (
            "/birthDate",
            json!("09/02/1961"),
            "Patient.birthDate: [format] `09/02/1961` is not a valid date (YYYY, YYYY-MM or YYYY-MM-DD)",
        ),
        (
            "/id",
            json!("p_1"),
            "Patient.id: [format] `p_1` is not a valid id (1 to 64 of A-Z a-z 0-9 - .)",
        ),
        (
            "/active",
            json!("true"),
            "Patient.active: [format] expected a JSON boolean (boolean), found a string",
        ),
        (
            "/multipleBirthInteger",
            json!(1.5),
            "Patient.multipleBirthInteger: [format] `1.5` is not a valid integer (a whole number, -2147483648 to 2147483647)",
        ),
        (
            "/gender",
            json!(" male"),
            "Patient.gender: [format] ` male` is not a valid code (no leading, trailing or double whitespace)",
        ),
    ];
    for (pointer, value, expected) in cases {
        assert_eq!(
            problems(&with(patient(), pointer, Some(value))),
            [expected],
            "{pointer}"
        );
    }
    assert_eq!(
        problems(&with(
            observation(),
            "/effectiveDateTime",
            Some(json!("2026-01-02T10:00:00"))
        )),
        [
            "Observation.effectiveDateTime: [format] `2026-01-02T10:00:00` is not a valid dateTime (YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm:ss with a time zone)"
        ]
    );
    assert_eq!(
        problems(&with(observation(), "/issued", Some(json!("2026-01-02")))),
        [
            "Observation.issued: [format] `2026-01-02` is not a valid instant (YYYY-MM-DDThh:mm:ss with a time zone)"
        ]
    );
    assert_eq!(
        problems(&with(
            observation(),
            "/valueQuantity/value",
            Some(json!("72.5"))
        )),
        [
            "Observation.valueQuantity.value: [format] expected a JSON number (decimal), found a string"
        ]
    );
    for good in [
        "2026",
        "2026-01",
        "2026-01-02",
        "2026-01-02T10:00:00+01:00",
        "2026-01-02T10:00:00.123Z",
    ] {
        assert_eq!(
            problems(&with(
                observation(),
                "/effectiveDateTime",
                Some(json!(good))
            )),
            Vec::<String>::new(),
            "{good}"
        );
    }
}

#[test]
fn format_of_each_primitive() {
    use super::format::{Prim, check};
    let ok = [
        (Prim::Instant, json!("2026-11-01T09:00:00.5+14:00")),
        (Prim::Time, json!("23:59:60")),
        (Prim::Date, json!("2024-02-29")),
        (Prim::PositiveInt, json!(2147483647)),
        (Prim::UnsignedInt, json!(0)),
        (Prim::Integer, json!(-12)),
        (Prim::Decimal, json!(1e-3)),
        (Prim::Oid, json!("urn:oid:2.16.840.1.113883")),
        (
            Prim::Uuid,
            json!("urn:uuid:c757873d-ec9a-4326-a141-556f43239520"),
        ),
        (Prim::Uri, json!("https://fhir.nhs.uk/Id/nhs-number")),
        (Prim::Code, json!("entered-in-error")),
        (Prim::Base64Binary, json!("aGVsbG8=")),
    ];
    for (prim, value) in ok {
        assert_eq!(check(prim, &value), Ok(()), "{prim:?} {value}");
    }
    let bad = [
        (Prim::Instant, json!("2026-11-01T09:00Z")),
        (Prim::Instant, json!("2026-11-01T09:00:00+15:00")),
        (Prim::Time, json!("24:00:00")),
        (Prim::Date, json!("2023-02-29")),
        (Prim::Date, json!("0000")),
        (Prim::DateTime, json!("2026-11-01T09:00:00.Z")),
        (Prim::PositiveInt, json!(0)),
        (Prim::UnsignedInt, json!(-1)),
        (Prim::Integer, json!(2147483648_i64)),
        (Prim::Integer, json!(1e3)),
        (Prim::Oid, json!("urn:oid:3.1")),
        (
            Prim::Uuid,
            json!("urn:uuid:C757873D-EC9A-4326-A141-556F43239520"),
        ),
        (Prim::Uri, json!("has space")),
        (Prim::Uri, json!("")),
        (Prim::String, json!("")),
        (Prim::Code, json!("a  b")),
        (Prim::Boolean, json!(1)),
        (Prim::Decimal, json!(null)),
    ];
    for (prim, value) in bad {
        assert!(check(prim, &value).is_err(), "{prim:?} {value}");
    }
}

#[test]
fn cardinality_of_base_r4() {
    let bare = with(with(observation(), "/status", None), "/code", None);
    assert_eq!(
        problems(&bare),
        [
            "Observation.status: [cardinality] required (min 1 in base R4), missing",
            "Observation.code: [cardinality] required (min 1 in base R4), missing"
        ]
    );
    // A primitive given only by its extensions is present.
    let extended = with(
        with(observation(), "/status", None),
        "/_status",
        Some(
            json!({"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason", "valueCode": "unknown"}]}),
        ),
    );
    assert_eq!(problems(&extended), Vec::<String>::new());
    let statement = json!({
        "resourceType": "MedicationStatement",
        "id": "m1",
        "status": "active",
        "subject": {"reference": "Patient/p1"}
    });
    assert_eq!(
        problems(&statement),
        ["MedicationStatement.medication[x]: [cardinality] required (min 1 in base R4), missing"]
    );
}

#[test]
fn cardinality_of_the_uk_core_profiles() {
    assert_eq!(
        problems(&with(
            patient(),
            "/identifier/0",
            Some(json!({"system": NHS}))
        )),
        ["Patient.identifier[0].value: [cardinality] at least 1 required by the profile, found 0"]
    );
    let two = with(
        patient(),
        "/identifier/1",
        Some(json!({"system": NHS, "value": "9996656063"})),
    );
    assert_eq!(
        problems(&two),
        [
            "Patient.identifier:nhsNumber: [cardinality] at most 1 allowed in this slice by the profile, found 2"
        ]
    );
    // An identifier of another system is outside the (open) slice.
    assert_eq!(
        problems(&with(
            patient(),
            "/identifier/0/system",
            Some(json!("https://example.org/nhs"))
        )),
        Vec::<String>::new()
    );
    let allergy = json!({
        "resourceType": "AllergyIntolerance",
        "id": "a1",
        "patient": {"reference": "Patient/p1"}
    });
    assert_eq!(
        problems(&allergy),
        ["AllergyIntolerance.code: [cardinality] at least 1 required by the profile, found 0"]
    );
    let ethnic = json!({
        "url": "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-EthnicCategory",
        "valueCodeableConcept": {"text": "White British"}
    });
    let twice = with(patient(), "/extension", Some(json!([ethnic, ethnic])));
    assert_eq!(
        problems(&twice),
        [
            "Patient.extension:ethnicCategory: [cardinality] at most 1 allowed in this slice by the profile, found 2"
        ]
    );
}

#[test]
fn bindings() {
    assert_eq!(
        problems(&with(patient(), "/gender", Some(json!("M")))),
        [
            "Patient.gender: [binding] `M` is not one of female, male, other, unknown (required binding to http://hl7.org/fhir/ValueSet/administrative-gender)"
        ]
    );
    assert_eq!(
        problems(&with(observation(), "/status", Some(json!("done")))),
        [
            "Observation.status: [binding] `done` is not one of amended, cancelled, corrected, entered-in-error, final, preliminary, registered, unknown (required binding to http://hl7.org/fhir/ValueSet/observation-status)"
        ]
    );
    assert_eq!(
        problems(&with(
            condition(),
            "/clinicalStatus/coding/0/code",
            Some(json!("current"))
        )),
        [
            "Condition.clinicalStatus: [binding] no coding; expected one of http://terminology.hl7.org/CodeSystem/condition-clinical|active, http://terminology.hl7.org/CodeSystem/condition-clinical|inactive, http://terminology.hl7.org/CodeSystem/condition-clinical|recurrence, http://terminology.hl7.org/CodeSystem/condition-clinical|relapse, http://terminology.hl7.org/CodeSystem/condition-clinical|remission, http://terminology.hl7.org/CodeSystem/condition-clinical|resolved (required binding to http://hl7.org/fhir/ValueSet/condition-clinical)"
        ]
    );
    assert_eq!(
        problems(&with(
            condition(),
            "/clinicalStatus",
            Some(json!({"text": "Active"}))
        )),
        [
            "Condition.clinicalStatus: [binding] no coding at all (text only); expected one of http://terminology.hl7.org/CodeSystem/condition-clinical|active, http://terminology.hl7.org/CodeSystem/condition-clinical|inactive, http://terminology.hl7.org/CodeSystem/condition-clinical|recurrence, http://terminology.hl7.org/CodeSystem/condition-clinical|relapse, http://terminology.hl7.org/CodeSystem/condition-clinical|remission, http://terminology.hl7.org/CodeSystem/condition-clinical|resolved (required binding to http://hl7.org/fhir/ValueSet/condition-clinical)"
        ]
    );
    // A value set of a whole external system (BCP 47) checks the system only.
    let language = |system: &str| {
        with(
            patient(),
            "/communication",
            Some(json!([{"language": {"coding": [{"system": system, "code": "en-GB"}]}}])),
        )
    };
    assert_eq!(problems(&language("urn:ietf:bcp:47")), Vec::<String>::new());
    assert_eq!(
        problems(&language("http://example.org/languages")),
        [
            "Patient.communication[0].language: [binding] no coding; expected a code of urn:ietf:bcp:47 (required binding to http://hl7.org/fhir/ValueSet/all-languages)"
        ]
    );
}

#[test]
fn references() {
    assert_eq!(
        problems(&with(
            condition(),
            "/subject/reference",
            Some(json!("Practitioner/gp1"))
        )),
        [
            "Condition.subject.reference: [reference] refers to a `Practitioner`; allowed: Group | Patient"
        ]
    );
    assert_eq!(
        problems(&with(condition(), "/subject/type", Some(json!("Location")))),
        [
            "Condition.subject.type: [reference] `Location` is not an allowed target type (Group | Patient)"
        ]
    );
    assert_eq!(
        problems(&with(condition(), "/subject/reference", Some(json!("p1")))),
        ["Condition.subject.reference: [reference] `p1` is not a reference of the form Type/id"]
    );
    for fine in [
        "https://gp.example/fhir/Patient/p1",
        "Patient/p1/_history/2",
        "#p1",
        "urn:uuid:c757873d-ec9a-4326-a141-556f43239520",
    ] {
        assert_eq!(
            problems(&with(condition(), "/subject/reference", Some(json!(fine)))),
            Vec::<String>::new(),
            "{fine}"
        );
    }
    // A logical reference (identifier only) names no type to check.
    let logical = json!({"identifier": {"system": NHS, "value": "9990465630"}});
    assert_eq!(
        problems(&with(condition(), "/subject", Some(logical))),
        Vec::<String>::new()
    );
}

#[test]
fn contained_resources_get_the_base_check() {
    let contained = with(
        condition(),
        "/contained",
        Some(json!([{"resourceType": "Patient", "id": "p1", "gender": "M"}])),
    );
    assert_eq!(
        problems(&contained),
        [
            "Condition.contained[0].gender: [binding] `M` is not one of female, male, other, unknown (required binding to http://hl7.org/fhir/ValueSet/administrative-gender)"
        ]
    );
}

/// A profile directory with the base structure, the core value sets and `files`.
fn test_dir(files: &[(&str, Value)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/fhir-profiles"));
    std::fs::create_dir_all(dir.path().join("base")).expect("base");
    std::fs::create_dir_all(dir.path().join("core")).expect("core");
    std::fs::copy(
        repo.join(super::STRUCTURE_FILE),
        dir.path().join(super::STRUCTURE_FILE),
    )
    .expect("structure");
    for entry in std::fs::read_dir(repo.join("core")).expect("core") {
        let path = entry.expect("entry").path();
        std::fs::copy(
            &path,
            dir.path()
                .join("core")
                .join(path.file_name().expect("name")),
        )
        .expect("copy");
    }
    for (name, json) in files {
        std::fs::write(dir.path().join(name), json.to_string()).expect("write");
    }
    dir
}

fn test_profile() -> Value {
    json!({
        "resourceType": "StructureDefinition",
        "url": "https://concord.test/StructureDefinition/Test-Observation",
        "type": "Observation",
        "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Observation",
        "derivation": "constraint",
        "differential": {"element": [
            {"id": "Observation.status", "path": "Observation.status", "fixedCode": "final"},
            {"id": "Observation.category", "path": "Observation.category", "min": 1,
             "patternCodeableConcept": {"coding": [{
                 "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                 "code": "vital-signs"}]}},
            {"id": "Observation.subject", "path": "Observation.subject", "min": 1,
             "type": [{"code": "Reference",
                       "targetProfile": ["https://fhir.hl7.org.uk/StructureDefinition/UKCore-Patient"]}]},
            {"id": "Observation.method.coding", "path": "Observation.method.coding",
             "binding": {"strength": "required", "valueSet": "https://concord.test/ValueSet/method"}},
            {"id": "Observation.component", "path": "Observation.component",
             "slicing": {"discriminator": [{"type": "pattern", "path": "code"}], "rules": "closed"}},
            {"id": "Observation.component:systolic", "path": "Observation.component",
             "sliceName": "systolic", "min": 1, "max": "1"},
            {"id": "Observation.component:systolic.code", "path": "Observation.component.code",
             "patternCodeableConcept": {"coding": [{"system": "http://snomed.info/sct", "code": "271649006"}]}},
            {"id": "Observation.component:systolic.value[x]", "path": "Observation.component.value[x]", "min": 1}
        ]}
    })
}

fn method_value_set() -> Value {
    json!({
        "resourceType": "ValueSet",
        "url": "https://concord.test/ValueSet/method",
        "status": "active",
        "compose": {"include": [
            {"system": "https://concord.test/CodeSystem/method"},
            {"system": "http://snomed.info/sct", "concept": [{"code": "37931006"}]}
        ]}
    })
}

fn method_code_system() -> Value {
    json!({
        "resourceType": "CodeSystem",
        "url": "https://concord.test/CodeSystem/method",
        "status": "active",
        "content": "complete",
        "concept": [{"code": "auto", "concept": [{"code": "auto-cuff"}]}, {"code": "manual"}]
    })
}

fn test_profiles() -> (tempfile::TempDir, Profiles) {
    let dir = test_dir(&[
        ("profile.json", test_profile()),
        ("vs.json", method_value_set()),
        ("cs.json", method_code_system()),
    ]);
    let profiles = Profiles::load(dir.path()).expect("the test profile loads");
    (dir, profiles)
}

fn blood_pressure() -> Value {
    let mut bp = with(observation(), "/valueQuantity", None);
    bp = with(
        bp,
        "/component",
        Some(json!([{
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "271649006", "display": "Systolic"}]},
            "valueQuantity": {"value": 120, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}
        }])),
    );
    with(
        bp,
        "/method",
        Some(
            json!({"coding": [{"system": "https://concord.test/CodeSystem/method", "code": "auto-cuff"}]}),
        ),
    )
}

#[test]
fn fixed_pattern_targets_slices_of_a_test_profile() {
    let (_dir, profiles) = test_profiles();
    assert_eq!(
        problems_with(&profiles, &blood_pressure()),
        Vec::<String>::new()
    );
    assert_eq!(
        problems_with(
            &profiles,
            &with(blood_pressure(), "/status", Some(json!("preliminary")))
        ),
        ["Observation.status: [fixed] must be `final` (fixed by the profile)"]
    );
    let other_category = json!([{"coding": [{
        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
        "code": "laboratory"
    }]}]);
    assert_eq!(
        problems_with(
            &profiles,
            &with(blood_pressure(), "/category", Some(other_category))
        ),
        [
            "Observation.category[0]: [fixed] must match `{\"coding\":[{\"system\":\"http://terminology.hl7.org/CodeSystem/observation-category\",\"code\":\"vital-signs\"}]}` (pattern of the profile)"
        ]
    );
    assert_eq!(
        problems_with(
            &profiles,
            &with(
                blood_pressure(),
                "/subject/reference",
                Some(json!("Group/g1"))
            )
        ),
        ["Observation.subject.reference: [reference] refers to a `Group`; allowed: Patient"]
    );
    assert_eq!(
        problems_with(
            &profiles,
            &with(
                blood_pressure(),
                "/method/coding/0/code",
                Some(json!("remote"))
            )
        ),
        [
            "Observation.method.coding[0]: [binding] https://concord.test/CodeSystem/method|remote is not one of http://snomed.info/sct|37931006, https://concord.test/CodeSystem/method|auto, https://concord.test/CodeSystem/method|auto-cuff, https://concord.test/CodeSystem/method|manual (required binding to https://concord.test/ValueSet/method)"
        ]
    );
    let diastolic = json!({
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "271650006"}]},
        "valueQuantity": {"value": 80}
    });
    assert_eq!(
        problems_with(
            &profiles,
            &with(blood_pressure(), "/component/0", Some(diastolic))
        ),
        [
            "Observation.component:systolic: [cardinality] at least 1 required in this slice by the profile, found 0",
            "Observation.component: [cardinality] 1 value(s) in no slice, and the slicing is closed"
        ]
    );
    assert_eq!(
        problems_with(
            &profiles,
            &with(blood_pressure(), "/component/0/valueQuantity", None)
        ),
        [
            "Observation.component[0].value[x]: [cardinality] at least 1 required by the profile, found 0"
        ]
    );
}

#[test]
fn meta_profile_picks_a_loaded_profile_of_the_type() {
    let (_dir, profiles) = test_profiles();
    let claims = |url: &str| with(observation(), "/meta", Some(json!({"profile": [url]})));
    let test = "https://concord.test/StructureDefinition/Test-Observation";
    assert_eq!(
        profiles.profile_for(&claims(test)).map(|p| p.url.as_str()),
        Some(test)
    );
    let repo = repo_profiles();
    assert_eq!(
        repo.profile_for(&claims(
            "https://fhir.hl7.org.uk/StructureDefinition/UKCore-Observation-VitalSigns"
        ))
        .map(|p| p.url.as_str()),
        Some("https://fhir.hl7.org.uk/StructureDefinition/UKCore-Observation"),
        "an unloaded profile: the type's default"
    );
    assert_eq!(
        repo.profile_for(&with(patient(), "/meta", Some(json!({"profile": [test]}))))
            .map(|p| p.url.as_str()),
        Some("https://fhir.hl7.org.uk/StructureDefinition/UKCore-Patient"),
        "a profile of another type: the type's default"
    );
}

#[test]
fn load_errors_name_the_file_and_element() {
    let missing = Profiles::load(Path::new("/nonexistent/fhir-profiles"));
    assert!(
        matches!(missing, Err(LoadError::Read { .. })),
        "{missing:?}"
    );

    let bad_element = with(
        test_profile(),
        "/differential/element/0",
        Some(json!({"id": "Observation.colour", "path": "Observation.colour", "min": 1})),
    );
    let dir = test_dir(&[
        ("profile.json", bad_element),
        ("vs.json", method_value_set()),
    ]);
    let err = Profiles::load(dir.path()).expect_err("an unknown element");
    assert_eq!(
        err.to_string(),
        format!(
            "`{}`: element `Observation.colour`: no element `colour` in R4 `Observation`",
            dir.path().join("profile.json").display()
        )
    );

    let dir = test_dir(&[("profile.json", test_profile())]);
    let err = Profiles::load(dir.path()).expect_err("a missing value set");
    assert_eq!(
        err.to_string(),
        "value set `https://concord.test/ValueSet/method` (required by `Observation.method.coding`) is not in the profiles directory"
    );

    let derived = with(
        test_profile(),
        "/baseDefinition",
        Some(json!(
            "https://fhir.hl7.org.uk/StructureDefinition/UKCore-Observation"
        )),
    );
    let dir = test_dir(&[("profile.json", derived), ("vs.json", method_value_set())]);
    assert!(matches!(
        Profiles::load(dir.path()),
        Err(LoadError::Invalid { .. })
    ));
}

/// Every element of a resource replaced, one at a time, by each kind of JSON value: the
/// checker reports and never panics.
#[test]
fn never_panics_on_wrong_json_types_anywhere() {
    let odd = [
        Value::Null,
        json!(true),
        json!(-0.0),
        serde_json::from_str::<Value>("1e999999").unwrap_or(json!(1)),
        serde_json::from_str::<Value>("123456789012345678901234567890").unwrap_or(json!(1)),
        json!(""),
        json!("\u{0}\u{ffff}"),
        json!([]),
        json!([null]),
        json!({}),
        json!({"resourceType": "Patient"}),
    ];
    fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
        match value {
            Value::Object(o) => o.iter().for_each(|(k, v)| {
                let p = format!("{at}/{k}");
                out.push(p.clone());
                pointers(v, p, out);
            }),
            Value::Array(a) => a.iter().enumerate().for_each(|(i, v)| {
                let p = format!("{at}/{i}");
                out.push(p.clone());
                pointers(v, p, out);
            }),
            _ => {}
        }
    }
    for resource in [patient(), observation(), condition(), blood_pressure()] {
        let mut all = Vec::new();
        pointers(&resource, String::new(), &mut all);
        for pointer in &all {
            for value in &odd {
                let changed = with(resource.clone(), pointer, Some(value.clone()));
                let _ = repo_profiles().check(&changed);
            }
        }
    }
}

#[test]
fn deep_nesting_is_cut_off_not_followed() {
    let mut extension = json!({"url": "https://example.org/leaf", "valueString": "x"});
    for _ in 0..500 {
        extension = json!({"url": "https://example.org/nest", "extension": [extension]});
    }
    let deep = with(patient(), "/extension", Some(json!([extension])));
    let found = repo_profiles().check(&deep);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].message.starts_with("nested deeper than"),
        "{found:?}"
    );
}
