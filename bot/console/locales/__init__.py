"""The console's words, one YAML file per language (read by `bot/console/strings.py`)."""
