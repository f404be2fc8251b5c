"""Cosmos DB persistence: one repository per container, built on :mod:`lib.store.cosmos`."""
