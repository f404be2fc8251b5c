<#
.SYNOPSIS
    Lets the connector's Graph app create Teams meetings on behalf of organizers (Teams application
    access policy). Bicep cannot do this: it is a Teams tenant setting.

.DESCRIPTION
    Graph's app-only onlineMeetings API (OnlineMeetings.ReadWrite.All, admin-consented) also needs a Teams
    application access policy that names the app and is granted to the organizers. This script creates
    (or updates) the policy and grants it to every user (-Global), to one Entra group (-GroupId), or to
    listed users (-UserIds). Changes can take up to 30 minutes to apply.

    Needs the MicrosoftTeams PowerShell module and a Teams Administrator sign-in:
        Install-Module MicrosoftTeams -Scope CurrentUser

.PARAMETER GraphClientId
    Application (client) ID of the connector's Graph app registration (GRAPH_CLIENT_ID).

.EXAMPLE
    ./scripts/postdeploy.ps1 -GraphClientId 00000000-0000-0000-0000-000000000000 -GroupId <clinicians-group-id>
#>
[CmdletBinding(DefaultParameterSetName = 'Group')]
param(
    [Parameter(Mandatory)]
    [ValidatePattern('^[0-9a-fA-F-]{36}$')]
    [string] $GraphClientId,

    [string] $PolicyName = 'OpenVirtualVisits-OnlineMeetings',

    [Parameter(ParameterSetName = 'Global', Mandatory)]
    [switch] $Global,

    [Parameter(ParameterSetName = 'Group', Mandatory)]
    [string] $GroupId,

    [Parameter(ParameterSetName = 'Users', Mandatory)]
    [string[]] $UserIds
)

$ErrorActionPreference = 'Stop'
Import-Module MicrosoftTeams
Connect-MicrosoftTeams | Out-Null

$existing = Get-CsApplicationAccessPolicy -Identity $PolicyName -ErrorAction SilentlyContinue
if ($null -eq $existing) {
    New-CsApplicationAccessPolicy -Identity $PolicyName -AppIds $GraphClientId `
        -Description 'Open Virtual Visits: create Teams meetings for virtual visits'
    Write-Host "Created application access policy $PolicyName"
}
elseif ($existing.AppIds -notcontains $GraphClientId) {
    Set-CsApplicationAccessPolicy -Identity $PolicyName -AppIds @{ Add = $GraphClientId }
    Write-Host "Added $GraphClientId to $PolicyName"
}

switch ($PSCmdlet.ParameterSetName) {
    'Global' {
        Grant-CsApplicationAccessPolicy -PolicyName $PolicyName -Global
        Write-Host "Granted $PolicyName to every user in the tenant"
    }
    'Group' {
        New-CsGroupPolicyAssignment -GroupId $GroupId -PolicyType ApplicationAccessPolicy -PolicyName $PolicyName
        Write-Host "Granted $PolicyName to the members of group $GroupId"
    }
    'Users' {
        foreach ($user in $UserIds) {
            Grant-CsApplicationAccessPolicy -PolicyName $PolicyName -Identity $user
        }
        Write-Host "Granted $PolicyName to $($UserIds.Count) user(s)"
    }
}
Write-Host 'The policy can take up to 30 minutes to apply.'
