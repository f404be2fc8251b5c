// Open Virtual Visits: everything one environment (test or production) needs, in one resource group.
//
//   az deployment group create -g <rg> -f infra/main.bicep -p infra/main.<env>.bicepparam
//
// scripts/deploy.sh runs this, publishes the code, then runs it again with the Event Grid subscriptions
// on (docs/deploy.md). No keys, passwords or connection strings are created or output: every service is
// reached with the user-assigned managed identity, and the secrets the app needs live in Key Vault and
// reach it as Key Vault references. One secret is passed in: the Event Grid webhook key (a @secure()
// parameter), because the subscriptions must carry it in their endpoint URL.

targetScope = 'resourceGroup'

@minLength(1)
@maxLength(32)
@description('Short environment name, e.g. "test" or "production"; part of every resource name.')
param environmentName string

@minLength(1)
@description('Azure region of every regional resource. Pick a region that offers Flex Consumption and where the hospital\'s data may live.')
param location string

@minLength(1)
@description('Where Azure Communication Services stores data at rest, e.g. "United States" (data residency).')
param acsDataLocation string

@description('Tags put on every resource that takes tags.')
param tags object

@description('Cosmos DB database name (COSMOS_DATABASE).')
param cosmosDatabaseName string = 'virtualvisits'

@description('Public URL of the app without trailing slash, when a custom domain fronts it. Empty = the Function App\'s default host name.')
param publicBaseUrl string = ''

@description('Entra tenant of the Graph app registration (GRAPH_TENANT_ID). Empty until the registration exists.')
param graphTenantId string = ''

@description('Client ID of the Graph app registration (GRAPH_CLIENT_ID). Empty until the registration exists.')
param graphClientId string = ''

param graphAuthorityHost string = 'https://login.microsoftonline.com'

@description('Client ID of the Entra app registration of the configuration portal (App Service authentication, app roles Admin, Approver, ReportsReader). Empty until it exists: the portal then refuses everyone (docs/portal.md).')
param portalClientId string = ''

param graphBaseUrl string = 'https://graph.microsoft.com/v1.0'

@description('Largest HL7 request body accepted, in bytes (HL7_MAX_BYTES).')
param hl7MaxBytes int = 1048576

@description('ICE server URLs (space-separated stun:/turn: URLs) the patient device test probes to tell whether the browser can reach the media relays (CALL_RELAY_URLS); empty = not checked. See docs/patient-visit.md.')
param callRelayUrls string = ''

@description('Days a rejected HL7 message is kept for an operator to replay (HL7_REJECTED_TTL_DAYS).')
@minValue(1)
@maxValue(365)
param hl7RejectedTtlDays int = 30

@description('Teams join hosts a launch may end on, comma-separated (TEAMS_JOIN_ORIGINS; docs/launch.md).')
param teamsJoinOrigins string = 'https://teams.microsoft.com'

@description('Anonymous launch attempts per client address and instance (LAUNCH_RATE_LIMIT, e.g. 120/minute).')
param launchRateLimit string = '120/minute'

@description('Wrong state or join-link guesses and failed HL7 requests (unknown environment, failed signature) per client address and instance (GUESS_RATE_LIMIT, e.g. 20/minute).')
param guessRateLimit string = '20/minute'

@description('Seconds a store call waits for Cosmos DB\'s answer (COSMOS_READ_TIMEOUT_SECONDS; docs/hl7-intake.md "When the store hangs").')
@minValue(1)
@maxValue(300)
param cosmosReadTimeoutSeconds int = 5

@description('Upper bound of Function App instances (bounds SMS and Cosmos request rates).')
param maximumInstanceCount int = 10

@description('Days Log Analytics keeps logs.')
param logRetentionInDays int = 30

@description('Send logs, traces and metrics to Application Insights (TELEMETRY_ENABLED). The alerts read these metrics.')
param enableTelemetry bool = true

@description('E-mail address of the on-call engineer who receives the alerts (app/alerts.bicep). Empty = none.')
param alertEmail string = ''

@description('HTTPS webhook (paging tool) that receives the alerts. Empty = none.')
param alertWebhookUrl string = ''

@description('Object ID of the operator who uploads secrets into Key Vault (Key Vault Secrets Officer on that vault only). Empty = no grant.')
param operatorPrincipalId string = ''

@description('Create the Event Grid subscriptions to the app\'s webhook. Event Grid validates the webhook on creation, so this is on only once the code is published.')
param enableEventSubscriptions bool = false

@secure()
@description('Value of the Key Vault secret eventgrid-webhook-key (scripts/deploy.sh reads it and passes it): the ?code= of the Event Grid subscriptions. Empty = no subscription is deployed, even with enableEventSubscriptions.')
param eventGridWebhookKey string = ''

// Every name derives from one token, stable for a (subscription, resource group, environment, region).
var resourceToken = toLower(uniqueString(subscription().id, resourceGroup().id, environmentName, location))

