#!/usr/bin/env bash
# Deploy one environment of the connector into the signed-in Azure subscription, in one command:
#
#   scripts/deploy.sh <test|production> <resource-group> <location>
#
# 1. creates the resource group and deploys infra/main.bicep with infra/main.<env>.bicepparam;
# 2. creates the SMS link-signing key in Key Vault if it does not exist yet (never replaces one);
# 3. publishes the code (Core Tools when installed, else a zip deployment with a remote build);
# 4. deploys again with the Event Grid subscriptions on (Event Grid validates the webhook, so the
#    code must be live first);
# 5. writes the deployment outputs (names and URLs, no secrets) to .local/deploy/<env>.outputs.json.
#
# Optional environment variables:
#   GRAPH_CLIENT_ID, GRAPH_TENANT_ID  the Graph app registration (docs/deploy.md, step 1); may be set later
#   PUBLIC_BASE_URL                   production only: the custom domain in front of the app
#   OPERATOR_PRINCIPAL_ID             who may write Key Vault secrets (default: the signed-in user)
#   WHAT_IF=1                         preview the infrastructure changes and stop
#   SKIP_EVENT_SUBSCRIPTIONS=1        skip step 4 (the webhook is not ready yet)
# See docs/deploy.md for prerequisites and the steps that follow.
set -euo pipefail

usage() {
  echo "usage: $0 <test|production> <resource-group> <location>" >&2
  exit 2
}
[[ $# -eq 3 ]] || usage
ENVIRONMENT=$1
RESOURCE_GROUP=$2
LOCATION=$3
case "$ENVIRONMENT" in
  test | production) ;;
  *) usage ;;
esac

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TEMPLATE="$ROOT/infra/main.bicep"
PARAMETERS="$ROOT/infra/main.$ENVIRONMENT.bicepparam"
DEPLOYMENT="open-virtual-visits-$ENVIRONMENT"
OUTPUTS_DIR="$ROOT/.local/deploy"
LINK_KEY_SECRET=link-signing-key

log() { printf '==> %s\n' "$*" >&2; }
die() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}
need() { command -v "$1" >/dev/null 2>&1 || die "$1 is required (see docs/deploy.md, Prerequisites)"; }

need az
need openssl
need curl
az account show --output none 2>/dev/null || die "not signed in: run 'az login' (and 'az account set --subscription ...')"
az bicep version >/dev/null 2>&1 || az bicep install

# Read by the .bicepparam files (readEnvironmentVariable).
export AZURE_LOCATION=$LOCATION
export GRAPH_TENANT_ID=${GRAPH_TENANT_ID:-$(az account show --query tenantId --output tsv)}
export GRAPH_CLIENT_ID=${GRAPH_CLIENT_ID:-}
export PUBLIC_BASE_URL=${PUBLIC_BASE_URL:-}
if [[ -z ${OPERATOR_PRINCIPAL_ID:-} ]]; then
  # Empty for a service principal sign-in: then no operator grant is made.
  OPERATOR_PRINCIPAL_ID=$(az ad signed-in-user show --query id --output tsv 2>/dev/null || true)
fi
export OPERATOR_PRINCIPAL_ID

# deploy_infrastructure <true|false>: one deployment of main.bicep; Event Grid subscriptions on or off.
deploy_infrastructure() {
  ENABLE_EVENT_SUBSCRIPTIONS=$1 az deployment group create \
    --resource-group "$RESOURCE_GROUP" \
    --name "$DEPLOYMENT" \
    --template-file "$TEMPLATE" \
    --parameters "$PARAMETERS" \
    --output none
}

output() {
  az deployment group show --resource-group "$RESOURCE_GROUP" --name "$DEPLOYMENT" \
    --query "properties.outputs.$1.value" --output tsv
}

log "resource group $RESOURCE_GROUP in $LOCATION"
az group create --name "$RESOURCE_GROUP" --location "$LOCATION" \
  --tags application=open-virtual-visits environment="$ENVIRONMENT" --output none

