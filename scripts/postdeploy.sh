#!/usr/bin/env bash
# The steps after scripts/deploy.sh that need other administrators or other tools:
#
#   scripts/postdeploy.sh <test|production> <resource-group>
#
# Reads the deployment's outputs and:
#   - reports which Key Vault secrets are still missing, with the command that uploads each;
#   - grants Graph admin consent when GRANT_ADMIN_CONSENT=1 and GRAPH_CLIENT_ID are set (needs a
#     Privileged Role Administrator or Global Administrator sign-in);
#   - runs scripts/postdeploy.ps1 (Teams application access policy) when pwsh is installed and
#     TEAMS_POLICY_GROUP_ID (an Entra group of organizers) or TEAMS_POLICY_GLOBAL=1 is set;
#   - restarts the app so Key Vault references pick up new secrets;
#   - prints the URLs the Epic analyst needs.
# Everything it cannot do itself is listed in docs/deploy.md, "After deployment".
set -euo pipefail

usage() {
  echo "usage: $0 <test|production> <resource-group>" >&2
  exit 2
}
[[ $# -eq 2 ]] || usage
ENVIRONMENT=$1
RESOURCE_GROUP=$2
case "$ENVIRONMENT" in
  test | production) ;;
  *) usage ;;
esac
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEPLOYMENT="open-virtual-visits-$ENVIRONMENT"

output() {
  az deployment group show --resource-group "$RESOURCE_GROUP" --name "$DEPLOYMENT" \
    --query "properties.outputs.$1.value" --output tsv
}

APP=$(output FUNCTION_APP_NAME)
VAULT=$(output KEY_VAULT_NAME)
BASE_URL=$(output PUBLIC_BASE_URL)
ACS=$(output ACS_NAME)
GRAPH_CLIENT_ID=${GRAPH_CLIENT_ID:-}

echo "Key Vault $VAULT:"
missing=0
for secret in link-signing-key log-id-key eventgrid-webhook-key smart-private-keys graph-client-cert; do
  if az keyvault secret show --vault-name "$VAULT" --name "$secret" --output none 2>/dev/null; then
    echo "  $secret: present"
  else
    missing=1
    case "$secret" in
      link-signing-key | log-id-key | eventgrid-webhook-key) hint="rerun scripts/deploy.sh" ;;
      smart-private-keys) hint="az keyvault secret set --vault-name $VAULT --name $secret --file smart.pem" ;;
      graph-client-cert) hint="az keyvault secret set --vault-name $VAULT --name $secret --file graph.pem" ;;
    esac
    echo "  $secret: MISSING ($hint)"
  fi
done

if [[ -n $GRAPH_CLIENT_ID && ${GRANT_ADMIN_CONSENT:-} == 1 ]]; then
  echo "Granting admin consent to Graph app $GRAPH_CLIENT_ID"
  az ad app permission admin-consent --id "$GRAPH_CLIENT_ID"
fi

if [[ -n $GRAPH_CLIENT_ID ]] && command -v pwsh >/dev/null 2>&1; then
  if [[ -n ${TEAMS_POLICY_GROUP_ID:-} ]]; then
    pwsh -NoProfile -File "$ROOT/scripts/postdeploy.ps1" -GraphClientId "$GRAPH_CLIENT_ID" \
      -GroupId "$TEAMS_POLICY_GROUP_ID"
  elif [[ ${TEAMS_POLICY_GLOBAL:-} == 1 ]]; then
    pwsh -NoProfile -File "$ROOT/scripts/postdeploy.ps1" -GraphClientId "$GRAPH_CLIENT_ID" -Global
  fi
fi

echo "Restarting $APP so that Key Vault references are read again"
az functionapp restart --resource-group "$RESOURCE_GROUP" --name "$APP" --output none

cat <<EOF

Values for the Epic analyst and the hospital's interface team ($ENVIRONMENT):
  Public base URL:        $BASE_URL
  JWK Set URL:            $BASE_URL/api/.well-known/jwks.json
  SMART redirect URI:     $BASE_URL/api/launch/callback
  Approval redirect URI:  $BASE_URL/api/portal/approvals/callback   (the analyst's Epic sign-in when approving)
  Provider launch:        $BASE_URL/api/launch/provider   (Epic adds iss and launch)
  Patient launch:         $BASE_URL/api/launch/patient    (MyChart; Epic adds iss and launch)
  HL7 SIU endpoint:       POST $BASE_URL/api/hl7/<environmentId>   (signed; upload the .cer in the portal)
  Event Grid webhook:     $BASE_URL/api/events/acs
  ACS resource (SMS):     $ACS   (generate the number in the portal: $BASE_URL/api/portal/phone-numbers)
Configuration portal:     $BASE_URL/api/portal   (docs/portal.md: turn on App Service authentication first)
  Environments:           $BASE_URL/api/portal/environments
  Approvals (Epic analyst): $BASE_URL/api/portal/approvals
  Integration records:    $BASE_URL/api/portal/environments/<environmentId>/records
EOF
[[ $missing == 0 ]] || echo "Some secrets are missing: upload them, then run this script again."
