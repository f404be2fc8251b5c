"""The CSN is read from the environment's configured identifier systems; integration records exist only after
approval and name the Epic fields they fill."""

from __future__ import annotations

import datetime as dt

from lib.config.approvals import seeded_approvals
from lib.config.records import records_for
from lib.ehr.fhir_appointments import csn_of
from lib.models import EnvironmentConfig

OTHER_ORG = "urn:oid:1.2.840.114350.1.13.861.1.7.2.698084.8"
ISS = "https://fhir.contoso.example/api/FHIR/R4"


def appointment(system: str) -> dict:
    return {"resourceType": "Appointment", "id": "a1", "identifier": [
        {"system": "urn:oid:1.2.840.114350.1.13.861.1.7.3.698084", "value": "wrong"},
        {"system": system, "value": "7001"}]}


def test_the_default_suffix_misses_another_organizations_system_and_the_configured_one_reads_it():
    assert csn_of(appointment(OTHER_ORG)) is None
    assert csn_of(appointment(OTHER_ORG), (".7.3.698084.8", OTHER_ORG)) == "7001"
    assert csn_of(appointment(OTHER_ORG), (".7.2.698084.8",)) == "7001"


def test_configured_systems_are_tried_in_order():
    resource = {"identifier": [{"system": "urn:a", "value": "1"}, {"system": "urn:b", "value": "2"}]}
    assert csn_of(resource, ("urn:b", "urn:a")) == "2"


def env(**kw: object) -> EnvironmentConfig:
    return EnvironmentConfig(id="contoso-tst", kind="test", display_name="Contoso", fhir_base_urls=(ISS,),
                             approved=False, epic_client_id="client-1", **kw)  # type: ignore[arg-type]


def test_no_records_before_approval_and_every_record_names_its_fields_after():
    assert records_for(env(), "https://vv.contoso.example") == []
    approved = seeded_approvals(env(conference_id_field="SCH-4"), at=dt.datetime.now(dt.UTC))
    records = {r.key: r for r in records_for(approved, "https://vv.contoso.example")}
    device = {f.epic_field: f.value for f in records["device-test"].fields}
    assert device["Device test context token"] == "mode=devicetest"
    assert device["Context tokens (query string)"] == "env=contoso-tst&sessionId=%CSN%&mode=devicetest"
    assert {f.epic_field: f.value for f in records["jwks"].fields} == {
        "Non-Production JWK Set URL": "https://vv.contoso.example/api/.well-known/jwks.json"}
    group = {f.epic_field: f.value for f in records["group-patient-launch"].fields}
    assert group["Context tokens (query string)"] == "env=contoso-tst&sessionId=%CONFERENCEID%"


def test_a_change_of_client_id_unapproves_the_url():
    approved = seeded_approvals(env(), at=dt.datetime.now(dt.UTC))
    assert approved.url_approved(ISS) and approved.approved
    import dataclasses

    moved = dataclasses.replace(approved, epic_client_id="client-2")
    assert not moved.url_approved(ISS) and not moved.any_url_approved()
