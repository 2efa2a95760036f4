"""Application layer shared by the gateway (api/) and the workers: settings, storage, scans, reports."""
