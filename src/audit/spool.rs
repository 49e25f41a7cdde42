//! The local spool: where audit records go while the store cannot take them.
//!
//! One file per chain, `<chain>.spool` in the spool directory, holding one record per line
//! as JSON ([`Record`]: chain, position, body, previous hash, hash), so the records stay in
//! their hash chain. A batch is appended and `fsync`ed before any of its requests is answered;
//! when a write fails, the file is cut back to where it was, so a record whose request got 503
//! never survives. The writing process holds an exclusive lock on its file, so another process
//! replaying orphaned spools (after a crash) never takes a file that is still being written.
//!
//! A last line without its newline is a write a crash interrupted: its request was never
//! answered, so reading ignores it. Any other line that is not a record makes the whole file
//! unreadable: it is left where it is for a person to look at, never replayed in part.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::Record;

/// The spool file's name ending.
pub const EXTENSION: &str = "spool";

/// Why the spool could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// The file system refused.
    #[error("audit spool `{path}`: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// A line is not a record.
    #[error("audit spool `{path}` line {line}: not an audit record")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The line, from 1.
        line: usize,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_owned(),
        source,
    }
}

/// This process's spool file, open and locked while it holds records.
#[derive(Debug)]
pub struct Spool {
    path: PathBuf,
    file: File,
    len: u64,
    records: u64,
}

/// True when a file can be made, written and synced in `dir` now (it is removed again): the
/// spool could take records. For readiness, which must find its own way back once a
/// broken spool directory is repaired.
pub fn writable(dir: &Path) -> bool {
    let probe = dir.join(format!(".probe-{}", uuid::Uuid::new_v4().simple()));
    let written = std::fs::create_dir_all(dir).is_ok()
        && OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(&probe)
            .and_then(|mut f| {
                std::io::Write::write_all(&mut f, b"probe")?;
                f.sync_all()
            })
            .is_ok();
    let _ = std::fs::remove_file(&probe);
    written
}

impl Spool {
    /// The path of `chain`'s spool in `dir`.
    pub fn path(dir: &Path, chain: &str) -> PathBuf {
        dir.join(format!("{chain}.{EXTENSION}"))
    }

    /// Creates (or reopens) `chain`'s spool in `dir` and locks it. The directory is created
    /// when missing and synced, so the file's name survives a crash too.
    pub fn open(dir: &Path, chain: &str) -> Result<Spool, SpoolError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let path = Spool::path(dir, chain);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&path)
            .map_err(io(&path))?;
        file.try_lock().map_err(|e| SpoolError::Io {
            path: path.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io(dir))?;
        let len = file.metadata().map_err(io(&path))?.len();
        Ok(Spool {
            path,
            file,
            len,
            records: 0,
        })
    }

    /// Appends records and syncs them to disk. On failure the file is cut back to its length
    /// before the call, so nothing of the batch remains.
    pub fn append(&mut self, records: &[Record]) -> Result<(), SpoolError> {
        let mut text = Vec::with_capacity(records.len() * 1024);
        for record in records {
            // A Record is strings and an integer: encoding it cannot fail.
            serde_json::to_writer(&mut text, record).map_err(|e| SpoolError::Io {
                path: self.path.clone(),
                source: std::io::Error::other(e),
            })?;
            text.push(b'\n');
        }
        let written = self
            .file
            .write_all(&text)
            .and_then(|()| self.file.sync_data());
        match written {
            Ok(()) => {
                self.len += text.len() as u64;
                self.records += records.len() as u64;
                Ok(())
            }
            Err(e) => {
                if let Err(cut) = self.file.set_len(self.len) {
                    tracing::error!(error = %cut, "cannot cut the audit spool back after a failed write");
                }
                Err(io(&self.path)(e))
            }
        }
    }

    /// Records appended through this handle.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// The file's path.
    pub fn file_path(&self) -> &Path {
        &self.path
    }

    /// Removes the file once its records are in the store.
    pub fn remove(self) -> Result<(), SpoolError> {
        std::fs::remove_file(&self.path).map_err(io(&self.path))
    }
}

/// Reads a spool file's records in order (a torn last line is ignored).
pub fn read(path: &Path) -> Result<Vec<Record>, SpoolError> {
    let text = std::fs::read(path).map_err(io(path))?;
    let complete = match text.iter().rposition(|b| *b == b'\n') {
        Some(end) => &text[..=end],
        None => &[][..],
    };
    complete
        .split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_slice(line).map_err(|_| SpoolError::Corrupt {
                path: path.to_owned(),
                line: i + 1,
            })
        })
        .collect()
}

/// A spool file another process left behind, locked while this process replays it.
#[derive(Debug)]
pub struct Orphan {
    /// The file.
    pub path: PathBuf,
    _lock: File,
}

impl Orphan {
    /// Removes the file (its records are in the store).
    pub fn remove(self) -> Result<(), SpoolError> {
        std::fs::remove_file(&self.path).map_err(io(&self.path))
    }
}

/// The spool files in `dir` other than `own` that no running process holds: those a
/// stopped or crashed gateway left. Each is returned locked.
pub fn orphans(dir: &Path, own: &str) -> Result<Vec<Orphan>, SpoolError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(dir)(e)),
    };
    let mut found = Vec::new();
    for entry in entries {
        let path = entry.map_err(io(dir))?.path();
        let is_spool = path.extension().is_some_and(|e| e == EXTENSION);
        let is_own = path.file_stem().is_some_and(|s| s == own);
        if !is_spool || is_own {
            continue;
        }
        let Ok(file) = OpenOptions::new().read(true).write(true).open(&path) else {
            continue;
        };
        if file.try_lock().is_ok() {
            found.push(Orphan { path, _lock: file });
        }
    }
    found.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(found)
}

/// How many records the spool files in `dir` hold (for `audit verify`'s report).
pub fn pending(dir: &Path) -> Result<(usize, u64), SpoolError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((0, 0)),
        Err(e) => return Err(io(dir)(e)),
    };
    let (mut files, mut records) = (0, 0);
    for entry in entries {
        let path = entry.map_err(io(dir))?.path();
        if path.extension().is_some_and(|e| e == EXTENSION) {
            files += 1;
            records += read(&path)?.len() as u64;
        }
    }
    Ok((files, records))
}
