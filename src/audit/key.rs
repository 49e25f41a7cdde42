//! The key records are hashed with, kept outside the database.

use std::path::Path;

use aws_lc_rs::hmac;

use super::{AuditError, MIN_KEY_BYTES};

/// The key records are hashed with.
#[derive(Debug, Clone)]
pub struct AuditKey(hmac::Key);

impl AuditKey {
    /// A key from its bytes (at least [`MIN_KEY_BYTES`]).
    pub fn new(bytes: &[u8]) -> Result<AuditKey, AuditError> {
        if bytes.len() < MIN_KEY_BYTES {
            return Err(AuditError::Key(format!(
                "is {} bytes; at least {MIN_KEY_BYTES} are needed",
                bytes.len()
            )));
        }
        Ok(AuditKey(hmac::Key::new(hmac::HMAC_SHA256, bytes)))
    }

    /// Reads the key from a file (its bytes, surrounding whitespace removed) or from an
    /// environment variable.
    pub fn load(file: Option<&Path>, env: Option<&str>) -> Result<AuditKey, AuditError> {
        match (file, env) {
            (Some(path), _) => {
                let bytes = std::fs::read(path).map_err(|e| {
                    AuditError::Key(format!("cannot read `{}`: {e}", path.display()))
                })?;
                AuditKey::new(bytes.trim_ascii())
            }
            (None, Some(var)) => {
                let value = std::env::var(var).map_err(|_| {
                    AuditError::Key(format!("environment variable `{var}` is not set"))
                })?;
                AuditKey::new(value.trim().as_bytes())
            }
            (None, None) => Err(AuditError::Key("no key_file or key_env".into())),
        }
    }

    /// A keyed hash of a value kept out of a record (128 bits, hex), separated from record
    /// hashes by its own prefix.
    pub fn digest(&self, value: &str) -> String {
        let mut ctx = hmac::Context::with_key(&self.0);
        ctx.update(b"concord:audit:withheld-value\0");
        ctx.update(value.as_bytes());
        crate::hex(&ctx.sign().as_ref()[..16])
    }

    /// The keyed hash of a record at `seq` in `chain` after `prev_hash`.
    pub fn hash(&self, chain: &str, seq: i64, prev_hash: &str, body: &str) -> String {
        let mut ctx = hmac::Context::with_key(&self.0);
        for part in [chain.as_bytes(), &seq.to_be_bytes(), prev_hash.as_bytes()] {
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part);
        }
        ctx.update(body.as_bytes());
        crate::hex(ctx.sign().as_ref())
    }
}
