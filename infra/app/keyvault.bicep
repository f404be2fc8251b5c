// Key Vault for what must stay secret: the SMS link-signing key, our SMART (JWKS) signing keys and the
// Graph certificate. RBAC mode (no access policies), soft delete with purge protection.
// The secrets themselves are put in by scripts/deploy.sh (link-signing-key, eventgrid-webhook-key) and by
// the operator (docs/deploy.md); Bicep never sees their values, except the webhook key, which
// scripts/deploy.sh passes back as a @secure() parameter for the Event Grid subscriptions' URL.

param name string

param location string

param tags object

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: true
    enabledForDeployment: false
    enabledForDiskEncryption: false
    enabledForTemplateDeployment: false
    // Flex Consumption without a virtual network resolves Key Vault references over the public
    // endpoint; every read still needs an Entra token with the Key Vault Secrets User role.
    publicNetworkAccess: 'Enabled'
  }
}

output name string = vault.name
output id string = vault.id
output uri string = vault.properties.vaultUri
