"""Assets by stage: ingest, features, training, effects, heads, reports."""
