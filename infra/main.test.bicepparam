// Test environment (Epic non-production). scripts/deploy.sh exports the environment variables read here.
using 'main.bicep'

param environmentName = 'test'
param location = readEnvironmentVariable('AZURE_LOCATION', 'eastus2')
param acsDataLocation = 'United States'
param tags = {
  application: 'open-virtual-visits'
  environment: 'test'
  'data-classification': 'phi'
}
param graphTenantId = readEnvironmentVariable('GRAPH_TENANT_ID', '')
param graphClientId = readEnvironmentVariable('GRAPH_CLIENT_ID', '')
param portalClientId = readEnvironmentVariable('PORTAL_CLIENT_ID', '')
param operatorPrincipalId = readEnvironmentVariable('OPERATOR_PRINCIPAL_ID', '')
param enableEventSubscriptions = bool(readEnvironmentVariable('ENABLE_EVENT_SUBSCRIPTIONS', 'false'))
// Set by scripts/deploy.sh for the az process only (from Key Vault), never exported or written down.
param eventGridWebhookKey = readEnvironmentVariable('EVENTGRID_WEBHOOK_KEY', '')
param maximumInstanceCount = 5
param logRetentionInDays = 30
