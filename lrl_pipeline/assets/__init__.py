"""Assets by stage: ingest, features, training, heads, reports."""
