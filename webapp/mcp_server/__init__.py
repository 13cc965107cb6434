"""The Model Context Protocol server: the agent tools over streamable HTTP and stdio."""
