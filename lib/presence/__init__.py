"""Meeting presence from Microsoft Graph: subscriptions to a meeting's call events, the checks and decryption of
their change notifications, roster updates turned into participant events, and the live status of a visit.

The shapes the reports read (participant events, presence documents) are in ``docs/presence.md``.
"""
