//! The base R4 structure (`base/r4-structure.json`), read into indexed types.

use std::collections::HashMap;
use std::path::Path;

use serde_json::{Map, Value};

use super::LoadError;
use super::format::Prim;
use super::terminology::Terminology;

/// What an element holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// A primitive.
    Prim(Prim),
    /// A complex type or backbone element: an index into [`Structure::types`].
    Complex(usize),
    /// A whole resource (`contained`).
    Resource,
}

/// One element of a type.
#[derive(Debug)]
pub(super) struct Element {
    /// The JSON name (`valueQuantity` for a choice).
    pub(super) name: Box<str>,
    /// The type's name as R4 spells it (`CodeableConcept`, `code`).
    pub(super) type_name: Box<str>,
    pub(super) kind: Kind,
    pub(super) array: bool,
    /// The choice group (`value` for `valueQuantity`).
    pub(super) choice: Option<Box<str>>,
    /// A required binding: an index into the terminology.
    pub(super) binding: Option<usize>,
    /// Resource types a Reference may point to (`None`: any).
    pub(super) targets: Option<Box<[Box<str>]>>,
    /// The value-set url and inline codes until [`Structure::resolve_bindings`].
    pending: Option<(String, Option<Vec<String>>)>,
}

/// What must be present in an object of a type (base min 1).
#[derive(Debug)]
pub(super) enum Required {
    /// One element, by index.
    Element(usize),
    /// One of a choice group, e.g. `medication`.
    Choice(Box<str>),
}

/// A complex type, backbone element or resource.
#[derive(Debug)]
pub(super) struct TypeDef {
    pub(super) name: Box<str>,
    pub(super) elements: Vec<Element>,
    index: HashMap<Box<str>, usize>,
    pub(super) required: Vec<Required>,
}

impl TypeDef {
    /// An element by JSON name.
    pub(super) fn element(&self, name: &str) -> Option<&Element> {
        self.index.get(name).map(|&i| &self.elements[i])
    }

    /// The elements of a choice group (`value` → `valueQuantity`, `valueString`, …).
    pub(super) fn choice<'a>(&'a self, group: &'a str) -> impl Iterator<Item = &'a Element> {
        self.elements
            .iter()
            .filter(move |e| e.choice.as_deref() == Some(group))
    }
}

/// Every type Concord knows.
#[derive(Debug)]
pub(super) struct Structure {
    pub(super) types: Vec<TypeDef>,
    by_name: HashMap<Box<str>, usize>,
    resources: Vec<usize>,
    /// `Element`: the shape of a primitive's `_name` sibling.
    pub(super) element_type: usize,
}

