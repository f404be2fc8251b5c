"""Thin triggers: parse input, call ``lib/``, map errors to HTTP / ACK / retry."""
