//! Reading FHIR JSON that callers send, strictly.
//!
//! FHIR's JSON format forbids an object with the same property twice; a lenient parser keeps
//! the last, so `"status":"active","status":"inactive"` would mean whatever the parser picked
//! while a reviewer reading the body sees the first. And a resource with a
//! `modifierExtension` (or `implicitRules`) the receiver does not understand must be refused,
//! because those change the meaning of the rest of it. Both are refused here, naming the
//! element.

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// Why a body cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    /// Not JSON at all (or nested deeper than the parser allows).
    #[error("the body is not valid JSON")]
    Syntax,
    /// The same element twice in one object.
    #[error("element `{0}` appears more than once; FHIR JSON allows each element once")]
    Duplicate(String),
    /// A modifier the gateway does not understand.
    #[error(
        "element `{0}` is a modifier this gateway does not understand, so the resource cannot be accepted"
    )]
    Modifier(String),
}

/// Parses a body, refusing duplicate elements at any depth.
pub fn parse_strict(bytes: &[u8]) -> Result<Value, JsonError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    match (Unique { path: "" }).deserialize(&mut deserializer) {
        Ok(()) => {}
        Err(e) if e.is_data() => {
            let message = e.to_string();
            let element = message
                .strip_prefix(DUPLICATE)
                .and_then(|rest| rest.split(DUPLICATE_END).next())
                .unwrap_or_default();
            return Err(JsonError::Duplicate(element.to_owned()));
        }
        Err(_) => return Err(JsonError::Syntax),
    }
    serde_json::from_slice(bytes).map_err(|_| JsonError::Syntax)
}

/// Refuses a resource that carries a `modifierExtension` anywhere, or `implicitRules`: the
/// gateway understands no modifier extension and no implicit rules. Names the first found.
pub fn refuse_modifiers(resource: &Value) -> Result<(), JsonError> {
    fn walk(value: &Value, path: &mut String) -> Result<(), JsonError> {
        match value {
            Value::Object(map) => {
                for (key, child) in map {
                    let len = path.len();
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(key);
                    if key == "modifierExtension" || (len == 0 && key == "implicitRules") {
                        return Err(JsonError::Modifier(path.clone()));
                    }
                    walk(child, path)?;
                    path.truncate(len);
                }
                Ok(())
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let len = path.len();
                    path.push_str(&format!("[{i}]"));
                    walk(item, path)?;
                    path.truncate(len);
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
    walk(resource, &mut String::new())
}

/// Longest element path kept for a message; deeper or longer ones end in `…`, so that a
/// hostile body's paths cost bounded memory.
const MAX_PATH: usize = 200;

fn child(path: &str, separator: &str, name: &str) -> String {
    if path.len() >= MAX_PATH {
        return path.to_owned();
    }
    let mut out = format!("{path}{separator}{name}");
    if out.len() > MAX_PATH {
        let mut cut = MAX_PATH;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push('…');
    }
    out
}

/// Removes what FHIR forbids in JSON: empty (or blank) strings, and objects and arrays left
/// empty, at any depth. An extension left with only its `url` loses its meaning, so it goes
/// too.
pub fn prune_empty(value: &mut Value) {
    fn empty(value: &Value) -> bool {
        match value {
            Value::String(s) => s.trim().is_empty(),
            Value::Array(items) => items.is_empty(),
            Value::Object(map) => map.is_empty() || (map.len() == 1 && map.contains_key("url")),
            _ => false,
        }
    }
    match value {
        Value::Object(map) => {
            for child in map.values_mut() {
                prune_empty(child);
            }
            map.retain(|_, child| !empty(child));
        }
        Value::Array(items) => {
            for child in items.iter_mut() {
                prune_empty(child);
            }
            items.retain(|child| !empty(child));
        }
        _ => {}
    }
}

const DUPLICATE: &str = "duplicate element `";
const DUPLICATE_END: &str = "`";

/// Walks a JSON document checking that no object repeats a key; `path` is where it is.
struct Unique<'a> {
    path: &'a str,
}

impl<'de> DeserializeSeed<'de> for Unique<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Unique<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JSON")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = child(self.path, if self.path.is_empty() { "" } else { "." }, &key);
            if !seen.insert(key) {
                return Err(de::Error::custom(format!(
                    "{DUPLICATE}{path}{DUPLICATE_END}"
                )));
            }
            map.next_value_seed(Unique { path: &path })?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0_usize;
        loop {
            let path = child(self.path, "", &format!("[{i}]"));
            if seq.next_element_seed(Unique { path: &path })?.is_none() {
                return Ok(());
            }
            i += 1;
        }
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_refused_at_any_depth_naming_the_element() {
        assert_eq!(
            parse_strict(br#"{"status":"active","status":"inactive"}"#),
            Err(JsonError::Duplicate("status".into()))
        );
        assert_eq!(
            parse_strict(br#"{"provision":{"actor":[{"role":{},"role":{}}]}}"#),
            Err(JsonError::Duplicate("provision.actor[0].role".into()))
        );
        let ok = parse_strict(br#"{"a":[{"b":1.50},{"b":2}],"c":{"b":null}}"#).expect("valid");
        assert_eq!(
            ok["a"][0]["b"].to_string(),
            "1.50",
            "decimals kept as written"
        );
    }

    #[test]
    fn broken_or_too_deep_json_is_a_syntax_error() {
        for bad in [&b"{"[..], b"", b"{\"a\":}", b"[1,]"] {
            assert_eq!(parse_strict(bad), Err(JsonError::Syntax));
        }
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(parse_strict(deep.as_bytes()), Err(JsonError::Syntax));
    }

    #[test]
    fn empty_values_are_pruned_at_any_depth() {
        let mut v: Value = serde_json::from_str(
            r#"{"a":"","b":" ","c":[],"d":{},"e":[{"who":{"identifier":{"system":"s","value":""}}}],
                "f":{"url":"x","valueString":""},"g":0,"h":false,"i":"kept"}"#,
        )
        .expect("json");
        prune_empty(&mut v);
        assert_eq!(
            v,
            serde_json::json!({"e":[{"who":{"identifier":{"system":"s"}}}],"g":0,"h":false,"i":"kept"})
        );
    }

    #[test]
    fn modifiers_are_refused_naming_where() {
        let v: Value = serde_json::from_str(
            r#"{"resourceType":"Consent","provision":{"actor":[{"modifierExtension":[{"url":"x"}]}]}}"#,
        )
        .expect("json");
        assert_eq!(
            refuse_modifiers(&v),
            Err(JsonError::Modifier(
                "provision.actor[0].modifierExtension".into()
            ))
        );
        let v: Value =
            serde_json::from_str(r#"{"resourceType":"Consent","implicitRules":"http://x"}"#)
                .expect("json");
        assert_eq!(
            refuse_modifiers(&v),
            Err(JsonError::Modifier("implicitRules".into()))
        );
        let v: Value = serde_json::from_str(r#"{"extension":[{"url":"x"}]}"#).expect("json");
        assert_eq!(refuse_modifiers(&v), Ok(()));
    }
}