impl Structure {
    /// Reads the generated structure file.
    pub(super) fn from_json(path: &Path, json: &Value) -> Result<Self, LoadError> {
        let invalid = |message: String| LoadError::Invalid {
            path: path.to_owned(),
            message,
        };
        let types = json
            .get("types")
            .and_then(Value::as_object)
            .ok_or_else(|| invalid("no `types` object".into()))?;
        let by_name: HashMap<Box<str>, usize> = types
            .keys()
            .enumerate()
            .map(|(i, k)| (k.as_str().into(), i))
            .collect();
        let mut out = Vec::with_capacity(types.len());
        for (name, def) in types {
            out.push(type_def(name, def, &by_name, &invalid)?);
        }
        let resources = json
            .get("resources")
            .and_then(Value::as_array)
            .ok_or_else(|| invalid("no `resources` list".into()))?
            .iter()
            .map(|r| {
                r.as_str()
                    .and_then(|r| by_name.get(r).copied())
                    .ok_or_else(|| invalid(format!("resource `{r}` is not among the types")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let element_type = *by_name
            .get("Element")
            .ok_or_else(|| invalid("no `Element` type".into()))?;
        Ok(Structure {
            types: out,
            by_name,
            resources,
            element_type,
        })
    }

    /// Turns each element's value-set url (and inline codes) into a terminology index.
    pub(super) fn resolve_bindings(&mut self, terms: &mut Terminology) -> Result<(), LoadError> {
        for ty in &mut self.types {
            for e in &mut ty.elements {
                if let Some((url, codes)) = e.pending.take() {
                    let used_by = || format!("base R4 `{}.{}`", ty.name, e.name);
                    e.binding = Some(match codes {
                        Some(codes) => terms.inline(&url, codes),
                        None => terms.find(&url).ok_or_else(|| LoadError::MissingValueSet {
                            url: url.clone(),
                            used_by: used_by(),
                        })?,
                    });
                }
            }
        }
        Ok(())
    }

    /// A type by name.
    pub(super) fn type_named(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    /// A served resource type by name.
    pub(super) fn resource(&self, name: &str) -> Option<usize> {
        self.type_named(name).filter(|i| self.resources.contains(i))
    }

    /// The served resource types.
    pub(super) fn resource_names(&self) -> impl Iterator<Item = &str> {
        self.resources.iter().map(|&i| &*self.types[i].name)
    }
}

/// One type of the structure file: its elements, their index by JSON name, and what an
/// object of it must hold.
fn type_def(
    name: &str,
    def: &Value,
    by_name: &HashMap<Box<str>, usize>,
    invalid: &dyn Fn(String) -> LoadError,
) -> Result<TypeDef, LoadError> {
    let elements_json = def
        .get("elements")
        .and_then(Value::as_object)
        .ok_or_else(|| invalid(format!("type `{name}` has no `elements`")))?;
    let mut elements = Vec::with_capacity(elements_json.len());
    for (element, spec) in elements_json {
        elements.push(element_def(name, element, spec, by_name, invalid)?);
    }
    let required = requirements(elements_json, &elements);
    let index = elements
        .iter()
        .enumerate()
        .map(|(i, e)| (e.name.clone(), i))
        .collect();
    Ok(TypeDef {
        name: name.into(),
        elements,
        index,
        required,
    })
}

/// Element `element` of type `name` from its spec: its type (a primitive, a known complex
/// type or a whole resource), whether it is an array, its choice group, reference targets,
/// and its value set (or inline codes), kept pending until [`Structure::resolve_bindings`].
fn element_def(
    name: &str,
    element: &str,
    spec: &Value,
    by_name: &HashMap<Box<str>, usize>,
    invalid: &dyn Fn(String) -> LoadError,
) -> Result<Element, LoadError> {
    let text = |key: &str| spec.get(key).and_then(Value::as_str);
    let type_name =
        text("type").ok_or_else(|| invalid(format!("`{name}.{element}` has no `type`")))?;
    let kind =
        if type_name == "Resource" {
            Kind::Resource
        } else if let Some(p) = Prim::from_name(type_name) {
            Kind::Prim(p)
        } else {
            Kind::Complex(*by_name.get(type_name).ok_or_else(|| {
                invalid(format!("`{name}.{element}`: unknown type `{type_name}`"))
            })?)
        };
    let strings = |key: &str| {
        spec.get(key).and_then(Value::as_array).map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
    };
    let codes = strings("codes");
    let pending = match (text("valueSet"), codes) {
        (Some(url), codes) => Some((url.to_owned(), codes)),
        (None, Some(codes)) => Some((format!("{name}.{element}"), Some(codes))),
        (None, None) => None,
    };
    Ok(Element {
        name: element.into(),
        type_name: type_name.into(),
        kind,
        array: spec.get("array").and_then(Value::as_bool).unwrap_or(false),
        choice: text("choice").map(Into::into),
        binding: None,
        targets: strings("targets").map(|t| t.into_iter().map(String::into_boxed_str).collect()),
        pending,
    })
}

/// What an object of a type must hold: each element with a base `min` above 0, and each
/// choice group (once) one of whose elements has. `elements` are read from `elements_json`,
/// one for each, in the same order.
fn requirements(elements_json: &Map<String, Value>, elements: &[Element]) -> Vec<Required> {
    let mut required = Vec::new();
    for (i, (e, element)) in elements_json.values().zip(elements).enumerate() {
        if e.get("min").and_then(Value::as_u64).unwrap_or(0) == 0 {
            continue;
        }
        match &element.choice {
            None => required.push(Required::Element(i)),
            Some(group) => {
                if !required
                    .iter()
                    .any(|r| matches!(r, Required::Choice(g) if g == group))
                {
                    required.push(Required::Choice(group.clone()));
                }
            }
        }
    }
    required
}
