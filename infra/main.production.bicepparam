// Production environment. scripts/deploy.sh exports the environment variables read here.
using 'main.bicep'

param environmentName = 'production'
param location = readEnvironmentVariable('AZURE_LOCATION', 'eastus2')
param acsDataLocation = 'United States'
param tags = {
  application: 'open-virtual-visits'
  environment: 'production'
  'data-classification': 'phi'
}
param publicBaseUrl = readEnvironmentVariable('PUBLIC_BASE_URL', '')
param graphTenantId = readEnvironmentVariable('GRAPH_TENANT_ID', '')
param graphClientId = readEnvironmentVariable('GRAPH_CLIENT_ID', '')
param portalClientId = readEnvironmentVariable('PORTAL_CLIENT_ID', '')
param operatorPrincipalId = readEnvironmentVariable('OPERATOR_PRINCIPAL_ID', '')
param enableEventSubscriptions = bool(readEnvironmentVariable('ENABLE_EVENT_SUBSCRIPTIONS', 'false'))
// Set by scripts/deploy.sh for the az process only (from Key Vault), never exported or written down.
param eventGridWebhookKey = readEnvironmentVariable('EVENTGRID_WEBHOOK_KEY', '')
param maximumInstanceCount = 20
// Audit trails: keep logs longer in production; the compliance owner decides the final figure.
param logRetentionInDays = 90
