"""Features: each registers its commands and buttons on the router, and only adds to
the turn's commit. None imports the dispatcher or a channel."""
