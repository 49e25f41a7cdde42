//! A directory of FHIR Bulk Data export files (`Patient.ndjson`, `Observation.ndjson`, …) as a
//! source, for providers that deliver extracts rather than an API.
//!
//! The files are read once at start-up and indexed by person: NHS number to patients, patient
//! to the resources that name them in `subject` or `patient`, and type and id to resource. A
//! line that is not a resource of the file's type is skipped with a warning naming the file
//! and line (never its content) and counted in `concord_source_faults_total{kind="invalid_line"}`;
//! a file that cannot be read stops start-up.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use super::{Fetched, NhsPage, SetupError, Source, SourceError, SourceInfo};
use crate::fhir::NhsNumber;
use crate::fhir::reference::{is_resource_type_name, is_valid_id};

/// An indexed NDJSON export.
#[derive(Debug)]
pub struct NdjsonSource {
    info: SourceInfo,
    resources: Vec<Arc<Value>>,
    /// Each resource's type, by the same index (one shared text per type).
    kinds: Vec<Arc<str>>,
    by_nhs: HashMap<String, Vec<usize>>,
    by_patient: HashMap<String, Vec<usize>>,
    by_key: HashMap<(String, String), usize>,
    types: std::collections::HashSet<String>,
    skipped_lines: u64,
}

impl NdjsonSource {
    /// Reads and indexes every `*.ndjson` file in `dir`.
    pub fn load(info: SourceInfo, dir: &Path) -> Result<Self, SetupError> {
        let fail = |message: String| SetupError::Ndjson {
            source_id: info.id.clone(),
            message,
        };
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| fail(format!("cannot read `{}`: {e}", dir.display())))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "ndjson"))
            .collect();
        files.sort();
        let mut source = NdjsonSource {
            info: info.clone(),
            resources: Vec::new(),
            kinds: Vec::new(),
            by_nhs: HashMap::new(),
            by_patient: HashMap::new(),
            by_key: HashMap::new(),
            types: std::collections::HashSet::new(),
            skipped_lines: 0,
        };
        for path in files {
            let Some(resource_type) = path
                .file_stem()
                .and_then(|s| s.to_str())
                .filter(|s| is_resource_type_name(s))
            else {
                tracing::warn!(source.id = %info.id, file = %path.display(), "file name is not a resource type; skipped");
                continue;
            };
            let resource_type = resource_type.to_owned();
            let file = std::fs::File::open(&path)
                .map_err(|e| fail(format!("cannot open `{}`: {e}", path.display())))?;
            for (n, line) in BufReader::new(file).lines().enumerate() {
                let line =
                    line.map_err(|e| fail(format!("cannot read `{}`: {e}", path.display())))?;
                if line.trim().is_empty() {
                    continue;
                }
                match parse_line(&line, &resource_type) {
                    Ok(resource) => source.add(resource),
                    Err(why) => {
                        source.skipped_lines += 1;
                        tracing::warn!(source.id = %info.id, file = %path.display(), line = n + 1, why, "line skipped");
                    }
                }
            }
        }
        tracing::info!(source.id = %info.id, resources = source.resources.len(), patients = source.by_nhs.len(), skipped = source.skipped_lines, "ndjson source indexed");
        Ok(source)
    }

    fn add(&mut self, resource: Value) {
        let index = self.resources.len();
        let (Some(rtype), Some(id)) = (
            resource.get("resourceType").and_then(Value::as_str),
            resource.get("id").and_then(Value::as_str),
        ) else {
            return;
        };
        if !self.types.contains(rtype) {
            self.types.insert(rtype.to_owned());
        }
        if self
            .by_key
            .insert((rtype.to_owned(), id.to_owned()), index)
            .is_some()
        {
            tracing::warn!(source.id = %self.info.id, resource_type = rtype, "duplicate id in export; the later line wins");
        }
        if rtype == "Patient" {
            for nhs in crate::fhir::nhs_number::carried_by(&resource) {
                self.by_nhs.entry(nhs).or_default().push(index);
            }
        } else if let Some(patient) = crate::fhir::search::patient_id_of(&resource, None) {
            self.by_patient
                .entry(patient.to_owned())
                .or_default()
                .push(index);
        }
        let kind = match self.kinds.last() {
            Some(last) if **last == *rtype => last.clone(),
            _ => Arc::from(rtype),
        };
        self.kinds.push(kind);
        self.resources.push(Arc::new(resource));
    }

    fn lookup(&self, resource_type: &str, id: &str) -> Option<&Arc<Value>> {
        self.by_key
            .get(&(resource_type.to_owned(), id.to_owned()))
            .and_then(|i| self.resources.get(*i))
    }

    /// How many lines were skipped as invalid.
    pub fn skipped_lines(&self) -> u64 {
        self.skipped_lines
    }

    fn of_patient<'a>(&'a self, patient_id: &str) -> impl Iterator<Item = &'a Arc<Value>> {
        self.by_patient
            .get(patient_id)
            .into_iter()
            .flatten()
            .filter_map(|i| self.resources.get(*i))
    }
}

