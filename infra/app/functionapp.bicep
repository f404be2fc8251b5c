// The Function App on the Flex Consumption plan (Linux, Python 3.11) with the user-assigned identity.
// App settings are set in main.bicep (one place lists every setting the code reads).

param planName string

param name string

param location string

param tags object

@description('Resource ID of the user-assigned managed identity.')
param identityId string

@description('URL of the blob container that holds the deployment package.')
param deploymentContainerUrl string

@description('Upper bound of instances; it also bounds the SMS send rate and Cosmos request rate.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int

@allowed([
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Client ID of the Entra app registration that signs people in to the configuration portal (App Service authentication); empty = not configured yet (the portal then refuses everyone).')
param portalClientId string = ''

@description('Entra tenant of the portal app registration.')
param portalTenantId string = ''

@description('Entra authority host (sovereign clouds differ).')
param authorityHost string = 'https://login.microsoftonline.com'

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true // Linux
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: tags
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    // Key Vault references (@Microsoft.KeyVault(...)) resolve with the user-assigned identity,
    // not a system-assigned one (there is none).
    keyVaultReferenceIdentity: identityId
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      // No healthCheckPath: Flex Consumption has no platform health check. scripts/deploy.sh probes
      // /api/health/ready after publishing instead.
    }
    // On Flex Consumption the runtime comes from here, not from FUNCTIONS_WORKER_RUNTIME or
    // linuxFxVersion, and the package lives in our storage account, read with the identity.
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: deploymentContainerUrl
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
}

// App Service authentication for the configuration portal (docs/portal.md "Sign-in and roles"): the platform
// signs people in with Entra ID and passes X-MS-CLIENT-PRINCIPAL to the app (and strips a client-sent one);
// it also sets WEBSITE_AUTH_ENABLED, the only condition under which the app trusts the header. Anonymous
// requests still reach the launch, HL7, join and Event Grid routes; the portal asks for a sign-in itself.
resource portalAuth 'Microsoft.Web/sites/config@2024-04-01' = if (!empty(portalClientId) && !empty(portalTenantId)) {
  parent: site
  name: 'authsettingsV2'
  properties: {
    platform: {
      enabled: true
    }
    globalValidation: {
      requireAuthentication: false
      unauthenticatedClientAction: 'AllowAnonymous'
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: true
        registration: {
          clientId: portalClientId
          openIdIssuer: '${authorityHost}/${portalTenantId}/v2.0'
        }
        validation: {
          allowedAudiences: [
            portalClientId
            'api://${portalClientId}'
          ]
        }
      }
    }
    login: {
      tokenStore: {
        enabled: true
      }
    }
  }
}

// No FTP and no basic-auth publishing: deployments authenticate with Entra ID.
resource ftpPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'scm'
  properties: {
    allow: false
  }
}

output name string = site.name
output id string = site.id
output defaultHostName string = site.properties.defaultHostName
