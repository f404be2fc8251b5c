// Alerts for the on-call engineer: an action group (e-mail and/or webhook) and one rule per runbook
// section of README.md ("Runbook"). The log alerts query the custom metrics the app emits through
// OpenTelemetry (lib/observability/metrics.py: vv.hl7.messages, vv.hl7.control_id_reused, vv.hl7.stale, vv.sms.messages,
// vv.sms.delivery, vv.launches, vv.writebacks, vv.queue.depth, vv.queue.malformed, vv.reminder.lag,
// vv.clock.skew, vv.certificate.days_left) in
// Application Insights' customMetrics table. The availability
// tests probe /api/health/live and /api/health/ready (functions/health.py).

param applicationInsightsName string

param location string

param tags object

@description('Base URL of the app (https://...), probed by the availability tests.')
param appBaseUrl string

@description('Action group name.')
param actionGroupName string

@description('Alert rule name prefix.')
param namePrefix string

@description('E-mail address the alerts go to. Empty = no e-mail receiver.')
param alertEmail string = ''

@description('HTTPS webhook the alerts are posted to (common alert schema). Empty = no webhook receiver.')
param alertWebhookUrl string = ''

@description('Percentage of SMS sends that failed or ended unknown, plus "Failed" or missing delivery reports (of at least smsMinimumCount sends in 15 minutes), that raises an alert.')
param smsFailurePercent int = 20

param smsMinimumCount int = 5

@description('Texts in 15 minutes whose delivery report said "Failed" or never came, above which an alert is raised.')
param smsUndeliveredCount int = 2

@description('Seconds between a signed timestamp we received (HL7 JWS iat, Event Grid eventTime) and our clock above which an alert is raised.')
param clockSkewSeconds int = 120

@description('Seconds between an SMS\'s due time and its sending above which an alert is raised.')
param reminderLagSeconds int = 600

@description('Percentage of HL7 messages answered AR/AE (of at least hl7MinimumCount in 15 minutes) that raises an alert.')
param hl7RejectPercent int = 10

param hl7MinimumCount int = 10

@description('Launch and join errors in 15 minutes (of at least launchMinimumCount) above this percentage raise an alert.')
param launchErrorPercent int = 20