fn parse_line(line: &str, resource_type: &str) -> Result<Value, &'static str> {
    let value: Value = serde_json::from_str(line).map_err(|_| "not JSON")?;
    if value.get("resourceType").and_then(Value::as_str) != Some(resource_type) {
        return Err("resourceType does not match the file name");
    }
    if !value
        .get("id")
        .and_then(Value::as_str)
        .is_some_and(is_valid_id)
    {
        return Err("missing or invalid id");
    }
    Ok(value)
}

#[async_trait]
impl Source for NdjsonSource {
    fn info(&self) -> &SourceInfo {
        &self.info
    }

    fn may_hold(&self, resource_type: &str) -> bool {
        self.types.contains(resource_type)
    }

    fn lists_nhs_numbers(&self) -> bool {
        true
    }

    /// The export's own NHS numbers, in order; the cursor is the last number of the page
    /// before.
    async fn nhs_numbers(
        &self,
        cursor: Option<&str>,
        count: usize,
    ) -> Result<NhsPage, SourceError> {
        let mut numbers: Vec<&String> = self
            .by_nhs
            .keys()
            .filter(|n| cursor.is_none_or(|c| n.as_str() > c))
            .filter(|n| NhsNumber::parse(n).is_ok())
            .collect();
        numbers.sort_unstable();
        let more = numbers.len() > count;
        numbers.truncate(count.max(1));
        let next = if more {
            numbers.last().map(|n| (*n).clone())
        } else {
            None
        };
        Ok(NhsPage {
            numbers: numbers.into_iter().cloned().collect(),
            next,
        })
    }

    async fn find_patients(&self, nhs: &NhsNumber) -> Result<Fetched, SourceError> {
        let resources = self
            .by_nhs
            .get(nhs.as_str())
            .into_iter()
            .flatten()
            .filter_map(|i| self.resources.get(*i))
            .cloned()
            .collect();
        Ok(Fetched {
            resources,
            truncated: false,
        })
    }

    async fn sample(&self, resource_type: &str, count: usize) -> Result<Fetched, SourceError> {
        Ok(Fetched {
            resources: self
                .resources
                .iter()
                .filter(|r| r.get("resourceType").and_then(Value::as_str) == Some(resource_type))
                .take(count)
                .cloned()
                .collect(),
            truncated: false,
        })
    }

    async fn search(&self, resource_type: &str, patient_id: &str) -> Result<Fetched, SourceError> {
        let resources = self
            .of_patient(patient_id)
            .filter(|r| r.get("resourceType").and_then(Value::as_str) == Some(resource_type))
            .cloned()
            .collect();
        Ok(Fetched {
            resources,
            truncated: false,
        })
    }

