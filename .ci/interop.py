"""Interoperability check: a FHIR client nobody on the team wrote (SMART on FHIR's Python
`fhirclient`, whose models reject JSON that does not fit FHIR R4) searches and reads through
the demo gateway, unchanged.

Usage: CONCORD_TOKEN=... CONCORD_BLANK_TOKEN=... CONCORD_IG_TOKEN=... CONCORD_NURSE_TOKEN=...
       python interop.py BASE_URL DEMO_DIR

CONCORD_TOKEN is a clinician's token; CONCORD_BLANK_TOKEN one whose `org` and `name` claims
are empty strings, as identity providers send them; CONCORD_IG_TOKEN an
information-governance lead's (role ig-lead, scope user/AuditEvent.rs), which reads the
audit log as AuditEvents; CONCORD_NURSE_TOKEN a community nurse's (RY4, scopes to create
and update CarePlan and Goal), who writes a plan and a goal to the region's own record through
the same client (issue 18). Every AuditEvent is parsed by two strict R4 models written by
others: fhirclient's and `fhir.resources` (pydantic, R4B, which refuses empty values).
"""

import json
import os
import pathlib
import sys

import requests
from fhir.resources.R4B.auditevent import AuditEvent as StrictAuditEvent
from fhirclient import client
from fhirclient.models.auditevent import AuditEvent
from fhirclient.models.bundle import Bundle
from fhirclient.models.careplan import CarePlan
from fhirclient.models.encounter import Encounter
from fhirclient.models.goal import Goal
from fhirclient.models.observation import Observation
from fhirclient.models.patient import Patient

NHS = "https://fhir.nhs.uk/Id/nhs-number"


def nhs_numbers(path):
    found = set()
    for line in path.read_text().splitlines():
        if line.strip():
            for ident in json.loads(line).get("identifier", []):
                if ident.get("system") == NHS:
                    found.add(ident["value"])
    return found


