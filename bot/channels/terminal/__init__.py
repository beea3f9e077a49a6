"""The terminal: a real channel, the first one, for trying guides and rehearsing."""
