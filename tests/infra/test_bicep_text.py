"""The structural Bicep reader reads what the infra tests rely on, and refuses what it cannot read."""

from __future__ import annotations

import pytest

from tests.infra.bicep_text import BicepFile, call_args, parse_array, parse_object, string_value, strip_comments

SNIPPET = """
// a comment with a 'quote' and { brace
param location string
param tags object = {
  app: 'x' // trailing comment
}
var url = 'https://example.org/a//b' /* block { */
var list = [
  'a'
  'b'
]

resource acct 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: 'st${location}'
  location: location
  properties: { allowSharedKeyAccess: false, minimumTlsVersion: 'TLS1_2' }
}

resource ref 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: 'kv'
}

resource maybe 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(location)) {
  name: guid(acct.id, 'p', 'r')
  scope: acct
  properties: {
    description: 'a } in a string'
  }
}

resource many 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = [
  for q in (flag ? list : []): if (q != 'b') {
    name: q
  }
]

module m 'app/x.bicep' = {
  name: 'm'
  params: {
    a: 1
  }
}

output endpoint string = acct.properties.primaryEndpoints.blob
"""


def test_comments_go_but_slashes_in_strings_stay():
    text = strip_comments(SNIPPET)
    assert "a comment" not in text and "trailing comment" not in text and "block {" not in text
    assert "'https://example.org/a//b'" in text
    assert len(text.splitlines()) == len(SNIPPET.splitlines())


def test_declarations_with_existing_condition_and_loop():
    f = BicepFile(SNIPPET)
    assert [(d.kind, d.symbol, d.existing) for d in f.declarations] == [
        ("resource", "acct", False),
        ("resource", "ref", True),
        ("resource", "maybe", False),
        ("resource", "many", False),
        ("module", "m", False),
    ]
    assert f.symbol("acct").api_version == "2023-05-01"
    assert f.symbol("maybe").condition == "!empty(location)"
    assert f.symbol("maybe").get("properties.description") == "'a } in a string'"
    many = f.symbol("many")
    assert many.loop == "for q in (flag ? list : [])" and many.condition == "q != 'b'"
    assert many.get("name") == "q"
    assert f.symbol("m").target == "app/x.bicep"


def test_nested_values_one_line_objects_and_missing_paths():
    acct = BicepFile(SNIPPET).symbol("acct")
    assert acct.get("properties.allowSharedKeyAccess") == "false"
    assert acct.get("properties.minimumTlsVersion") == "'TLS1_2'"
    assert acct.get("properties.nothing") is None
    assert acct.get("name.deeper") is None


def test_params_vars_outputs():
    f = BicepFile(SNIPPET)
    assert f.params["location"] == ("string", None)
    assert parse_object(f.params["tags"][1]) == {"app": "'x'"}
    assert f.variables["url"] == "'https://example.org/a//b'"
    assert parse_array(f.variables["list"]) == ["'a'", "'b'"]
    assert f.outputs["endpoint"] == ("string", "acct.properties.primaryEndpoints.blob")


def test_literals_and_calls():
    assert string_value("'abc'") == "abc"
    assert string_value("'a${b}'") is None
    assert string_value("abc") is None
    assert call_args("guid(a.id, principalId, 'x,y')", "guid") == ["a.id", "principalId", "'x,y'"]
    assert call_args("guid(a)+guid(b)", "guid") is None
    assert parse_object("{ a: 1, 'b-c': { d: [1, 2] } }") == {"a": "1", "b-c": "{ d: [1, 2] }"}


@pytest.mark.parametrize(
    "bad",
    [
        "resource r 'T@1' = {\n  name: 'x'\n",  # unclosed body
        "var s = 'unterminated\n",
        "/* never closed",
    ],
)
def test_unreadable_text_raises_instead_of_passing(bad):
    with pytest.raises(ValueError):
        f = BicepFile(bad)
        _ = f.declarations, f.variables


def test_duplicate_keys_are_refused():
    with pytest.raises(ValueError, match="duplicate"):
        parse_object("{\n  a: 1\n  a: 2\n}")
