"""SMS: planning, wording, join links, sending through ACS and the outbox dispatcher."""
