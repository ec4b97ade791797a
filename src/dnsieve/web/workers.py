"""Server processes of ``dnsieve serve --workers N``: uvicorn's supervisor, balanced listeners.

uvicorn's ``Multiprocess`` supervisor (health checks, restarting a dead worker,
signals) runs the workers.  Two things differ from ``uvicorn.run(workers=N)``:

* **One listening socket per worker**, bound with ``SO_REUSEPORT`` (Linux), so that
  the kernel spreads new connections over the workers by a hash of their
  addresses.  With one shared socket, whichever worker woke first accepted a
  whole burst of connections: the 20 keep-alive clients of ``bench/web.py`` were
  split 20/0, 15/5 or 11/9 between two workers from one run to the next, and at
  20/0 one core served everything while the other idled (p95 160 ms against 57 ms
  when split evenly).  Where ``SO_REUSEPORT`` does not balance (not Linux), the
  workers share one socket as before.
* Every listener is marked TCP (``IPPROTO_TCP``): uvicorn binds with ``proto`` 0,
  and asyncio only sets ``TCP_NODELAY`` on connections accepted from a TCP
  socket; without it every keep-alive response waits ~40 ms for the client's
  delayed ACK (Kludex/uvicorn#3149).

A port already in use is refused as ``uvicorn.run`` refuses it: ``SO_REUSEPORT``
would otherwise let a second server join the first one's port silently.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import sys
from typing import Any

__all__ = [
    "MAX_HEAD_BYTES",
    "SERVER_OPTIONS",
    "BalancedWorkers",
    "BoundedHttpToolsProtocol",
    "reuse_port_supported",
    "run_workers",
    "worker_listener",
]

log = logging.getLogger("uvicorn.error")

#: The most bytes of a request line and headers a server reads (431 past it).  uvicorn's h11
#: parser stops at 16 KiB by itself; its httptools parser, used when installed (the ``web``
#: extra), kept any amount: an 8 MB header was read, stored and answered 200.
MAX_HEAD_BYTES = 64 * 1024


def _bounded_httptools() -> Any:
    """uvicorn's httptools protocol, refusing a request head over :data:`MAX_HEAD_BYTES`
    (``None`` without httptools: uvicorn's h11 parser has its own 16 KiB limit)."""
    try:
        import httptools
        from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
    except ImportError:
        return None

    class BoundedHttpToolsProtocol(HttpToolsProtocol):
        """Counts the request line and headers as they are parsed; past the limit, answers
        431 and closes the connection (the rest of the head is never read)."""

        _head = 0
        _too_large = False

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._head = 0

        def _count(self, n: int) -> None:
            self._head += n
            if self._head > MAX_HEAD_BYTES:
                self._too_large = True
                raise httptools.HttpParserError("request head too large")

        def on_url(self, url: bytes) -> None:
            self._count(len(url))
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._count(len(name) + len(value) + 4)
            super().on_header(name, value)

        def send_400_response(self, msg: str) -> None:
            if not self._too_large:
                super().send_400_response(msg)
                return
            body = b"request header fields too large"
            self.transport.write(
                STATUS_LINE[431]
                + b"content-type: text/plain; charset=utf-8\r\n"
                + b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body)
                + body
            )
            self.transport.close()

    BoundedHttpToolsProtocol.__module__ = __name__
    BoundedHttpToolsProtocol.__qualname__ = "BoundedHttpToolsProtocol"
    return BoundedHttpToolsProtocol


BoundedHttpToolsProtocol = _bounded_httptools()

#: uvicorn options of every Alert Manager server (``dnsieve serve``, ``dnsieve demo``):
#: ``X-Forwarded-*`` headers are not trusted (the client address of the login throttle is the
#: peer's), no ``Server: uvicorn`` header tells a scanner what to try, and a request head
#: is read up to :data:`MAX_HEAD_BYTES`.
SERVER_OPTIONS: dict[str, Any] = {
    "proxy_headers": False,
    "server_header": False,
    # an import path, not the class: a worker process imports it when its server starts, after
    # it answers the supervisor's health checks (unpickling the class would import the app
    # first, and a worker slower than the 5 s check was killed and restarted forever)
    "http": f"{__name__}:BoundedHttpToolsProtocol" if BoundedHttpToolsProtocol else "h11",
}