    async fn everything(
        &self,
        patient_id: &str,
        types: &[&'static str],
    ) -> Result<Fetched, SourceError> {
        let mut resources = Vec::new();
        if types.contains(&"Patient")
            && let Some(p) = self.lookup("Patient", patient_id)
        {
            resources.push(p.clone());
        }
        // A patient's resources come type by type (a file per type), so whether a type is
        // asked for is looked up once per run of it, not once per resource.
        let mut run: Option<(&Arc<str>, bool)> = None;
        for &i in self.by_patient.get(patient_id).into_iter().flatten() {
            let (Some(resource), Some(kind)) = (self.resources.get(i), self.kinds.get(i)) else {
                continue;
            };
            let wanted = match run {
                Some((last, wanted)) if Arc::ptr_eq(last, kind) => wanted,
                _ => {
                    let wanted = types.contains(&&**kind);
                    run = Some((kind, wanted));
                    wanted
                }
            };
            if wanted {
                resources.push(resource.clone());
            }
        }
        Ok(Fetched {
            resources,
            truncated: false,
        })
    }

    async fn read(&self, resource_type: &str, id: &str) -> Result<Option<Value>, SourceError> {
        Ok(self.lookup(resource_type, id).map(|r| (**r).clone()))
    }

    fn is_static(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> SourceInfo {
        SourceInfo {
            id: "gp".into(),
            name: "GP".into(),
            ods: "A81001".into(),
            base_url: None,
            conformance: crate::config::Conformance::Off,
        }
    }

    /// The record locator lists an export's valid NHS numbers in order, a page at a time.
    #[tokio::test]
    async fn lists_its_nhs_numbers_in_pages() {
        let dir = tempfile::tempdir().expect("tempdir");
        let line = |id: &str, nhs: &str| {
            format!(
                r#"{{"resourceType":"Patient","id":"{id}","identifier":[{{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"{nhs}"}}]}}"#
            )
        };
        let lines = [
            line("p1", "9990000026"),
            line("p2", "9990000018"),
            line("p3", "9434765919"),
            // Not a valid NHS number (check digit): never listed.
            line("p4", "9434765918"),
            line("p5", "9990000018"),
        ];
        std::fs::write(dir.path().join("Patient.ndjson"), lines.join("\n")).expect("write");
        let source = NdjsonSource::load(info(), dir.path()).expect("loads");
        assert!(source.lists_nhs_numbers());
        let first = source.nhs_numbers(None, 2).await.expect("page");
        assert_eq!(first.numbers, ["9434765919", "9990000018"]);
        let next = first.next.expect("more");
        let second = source.nhs_numbers(Some(&next), 2).await.expect("page");
        assert_eq!(second.numbers, ["9990000026"]);
        assert!(second.next.is_none());
    }

    #[tokio::test]
    async fn indexes_by_person_and_skips_bad_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("Patient.ndjson"),
            concat!(
                r#"{"resourceType":"Patient","id":"p1","identifier":[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9434765919"}]}"#,
                "\n\n",
                r#"{"resourceType":"Patient","id":"p2"}"#,
                "\n"
            ),
        )
        .expect("write");
        std::fs::write(
            dir.path().join("Observation.ndjson"),
            concat!(
                r#"{"resourceType":"Observation","id":"o1","subject":{"reference":"Patient/p1"}}"#,
                "\nnot json\n",
                r#"{"resourceType":"Condition","id":"c1","subject":{"reference":"Patient/p1"}}"#,
                "\n",
                r#"{"resourceType":"Observation","id":"bad id","subject":{"reference":"Patient/p1"}}"#,
                "\n",
                r#"{"resourceType":"Observation","id":"o2","subject":{"reference":"Patient/p2"}}"#,
                "\n"
            ),
        )
        .expect("write");
        std::fs::write(dir.path().join("notes.txt"), "ignored").expect("write");

        let source = NdjsonSource::load(info(), dir.path()).expect("loads");
        assert_eq!(source.skipped_lines(), 3);
        let nhs = NhsNumber::parse("9434765919").expect("valid");
        let found = source.find_patients(&nhs).await.expect("ok");
        assert_eq!(found.resources.len(), 1);
        let obs = source.search("Observation", "p1").await.expect("ok");
        assert_eq!(obs.resources.len(), 1);
        let all = source
            .everything("p1", &["Patient", "Observation"])
            .await
            .expect("ok");
        assert_eq!(all.resources.len(), 2);
        assert!(
            source
                .read("Observation", "o2")
                .await
                .expect("ok")
                .is_some()
        );
        assert!(
            source
                .read("Observation", "nope")
                .await
                .expect("ok")
                .is_none()
        );
    }

    #[test]
    fn missing_directory_is_an_error() {
        let err =
            NdjsonSource::load(info(), Path::new("/nonexistent/concord")).expect_err("missing");
        assert!(err.to_string().contains("source `gp`"), "{err}");
    }
}
