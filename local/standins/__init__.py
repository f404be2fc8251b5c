"""Local HTTPS stand-ins for Epic, Entra ID + Microsoft Graph and the ACS SMS REST API (dev/test only)."""
