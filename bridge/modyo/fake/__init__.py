"""Faithful, stateful fakes of Modyo: its Administration REST API (``FakeModyo``) and its own
SCIM server (``FakeModyoScim``), see docs/design/modyo-contract.md."""

from bridge.modyo.fake.app import FakeModyoApp
from bridge.modyo.fake.faults import Faults, FaultyModyo
from bridge.modyo.fake.router import build_router, mock_transport
from bridge.modyo.fake.scim_state import FakeModyoScim
from bridge.modyo.fake.state import FakeModyo, Variant

__all__ = [
    "FakeModyo",
    "FakeModyoApp",
    "FakeModyoScim",
    "Faults",
    "FaultyModyo",
    "Variant",
    "build_router",
    "mock_transport",
]
