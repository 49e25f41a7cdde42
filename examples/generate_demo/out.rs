//! NDJSON output: one `{ResourceType}.ndjson` file per type per provider, as
//! a FHIR Bulk Data export lays them out, written through a `BufWriter` as
//! each person is generated (nothing is held in memory).

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde_json::Value;

/// Counts of notable records (sensitive codes, flags), keyed by a label.
pub(crate) type Tally = BTreeMap<String, u64>;

/// The export of one provider.
#[derive(Debug)]
pub(crate) struct Export {
    /// Directory holding the NDJSON files.
    dir: PathBuf,
    /// One open writer per resource type, created on first use.
    writers: BTreeMap<String, BufWriter<File>>,
    /// Resources written, per type.
    counts: BTreeMap<String, u64>,
    /// Bytes written, all types.
    bytes: u64,
}

impl Export {
    /// Prepare `dir`: create it, and remove NDJSON files of an earlier run so
    /// that a type no longer generated cannot linger.
    pub(crate) fn create(dir: &Path) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        for entry in fs::read_dir(dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "ndjson") {
                fs::remove_file(&path)?;
            }
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            writers: BTreeMap::new(),
            counts: BTreeMap::new(),
            bytes: 0,
        })
    }

    /// Append one resource as one compact JSON line to its type's file.
    pub(crate) fn write(&mut self, resource: &Value) -> io::Result<()> {
        let kind = resource["resourceType"].as_str().unwrap_or("Unknown");
        if !self.writers.contains_key(kind) {
            let file = File::create(self.dir.join(format!("{kind}.ndjson")))?;
            self.writers
                .insert(kind.to_owned(), BufWriter::with_capacity(1 << 16, file));
        }
        let line = serde_json::to_vec(resource)?;
        if let Some(w) = self.writers.get_mut(kind) {
            w.write_all(&line)?;
            w.write_all(b"\n")?;
        }
        *self.counts.entry(kind.to_owned()).or_insert(0) += 1;
        self.bytes += line.len() as u64 + 1;
        Ok(())
    }

    /// Flush every file.
    pub(crate) fn finish(&mut self) -> io::Result<()> {
        for w in self.writers.values_mut() {
            w.flush()?;
        }
        Ok(())
    }

    /// Resources written per type, in type-name order.
    pub(crate) fn counts(&self) -> &BTreeMap<String, u64> {
        &self.counts
    }

    /// Total bytes written.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }
}
