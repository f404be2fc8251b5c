"""The sign-in's ``?next=``: a portal page of this site, never another site (open redirects refused)."""

from __future__ import annotations

import pytest

from lib.config.return_paths import safe_return_path


@pytest.mark.parametrize("value", [
    "/api/portal",
    "/api/portal/environments/contoso-test/edit",
    "/api/portal/environments/contoso-test/sms?saved=1",
    "/api/portal/approvals/review?url=https%3A%2F%2Ffhir.contoso.example%2Fapi%2FFHIR%2FR4",
])
def test_a_portal_page_of_this_site_is_kept(value: str) -> None:
    assert safe_return_path(value) == value


@pytest.mark.parametrize("value", [
    None, "", "https://evil.example/api/portal", "http://evil.example", "//evil.example/api/portal",
    "/\\evil.example", "\\\\evil.example", "/%5Cevil.example", "/%2F%2Fevil.example", "%2F%2Fevil.example",
    "/%252F%252Fevil.example", "https:/evil.example", "javascript:alert(1)", "/api/portalx",
    "/api/portal/../../evil", "/api/portal/..%2F..%2Fevil", "/api/portal/%2e%2e/%2e%2e/x", "/api/portal//evil",
    "/api/reports", "/api/portal/x#frag", "/api/portal/\tx", "/api/portal/%0d%0aSet-Cookie:x",
    "/api/portal " + "x", "/api/portal/" + "a" * 2000, 42,
])
def test_another_site_or_a_path_outside_the_portal_is_refused(value: object) -> None:
    assert safe_return_path(value) is None
