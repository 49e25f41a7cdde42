//! Building searchset Bundles.
//!
//! A Bundle is written straight to JSON text: shared resources contribute the text they
//! already hold, so a large answer is assembled by copying rather than re-serialising.

use std::io::Write as _;

use serde_json::Value;

use super::resource::SharedResource;

/// How an entry came to be in a searchset (`Bundle.entry.search.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchMode {
    /// It matched the search.
    Match,
    /// Included because a match refers to it.
    Include,
    /// An OperationOutcome about the search itself.
    Outcome,
}

impl SearchMode {
    fn code(self) -> &'static str {
        match self {
            SearchMode::Match => "match",
            SearchMode::Include => "include",
            SearchMode::Outcome => "outcome",
        }
    }
}

#[derive(Debug)]
enum Body {
    Owned(Value),
    Shared(SharedResource),
}

impl Body {
    fn get(&self, key: &str) -> Option<&str> {
        let value = match self {
            Body::Owned(v) => v,
            Body::Shared(r) => r.value(),
        };
        value.get(key).and_then(Value::as_str)
    }
}

/// A searchset Bundle under construction.
#[derive(Debug)]
pub struct Searchset {
    base: String,
    entries: Vec<(Body, SearchMode)>,
    /// `(relation, url)` of each link.
    links: Vec<(String, String)>,
    total: Option<usize>,
}

impl Searchset {
    /// A new, empty searchset; `base` is the gateway's FHIR base URL, for `fullUrl`s.
    pub fn new(base: &str) -> Self {
        Self {
            base: base.trim_end_matches('/').to_owned(),
            entries: Vec::new(),
            links: Vec::new(),
            total: None,
        }
    }

    /// Sets `Bundle.total`.
    pub fn total(&mut self, total: usize) -> &mut Self {
        self.total = Some(total);
        self
    }

    /// Adds a link (`self`, `next`).
    pub fn link(&mut self, relation: &str, url: String) -> &mut Self {
        self.links.push((relation.to_owned(), url));
        self
    }

    /// Adds an entry made for this answer.
    pub fn entry(&mut self, resource: Value, mode: SearchMode) -> &mut Self {
        self.entries.push((Body::Owned(resource), mode));
        self
    }

    /// Adds a shared resource.
    pub fn shared(&mut self, resource: SharedResource, mode: SearchMode) -> &mut Self {
        self.entries.push((Body::Shared(resource), mode));
        self
    }

