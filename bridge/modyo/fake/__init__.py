"""A faithful, stateful fake of the Modyo Administration API (see docs/modyo-contract.md)."""

from bridge.modyo.fake.app import FakeModyoApp
from bridge.modyo.fake.faults import Faults, FaultyModyo
from bridge.modyo.fake.router import build_router, mock_transport
from bridge.modyo.fake.state import FakeModyo, Variant

__all__ = [
    "FakeModyo",
    "FakeModyoApp",
    "Faults",
    "FaultyModyo",
    "Variant",
    "build_router",
    "mock_transport",
]
