//! Building searchset Bundles.
//!
//! A Bundle is written straight to JSON text: shared resources contribute the text they
//! already hold, so a large answer is assembled by copying rather than re-serialising.

use serde_json::{Value, json};

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
    links: Vec<Value>,
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
        self.links.push(json!({"relation": relation, "url": url}));
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
        let mut head = serde_json::Map::new();
        head.insert("resourceType".into(), "Bundle".into());
        head.insert("id".into(), uuid::Uuid::new_v4().to_string().into());
        head.insert("meta".into(), json!({"lastUpdated": super::now_instant()}));
        head.insert("type".into(), "searchset".into());
        if let Some(total) = self.total {
            head.insert("total".into(), total.into());
        }
        if !self.links.is_empty() {
            head.insert("link".into(), Value::Array(self.links.clone()));
        }
        let shared_bytes: usize = self
            .entries
            .iter()
            .map(|(b, _)| {
                if let Body::Shared(r) = b {
                    r.json().len() + 160
                } else {
                    0
                }
            })
            .sum();
        let mut out = Vec::with_capacity(shared_bytes + 1024);
        // INVARIANT: serialising a Value into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut out, &Value::Object(head));
        if self.entries.is_empty() {
            return out;
        }
        out.pop(); // the closing brace; entries follow
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
                Body::Owned(v) => {
                    let _ = serde_json::to_writer(&mut out, v);
                }
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

/// True when `text` goes into a JSON string as it is (no quote, backslash or control
/// character to escape).
fn plain(text: &str) -> bool {
    !text.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fhir::resource::Resource;

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
    fn an_empty_bundle_has_no_entry_array() {
        let mut b = Searchset::new("http://gw/fhir");
        b.total(0);
        let parsed: Value = serde_json::from_slice(&b.to_json()).expect("valid JSON");
        assert!(parsed.get("entry").is_none());
        assert_eq!(parsed["total"], 0);
    }
}
