//! The walk: one pass over a resource, base type and profile nodes side by side.
//!
//! Paths are kept as a stack of borrowed segments and only turned into text for a problem,
//! so a conforming resource costs no allocation but the path stack (and the node lists of
//! elements a profile constrains).

use serde_json::{Map, Value};

use super::base::{Element, Kind, Required, Structure, TypeDef};
use super::compile::{Matcher, Node};
use super::format::{self, json_kind, quote};
use super::terminology::Terminology;
use super::{Constraint, Departure};
use crate::fhir::reference::is_resource_type_name;

/// Objects nested deeper than this are not looked into (and reported).
const MAX_DEPTH: usize = 48;

#[derive(Debug, Clone, Copy)]
enum Seg<'a> {
    Name(&'a str),
    Index(usize),
    Choice(&'a str),
    Slice(&'a str),
}

struct Walker<'a> {
    base: &'a Structure,
    terms: &'a Terminology,
    path: Vec<Seg<'a>>,
    out: Vec<Departure>,
}

/// Checks one resource against the base structure and, when given, a profile's root node.
pub(super) fn resource(
    base: &Structure,
    terms: &Terminology,
    value: &Value,
    profile: Option<&Node>,
) -> Vec<Departure> {
    let mut walker = Walker {
        base,
        terms,
        path: Vec::with_capacity(16),
        out: Vec::new(),
    };
    walker.path.push(Seg::Name("Resource"));
    walker.resource(value, profile, 0);
    walker.out
}

impl<'a> Walker<'a> {
    fn problem(&mut self, rule: Constraint, message: String) {
        let mut path = String::new();
        for seg in &self.path {
            match seg {
                Seg::Name(n) if path.is_empty() => path.push_str(n),
                Seg::Name(n) => {
                    path.push('.');
                    path.push_str(n);
                }
                Seg::Index(i) => path.push_str(&format!("[{i}]")),
                Seg::Choice(g) => path.push_str(&format!(".{g}[x]")),
                Seg::Slice(s) => path.push_str(&format!(":{s}")),
            }
        }
        self.out.push(Departure {
            path,
            rule,
            message,
        });
    }

    /// A problem at `path + seg`.
    fn problem_at(&mut self, seg: Seg<'a>, rule: Constraint, message: String) {
        self.path.push(seg);
        self.problem(rule, message);
        self.path.pop();
    }

    /// A top-level (`depth` 0) or contained resource.
    fn resource(&mut self, value: &'a Value, profile: Option<&'a Node>, depth: usize) {
        let Some(object) = value.as_object() else {
            self.problem(
                Constraint::Structure,
                format!(
                    "expected a resource (a JSON object), found {}",
                    json_kind(value)
                ),
            );
            return;
        };
        let ty = match object.get("resourceType") {
            None => {
                self.problem(Constraint::Structure, "no `resourceType`".into());
                return;
            }
            Some(Value::String(name)) => match self.base.resource(name) {
                Some(ty) => ty,
                None => {
                    let known: Vec<&str> = self.base.resource_names().collect();
                    self.problem_at(
                        Seg::Name("resourceType"),
                        Constraint::Structure,
                        format!(
                            "{} is not a resource type Concord checks ({})",
                            quote(name),
                            known.join(", ")
                        ),
                    );
                    return;
                }
            },
            Some(other) => {
                self.problem_at(
                    Seg::Name("resourceType"),
                    Constraint::Structure,
                    format!("expected a string, found {}", json_kind(other)),
                );
                return;
            }
        };
        if depth == 0
            && let Some(root) = self.path.first_mut()
        {
            *root = Seg::Name(&self.base.types[ty].name);
        }
        let nodes: Vec<&Node> = profile.into_iter().collect();
        self.object(object, ty, &nodes, depth, true);
    }

    /// One object of type `ty`: each member against the type's elements (with the profile
    /// nodes that apply), then what the base type requires and what the profile counts.
    fn object(
        &mut self,
        object: &'a Map<String, Value>,
        ty: usize,
        nodes: &[&'a Node],
        depth: usize,
        is_resource: bool,
    ) {
        if depth > MAX_DEPTH {
            self.problem(
                Constraint::Structure,
                format!("nested deeper than {MAX_DEPTH} levels: not checked further"),
            );
            return;
        }
        let base = self.base;
        let def = &base.types[ty];
        for (key, value) in object {
            if is_resource && key == "resourceType" {
                continue;
            }
            if let Some(name) = key.strip_prefix('_') {
                self.primitive_sibling(def, key, name, value, depth);
                continue;
            }
            let Some(e) = def.element(key) else {
                self.problem_at(
                    Seg::Name(key),
                    Constraint::Structure,
                    format!("`{key}` is not an element of R4 `{}`", def.name),
                );
                continue;
            };
            if let Some(group) = e.choice.as_deref() {
                self.choice_once(object, def, key, group);
            }
            self.member(key, value, e, nodes, depth);
        }
        self.base_required(object, def);
        for node in nodes {
            for (name, child) in &node.children {
                self.cardinality(object, def, name, child);
            }
        }
    }

    /// `_name`, the sibling of primitive element `name`: its extensions are checked; it is a
    /// problem when `name` is no primitive element of the type, or is `id`.
    fn primitive_sibling(
        &mut self,
        def: &TypeDef,
        key: &'a str,
        name: &str,
        value: &'a Value,
        depth: usize,
    ) {
        match def.element(name) {
            // Resource.id and Element.id are `System.String` in R4, not FHIR
            // primitives: they cannot carry extensions, so there is no `_id`.
            Some(_) if name == "id" => self.problem_at(
                Seg::Name(key),
                Constraint::Structure,
                format!(
                    "`_id` is not an element of R4 `{}` (`id` cannot have extensions)",
                    def.name
                ),
            ),
            Some(e) if matches!(e.kind, Kind::Prim(_)) => {
                self.path.push(Seg::Name(key));
                self.primitive_extension(value, e.array, depth);
                self.path.pop();
            }
            _ => self.problem_at(
                Seg::Name(key),
                Constraint::Structure,
                format!("`{key}` is not an element of R4 `{}`", def.name),
            ),
        }
    }

    /// A choice group (`value[x]`) given by more than one member of an object: reported once,
    /// when `key` is the group's first member present.
    fn choice_once(
        &mut self,
        object: &Map<String, Value>,
        def: &TypeDef,
        key: &str,
        group: &'a str,
    ) {
        let first = def
            .choice(group)
            .find(|c| object.contains_key(&*c.name))
            .map(|c| &*c.name);
        if first == Some(key)
            && def
                .choice(group)
                .filter(|c| object.contains_key(&*c.name))
                .count()
                > 1
        {
            self.problem_at(
                Seg::Choice(group),
                Constraint::Structure,
                format!("more than one value for the choice element `{group}[x]`"),
            );
        }
    }

    /// Member `key` of an object, of element `e`: a single value or an array as the element
    /// says, checked with the profile nodes for the element (or its choice group).
    fn member(
        &mut self,
        key: &'a str,
        value: &'a Value,
        e: &'a Element,
        nodes: &[&'a Node],
        depth: usize,
    ) {
        let group = e.choice.as_deref().unwrap_or(key);
        let children: Vec<&Node> = nodes.iter().filter_map(|n| n.child(group)).collect();
        self.path.push(Seg::Name(key));
        match (e.array, value) {
            (true, Value::Array(items)) => self.items(items, e, &children, depth),
            (true, other) => self.problem(
                Constraint::Structure,
                format!(
                    "expected an array of {}, found {}",
                    e.type_name,
                    json_kind(other)
                ),
            ),
            (false, Value::Array(_)) => self.problem(
                Constraint::Structure,
                format!("expected a single {}, found an array", e.type_name),
            ),
            (false, item) => self.item(item, e, &children, depth + 1),
        }
        self.path.pop();
    }

    /// The items of an array element (which must not be empty): each checked with the
    /// element's profile nodes and the nodes of the slices it matches.
    fn items(&mut self, items: &'a [Value], e: &'a Element, children: &[&'a Node], depth: usize) {
        if items.is_empty() {
            self.problem(Constraint::Structure, "an array must not be empty".into());
        }
        for (i, item) in items.iter().enumerate() {
            self.path.push(Seg::Index(i));
            let mut item_nodes = children.to_vec();
            for child in children {
                item_nodes.extend(
                    child
                        .slices
                        .iter()
                        .filter(|s| s.matcher.as_ref().is_some_and(|m| matches(m, item)))
                        .map(|s| &s.node),
                );
            }
            self.item(item, e, &item_nodes, depth + 1);
            self.path.pop();
        }
    }

    /// The elements (and choice groups) the base R4 type requires (min 1) that the object
    /// lacks.
    fn base_required(&mut self, object: &Map<String, Value>, def: &'a TypeDef) {
        for required in &def.required {
            match required {
                Required::Element(i) => {
                    let name = &*def.elements[*i].name;
                    if !present(object, name) {
                        self.problem_at(
                            Seg::Name(name),
                            Constraint::Cardinality,
                            "required (min 1 in base R4), missing".into(),
                        );
                    }
                }
                Required::Choice(group) => {
                    if !def.choice(group).any(|c| present(object, &c.name)) {
                        self.problem_at(
                            Seg::Choice(group),
                            Constraint::Cardinality,
                            "required (min 1 in base R4), missing".into(),
                        );
                    }
                }
            }
        }
    }

    /// A profile's min, max and slice cardinalities of one element of an object.
    fn cardinality(
        &mut self,
        object: &'a Map<String, Value>,
        def: &'a TypeDef,
        name: &'a str,
        node: &'a Node,
    ) {
        if node.min.is_none() && node.max.is_none() && node.slices.is_empty() {
            return;
        }
        let choice = def.element(name).is_none();
        let values: Vec<&Value> = if choice {
            def.choice(name)
                .filter_map(|c| object.get(&*c.name).or_else(|| underscore(object, &c.name)))
                .collect()
        } else {
            match object.get(name).or_else(|| underscore(object, name)) {
                Some(Value::Array(items)) => items.iter().collect(),
                Some(v) => vec![v],
                None => Vec::new(),
            }
        };
        let seg = if choice {
            Seg::Choice(name)
        } else {
            Seg::Name(name)
        };
        self.path.push(seg);
        self.counts(values.len(), node.min, node.max, "");
        let mut unsliced = values.len();
        for slice in &node.slices {
            let Some(matcher) = &slice.matcher else {
                continue;
            };
            let count = values.iter().filter(|v| matches(matcher, v)).count();
            unsliced = unsliced.saturating_sub(count);
            self.path.push(Seg::Slice(&slice.name));
            self.counts(count, slice.node.min, slice.node.max, " in this slice");
            self.path.pop();
        }
        if node.closed && unsliced > 0 {
            self.problem(
                Constraint::Cardinality,
                format!("{unsliced} value(s) in no slice, and the slicing is closed"),
            );
        }
        self.path.pop();
    }

    fn counts(&mut self, count: usize, min: Option<u32>, max: Option<u32>, what: &str) {
        if let Some(min) = min
            && count < min as usize
        {
            self.problem(
                Constraint::Cardinality,
                format!("at least {min} required{what} by the profile, found {count}"),
            );
        }
        if let Some(max) = max
            && count > max as usize
        {
            self.problem(
                Constraint::Cardinality,
                format!("at most {max} allowed{what} by the profile, found {count}"),
            );
        }
    }

    /// `_name`: an `Element` (id, extensions), or an array of them and `null`s.
    fn primitive_extension(&mut self, value: &'a Value, array: bool, depth: usize) {
        let element = self.base.element_type;
        match (array, value) {
            (false, Value::Object(o)) => self.object(o, element, &[], depth + 1, false),
            (true, Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    match item {
                        Value::Null => {}
                        Value::Object(o) => {
                            self.path.push(Seg::Index(i));
                            self.object(o, element, &[], depth + 1, false);
                            self.path.pop();
                        }
                        other => self.problem_at(
                            Seg::Index(i),
                            Constraint::Structure,
                            format!(
                                "expected an object (Element) or null, found {}",
                                json_kind(other)
                            ),
                        ),
                    }
                }
            }
            (_, other) => self.problem(
                Constraint::Structure,
                format!(
                    "expected {} (Element), found {}",
                    if array { "an array" } else { "an object" },
                    json_kind(other)
                ),
            ),
        }
    }

    /// One value of an element, with the profile nodes that apply to it.
    fn item(&mut self, value: &'a Value, e: &'a Element, nodes: &[&'a Node], depth: usize) {
        match e.kind {
            Kind::Prim(p) => {
                if let Err(message) = format::check(p, value) {
                    self.problem(Constraint::Format, message);
                    return;
                }
            }
            Kind::Complex(t) => match value {
                Value::Object(o) => self.object(o, t, nodes, depth, false),
                other => {
                    self.problem(
                        Constraint::Structure,
                        format!(
                            "expected an object ({}), found {}",
                            e.type_name,
                            json_kind(other)
                        ),
                    );
                    return;
                }
            },
            Kind::Resource => {
                self.resource(value, None, depth.max(1));
                return;
            }
        }
        let profile_binding = nodes.iter().find_map(|n| n.binding);
        if let Some(binding) = profile_binding.or(e.binding) {
            self.binding(value, &e.type_name, binding);
        }
        for node in nodes {
            if let Some(fixed) = &node.fixed
                && value != fixed
            {
                self.problem(
                    Constraint::Fixed,
                    format!("must be {} (fixed by the profile)", show(fixed)),
                );
            }
            if let Some(pattern) = &node.pattern
                && !contains(value, pattern)
            {
                self.problem(
                    Constraint::Fixed,
                    format!("must match {} (pattern of the profile)", show(pattern)),
                );
            }
        }
        let targets = nodes
            .iter()
            .find_map(|n| n.targets.as_deref())
            .or(e.targets.as_deref());
        if let Some(targets) = targets {
            self.reference(value, targets);
        }
    }

    fn binding(&mut self, value: &'a Value, type_name: &str, binding: usize) {
        let vs = self.terms.get(binding);
        match type_name {
            "code" => {
                if let Some(code) = value.as_str()
                    && vs.has_code(code) == Some(false)
                {
                    self.problem(
                        Constraint::Binding,
                        format!(
                            "{} is not {} (required binding to {})",
                            quote(code),
                            vs.expected(),
                            vs.url
                        ),
                    );
                }
            }
            "Coding" => {
                let system = value.get("system").and_then(Value::as_str);
                let code = value.get("code").and_then(Value::as_str);
                if !vs.has_coding(system, code) {
                    self.problem(
                        Constraint::Binding,
                        format!(
                            "{}|{} is not {} (required binding to {})",
                            system.unwrap_or("(no system)"),
                            code.unwrap_or("(no code)"),
                            vs.expected(),
                            vs.url
                        ),
                    );
                }
            }
            "CodeableConcept" => {
                let codings = value.get("coding").and_then(Value::as_array);
                let ok = codings.into_iter().flatten().any(|c| {
                    vs.has_coding(
                        c.get("system").and_then(Value::as_str),
                        c.get("code").and_then(Value::as_str),
                    )
                });
                if !ok {
                    let found = match codings {
                        Some(c) if !c.is_empty() => "no coding",
                        _ => "no coding at all (text only)",
                    };
                    self.problem(
                        Constraint::Binding,
                        format!(
                            "{found}; expected {} (required binding to {})",
                            vs.expected(),
                            vs.url
                        ),
                    );
                }
            }
            _ => {}
        }
    }

    fn reference(&mut self, value: &'a Value, targets: &[Box<str>]) {
        if targets.iter().any(|t| &**t == "Resource") {
            return;
        }
        let allowed = || targets.iter().map(|t| &**t).collect::<Vec<_>>().join(" | ");
        if let Some(t) = value.get("type").and_then(Value::as_str)
            && !targets.iter().any(|a| &**a == t)
        {
            self.problem_at(
                Seg::Name("type"),
                Constraint::Reference,
                format!("{} is not an allowed target type ({})", quote(t), allowed()),
            );
        }
        let Some(reference) = value.get("reference").and_then(Value::as_str) else {
            return;
        };
        if reference.starts_with('#') || reference.starts_with("urn:") {
            return;
        }
        let plain = reference.split("/_history/").next().unwrap_or(reference);
        let mut parts = plain.rsplit('/');
        let id = parts.next().unwrap_or("");
        match parts.next() {
            Some(ty) if is_resource_type_name(ty) && !id.is_empty() => {
                if !targets.iter().any(|a| &**a == ty) {
                    self.problem_at(
                        Seg::Name("reference"),
                        Constraint::Reference,
                        format!("refers to a `{ty}`; allowed: {}", allowed()),
                    );
                }
            }
            _ => self.problem_at(
                Seg::Name("reference"),
                Constraint::Reference,
                format!(
                    "{} is not a reference of the form Type/id",
                    quote(reference)
                ),
            ),
        }
    }
}

/// Whether `name` or `_name` is present.
fn present(object: &Map<String, Value>, name: &str) -> bool {
    object.contains_key(name) || underscore(object, name).is_some()
}

fn underscore<'v>(object: &'v Map<String, Value>, name: &str) -> Option<&'v Value> {
    object
        .iter()
        .find(|(k, _)| k.strip_prefix('_') == Some(name))
        .map(|(_, v)| v)
}

/// Whether an item belongs to a slice.
fn matches(matcher: &Matcher, item: &Value) -> bool {
    match matcher {
        Matcher::Url(url) => item.get("url").and_then(Value::as_str) == Some(url),
        Matcher::Value {
            path,
            value,
            pattern,
        } => {
            let mut at = Some(item);
            for step in path.iter() {
                at = at.and_then(|v| v.get(&**step));
            }
            at.is_some_and(|v| {
                if *pattern {
                    contains(v, value)
                } else {
                    v == value
                }
            })
        }
    }
}

/// FHIR pattern matching: every element of `pattern` is in `value` (arrays: each pattern item
/// matches some item).
fn contains(value: &Value, pattern: &Value) -> bool {
    match (value, pattern) {
        (Value::Object(v), Value::Object(p)) => p
            .iter()
            .all(|(k, pv)| v.get(k).is_some_and(|vv| contains(vv, pv))),
        (Value::Array(v), Value::Array(p)) => {
            p.iter().all(|pi| v.iter().any(|vi| contains(vi, pi)))
        }
        (v, p) => v == p,
    }
}

/// A fixed or pattern value for a message.
fn show(value: &Value) -> String {
    match value {
        Value::String(s) => quote(s),
        other => format!("`{other}`"),
    }
}
