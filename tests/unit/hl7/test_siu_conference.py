"""Group visits: the conference ID comes from the field the environment names (conference_id_field)."""

from __future__ import annotations

import pytest

from lib.hl7.siu import parse_siu

BASE = (
    b"MSH|^~\\&|SCHED|HOSP|VV|CONN|20261129120000||SIU^S12|C1|T|2.3\r"
    b"SCH||36996||GRP\\T\\1^OTHER|||||30|MIN|^^^202612031000\r"
    b"ZCH|1|x|CONF-77^VIDEO~CONF-78\r"
)


def conference(field: str | None, raw: bytes = BASE) -> str | None:
    return parse_siu(raw, time_zone="America/New_York", default_region="US", conference_id_field=field).conference_id


def test_no_field_configured_means_no_conference_id():
    assert conference(None) is None


def test_standard_field_first_component_unescaped():
    assert conference("SCH-4") == "GRP&1"


def test_z_segment_field_first_repetition():
    assert conference("ZCH-3") == "CONF-77"


def test_component_address():
    assert conference("ZCH-3.2") == "VIDEO"


def test_absent_segment_or_empty_field_gives_none():
    assert conference("ZXX-1") is None
    assert conference("SCH-5") is None


@pytest.mark.parametrize("bad", ["SCH", "SCH-", "SCH-0", "sch-4", "SCHX-4", "SCH-4.x", "SCH-4.0"])
def test_malformed_field_address_is_a_configuration_error(bad):
    with pytest.raises(ValueError, match="conference_id_field"):
        conference(bad)
