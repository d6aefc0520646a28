"""The admin console: server-rendered pages on the internal listener only, never on the SCIM
port (docs/operator/console.md). :func:`console_routes` is what the internal listener
mounts; the pages read the journal's recent history and the SCIM app's readiness."""

from bridge.console.pages import PREFIX, SafetyPanel, console_routes

__all__ = ["PREFIX", "SafetyPanel", "console_routes"]
