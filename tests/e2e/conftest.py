"""Fixtures of the e2e tier beyond tests/conftest.py."""

from __future__ import annotations

from tests.push_endpoint import receiver

__all__ = ["receiver"]  # the loopback push endpoint the sandbox CLI pushes to