if [[ ${WHAT_IF:-} == 1 ]]; then
  log "what-if (no changes are made)"
  ENABLE_EVENT_SUBSCRIPTIONS=false az deployment group what-if \
    --resource-group "$RESOURCE_GROUP" --name "$DEPLOYMENT" \
    --template-file "$TEMPLATE" --parameters "$PARAMETERS"
  exit 0
fi

log "infrastructure ($PARAMETERS)"
deploy_infrastructure false
APP=$(output FUNCTION_APP_NAME)
VAULT=$(output KEY_VAULT_NAME)
BASE_URL=$(output PUBLIC_BASE_URL)

# The link-signing key signs the SMS join links: create it once, never replace it (replacing it would
# invalidate every link already sent). Role assignments can take minutes to reach Key Vault, so an
# answer other than "found" or "not found" is retried.
log "link-signing key in Key Vault $VAULT"
errors=$(mktemp)
key_file=""
package_dir=""
cleanup() { rm -rf "$errors" "$key_file" "$package_dir"; }
trap cleanup EXIT
state=unknown
for _ in $(seq 1 30); do
  if az keyvault secret show --vault-name "$VAULT" --name "$LINK_KEY_SECRET" --output none 2>"$errors"; then
    state=present
    break
  elif grep -q SecretNotFound "$errors"; then
    state=missing
    break
  fi
  sleep 10
done
case "$state" in
  present) log "kept the existing $LINK_KEY_SECRET" ;;
  missing)
    key_file=$(mktemp) # mode 0600
    printf '%s' "$(openssl rand -base64 32)" >"$key_file"
    az keyvault secret set --vault-name "$VAULT" --name "$LINK_KEY_SECRET" --file "$key_file" \
      --content-type 'base64; 32 bytes' --output none
    log "created $LINK_KEY_SECRET"
    ;;
  *) die "cannot read Key Vault $VAULT: $(cat "$errors") (does the operator have Key Vault Secrets Officer?)" ;;
esac

log "code -> $APP"
if command -v func >/dev/null 2>&1; then
  (cd "$ROOT" && func azure functionapp publish "$APP" --python)
else
  need zip
  package_dir=$(mktemp -d)
  (cd "$ROOT" && zip -qr "$package_dir/app.zip" function_app.py host.json requirements.txt functions lib \
    -x '*/__pycache__/*' '*.pyc')
  az functionapp deployment source config-zip --resource-group "$RESOURCE_GROUP" --name "$APP" \
    --src "$package_dir/app.zip" --build-remote true --output none
fi

# Flex Consumption has no platform health check; probe the readiness endpoint instead.
log "waiting for $BASE_URL/api/health/ready"
ready=false
for _ in $(seq 1 30); do
  if curl --silent --fail --max-time 10 "$BASE_URL/api/health/ready" >/dev/null; then
    ready=true
    break
  fi
  sleep 10
done
[[ $ready == true ]] || log "warning: $BASE_URL/api/health/ready did not answer 200 (check Application Insights)"

if [[ ${SKIP_EVENT_SUBSCRIPTIONS:-} == 1 ]]; then
  log "skipped the Event Grid subscriptions (SKIP_EVENT_SUBSCRIPTIONS=1)"
else
  log "Event Grid subscriptions -> $BASE_URL/api/events/acs"
  deploy_infrastructure true ||
    die "Event Grid could not validate $BASE_URL/api/events/acs; fix the webhook, then rerun this script"
fi

mkdir -p "$OUTPUTS_DIR"
az deployment group show --resource-group "$RESOURCE_GROUP" --name "$DEPLOYMENT" \
  --query properties.outputs --output json >"$OUTPUTS_DIR/$ENVIRONMENT.outputs.json"
log "outputs: $OUTPUTS_DIR/$ENVIRONMENT.outputs.json"
log "done. Next: scripts/postdeploy.sh $ENVIRONMENT $RESOURCE_GROUP, then docs/deploy.md 'After deployment'"
