#!/usr/bin/env bash
# Deploy one environment of the connector into the signed-in Azure subscription, in one command:
#
#   scripts/deploy.sh <test|production> <resource-group> <location>
#
# 1. creates the resource group and deploys infra/main.bicep with infra/main.<env>.bicepparam;
# 2. creates the SMS link-signing key and the Event Grid webhook key in Key Vault if they do not exist
#    yet (never replaces one);
# 3. builds the patient's web client (npm ci + esbuild) and publishes the code (Core Tools when installed,
#    else a zip deployment with a remote build);
# 4. deploys again with the Event Grid subscriptions on, their URL carrying the webhook key as ?code=
#    (Event Grid validates the webhook, so the code must be live first);
# 5. writes the deployment outputs (names and URLs, no secrets) to .local/deploy/<env>.outputs.json.
#
# Optional environment variables:
#   GRAPH_CLIENT_ID, GRAPH_TENANT_ID  the Graph app registration (docs/deploy.md, step 1); may be set later
#   PORTAL_CLIENT_ID                  the configuration portal's app registration (docs/portal.md); may be set later
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
LOG_ID_KEY_SECRET=log-id-key
WEBHOOK_KEY_SECRET=eventgrid-webhook-key

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
export PORTAL_CLIENT_ID=${PORTAL_CLIENT_ID:-}
export PUBLIC_BASE_URL=${PUBLIC_BASE_URL:-}
if [[ -z ${OPERATOR_PRINCIPAL_ID:-} ]]; then
  # Empty for a service principal sign-in: then no operator grant is made.
  OPERATOR_PRINCIPAL_ID=$(az ad signed-in-user show --query id --output tsv 2>/dev/null || true)
fi
export OPERATOR_PRINCIPAL_ID

# deploy_infrastructure <true|false> [webhook key]: one deployment of main.bicep; Event Grid subscriptions
# on or off. The key reaches the .bicepparam file (a @secure() parameter) through the environment of this
# az process only: not on a command line (visible to every user in ps), not exported, not on disk.
deploy_infrastructure() {
  EVENTGRID_WEBHOOK_KEY=${2:-} ENABLE_EVENT_SUBSCRIPTIONS=$1 az deployment group create \
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

errors=$(mktemp)
key_file=""
package_dir=""
cleanup() { rm -rf "$errors" "$key_file" "$package_dir"; }
trap cleanup EXIT

# ensure_secret <name> <content type> <command printing a new value>: creates the Key Vault secret when
# it does not exist, never replaces one. Role assignments can take minutes to reach Key Vault, so an
# answer other than "found" or "not found" is retried. The value goes through a 0600 file, never argv.
ensure_secret() {
  local name=$1 content_type=$2 state=unknown value
  shift 2
  for _ in $(seq 1 30); do
    if az keyvault secret show --vault-name "$VAULT" --name "$name" --output none 2>"$errors"; then
      state=present
      break
    elif grep -q SecretNotFound "$errors"; then
      state=missing
      break
    fi
    sleep 10
  done
  case "$state" in
    present) log "kept the existing $name" ;;
    missing)
      value=$("$@")
      [[ -n $value ]] || die "could not generate $name"
      key_file=$(mktemp) # mode 0600
      printf '%s' "$value" >"$key_file"
      value=""
      az keyvault secret set --vault-name "$VAULT" --name "$name" --file "$key_file" \
        --content-type "$content_type" --output none
      rm -f "$key_file"
      log "created $name"
      ;;
    *) die "cannot read Key Vault $VAULT: $(cat "$errors") (does the operator have Key Vault Secrets Officer?)" ;;
  esac
}

new_base64_key() { openssl rand -base64 32; }
# URL-safe (it travels in the subscription's URL as ?code=): base64url without padding.
new_base64url_key() { openssl rand -base64 32 | tr '+/' '-_' | tr -d '='; }

# The link-signing key signs the SMS join links: replacing it would invalidate every link already sent.
log "link-signing key in Key Vault $VAULT"
ensure_secret "$LINK_KEY_SECRET" 'base64; 32 bytes' new_base64_key
# The log ID key keys the hash of HL7 control IDs in logs: replacing it only stops matching older log lines.
log "log ID key in Key Vault $VAULT"
ensure_secret "$LOG_ID_KEY_SECRET" 'base64; 32 bytes' new_base64_key
# The Event Grid webhook key: the app reads it as EVENTGRID_WEBHOOK_KEY (Key Vault reference), the
# subscriptions send it as ?code= (step 4).
log "Event Grid webhook key in Key Vault $VAULT"
ensure_secret "$WEBHOOK_KEY_SECRET" 'base64url; 32 bytes' new_base64url_key

# The patient's browser client: bundled from package-lock.json into lib/web/static/build/ (shipped in lib/).
log "patient web client (npm ci + esbuild)"
need node
need npm
(cd "$ROOT" && npm ci --no-audit --no-fund --loglevel=error && node web/patient/build.mjs)

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
  # Read back, never printed; without it main.bicep would deploy no subscription.
  webhook_key=$(az keyvault secret show --vault-name "$VAULT" --name "$WEBHOOK_KEY_SECRET" \
    --query value --output tsv)
  [[ -n $webhook_key ]] || die "Key Vault secret $WEBHOOK_KEY_SECRET is empty"
  log "Event Grid subscriptions -> $BASE_URL/api/events/acs?code=<$WEBHOOK_KEY_SECRET>"
  deploy_infrastructure true "$webhook_key" ||
    die "Event Grid could not validate $BASE_URL/api/events/acs; fix the webhook, then rerun this script"
  unset webhook_key
fi

mkdir -p "$OUTPUTS_DIR"
az deployment group show --resource-group "$RESOURCE_GROUP" --name "$DEPLOYMENT" \
  --query properties.outputs --output json >"$OUTPUTS_DIR/$ENVIRONMENT.outputs.json"
log "outputs: $OUTPUTS_DIR/$ENVIRONMENT.outputs.json"
log "done. Next: scripts/postdeploy.sh $ENVIRONMENT $RESOURCE_GROUP, then docs/deploy.md 'After deployment'"