def worker_listener(config: Any) -> socket.socket:
    """One listening socket for all workers (``uvicorn.Config.bind_socket``), marked TCP."""
    sock: socket.socket = config.bind_socket()
    if sock.family in (socket.AF_INET, socket.AF_INET6) and sock.proto == 0:
        sock = socket.socket(sock.family, sock.type, socket.IPPROTO_TCP, fileno=sock.detach())
    return sock


def reuse_port_supported() -> bool:
    """Whether ``SO_REUSEPORT`` spreads connections over listeners (Linux 3.9+)."""
    return sys.platform == "linux" and hasattr(socket, "SO_REUSEPORT")


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def free_port(host: str, port: int) -> int:
    """``port`` if nothing listens on ``host:port`` (a plain bind succeeds), or a free port
    for 0; else ``SystemExit``, as ``uvicorn.run`` does: ``SO_REUSEPORT`` listeners of
    another server would otherwise share the port without a word."""
    with socket.socket(_family(host), socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            log.error(exc)
            raise SystemExit(1) from None
        return int(probe.getsockname()[1])


class BalancedWorkers:
    """uvicorn's ``Multiprocess`` supervisor, each worker on its own ``SO_REUSEPORT`` listener.

    The supervisor reads its ``sockets`` attribute once for every worker it starts (at
    startup, on a restart, for the replacement of a dead worker): here that read binds
    a new listener on the same address.  Once the worker has started, the parent closes
    its copy (the child holds its own), so a socket never outlives its worker: a
    listener nobody accepts on would take its share of connections and leave them
    hanging.
    """

    def __init__(self, config: Any) -> None:
        from uvicorn.supervisors import Multiprocess

        self.config = config
        self.host: str = config.host
        self.port = free_port(self.host, config.port)
        self._issued: list[socket.socket] = []
        owner = self

        class _Supervisor(Multiprocess):
            @property
            def sockets(self) -> list[socket.socket]:
                return [owner.listener()]

            @sockets.setter
            def sockets(self, _value: list[socket.socket]) -> None:
                pass  # set by Multiprocess.__init__; every worker gets its own instead

            def init_processes(self) -> None:
                super().init_processes()
                owner.close_issued()

            def keep_subprocess_alive(self) -> None:
                super().keep_subprocess_alive()
                owner.close_issued()

            def restart_all(self) -> None:
                super().restart_all()
                owner.close_issued()

        self.supervisor = _Supervisor(config, sockets=[])

    def listener(self) -> socket.socket:
        """A new TCP listener on the workers' address, with ``SO_REUSEPORT``."""
        sock = socket.socket(_family(self.host), socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((self.host, self.port))
            sock.listen(self.config.backlog)
        except OSError:
            sock.close()
            raise
        sock.set_inheritable(True)
        self._issued.append(sock)
        return sock

    def close_issued(self) -> None:
        """Close the parent's copies of the listeners handed to workers started since."""
        while self._issued:
            self._issued.pop().close()

    def run(self) -> None:
        log.info("Uvicorn running on http://%s:%d (Press CTRL+C to quit)", self.host, self.port)
        try:
            self.supervisor.run()
        except Exception:  # e.g. no listener for a replacement worker: stop them all, loudly
            self.supervisor.terminate_all()
            self.supervisor.join_all()
            raise
        finally:
            self.close_issued()


def run_workers(config: Any) -> None:
    """What ``uvicorn.run`` does for ``config.workers > 1``, on balanced TCP listeners."""
    from uvicorn.supervisors import Multiprocess

    for option, value in SERVER_OPTIONS.items():  # the workers are started from this config
        setattr(config, option, value)
    with contextlib.suppress(KeyboardInterrupt):
        if reuse_port_supported():
            BalancedWorkers(config).run()
        else:
            Multiprocess(config, sockets=[worker_listener(config)]).run()
