"""The conversation core: turns, the router of commands, the dispatcher that commits."""
