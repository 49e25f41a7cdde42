//! Building searchset Bundles.

use serde_json::{Map, Value, json};

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

/// A searchset Bundle under construction.
#[derive(Debug)]
pub struct Searchset {
    base: String,
    entries: Vec<Value>,
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

    /// Adds an entry; resources with a type and id get a `fullUrl` on the gateway.
    pub fn entry(&mut self, resource: Value, mode: SearchMode) -> &mut Self {
        let mut entry = Map::new();
        if let (Some(t), Some(id)) = (
            resource.get("resourceType").and_then(Value::as_str),
            resource.get("id").and_then(Value::as_str),
        ) {
            entry.insert(
                "fullUrl".into(),
                Value::String(format!("{}/{t}/{id}", self.base)),
            );
        }
        entry.insert("resource".into(), resource);
        entry.insert("search".into(), json!({"mode": mode.code()}));
        self.entries.push(Value::Object(entry));
        self
    }

    /// The finished Bundle.
    pub fn build(self) -> Value {
        let mut bundle = Map::new();
        bundle.insert("resourceType".into(), "Bundle".into());
        bundle.insert("id".into(), uuid::Uuid::new_v4().to_string().into());
        bundle.insert(
            "meta".into(),
            json!({"lastUpdated": jiff::Timestamp::now().to_string()}),
        );
        bundle.insert("type".into(), "searchset".into());
        if let Some(total) = self.total {
            bundle.insert("total".into(), total.into());
        }
        if !self.links.is_empty() {
            bundle.insert("link".into(), Value::Array(self.links));
        }
        if !self.entries.is_empty() {
            bundle.insert("entry".into(), Value::Array(self.entries));
        }
        Value::Object(bundle)
    }
}