param launchMinimumCount int = 5

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = {
  name: actionGroupName
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'vv-oncall'
    enabled: true
    emailReceivers: empty(alertEmail) ? [] : [
      {
        name: 'on-call-email'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
    webhookReceivers: empty(alertWebhookUrl) ? [] : [
      {
        name: 'on-call-webhook'
        serviceUri: alertWebhookUrl
        useCommonAlertSchema: true
      }
    ]
  }
}

// One log alert per runbook section. Every query returns one row with the measured column.
var logAlerts = [
  {
    name: 'poison-messages'
    severity: 1
    description: 'Messages in a poison queue, including visit-events-poison-poison (README: Runbook, "Poison messages present").'
    query: 'customMetrics | where name == "vv.queue.depth" and tostring(customDimensions.queue) endswith "-poison" | summarize measured = max(value)'
    threshold: 0
  }
  {
    name: 'sms-failure-rate'
    severity: 1
    description: 'Too many SMS sends failed or ended unknown (README: Runbook, "SMS failure rate").'
    query: 'customMetrics | where name in ("vv.sms.messages", "vv.sms.delivery") | extend outcome = tostring(customDimensions.outcome), status = tostring(customDimensions.status) | summarize total = sumif(valueSum, name == "vv.sms.messages"), failed = sumif(valueSum, name == "vv.sms.messages" and outcome in ("failed", "unknown")) + sumif(valueSum, name == "vv.sms.delivery" and status in ("Failed", "missing")) | where total >= ${smsMinimumCount} | extend measured = 100.0 * failed / total'
    threshold: smsFailurePercent
  }
  {
    name: 'sms-undelivered'
    severity: 2
    description: 'Texts whose delivery report said "Failed" or never came (README: Runbook, "SMS not delivered").'
    query: 'customMetrics | where name == "vv.sms.delivery" | extend status = tostring(customDimensions.status) | summarize measured = sumif(valueSum, status in ("Failed", "missing"))'
    threshold: smsUndeliveredCount
  }
  {
    name: 'malformed-queue-messages'
    severity: 2
    description: 'Queue messages their trigger could not read, on their way to a poison queue (README: Runbook, "Malformed queue messages").'
    query: 'customMetrics | where name == "vv.queue.malformed" | summarize measured = sum(valueSum)'
    threshold: 0
  }
  {
    name: 'clock-skew'
    severity: 2
    description: 'Signed timestamps we receive are far from our clock (README: Runbook, "Clock skew").'
    query: 'customMetrics | where name == "vv.clock.skew" | summarize measured = max(valueMax)'
    threshold: clockSkewSeconds
  }
  {
    name: 'reminder-lag'
    severity: 2
    description: 'Texts are sent late (README: Runbook, "Reminder lag").'
    query: 'customMetrics | where name == "vv.reminder.lag" | summarize measured = max(valueMax)'
    threshold: reminderLagSeconds
  }
  {
    name: 'hl7-reject-rate'
    severity: 2
    description: 'A spike of HL7 messages answered AR or AE (README: Runbook, "HL7 AR/AE spike").'
    query: 'customMetrics | where name == "vv.hl7.messages" | extend code = tostring(customDimensions.ack_code) | summarize total = sum(valueSum), bad = sumif(valueSum, code in ("AR", "AE", "CR", "CE")) | where total >= ${hl7MinimumCount} | extend measured = 100.0 * bad / total'
    threshold: hl7RejectPercent
  }
  {
    name: 'writeback-failures'
    severity: 1
    description: 'A participant event was not written to Epic: refused (403, 404, 409...), past the retry horizon, poisoned, or its outcome unknown after a worker died (README: Runbook, "Write-back failures").'
    query: 'customMetrics | where name == "vv.writebacks" | extend outcome = tostring(customDimensions.outcome) | summarize measured = sumif(valueSum, outcome in ("failed", "unknown"))'
    threshold: 0
  }
  {
    name: 'hl7-control-id-reused'
    severity: 2
    description: 'A sender reused an MSH-10 for a different message (README: Runbook, "HL7 control ID reused").'
    query: 'customMetrics | where name == "vv.hl7.control_id_reused" | summarize measured = sum(valueSum)'
    threshold: 0
  }
  {
    name: 'hl7-cancel-ignored'
    severity: 2
    description: 'An S15/S17/S26 for a booked visit was older than a message the visit had applied, so the visit stayed booked (README: Runbook, "HL7 cancel ignored").'
    query: 'customMetrics | where name == "vv.hl7.stale" | extend event = tostring(customDimensions.trigger_event), visit = tostring(customDimensions.visit_status) | summarize measured = sumif(valueSum, event in ("S15", "S17", "S26") and visit == "booked")'
    threshold: 0
  }
  {
    name: 'launch-error-rate'
    severity: 2
    description: 'A spike of launch or join errors (README: Runbook, "Launch error spike").'
    query: 'customMetrics | where name == "vv.launches" | extend outcome = tostring(customDimensions.outcome) | summarize total = sum(valueSum), errors = sumif(valueSum, outcome == "error") | where total >= ${launchMinimumCount} | extend measured = 100.0 * errors / total'
    threshold: launchErrorPercent
  }
  {
    name: 'certificate-expiry'
    severity: 2
    description: 'The HL7 signing certificate of an environment ends within 30 days or has ended (README: Runbook, "HL7 certificate expiring").'
    query: 'customMetrics | where name == "vv.certificate.days_left" | summarize measured = dcount(tostring(customDimensions.environment))'
    threshold: 0
  }
]

resource logAlertRules 'Microsoft.Insights/scheduledQueryRules@2023-03-15-preview' = [for alert in logAlerts: {
  name: '${namePrefix}-${alert.name}'
  location: location
  tags: tags
  properties: {
    displayName: '${namePrefix}-${alert.name}'
    description: alert.description
    severity: alert.severity
    enabled: true
    scopes: [
      applicationInsights.id
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    criteria: {
      allOf: [
        {
          query: alert.query
          timeAggregation: 'Maximum'
          metricMeasureColumn: 'measured'
          operator: 'GreaterThan'
          threshold: alert.threshold
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}]

// Availability tests need the hidden-link tag that ties them to Application Insights; the module takes
// it with the shared tags (see app/healthtests.bicep).
module healthTests 'healthtests.bicep' = {
  name: 'healthtests'
  params: {
    location: location
    tags: union(tags, {
      'hidden-link:${applicationInsights.id}': 'Resource'
    })
    applicationInsightsId: applicationInsights.id
    appBaseUrl: appBaseUrl
    namePrefix: namePrefix
  }
}

resource readinessAlert 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: '${namePrefix}-not-ready'
  location: 'global'
  tags: tags
  properties: {
    description: '/api/health/ready fails from two or more test locations (README: Runbook, "Not ready").'
    severity: 1
    enabled: true
    scopes: [
      healthTests.outputs.readinessTestId
      applicationInsights.id
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.WebtestLocationAvailabilityCriteria'
      webTestId: healthTests.outputs.readinessTestId
      componentId: applicationInsights.id
      failedLocationCount: 2
    }
    actions: [
      {
        actionGroupId: actionGroup.id
      }
    ]
  }
}

output actionGroupId string = actionGroup.id
output alertNames array = [for alert in logAlerts: '${namePrefix}-${alert.name}']