    /// The finished Bundle as compact JSON.
    pub fn to_json(&self) -> Vec<u8> {
        // Entries made for this answer (the merged Patient, OperationOutcomes) as text first,
        // so that the whole Bundle's length is known before it is written: a buffer that grew
        // on the way would be copied each time it did.
        let owned: Vec<Vec<u8>> = self
            .entries
            .iter()
            .filter_map(|(b, _)| match b {
                // INVARIANT: serialising a Value into a Vec cannot fail.
                Body::Owned(v) => Some(serde_json::to_vec(v).unwrap_or_default()),
                Body::Shared(_) => None,
            })
            .collect();
        let entry_bytes: usize = self
            .entries
            .iter()
            .map(|(b, _)| match b {
                Body::Shared(r) => r.json().len(),
                Body::Owned(_) => 0,
            })
            .chain(owned.iter().map(Vec::len))
            .map(|n| n + self.base.len() + 160)
            .sum();
        let link_bytes: usize = self.links.iter().map(|(r, u)| r.len() + u.len() + 32).sum();
        let mut out = Vec::with_capacity(entry_bytes + link_bytes + 1024);
        let mut owned = owned.into_iter();
        // The head, written as `serde_json` wrote the same fields in this order (a map that
        // keeps insertion order): `resourceType`, `id`, `meta`, `type`, `total`, `link`.
        out.extend_from_slice(br#"{"resourceType":"Bundle","id":""#);
        let mut id = uuid::Uuid::encode_buffer();
        out.extend_from_slice(
            uuid::Uuid::new_v4()
                .hyphenated()
                .encode_lower(&mut id)
                .as_bytes(),
        );
        out.extend_from_slice(br#"","meta":{"lastUpdated":"#);
        write_str(&mut out, &super::now_instant());
        out.extend_from_slice(br#"},"type":"searchset""#);
        if let Some(total) = self.total {
            out.extend_from_slice(br#","total":"#);
            // INVARIANT: writing into a Vec cannot fail.
            let _ = write!(out, "{total}");
        }
        if !self.links.is_empty() {
            out.extend_from_slice(br#","link":["#);
            for (i, (relation, url)) in self.links.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(br#"{"relation":"#);
                write_str(&mut out, relation);
                out.extend_from_slice(br#","url":"#);
                write_str(&mut out, url);
                out.push(b'}');
            }
            out.push(b']');
        }
        if self.entries.is_empty() {
            out.push(b'}');
            return out;
        }
        // Entries follow.
        // `"{base}` as JSON text, without its closing quote: each shared entry's `fullUrl`
        // continues it.
        let mut base = serde_json::to_vec(&self.base).unwrap_or_default();
        base.pop();
        out.extend_from_slice(br#","entry":["#);
        for (i, (body, mode)) in self.entries.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.push(b'{');
            match body {
                // A type and id with nothing to escape are copied as they are (no lookups).
                Body::Shared(r) if r.has_type_and_id() && plain(r.reference()) => {
                    out.extend_from_slice(br#""fullUrl":"#);
                    out.extend_from_slice(&base);
                    out.push(b'/');
                    out.extend_from_slice(r.reference().as_bytes());
                    out.extend_from_slice(br#"","#);
                }
                _ => {
                    if let (Some(t), Some(id)) = (body.get("resourceType"), body.get("id")) {
                        out.extend_from_slice(br#""fullUrl":"#);
                        let _ = serde_json::to_writer(&mut out, &format!("{}/{t}/{id}", self.base));
                        out.push(b',');
                    }
                }
            }
            out.extend_from_slice(br#""resource":"#);
            match body {
                Body::Owned(_) => out.extend_from_slice(&owned.next().unwrap_or_default()),
                Body::Shared(r) => out.extend_from_slice(r.json().as_bytes()),
            }
            out.extend_from_slice(br#","search":{"mode":""#);
            out.extend_from_slice(mode.code().as_bytes());
            out.extend_from_slice(br#""}}"#);
        }
        out.extend_from_slice(b"]}");
        out
    }
}

/// `text` as a JSON string, quoted and escaped as `serde_json` does.
fn write_str(out: &mut Vec<u8>, text: &str) {
    if plain(text) {
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    } else {
        // INVARIANT: serialising a string into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, text);
    }
}

/// True when `text` goes into a JSON string as it is (no quote, backslash or control
/// character to escape).
fn plain(text: &str) -> bool {
    !text.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fhir::resource::Resource;
    use serde_json::json;

    #[test]
    fn writes_a_valid_bundle_from_owned_and_shared_entries() {
        let mut b = Searchset::new("http://gw/fhir/");
        b.total(2)
            .link("self", "http://gw/fhir/Observation?patient=x".into());
        b.shared(Resource::shared(json!({"resourceType": "Observation", "id": "gp.1", "note": [{"text": "quote \" and \\ slash"}]})), SearchMode::Match);
        b.entry(
            json!({"resourceType": "OperationOutcome", "issue": []}),
            SearchMode::Outcome,
        );
        let parsed: Value = serde_json::from_slice(&b.to_json()).expect("valid JSON");
        assert_eq!(parsed["resourceType"], "Bundle");
        assert_eq!(parsed["total"], 2);
        assert_eq!(
            parsed["entry"][0]["fullUrl"],
            "http://gw/fhir/Observation/gp.1"
        );
        assert_eq!(
            parsed["entry"][0]["resource"]["note"][0]["text"],
            "quote \" and \\ slash"
        );
        assert_eq!(parsed["entry"][0]["search"]["mode"], "match");
        assert!(parsed["entry"][1].get("fullUrl").is_none());
        assert_eq!(parsed["entry"][1]["search"]["mode"], "outcome");
    }

    #[test]
    fn the_head_is_written_as_serde_json_writes_it() {
        let mut b = Searchset::new("http://gw/fhir");
        b.total(12)
            .link(
                "self",
                "http://gw/fhir/Observation?code=a\"b\\c\u{1}d".into(),
            )
            .link("next", "http://gw/fhir/Observation?_cursor=x".into());
        b.entry(
            json!({"resourceType": "Patient", "id": "p1", "name": [{"text": "A \"B\""}]}),
            SearchMode::Match,
        );
        b.shared(
            Resource::shared(json!({"resourceType": "Observation", "id": "gp.1"})),
            SearchMode::Match,
        );
        b.entry(
            json!({"resourceType": "OperationOutcome", "issue": []}),
            SearchMode::Outcome,
        );
        let bytes = b.to_json();
        let parsed: Value = serde_json::from_slice(&bytes).expect("valid JSON");
        // Key order kept (`preserve_order`): the same bytes as serde_json's own writing.
        assert_eq!(serde_json::to_vec(&parsed).expect("serialises"), bytes);
        let keys: Vec<&str> = parsed
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "resourceType",
                "id",
                "meta",
                "type",
                "total",
                "link",
                "entry"
            ]
        );
        assert_eq!(
            parsed["link"][0]["url"],
            "http://gw/fhir/Observation?code=a\"b\\c\u{1}d"
        );
        assert_eq!(parsed["link"][1]["relation"], "next");
        assert_eq!(parsed["entry"][0]["fullUrl"], "http://gw/fhir/Patient/p1");
        assert_eq!(parsed["entry"][0]["resource"]["name"][0]["text"], "A \"B\"");
        assert_eq!(parsed["entry"][1]["resource"]["id"], "gp.1");
        assert_eq!(
            parsed["entry"][2]["resource"]["resourceType"],
            "OperationOutcome"
        );
        let empty = Searchset::new("http://gw/fhir").to_json();
        let parsed: Value = serde_json::from_slice(&empty).expect("valid JSON");
        assert_eq!(serde_json::to_vec(&parsed).expect("serialises"), empty);
        assert!(parsed.get("total").is_none() && parsed.get("link").is_none());
    }

    #[test]
    fn an_empty_bundle_has_no_entry_array() {
        let mut b = Searchset::new("http://gw/fhir");
        b.total(0);
        let parsed: Value = serde_json::from_slice(&b.to_json()).expect("valid JSON");
        assert!(parsed.get("entry").is_none());
        assert_eq!(parsed["total"], 0);
    }
}
