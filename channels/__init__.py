"""One package per channel. Each parses a provider's request into our envelope, checks that
it is authentic, and sends one message out. See ``channels.base`` for the surface."""
