"""Scheduling: how HL7 SIU messages change appointments, and the intake service that applies them."""
