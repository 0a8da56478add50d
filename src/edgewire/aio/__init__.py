"""asyncio and UDP sockets: the only part of edgewire that performs I/O."""

from edgewire.aio.client import connect, parse_url
from edgewire.aio.connection import Channel, Connection
from edgewire.aio.server import Server, serve

__all__ = ["Channel", "Connection", "Server", "connect", "parse_url", "serve"]
