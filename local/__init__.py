"""Development and test tools (service launcher, stand-ins, dev runner). Never imported by ``lib/``."""
