//! Value sets, expanded once at load into hash sets from the code systems present.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use serde_json::Value;

use super::LoadError;

/// How deep value sets may include value sets.
const MAX_INCLUDE_DEPTH: usize = 8;

/// An expanded value set.
#[derive(Debug, Default)]
pub(super) struct ValueSet {
    /// Canonical URL (or, for a base `code` enumeration without one, the element path).
    pub(super) url: String,
    /// Listed codes by system (`""` for the codes of a base `code` element).
    codes: HashMap<String, HashSet<String>>,
    /// Systems whose every code is in (not held here, or included by a filter).
    whole: Vec<String>,
}

impl ValueSet {
    /// Whether a bare `code` is in. `None` when only systems are known.
    pub(super) fn has_code(&self, code: &str) -> Option<bool> {
        if self.codes.values().any(|c| c.contains(code)) {
            Some(true)
        } else if self.whole.is_empty() {
            Some(false)
        } else {
            None
        }
    }

    /// Whether a system and code pair is in.
    pub(super) fn has_coding(&self, system: Option<&str>, code: Option<&str>) -> bool {
        let Some(system) = system else {
            return false;
        };
        if self.whole.iter().any(|w| w == system) {
            return true;
        }
        match (self.codes.get(system), code) {
            (Some(codes), Some(code)) => codes.contains(code),
            _ => false,
        }
    }

    /// What is expected, for messages: the codes when few, else the value set.
    pub(super) fn expected(&self) -> String {
        let count: usize = self.codes.values().map(HashSet::len).sum();
        if self.whole.is_empty() && count <= 12 {
            let mut codes: Vec<String> = self
                .codes
                .iter()
                .flat_map(|(system, codes)| {
                    codes.iter().map(move |c| {
                        if system.is_empty() {
                            c.clone()
                        } else {
                            format!("{system}|{c}")
                        }
                    })
                })
                .collect();
            codes.sort();
            format!("one of {}", codes.join(", "))
        } else if self.codes.is_empty() {
            format!("a code of {}", self.whole.join(" or "))
        } else {
            format!("a code of value set {}", self.url)
        }
    }
}

/// Every value set, by index.
#[derive(Debug, Default)]
pub(super) struct Terminology {
    sets: Vec<ValueSet>,
    by_url: HashMap<String, usize>,
}

impl Terminology {
    /// Expands every value set from the code systems present.
    pub(super) fn load(
        value_sets: &[(PathBuf, Value)],
        code_systems: &[(PathBuf, Value)],
    ) -> Result<Self, LoadError> {
        let mut systems: HashMap<&str, Vec<&str>> = HashMap::new();
        for (path, cs) in code_systems {
            let url = canonical(path, cs)?;
            if cs.get("content").and_then(Value::as_str) != Some("complete") {
                continue;
            }
            let mut codes = Vec::new();
            collect_concepts(cs.get("concept"), &mut codes, 0);
            systems.insert(url, codes);
        }
        let mut raw: HashMap<&str, (&PathBuf, &Value)> = HashMap::new();
        for (path, vs) in value_sets {
            raw.insert(canonical(path, vs)?, (path, vs));
        }
        let mut out = Terminology::default();
        let mut urls: Vec<&str> = raw.keys().copied().collect();
        urls.sort_unstable();
        for url in urls {
            let mut set = ValueSet {
                url: url.to_owned(),
                ..ValueSet::default()
            };
            expand(url, &raw, &systems, &mut set, 0)?;
            out.by_url.insert(url.to_owned(), out.sets.len());
            out.sets.push(set);
        }
        Ok(out)
    }

    /// A value set by canonical URL (a `|version` is ignored).
    pub(super) fn find(&self, url: &str) -> Option<usize> {
        self.by_url
            .get(url.split('|').next().unwrap_or(url))
            .copied()
    }

    /// Adds the inline codes of a base `code` element; returns its index.
    pub(super) fn inline(&mut self, url: &str, codes: Vec<String>) -> usize {
        self.sets.push(ValueSet {
            url: url.to_owned(),
            codes: HashMap::from([(String::new(), codes.into_iter().collect())]),
            whole: Vec::new(),
        });
        self.sets.len() - 1
    }

    /// A value set by index.
    pub(super) fn get(&self, index: usize) -> &ValueSet {
        &self.sets[index]
    }
}

fn canonical<'a>(path: &std::path::Path, resource: &'a Value) -> Result<&'a str, LoadError> {
    resource
        .get("url")
        .and_then(Value::as_str)
        .ok_or_else(|| LoadError::Invalid {
            path: path.to_owned(),
            message: "no `url`".into(),
        })
}

fn collect_concepts<'a>(concepts: Option<&'a Value>, out: &mut Vec<&'a str>, depth: usize) {
    if depth > MAX_INCLUDE_DEPTH * 4 {
        return;
    }
    for c in concepts.and_then(Value::as_array).into_iter().flatten() {
        if let Some(code) = c.get("code").and_then(Value::as_str) {
            out.push(code);
        }
        collect_concepts(c.get("concept"), out, depth + 1);
    }
}

fn expand(
    url: &str,
    raw: &HashMap<&str, (&PathBuf, &Value)>,
    systems: &HashMap<&str, Vec<&str>>,
    set: &mut ValueSet,
    depth: usize,
) -> Result<(), LoadError> {
    let Some((path, vs)) = raw.get(url.split('|').next().unwrap_or(url)) else {
        return Err(LoadError::MissingValueSet {
            url: url.to_owned(),
            used_by: format!("value set `{}`", set.url),
        });
    };
    if depth > MAX_INCLUDE_DEPTH {
        return Err(LoadError::Invalid {
            path: (*path).clone(),
            message: "value sets include each other too deeply (a cycle?)".into(),
        });
    }
    let includes = |key: &str| {
        vs.pointer(&format!("/compose/{key}"))
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
    };
    for include in includes("include") {
        for nested in include
            .get("valueSet")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            expand(nested, raw, systems, set, depth + 1)?;
        }
        let Some(system) = include.get("system").and_then(Value::as_str) else {
            continue;
        };
        let listed: Vec<&str> = include
            .get("concept")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|c| c.get("code").and_then(Value::as_str))
            .collect();
        let filtered = include.get("filter").is_some();
        match (listed.is_empty(), filtered, systems.get(system)) {
            (false, _, _) => set
                .codes
                .entry(system.to_owned())
                .or_default()
                .extend(listed.iter().map(|c| (*c).to_owned())),
            (true, false, Some(all)) => set
                .codes
                .entry(system.to_owned())
                .or_default()
                .extend(all.iter().map(|c| (*c).to_owned())),
            (true, _, _) => set.whole.push(system.to_owned()),
        }
    }
    for exclude in includes("exclude") {
        let (Some(system), Some(concepts)) = (
            exclude.get("system").and_then(Value::as_str),
            exclude.get("concept").and_then(Value::as_array),
        ) else {
            continue;
        };
        if let Some(codes) = set.codes.get_mut(system) {
            for c in concepts
                .iter()
                .filter_map(|c| c.get("code").and_then(Value::as_str))
            {
                codes.remove(c);
            }
        }
    }
    Ok(())
}
