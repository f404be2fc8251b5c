// Application Insights standard availability tests of the app's health endpoints (functions/health.py):
// /api/health/ready (configuration, Cosmos DB, queues) and /api/health/live (the worker answers).
// Flex Consumption has no platform health check (app/functionapp.bicep); these probes are the
// deployment's health check after publishing. Each probe also refreshes the queue-depth metric that the
// poison-message alert reads.

param location string

@description('The shared tags plus the hidden-link tag to Application Insights (set by app/alerts.bicep).')
param tags object

param applicationInsightsId string

param appBaseUrl string

param namePrefix string

var probes = [
  {
    name: 'ready'
    path: '/api/health/ready'
  }
  {
    name: 'live'
    path: '/api/health/live'
  }
]

// Five test locations (Azure's recommendation is at least five).
var testLocations = [
  'us-va-ash-azr'
  'us-il-ch1-azr'
  'us-tx-sn1-azr'
  'us-ca-sjc-azr'
  'us-fl-mia-edge'
]

resource webTests 'Microsoft.Insights/webtests@2022-06-15' = [for probe in probes: {
  name: '${namePrefix}-health-${probe.name}'
  location: location
  tags: tags
  kind: 'standard'
  properties: {
    SyntheticMonitorId: '${namePrefix}-health-${probe.name}'
    Name: '${namePrefix}-health-${probe.name}'
    Kind: 'standard'
    Enabled: true
    Frequency: 300
    Timeout: 30
    RetryEnabled: true
    Locations: [for id in testLocations: {
      Id: id
    }]
    Request: {
      RequestUrl: '${appBaseUrl}${probe.path}'
      HttpVerb: 'GET'
      ParseDependentRequests: false
    }
    ValidationRules: {
      ExpectedHttpStatusCode: 200
      SSLCheck: true
      SSLCertRemainingLifetimeCheck: 7
    }
  }
}]

output readinessTestId string = webTests[0].id
output livenessTestId string = webTests[1].id
