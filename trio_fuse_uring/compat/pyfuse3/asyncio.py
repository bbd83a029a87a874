"""pyfuse3's asyncio mode: ``pyfuse3.asyncio.enable()``, then ``asyncio.run(pyfuse3.main())``.

Handlers are then asyncio coroutines. The transports run as trio code in trio's guest
mode on the asyncio loop (same thread); each handler call runs as an asyncio task.
"""

from __future__ import annotations

import asyncio

from . import _api

#: pyfuse3 exposes asyncio's lock here for filesystems that run in both modes.
Lock = asyncio.Lock

__all__ = ["Lock", "disable", "enable"]


def enable() -> None:
    """Switch to asyncio mode: :func:`main` must then be awaited by asyncio."""
    _api._state.asyncio_mode = True


def disable() -> None:
    """Switch back to trio mode (the default)."""
    _api._state.asyncio_mode = False
