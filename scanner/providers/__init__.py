"""Cloud providers. AWS first; Azure and GCP follow the same collector-registry pattern."""
