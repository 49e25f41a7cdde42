//! A profile's differential, compiled into a tree of constraints that follows the resource's
//! element tree: one [`Node`] per constrained element (choice elements under their group
//! name, `value` for `value[x]`), slices under their sliced element.

use std::path::Path;

use serde_json::Value;

use super::base::{Kind, Structure};
use super::terminology::Terminology;
use super::{LoadError, Profile};

/// The canonical base of the FHIR core StructureDefinitions.
const CORE_BASE: &str = "http://hl7.org/fhir/StructureDefinition/";

/// The constraints of one element (all optional).
#[derive(Debug, Default)]
pub(super) struct Node {
    /// Differential `min`, when given.
    pub(super) min: Option<u32>,
    /// Differential `max`, when given and not `*`.
    pub(super) max: Option<u32>,
    /// `fixed[x]`: the value must be exactly this.
    pub(super) fixed: Option<Value>,
    /// `pattern[x]`: the value must contain this.
    pub(super) pattern: Option<Value>,
    /// A required binding: an index into the terminology.
    pub(super) binding: Option<usize>,
    /// `type.targetProfile` of a Reference, as resource types.
    pub(super) targets: Option<Box<[Box<str>]>>,
    /// Constrained child elements by JSON name (or choice group).
    pub(super) children: Vec<(Box<str>, Node)>,
    /// Named slices of this (array) element, in differential order.
    pub(super) slices: Vec<Slice>,
    /// `slicing.rules = closed`: every item must fall in a slice.
    pub(super) closed: bool,
    discriminators: Vec<Box<str>>,
}

/// One slice.
#[derive(Debug)]
pub(super) struct Slice {
    pub(super) name: Box<str>,
    /// The slice's cardinality (`min`, `max`) and the constraints on its items.
    pub(super) node: Node,
    /// How items are told to be in it; `None` when Concord cannot tell (not checked).
    pub(super) matcher: Option<Matcher>,
}

/// How an item is recognised as a member of a slice.
#[derive(Debug)]
pub(super) enum Matcher {
    /// The value at a path (`system`) is (`fixed`) or contains (`pattern`) this value.
    Value {
        path: Box<[Box<str>]>,
        value: Value,
        pattern: bool,
    },
    /// An extension with this `url`.
    Url(Box<str>),
}

impl Node {
    /// A child node by JSON name or choice group.
    pub(super) fn child(&self, name: &str) -> Option<&Node> {
        self.children
            .iter()
            .find(|(k, _)| &**k == name)
            .map(|(_, n)| n)
    }

    fn child_mut(&mut self, name: &str) -> &mut Node {
        let at = match self.children.iter().position(|(k, _)| &**k == name) {
            Some(at) => at,
            None => {
                self.children.push((name.into(), Node::default()));
                self.children.len() - 1
            }
        };
        &mut self.children[at].1
    }

    fn slice_mut(&mut self, name: &str) -> &mut Slice {
        let at = match self.slices.iter().position(|s| &*s.name == name) {
            Some(at) => at,
            None => {
                self.slices.push(Slice {
                    name: name.into(),
                    node: Node::default(),
                    matcher: None,
                });
                self.slices.len() - 1
            }
        };
        &mut self.slices[at]
    }

    /// After the whole differential is read: each slice's matcher from its discriminators.
    fn finish(&mut self) {
        for (_, child) in &mut self.children {
            child.finish();
        }
        for slice in &mut self.slices {
            slice.node.finish();
            if slice.matcher.is_some() {
                continue;
            }
            for path in &self.discriminators {
                let mut node = Some(&slice.node);
                for step in path.split('.') {
                    node = node.and_then(|n| n.child(step));
                }
                let value = node.and_then(|n| {
                    n.fixed
                        .clone()
                        .map(|v| (v, false))
                        .or_else(|| n.pattern.clone().map(|v| (v, true)))
                });
                if let Some((value, pattern)) = value {
                    slice.matcher = Some(Matcher::Value {
                        path: path.split('.').map(Into::into).collect(),
                        value,
                        pattern,
                    });
                    break;
                }
            }
        }
    }
}

/// Compiles one StructureDefinition.
pub(super) fn profile(
    path: &Path,
    json: &Value,
    base: &Structure,
    terms: &mut Terminology,
) -> Result<Profile, LoadError> {
    let invalid = |message: String| LoadError::Invalid {
        path: path.to_owned(),
        message,
    };
    let text = |key: &str| json.get(key).and_then(Value::as_str);
    let url = text("url").ok_or_else(|| invalid("no `url`".into()))?;
    let resource_type = text("type").ok_or_else(|| invalid("no `type`".into()))?;
    let Some(root_type) = base.resource(resource_type) else {
        return Err(invalid(format!(
            "profiles a `{resource_type}`, which is not a resource type Concord serves"
        )));
    };
    let expected_base = format!("{CORE_BASE}{resource_type}");
    if text("baseDefinition") != Some(expected_base.as_str()) {
        return Err(invalid(format!(
            "derives from `{}`; only profiles of a core resource ({expected_base}) are supported",
            text("baseDefinition").unwrap_or("nothing")
        )));
    }
    let elements = json
        .pointer("/differential/element")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid("no `differential.element` list".into()))?;
    let mut root = Node::default();
    for element in elements {
        let id = element
            .get("id")
            .or_else(|| element.get("path"))
            .and_then(Value::as_str)
            .ok_or_else(|| invalid("an element without `id` or `path`".into()))?;
        let fail = |message: String| LoadError::Element {
            path: path.to_owned(),
            element: id.to_owned(),
            message,
        };
        if let Some(node) = node_for(
            &mut root,
            element,
            id,
            resource_type,
            root_type,
            base,
            &fail,
        )? {
            apply(element, node, terms, &fail, id)?;
        }
    }
    root.finish();
    Ok(Profile {
        url: url.to_owned(),
        resource_type: resource_type.to_owned(),
        root,
    })
}

