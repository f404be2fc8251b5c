// Azure Communication Services (SMS) and its Event Grid system topic.
//
// The phone number cannot be created here: it is bought (or ported) after deployment and linked in
// the admin portal; see docs/deploy.md. Access keys are disabled: the app sends with its managed
// identity (ACS_ENDPOINT + DefaultAzureCredential).

param name string

@description('Where ACS stores data at rest, e.g. "United States" or "Europe" (data residency).')
param dataLocation string

param tags object

param systemTopicName string

@description('HTTPS URL of the app\'s Event Grid webhook (the function answers the validation handshake).')
param webhookUrl string

@description('Event Grid validates a webhook when the subscription is created, so the subscriptions can only be created once the code is published (scripts/deploy.sh runs a second pass with this on).')
param enableEventSubscriptions bool

@secure()
@description('The webhook\'s shared secret (Key Vault secret eventgrid-webhook-key), sent by Event Grid as ?code= (Event Grid webhooks carry no signature). Empty = no subscription is deployed: the webhook would refuse every event.')
param eventGridWebhookKey string = ''

// ACS is a global resource; dataLocation decides where its data lives.
resource acs 'Microsoft.Communication/communicationServices@2025-05-01' = {
  name: name
  location: 'global'
  tags: tags
  properties: {
    dataLocation: dataLocation
    disableLocalAuth: true
  }
}

resource systemTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' = {
  name: systemTopicName
  location: 'global'
  tags: tags
  properties: {
    source: acs.id
    topicType: 'Microsoft.Communication.CommunicationServices'
  }
}

// One subscription per event type so that each can be paused or inspected on its own.
// No dead-letter destination on purpose: SMS events carry the patient's phone number (and, for
// inbound SMS, the message text); a dead-letter blob would keep them past the visit, out of reach of
// the Cosmos TTL. Undeliverable events are dropped after the retry window and show in metrics.
var smsEventSubscriptions = [
  {
    name: 'sms-delivery-reports'
    eventType: 'Microsoft.Communication.SMSDeliveryReportReceived'
  }
  {
    name: 'sms-received'
    eventType: 'Microsoft.Communication.SMSReceived'
  }
]

// A ternary over the list rather than a filtered loop (`: if (...)`): the offline parser the CI
// workflow runs (pycep) cannot read filtered loops. Without a key no subscription is deployed rather
// than one whose every delivery the webhook refuses (scripts/deploy.sh always passes the key).
resource eventSubscriptions 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = [
  for sub in (enableEventSubscriptions && !empty(eventGridWebhookKey) ? smsEventSubscriptions : []): {
    parent: systemTopic
    name: sub.name
    properties: {
      destination: {
        endpointType: 'WebHook'
        properties: {
          // Event Grid never returns the query string (GET shows endpointBaseUrl only). No output may
          // reference the key (tests/infra/test_bicep_structure.py).
          endpointUrl: '${webhookUrl}?code=${eventGridWebhookKey}'
          maxEventsPerBatch: 1
          preferredBatchSizeInKilobytes: 64
        }
      }
      filter: {
        includedEventTypes: [
          sub.eventType
        ]
      }
      eventDeliverySchema: 'EventGridSchema'
      retryPolicy: {
        maxDeliveryAttempts: 30
        eventTimeToLiveInMinutes: 1440
      }
    }
  }
]

output name string = acs.name
output id string = acs.id
output endpoint string = 'https://${acs.properties.hostName}'
output systemTopicName string = systemTopic.name
