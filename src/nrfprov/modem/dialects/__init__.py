"""modem/dialects."""
