//! The canonical encoding of a record's `disclosed` list.
//!
//! A request for a whole record discloses tens of resources under one or two permits, so the
//! list names each permit (agreement, rule, emergency) once and each resource by its
//! reference and its permit's position:
//!
//! ```json
//! {"permits":[{"agreement":"dsa-northshire-direct-care","rule":"gp-to-community","emergency":false}],
//!  "resources":[["Observation/gp.o1",0],["Condition/gp.c1",0]]}
//! ```
//!
//! Records written before this form keep the list of one object per resource,
//! `[{"reference":…,"agreement":…,"rule":…,"emergency":…}]`; a record's hash is over its text
//! as stored, so those hashes hold, and both forms decode to the same [`Disclosure`]s in the
//! same order. Nothing disclosed is `[]` in both forms, so such records are written exactly as
//! before. A resource naming a permit that is not there is not a record.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeStruct, Serializer};
use serde::{Deserialize, Serialize};

use super::Disclosure;

/// One permit as the compact form names it.
#[derive(Serialize, Deserialize)]
pub(crate) struct Permit<A, R> {
    pub(crate) agreement: A,
    pub(crate) rule: R,
    pub(crate) emergency: bool,
}

/// Writes `disclosed` in the compact form (`[]` when nothing was disclosed).
pub(super) fn serialize<S: Serializer>(list: &[Disclosure], s: S) -> Result<S::Ok, S::Error> {
    if list.is_empty() {
        return s.collect_seq(list);
    }
    let mut permits: Vec<Permit<&str, &str>> = Vec::new();
    let mut resources: Vec<(&str, usize)> = Vec::with_capacity(list.len());
    for d in list {
        let found = permits.iter().position(|p| {
            p.agreement == &*d.agreement && p.rule == &*d.rule && p.emergency == d.emergency
        });
        let at = found.unwrap_or_else(|| {
            permits.push(Permit {
                agreement: &*d.agreement,
                rule: &*d.rule,
                emergency: d.emergency,
            });
            permits.len() - 1
        });
        resources.push((&d.reference, at));
    }
    let mut out = s.serialize_struct("Disclosed", 2)?;
    out.serialize_field("permits", &permits)?;
    out.serialize_field("resources", &resources)?;
    out.end()
}

/// Reads `disclosed` in either form.
pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Disclosure>, D::Error> {
    d.deserialize_any(Either::new(
        |permits: Vec<Permit<Arc<str>, Arc<str>>>, resources: Vec<(Arc<str>, usize)>| {
            resources
                .into_iter()
                .map(|(reference, at)| {
                    permits.get(at).map(|p| Disclosure {
                        reference,
                        agreement: p.agreement.clone(),
                        rule: p.rule.clone(),
                        emergency: p.emergency,
                    })
                })
                .collect::<Option<Vec<_>>>()
        },
    ))
}

/// A visitor for either form: a list is the earlier form, read element by element; a map is
/// the compact form, its permits and resources handed to the closure, which says `None` when
/// a resource names a permit that is not there. `audit verify` reads with it too, borrowing.
pub(crate) struct Either<T, P, R, F>(F, Reads<T, P, R>);

/// What an [`Either`] reads: the list's items, the permits and the resources.
type Reads<T, P, R> = PhantomData<fn() -> (T, P, R)>;

impl<T, P, R, F> Either<T, P, R, F> {
    /// A visitor that hands the compact form's permits and resources to `resolve`.
    pub(crate) fn new(resolve: F) -> Self {
        Either(resolve, PhantomData)
    }
}

impl<'de, T, P, R, F> Visitor<'de> for Either<T, P, R, F>
where
    T: Deserialize<'de>,
    P: Deserialize<'de>,
    R: Deserialize<'de>,
    F: FnOnce(Vec<P>, Vec<R>) -> Option<Vec<T>>,
{
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of disclosures, or their permits and resources")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(item) = seq.next_element()? {
            out.push(item);
        }
        Ok(out)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<T>, A::Error> {
        let mut permits: Option<Vec<P>> = None;
        let mut resources: Option<Vec<R>> = None;
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Permits if permits.is_none() => permits = Some(map.next_value()?),
                Key::Resources if resources.is_none() => resources = Some(map.next_value()?),
                Key::Permits => return Err(de::Error::duplicate_field("permits")),
                Key::Resources => return Err(de::Error::duplicate_field("resources")),
            }
        }
        let permits = permits.ok_or_else(|| de::Error::missing_field("permits"))?;
        let resources = resources.ok_or_else(|| de::Error::missing_field("resources"))?;
        (self.0)(permits, resources).ok_or_else(|| {
            de::Error::custom("a disclosed resource names a permit that is not there")
        })
    }
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "lowercase")]
enum Key {
    Permits,
    Resources,
}

/// A body as records were written before the compact form: `disclosed` as one object per
/// resource. For tests of records kept from then.
#[cfg(test)]
pub(crate) fn earlier_form(body: &super::Body) -> String {
    let mut v = serde_json::to_value(body).expect("a body encodes");
    v["disclosed"] = serde_json::json!(body.disclosed);
    serde_json::to_string(&v).expect("a body encodes")
}

#[cfg(test)]
mod tests;