var identityName = 'id-${resourceToken}'
var storageAccountName = 'st${resourceToken}'
var deploymentContainerName = 'deploymentpackage'
var cosmosAccountName = 'cosmos-${resourceToken}'
var keyVaultName = 'kv-${resourceToken}'
var logAnalyticsName = 'log-${resourceToken}'
var applicationInsightsName = 'appi-${resourceToken}'
var communicationServiceName = 'acs-${resourceToken}'
var systemTopicName = 'evgt-acs-${resourceToken}'
var planName = 'plan-${resourceToken}'
var functionAppName = 'func-${resourceToken}'

// lib/queues.py: the work queues and the host's poison queues (<queue>-poison after maxDequeueCount).
var queueNames = [
  'sms-outbox'
  'sms-outbox-poison'
  'visit-events'
  'visit-events-poison'
  'visit-events-poison-poison' // a malformed message the poison trigger cannot read ends here (watched too)
  'call-records'
  'call-records-poison'
  'report-updates'
  'report-updates-poison'
  'launch-followup'
  'launch-followup-poison'
]

// Key Vault secret names. Values are uploaded after deployment (docs/deploy.md).
var linkSigningKeySecretName = 'link-signing-key'
// Keys the hash of HL7 control IDs in logs (HMAC-SHA256): stable per deployment, so log lines can be matched.
var logIdKeySecretName = 'log-id-key'
var smartPrivateKeysSecretName = 'smart-private-keys'
var graphClientCertSecretName = 'graph-client-cert'
// Only during a rotation of the Graph client certificate (docs/deploy.md): an absent secret reads as unset.
var graphClientCertPreviousSecretName = 'graph-client-cert-previous'
// Optional secrets (docs/launch.md): production SMART keys (Epic wants separate non-production and production
// keys and JWKS URLs) and the AES keys of Epic encrypted launch links, JSON {"environmentId": "<base64>"}.
var smartPrivateKeysProductionSecretName = 'smart-private-keys-production'
var epicCalKeysSecretName = 'epic-cal-keys'
var eventGridWebhookKeySecretName = 'eventgrid-webhook-key'

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: identityName
  location: location
  tags: tags
}

module storage 'app/storage.bicep' = {
  name: 'storage'
  params: {
    name: storageAccountName
    location: location
    tags: tags
    deploymentContainerName: deploymentContainerName
    queueNames: queueNames
  }
}

module cosmos 'app/cosmos.bicep' = {
  name: 'cosmos'
  params: {
    name: cosmosAccountName
    location: location
    tags: tags
    databaseName: cosmosDatabaseName
  }
}

module keyVault 'app/keyvault.bicep' = {
  name: 'keyvault'
  params: {
    name: keyVaultName
    location: location
    tags: tags
  }
}

module monitoring 'app/monitoring.bicep' = {
  name: 'monitoring'
  params: {
    logAnalyticsName: logAnalyticsName
    applicationInsightsName: applicationInsightsName
    location: location
    tags: tags
    retentionInDays: logRetentionInDays
  }
}

// Alerts and availability tests for the on-call engineer (README.md "Runbook").
module alerts 'app/alerts.bicep' = {
  name: 'alerts'
  params: {
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    location: location
    tags: tags
    appBaseUrl: appBaseUrl
    actionGroupName: 'ag-${resourceToken}'
    namePrefix: 'vv-${resourceToken}'
    alertEmail: alertEmail
    alertWebhookUrl: alertWebhookUrl
  }
}

module functionApp 'app/functionapp.bicep' = {
  name: 'functionapp'
  params: {
    planName: planName
    name: functionAppName
    location: location
    tags: tags
    identityId: identity.id
    deploymentContainerUrl: storage.outputs.deploymentContainerUrl
    maximumInstanceCount: maximumInstanceCount
    portalClientId: portalClientId
    portalTenantId: graphTenantId
    authorityHost: graphAuthorityHost
  }
}

var appBaseUrl = empty(publicBaseUrl) ? 'https://${functionApp.outputs.defaultHostName}' : publicBaseUrl

module communication 'app/communication.bicep' = {
  name: 'communication'
  params: {
    name: communicationServiceName
    dataLocation: acsDataLocation
    tags: tags
    systemTopicName: systemTopicName
    webhookUrl: '${appBaseUrl}/api/events/acs'
    enableEventSubscriptions: enableEventSubscriptions
    eventGridWebhookKey: eventGridWebhookKey
  }
}

