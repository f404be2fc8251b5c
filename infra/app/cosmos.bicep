// Cosmos DB for NoSQL, serverless, Entra-only (no account keys), with every container the code uses.
// The container list mirrors lib/store/schema.py CONTAINERS; tests/infra checks that they agree.

param name string

param location string

param tags object

param databaseName string

// name, partition key path and default TTL of each container (lib/store/schema.py).
// defaultTtl -1 turns TTL on without a default expiry: each item sets its own `ttl`
// (phone numbers expire after the visit). A container without defaultTtl has TTL off.
var cosmosContainers = [
  { name: 'environments', partitionKey: '/id' }
  // one partition per visit: appointment, phone number and texts, written in one transactional batch
  { name: 'visits', partitionKey: '/appointmentKey', defaultTtl: -1 }
  // one partition per HL7 message: its ACK, its signatures and the join link of the visit it booked
  { name: 'hl7_messages', partitionKey: '/messageKey', defaultTtl: -1 }
  { name: 'rejected', partitionKey: '/environmentId', defaultTtl: -1 }
  { name: 'launch_states', partitionKey: '/id', defaultTtl: -1 }
  { name: 'visit_events', partitionKey: '/appointmentKey', defaultTtl: -1 }
  { name: 'users', partitionKey: '/id' }
  { name: 'timer_state', partitionKey: '/id' }
  { name: 'sms_messages', partitionKey: '/id', defaultTtl: -1 }
  { name: 'opt_outs', partitionKey: '/id', defaultTtl: -1 }
  { name: 'hl7_jti', partitionKey: '/id', defaultTtl: -1 }
  { name: 'graph_subscriptions', partitionKey: '/id', defaultTtl: -1 }
  { name: 'presence', partitionKey: '/id', defaultTtl: -1 }
  { name: 'participant_identities', partitionKey: '/id', defaultTtl: -1 }
  { name: 'call_quality', partitionKey: '/id' }
  { name: 'report_visits', partitionKey: '/id' }
  { name: 'report_days', partitionKey: '/id' }
  { name: 'audit', partitionKey: '/environmentId' }
  { name: 'portal_operations', partitionKey: '/id', defaultTtl: -1 }
  { name: 'fhir_url_claims', partitionKey: '/id' }
]

resource account 'Microsoft.DocumentDB/databaseAccounts@2024-11-15' = {
  name: name
  location: location
  tags: tags
  kind: 'GlobalDocumentDB'
  properties: {
    databaseAccountOfferType: 'Standard'
    // Serverless is single-region; the region is the deployment's location (data residency).
    locations: [
      {
        locationName: location
        failoverPriority: 0
        isZoneRedundant: false
      }
    ]
    capabilities: [
      {
        name: 'EnableServerless'
      }
    ]
    consistencyPolicy: {
      defaultConsistencyLevel: 'Session'
    }
    disableLocalAuth: true
    disableKeyBasedMetadataWriteAccess: true
    minimalTlsVersion: 'Tls12'
    publicNetworkAccess: 'Enabled'
    // Periodic backup with the shortest retention and locally redundant copies: a deleted phone
    // number survives only 8 hours in backups, and backups stay in the deployment's region.
    backupPolicy: {
      type: 'Periodic'
      periodicModeProperties: {
        backupIntervalInMinutes: 240
        backupRetentionIntervalInHours: 8
        backupStorageRedundancy: 'Local'
      }
    }
  }
}

resource database 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases@2024-11-15' = {
  parent: account
  name: databaseName
  properties: {
    resource: {
      id: databaseName
    }
  }
}

// No throughput options: serverless accounts reject them.
resource containers 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers@2024-11-15' = [
  for c in cosmosContainers: {
    parent: database
    name: c.name
    properties: {
      resource: union(
        {
          id: c.name
          partitionKey: {
            paths: [c.partitionKey]
            kind: 'Hash'
            version: 2
          }
        },
        contains(c, 'defaultTtl') ? { defaultTtl: c.defaultTtl } : {}
      )
    }
  }
]

output name string = account.name
output id string = account.id
output endpoint string = account.properties.documentEndpoint
output databaseName string = database.name
