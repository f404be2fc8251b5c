"""The configuration portal's rules: who may do what, environments, approvals, certificates, phone numbers,
integration records and the audit trail (docs/portal.md). Plain Python: no ``azure.functions`` here."""