module rbac 'app/rbac.bicep' = {
  name: 'rbac'
  params: {
    principalId: identity.properties.principalId
    operatorPrincipalId: operatorPrincipalId
    storageAccountName: storage.outputs.name
    cosmosAccountName: cosmos.outputs.name
    keyVaultName: keyVault.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    communicationServiceName: communication.outputs.name
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' existing = {
  name: functionAppName
}

// Every app setting, in one place. tests/infra/test_bicep_structure.py checks this list against the
// names lib/settings.py reads: nothing the code requires is missing, nothing it does not read is here
// (apart from the host and SDK settings the test lists with their reasons).
resource appSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: site
  name: 'appsettings'
  properties: {
    // Functions host storage (timers, leases, queue triggers), identity-based: no connection string.
    AzureWebJobsStorage__credential: 'managedidentity'
    AzureWebJobsStorage__clientId: identity.properties.clientId
    AzureWebJobsStorage__blobServiceUri: storage.outputs.blobEndpoint
    AzureWebJobsStorage__queueServiceUri: storage.outputs.queueEndpoint
    // DefaultAzureCredential picks the user-assigned identity from this (Cosmos, queues, ACS SMS and identity).
    AZURE_CLIENT_ID: identity.properties.clientId
    APPLICATIONINSIGHTS_CONNECTION_STRING: monitoring.outputs.applicationInsightsConnectionString
    APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identity.properties.clientId};Authorization=AAD'
    TELEMETRY_ENABLED: string(enableTelemetry)
    COSMOS_ENDPOINT: cosmos.outputs.endpoint
    COSMOS_DATABASE: cosmos.outputs.databaseName
    ACS_ENDPOINT: communication.outputs.endpoint
    PUBLIC_BASE_URL: appBaseUrl
    LINK_SIGNING_KEY: '@Microsoft.KeyVault(VaultName=${keyVault.outputs.name};SecretName=${linkSigningKeySecretName})'
    LOG_ID_KEY: '@Microsoft.KeyVault(VaultName=${keyVault.outputs.name};SecretName=${logIdKeySecretName})'
    // PEM text in Key Vault, not files: see docs/deploy.md "Settings that come from Key Vault".
    SMART_PRIVATE_KEYS: '@Microsoft.KeyVault(VaultName=${keyVault.outputs.name};SecretName=${smartPrivateKeysSecretName})'
    GRAPH_CLIENT_CERT: '@Microsoft.KeyVault(VaultName=${keyVault.outputs.name};SecretName=${graphClientCertSecretName})'
    GRAPH_CLIENT_CERT_PREVIOUS: '@Microsoft.KeyVault(VaultName=${keyVault.outputs.name};SecretName=${graphClientCertPreviousSecretName})'
    SMART_PRIVATE_KEYS_PRODUCTION: '@Microsoft.KeyVault(VaultName=${keyVault.outputs.name};SecretName=${smartPrivateKeysProductionSecretName})'
    EPIC_CAL_KEYS: '@Microsoft.KeyVault(VaultName=${keyVault.outputs.name};SecretName=${epicCalKeysSecretName})'
    GRAPH_TENANT_ID: graphTenantId
    GRAPH_CLIENT_ID: graphClientId
    GRAPH_AUTHORITY_HOST: graphAuthorityHost
    GRAPH_BASE_URL: graphBaseUrl
    HL7_MAX_BYTES: string(hl7MaxBytes)
    // The ?code= secret of the Event Grid webhook (docs/sms.md), and the only topic it accepts events from.
    EVENTGRID_WEBHOOK_KEY: '@Microsoft.KeyVault(VaultName=${keyVault.outputs.name};SecretName=${eventGridWebhookKeySecretName})'
    ACS_RESOURCE_ID: communication.outputs.id
    HL7_REJECTED_TTL_DAYS: string(hl7RejectedTtlDays)
    TEAMS_JOIN_ORIGINS: teamsJoinOrigins
    LAUNCH_RATE_LIMIT: launchRateLimit
    GUESS_RATE_LIMIT: guessRateLimit
    COSMOS_READ_TIMEOUT_SECONDS: string(cosmosReadTimeoutSeconds)
    CALL_RELAY_URLS: callRelayUrls
  }
  // Key Vault references resolve only once the identity may read the vault.
  dependsOn: [
    functionApp
    rbac
  ]
}

// Outputs: names and public endpoints only, never a key or a secret value.
output AZURE_LOCATION string = location
output AZURE_RESOURCE_GROUP string = resourceGroup().name
output FUNCTION_APP_NAME string = functionApp.outputs.name
output PUBLIC_BASE_URL string = appBaseUrl
output EVENT_GRID_WEBHOOK_URL string = '${appBaseUrl}/api/events/acs'
output EVENT_SUBSCRIPTIONS_ENABLED bool = enableEventSubscriptions
output IDENTITY_CLIENT_ID string = identity.properties.clientId
output IDENTITY_PRINCIPAL_ID string = identity.properties.principalId
output STORAGE_ACCOUNT_NAME string = storage.outputs.name
output COSMOS_ENDPOINT string = cosmos.outputs.endpoint
output COSMOS_DATABASE string = cosmos.outputs.databaseName
output KEY_VAULT_NAME string = keyVault.outputs.name
output ACS_NAME string = communication.outputs.name
output ACS_ENDPOINT string = communication.outputs.endpoint
output APPLICATIONINSIGHTS_NAME string = monitoring.outputs.applicationInsightsName
