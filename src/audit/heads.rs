//! Signed chain heads: now and then the gateway signs the newest stored record of its chain
//! (position and hash) with an Ed25519 key, keeps the signed head in the store and hands it
//! to an outside witness (a file, a URL or both). Someone who cuts records off the end of a
//! chain, and the heads from the store with them, is then caught by the witness's copy:
//! `audit verify` finds a signed head vouching for a record that is no longer there.

use std::path::{Path, PathBuf};

use aws_lc_rs::signature::{self, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use base64::Engine;

/// Why heads cannot be signed or read.
#[derive(Debug, thiserror::Error)]
pub enum HeadError {
    /// The signing key could not be read or used.
    #[error("audit head signing key `{path}`: {problem}")]
    Key {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// The witness file could not be read or written.
    #[error("audit witness file `{path}`: {problem}")]
    WitnessFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// The witness URL did not take the head.
    #[error("audit witness URL: {0}")]
    WitnessUrl(String),
}

/// A chain's head, signed (stored by the store, made and checked here).
pub use crate::store::SignedHead;

impl SignedHead {
    /// The bytes signed: a fixed, length-prefixed encoding of chain, position, hash and time.
    pub fn message(chain: &str, seq: i64, hash: &str, signed_us: i64) -> Vec<u8> {
        let mut out = b"concord-audit-head-v1".to_vec();
        for part in [
            chain.as_bytes(),
            &seq.to_be_bytes(),
            hash.as_bytes(),
            &signed_us.to_be_bytes(),
        ] {
            out.extend_from_slice(&(part.len() as u64).to_be_bytes());
            out.extend_from_slice(part);
        }
        out
    }

    /// True when the signature is `public_key`'s (hex) over this head and the head names
    /// that key.
    pub fn is_signed_by(&self, public_key: &str) -> bool {
        if self.public_key != public_key {
            return false;
        }
        let (Some(key), Some(signature)) = (unhex(public_key), unhex(&self.signature)) else {
            return false;
        };
        UnparsedPublicKey::new(&signature::ED25519, key)
            .verify(
                &SignedHead::message(&self.chain, self.seq, &self.hash, self.signed_us),
                &signature,
            )
            .is_ok()
    }
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The key heads are signed with.
#[derive(Debug)]
pub struct HeadSigner {
    pair: Ed25519KeyPair,
    public_key: String,
}

impl HeadSigner {
    /// Reads an Ed25519 private key, PKCS#8 in PEM (`openssl genpkey -algorithm ed25519`).
    pub fn load(path: &Path) -> Result<HeadSigner, HeadError> {
        let problem = |problem: String| HeadError::Key {
            path: path.to_owned(),
            problem,
        };
        let text = std::fs::read_to_string(path).map_err(|e| problem(e.to_string()))?;
        let body: String = text
            .lines()
            .skip_while(|l| !l.starts_with("-----BEGIN PRIVATE KEY-----"))
            .skip(1)
            .take_while(|l| !l.starts_with("-----END"))
            .collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(body.trim())
            .map_err(|_| problem("not a PEM `PRIVATE KEY`".into()))?;
        HeadSigner::from_pkcs8(&der).map_err(problem)
    }

    /// A signer from a PKCS#8 document.
    pub fn from_pkcs8(der: &[u8]) -> Result<HeadSigner, String> {
        let pair = Ed25519KeyPair::from_pkcs8(der)
            .map_err(|e| format!("not an Ed25519 private key ({e})"))?;
        let public_key = crate::hex(pair.public_key().as_ref());
        Ok(HeadSigner { pair, public_key })
    }

    /// The public key, hex: what a witness or `audit verify` checks signatures with.
    pub fn public_key(&self) -> &str {
        &self.public_key
    }

    /// Signs `chain`'s head at `seq` with `hash`, now.
    pub fn sign(&self, chain: &str, seq: i64, hash: &str) -> SignedHead {
        let signed_us = jiff::Timestamp::now().as_microsecond();
        let signature = self
            .pair
            .sign(&SignedHead::message(chain, seq, hash, signed_us));
        SignedHead {
            chain: chain.to_owned(),
            seq,
            hash: hash.to_owned(),
            signed_us,
            public_key: self.public_key.clone(),
            signature: crate::hex(signature.as_ref()),
        }
    }
}

/// Where signed heads are handed outside the database.
#[derive(Debug, Clone, Default)]
pub struct Witness {
    /// A file each head is appended to, one JSON line each, synced.
    pub file: Option<PathBuf>,
    /// A URL each head is POSTed to as JSON (any 2xx is taken as received).
    pub url: Option<String>,
    /// The client for `url`.
    pub client: Option<reqwest::Client>,
}

impl Witness {
    /// Hands `head` to every configured witness; the first failure is returned after all
    /// were tried.
    pub async fn hand(&self, head: &SignedHead) -> Result<(), HeadError> {
        let mut failure = None;
        if let Some(path) = &self.file {
            let path = path.clone();
            let line = serde_json::to_string(head).unwrap_or_default();
            let written = tokio::task::spawn_blocking(move || append_line(&path, &line))
                .await
                .unwrap_or_else(|e| Err(HeadError::WitnessUrl(format!("the writer stopped: {e}"))));
            failure = written.err();
        }
        if let (Some(url), Some(client)) = (&self.url, &self.client) {
            let sent = client
                .post(url)
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(serde_json::to_vec(head).unwrap_or_default())
                .send()
                .await
                .map_err(|e| HeadError::WitnessUrl(e.without_url().to_string()))
                .and_then(|r| {
                    if r.status().is_success() {
                        Ok(())
                    } else {
                        Err(HeadError::WitnessUrl(format!("answered {}", r.status())))
                    }
                });
            if let Err(e) = sent {
                failure.get_or_insert(e);
            }
        }
        failure.map_or(Ok(()), Err)
    }
}

fn append_line(path: &Path, line: &str) -> Result<(), HeadError> {
    use std::io::Write;
    let problem = |e: std::io::Error| HeadError::WitnessFile {
        path: path.to_owned(),
        problem: e.to_string(),
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(problem)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(problem)?;
    file.write_all(format!("{line}\n").as_bytes())
        .and_then(|()| file.sync_data())
        .map_err(problem)
}

/// Reads a witness file's heads (one JSON line each; a torn last line is ignored).
pub fn read_witness(path: &Path) -> Result<Vec<SignedHead>, HeadError> {
    let text = std::fs::read_to_string(path).map_err(|e| HeadError::WitnessFile {
        path: path.to_owned(),
        problem: e.to_string(),
    })?;
    let complete = text.rfind('\n').map_or("", |end| &text[..=end]);
    complete
        .lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_str(line).map_err(|_| HeadError::WitnessFile {
                path: path.to_owned(),
                problem: format!("line {} is not a signed head", i + 1),
            })
        })
        .collect()
}
