"""The service layer: every query and write of memory-admin, for pages, API and CLI alike."""
