"""Operator tools over the app's own repositories and queues: readiness checks, rejected HL7 messages,
poison write-backs, a visit's timeline. Plain Python: ``python -m local.ops`` locally, or any shell with
the app's settings in Azure."""
