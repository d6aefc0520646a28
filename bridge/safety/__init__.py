"""The safety rails at the upstream seam (docs/operator/first-cycle.md): a dry run that
rehearses Entra's changes without writing to Modyo (``overlay``), and a brake that holds mass
destructive changes until an administrator releases it (``brake``). Each is an
:class:`~bridge.upstream.Upstream` wrapping either Modyo interface, so the SCIM side is the
same with or without them.

A layer between the upstream interface and the SCIM side and edge: it imports only the base
modules, ``bridge.upstream`` and the journal; the Redis link the app holds is passed in.
"""

from bridge.safety.calls import journal_outcome
from bridge.safety.rails import SafetyEdge, SafetyRails, safety_rails

__all__ = ["SafetyEdge", "SafetyRails", "journal_outcome", "safety_rails"]