def main(base, demo):
    demo = pathlib.Path(demo)
    everywhere = nhs_numbers(demo / "gp" / "Patient.ndjson") & nhs_numbers(demo / "community" / "Patient.ndjson") & nhs_numbers(demo / "socialcare" / "Patient.ndjson")
    assert everywhere, "the demo has people known to all three providers"
    nhs = sorted(everywhere)[0]

    smart = client.FHIRClient(settings={"app_id": "concord-interop", "api_base": base})
    server = smart.server
    # The gateway wants a bearer token on every FHIR request but the CapabilityStatement;
    # the client's own HTTP session carries it, as an EHR integration would configure it.
    server.session.headers["Authorization"] = "Bearer " + os.environ["CONCORD_TOKEN"]
    server.get_capability()  # parsed into fhirclient's CapabilityStatement model
    assert server.capabilityStatement.fhirVersion == "4.0.1"

    patients = Patient.where(struct={"identifier": f"{NHS}|{nhs}"}).perform_resources(server)
    assert len(patients) == 1, f"one merged Patient, got {len(patients)}"
    patient = Patient.read(patients[0].id, server)
    assert any(i.system == NHS and i.value == nhs for i in patient.identifier)
    assert len(patient.link) == 3, "linked to the three providers' own records"

    first = server.request_json(f"Observation?patient={patient.id}&_count=5")
    total = first["total"]
    # Bundles may carry OperationOutcome entries (search.mode outcome), e.g. the notice that
    # agreements withheld something; only the Observations are counted.
    observations = [r for r in Observation.where(struct={"patient": patient.id, "_count": "5"}).perform_resources_iter(server)
                    if r.resource_type == "Observation"]
    ids = [o.id for o in observations]
    assert len(ids) == total and len(set(ids)) == total, f"paged {len(ids)} of {total}, {len(set(ids))} distinct"
    for o in observations:
        assert o.subject.reference == f"Patient/{patient.id}", o.subject.reference
        if o.encounter is not None:
            Encounter.read(o.encounter.reference.split("/")[1], server)

    everything = Bundle(server.request_json(f"Patient/{patient.id}/$everything"))  # strict model parse
    kinds = sorted({e.resource.resource_type for e in everything.entry})
    sources = sorted({e.resource.meta.source for e in everything.entry if e.resource.meta and e.resource.meta.source})

    # Requests with empty claims, and refusals of every kind, are audited too.
    blank = {"Authorization": "Bearer " + os.environ["CONCORD_BLANK_TOKEN"]}
    # (Without an organisation no agreement lets this clinician see anything: 403.)
    for path, headers, status in [
        (f"Patient/{patient.id}/$everything", blank, 403),
        (f"Patient/{patient.id}/_history", blank, 404),
        (f"Patient/{patient.id}", {**blank, "Accept": "application/fhir+xml"}, 406),
        (f"Patient/{patient.id}", {}, 401),
        (f"Patient/{patient.id}?access_token=" + os.environ["CONCORD_TOKEN"], server.session.headers, 200),
    ]:
        got = requests.get(base + path, headers=headers)
        assert got.status_code == status, (path, got.status_code, got.text)
        assert got.json()["resourceType"] in ("OperationOutcome", "Patient"), got.text

    # Writes (issue 18): a community nurse creates a plan that no provider owns (it goes to the
    # demo's region store source) and a goal of that plan through fhirclient's own create and
    # update. fhirclient knows nothing of ETags, so the version read goes in If-Match on its
    # session, as an integration would add it.
    nurse = client.FHIRClient(settings={"app_id": "concord-interop-writes", "api_base": base}).server
    nurse.session.headers["Authorization"] = "Bearer " + os.environ["CONCORD_NURSE_TOKEN"]
    subject = {"reference": f"Patient/{patient.id}"}
    created = CarePlan({"resourceType": "CarePlan", "status": "active", "intent": "plan",
                        "title": "Living well at home", "subject": subject}).create(nurse)
    assert created and created["id"].startswith("region."), f"the plan went to the region's record: {created}"
    plan = CarePlan.read(created["id"], nurse)
    assert plan.title == "Living well at home" and plan.meta.versionId == "1", plan.as_json()
    goal = Goal({"resourceType": "Goal", "lifecycleStatus": "active", "description": {"text": "Walk to the shop"},
                 "subject": subject, "extension": [{"url": "https://fhir.concord.health/StructureDefinition/care-plan",
                                                    "valueReference": {"reference": f"CarePlan/{plan.id}"}}]}).create(nurse)
    assert goal and goal["id"].startswith("region."), f"the goal went where its plan lives: {goal}"
    plan.title = "Living well at home, walking"
    try:
        plan.update(nurse)
        raise AssertionError("an update without If-Match was taken")
    except requests.HTTPError as e:
        assert e.response.status_code == 428, e.response.text
    nurse.session.headers["If-Match"] = 'W/"1"'
    updated = plan.update(nurse)
    assert updated and updated["meta"]["versionId"] == "2" and updated["title"] == plan.title, updated
    try:
        plan.update(nurse)  # the same version again: somebody (we) changed it since
        raise AssertionError("a stale If-Match was taken")
    except requests.HTTPError as e:
        assert e.response.status_code == 412, e.response.text
    del nurse.session.headers["If-Match"]
    assert CarePlan.read(plan.id, nurse).meta.versionId == "2", "the stale update wrote nothing"

    # The requests above were audited. An IG lead reads them back as AuditEvents, newest first,
    # every one parsed by fhirclient's strict R4 model, following next links to the end.
    ig = client.FHIRClient(settings={"app_id": "concord-interop-ig", "api_base": base}).server
    ig.session.headers["Authorization"] = "Bearer " + os.environ["CONCORD_IG_TOKEN"]
    page = ig.request_json("AuditEvent?_count=20")
    events = []
    while True:
        Bundle(page)  # strict model parse of the Bundle and its entries
        for entry in page.get("entry", []):
            if entry["search"]["mode"] == "match":
                events.append(AuditEvent(entry["resource"]))  # strict: raises on anything not R4
                StrictAuditEvent.parse_obj(entry["resource"])  # and refuses empty values
        nxt = [link["url"] for link in page.get("link", []) if link["relation"] == "next"]
        if not nxt:
            break
        page = ig.request_json(nxt[0])
    ids = [e.id for e in events]
    assert len(ids) >= 5 and len(set(ids)) == len(ids), f"{len(ids)} AuditEvents, {len(set(ids))} distinct"
    times = [e.recorded.datetime for e in events]
    assert times == sorted(times, reverse=True), "newest first"
    assert any(e.subtype and e.subtype[0].code == "operation" for e in events), "the $everything was audited"
    assert all(e.agent[0].requestor for e in events)
    writes = [e for e in events if e.subtype and e.subtype[0].code in ("create", "update")]
    assert {e.action for e in writes} == {"C", "U"}, "the writes were audited, as creates and updates"
    assert {406, 404, 401} <= {int(e.outcomeDesc.split()[1]) for e in events}, "refusals are audited"
    assert os.environ["CONCORD_TOKEN"] not in json.dumps([e.as_json() for e in events]), "no token kept"
    AuditEvent.read(ids[0], ig)

    print(f"interop: fhirclient read {len(everything.entry)} resources ({', '.join(kinds)}) from {len(sources)} sources; "
          f"paged {total} Observations with _count=5; created and updated a plan and a goal; "
          f"parsed {len(events)} AuditEvents ({len(writes)} of writes)")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
