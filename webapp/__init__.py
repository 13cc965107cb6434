"""memory-admin: a long-term memory store for AI agents with a browser admin app."""

__version__ = "0.1.0"
