"""docs/deploy.md, the deploy scripts and the CI workflow agree with each other and with infra/."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEPLOY_DOC = REPO / "docs" / "deploy.md"
WORKFLOW = REPO / ".github" / "workflows" / "bicep.yml"

# A repository path as the docs write it: starts at one of our top-level folders, no spaces.
_PATH = re.compile(r"(?<![\w./-])(?:\./)?((?:scripts|infra|tests|docs|\.github|lib|functions)/[\w./<>|-]*[\w>])")


def named_paths(markdown: str) -> set[str]:
    """Repository paths named in ``markdown``; ``<a|b>`` choices expanded, free placeholders (``<env>``)
    left out because they name no single file."""
    paths: set[str] = set()
    for raw in _PATH.findall(markdown):
        paths.update(p.rstrip(".") for p in _expand_choices(raw) if "<" not in p)
    return paths


def _expand_choices(raw: str) -> list[str]:
    m = re.search(r"<([^<>|]+(?:\|[^<>|]+)+)>", raw)
    if m is None:
        return [raw]
    expanded: list[str] = []
    for choice in m.group(1).split("|"):
        expanded += _expand_choices(raw[: m.start()] + choice + raw[m.end() :])
    return expanded


def test_path_reader_expands_choices_and_skips_free_placeholders():
    text = "run `scripts/deploy.sh <test|production>` with `infra/main.<test|production>.bicepparam`, see x/y"
    assert named_paths(text) == {"scripts/deploy.sh", "infra/main.test.bicepparam", "infra/main.production.bicepparam"}
    assert named_paths("outputs in `.local/deploy/<env>.outputs.json` and infra/app/<name>.bicep") == set()
    assert named_paths("./scripts/postdeploy.ps1 -GraphClientId x") == {"scripts/postdeploy.ps1"}


def test_every_script_and_parameter_file_the_deploy_doc_names_exists():
    paths = named_paths(DEPLOY_DOC.read_text(encoding="utf-8"))
    assert {
        "scripts/deploy.sh",
        "scripts/postdeploy.sh",
        "scripts/postdeploy.ps1",
        "infra/main.bicep",
        "infra/main.test.bicepparam",
        "infra/main.production.bicepparam",
    } <= paths
    missing = sorted(p for p in paths if not (REPO / p).exists())
    assert missing == []


def test_a_missing_named_file_is_reported():
    paths = named_paths("then run `scripts/rotate-keys.sh`")
    assert [p for p in paths if not (REPO / p).exists()] == ["scripts/rotate-keys.sh"]


def test_deploy_doc_gives_every_post_deployment_step():
    text = DEPLOY_DOC.read_text(encoding="utf-8")
    for needed in (
        "scripts/deploy.sh <test|production> <resource-group> <location>",
        "az communication phonenumber",
        "Toll-free verification",
        "New-CsApplicationAccessPolicy",
        "Grant-CsApplicationAccessPolicy",
        "OnlineMeetings.ReadWrite.All",
        "admin-consent",
        "smart-private-keys",
        "graph-client-cert",
        "Epic records",
        "/api/hl7/",
    ):
        assert needed in text, needed


@pytest.mark.parametrize("script", ["deploy.sh", "postdeploy.sh"])
def test_shell_scripts_are_executable_strict_and_parse(script):
    path = REPO / "scripts" / script
    text = path.read_text(encoding="utf-8")
    assert os.access(path, os.X_OK), f"{script} is not executable"
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in text
    subprocess.run(["bash", "-n", str(path)], check=True)
    if shutil.which("shellcheck"):
        subprocess.run(["shellcheck", str(path)], check=True)


def test_deploy_script_uses_the_parameter_file_of_each_environment():
    text = (REPO / "scripts" / "deploy.sh").read_text(encoding="utf-8")
    assert 'PARAMETERS="$ROOT/infra/main.$ENVIRONMENT.bicepparam"' in text
    assert re.search(r"^\s*test \| production\) ;;$", text, re.MULTILINE)
    for environment in ("test", "production"):
        assert (REPO / "infra" / f"main.{environment}.bicepparam").exists()
    # The .bicepparam files read these; the script must export them.
    for variable in (
        "AZURE_LOCATION",
        "GRAPH_TENANT_ID",
        "GRAPH_CLIENT_ID",
        "OPERATOR_PRINCIPAL_ID",
        "PUBLIC_BASE_URL",
    ):
        assert re.search(rf"^export {variable}\b", text, re.MULTILINE), variable
    # The webhook key reaches the az process only (its environment), never an export or a command line.
    assert "EVENTGRID_WEBHOOK_KEY=${2:-} ENABLE_EVENT_SUBSCRIPTIONS=$1 az deployment group create" in text
    assert not re.search(r"^\s*export EVENTGRID_WEBHOOK_KEY", text, re.MULTILINE)
    assert not re.search(r"--parameters\s+\S*eventGridWebhookKey", text)
    params = "".join((REPO / "infra" / f"main.{e}.bicepparam").read_text() for e in ("test", "production"))
    read_by_params = set(re.findall(r"readEnvironmentVariable\('(\w+)'", params))
    exported = set(re.findall(r"^export (\w+)", text, re.MULTILINE)) | {
        "ENABLE_EVENT_SUBSCRIPTIONS",
        "EVENTGRID_WEBHOOK_KEY",
    }
    assert read_by_params <= exported


def test_teams_policy_script_creates_and_grants_the_policy():
    text = (REPO / "scripts" / "postdeploy.ps1").read_text(encoding="utf-8")
    for cmdlet in ("Connect-MicrosoftTeams", "New-CsApplicationAccessPolicy", "Grant-CsApplicationAccessPolicy"):
        assert cmdlet in text


def test_ci_workflow_builds_bicep_runs_what_if_only_with_secrets_and_the_structure_tests():
    text = WORKFLOW.read_text(encoding="utf-8")
    assert re.search(r'^\s+- "infra/\*\*"$', text, re.MULTILINE)
    assert "az bicep build --file infra/main.bicep" in text
    assert "az deployment group what-if" in text
    assert "python -m pytest tests/infra" in text
    what_if_step = text[text.index("- name: What-if (test") :].split("\n      - name:")[0]
    assert "if: env.HAS_AZURE == 'true'" in what_if_step
    assert "HAS_AZURE: ${{ secrets.AZURE_CLIENT_ID != ''" in text
    for path in re.findall(r"--file (\S+\.bicep(?:param)?)", text):
        assert (REPO / path).exists(), path