/// The node a differential element's constraints go on, found (or made) by walking its `id`
/// (`Observation.code.coding:snomed.system`) down the base types from the profiled resource:
/// a child node for each element, a slice's node for each `:slice`. `None` when Concord does
/// not check what the element constrains: the contents of an extension slice, or anything
/// below a primitive.
fn node_for<'n>(
    root: &'n mut Node,
    element: &Value,
    id: &str,
    resource_type: &str,
    root_type: usize,
    base: &Structure,
    fail: &dyn Fn(String) -> LoadError,
) -> Result<Option<&'n mut Node>, LoadError> {
    let mut segments = id.split('.');
    if segments.next() != Some(resource_type) {
        return Err(fail(format!("does not start with `{resource_type}`")));
    }
    let mut node = root;
    let mut current = Some(root_type);
    let mut extension_slice = false;
    for segment in segments {
        if extension_slice {
            // INVARIANT: extension contents are not checked (see the module docs).
            return Ok(None);
        }
        let (name, slice) = match segment.split_once(':') {
            Some((name, slice)) => (name, Some(slice)),
            None => (segment, None),
        };
        let Some(ty) = current else {
            // Below a primitive only its extensions (`_name.extension`) can follow.
            return Ok(None);
        };
        let ty = &base.types[ty];
        let key = name.strip_suffix("[x]");
        let found = match key {
            Some(group) => ty.choice(group).next(),
            None => ty.element(name),
        };
        let Some(found) = found else {
            return Err(fail(format!("no element `{name}` in R4 `{}`", ty.name)));
        };
        current = match found.kind {
            Kind::Complex(i) => Some(i),
            Kind::Prim(_) | Kind::Resource => None,
        };
        node = node.child_mut(key.unwrap_or(name));
        if let (Some(slice), None) = (slice, key) {
            let extension = matches!(name, "extension" | "modifierExtension");
            let slice = node.slice_mut(slice);
            if extension {
                extension_slice = true;
                if let Some(url) = element.pointer("/type/0/profile/0").and_then(Value::as_str) {
                    slice.matcher = Some(Matcher::Url(url.into()));
                }
            }
            node = &mut slice.node;
        }
    }
    Ok(Some(node))
}

/// Copies one differential element's constraints onto its node.
fn apply(
    element: &Value,
    node: &mut Node,
    terms: &Terminology,
    fail: &dyn Fn(String) -> LoadError,
    id: &str,
) -> Result<(), LoadError> {
    if let Some(min) = element.get("min") {
        let min = min
            .as_u64()
            .and_then(|m| u32::try_from(m).ok())
            .ok_or_else(|| fail(format!("`min` {min} is not a whole number")))?;
        node.min = Some(min);
    }
    if let Some(max) = element.get("max") {
        node.max = match max.as_str() {
            Some("*") => None,
            Some(n) => Some(
                n.parse()
                    .map_err(|_| fail(format!("`max` `{n}` is neither `*` nor a number")))?,
            ),
            None => return Err(fail("`max` is not a string".into())),
        };
    }
    if let Some(object) = element.as_object() {
        for (key, value) in object {
            if key.starts_with("fixed") {
                node.fixed = Some(value.clone());
            } else if key.starts_with("pattern") {
                node.pattern = Some(value.clone());
            }
        }
    }
    if let Some(binding) = element.get("binding")
        && binding.get("strength").and_then(Value::as_str) == Some("required")
        && let Some(url) = binding.get("valueSet").and_then(Value::as_str)
    {
        node.binding = Some(terms.find(url).ok_or_else(|| LoadError::MissingValueSet {
            url: url.to_owned(),
            used_by: format!("`{id}`"),
        })?);
    }
    let targets: Vec<Box<str>> = element
        .get("type")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|t| t.get("code").and_then(Value::as_str) == Some("Reference"))
        .filter_map(|t| t.get("targetProfile").and_then(Value::as_array))
        .flatten()
        .filter_map(Value::as_str)
        .map(|url| target_type(url).into())
        .collect();
    if !targets.is_empty() {
        node.targets = Some(targets.into());
    }
    if let Some(slicing) = element.get("slicing") {
        node.closed = slicing.get("rules").and_then(Value::as_str) == Some("closed");
        node.discriminators = slicing
            .get("discriminator")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|d| {
                matches!(
                    d.get("type").and_then(Value::as_str),
                    Some("value" | "pattern")
                )
            })
            .filter_map(|d| d.get("path").and_then(Value::as_str))
            .map(Into::into)
            .collect();
    }
    Ok(())
}

/// The resource type a target profile is of: the last segment of its URL, less a `UKCore-`
/// prefix and any `-Variant` suffix (`…/UKCore-Observation-Lab` → `Observation`).
fn target_type(url: &str) -> &str {
    let last = url.split('|').next().unwrap_or(url);
    let last = last.rsplit('/').next().unwrap_or(last);
    let last = last.strip_prefix("UKCore-").unwrap_or(last);
    last.split('-').next().unwrap_or(last)
}
