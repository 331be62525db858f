"""Plugin isolation: what a plugin's code does cannot take the command down.

Every call into a plugin (importing it, its hooks, a model's set-up, ``simulate``, its audits)
goes through :func:`plugin_boundary`. Whatever escapes — an ordinary exception, but also
``SystemExit`` (a stray ``sys.exit`` or ``argparse``) or any other ``BaseException`` — becomes
the package's own error naming the plugin and its version; only ``KeyboardInterrupt`` (the
user's Ctrl-C) passes through. Errors the package raises on purpose (bad input found by a
model's validation) pass unchanged.
"""

from __future__ import annotations

import contextlib
import io
import sys
from collections.abc import Iterator

from medtransport.errors import MedtransportError, ModelError

__all__ = ["describe", "plugin_boundary", "quiet_import"]


def describe(exc: BaseException) -> str:
    """``TypeName: message``, or for ``SystemExit`` what it means here."""
    if isinstance(exc, SystemExit):
        return f"SystemExit({exc.code!r}) (the plugin tried to end the process)"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@contextlib.contextmanager
def plugin_boundary(plugin: str, version: str, what: str,
                    error: type[MedtransportError] = ModelError) -> Iterator[None]:
    """Turn anything but ``KeyboardInterrupt`` and the package's own errors raised inside the
    block into ``error`` naming ``plugin``, ``version`` and ``what`` it was doing."""
    try:
        yield
    except (KeyboardInterrupt, MedtransportError):
        raise
    except BaseException as exc:  # the isolation promise: SystemExit too
        raise error(f"plugin {plugin} {version}: {what} raised {describe(exc)}") from exc


@contextlib.contextmanager
def quiet_import() -> Iterator[io.StringIO]:
    """While a plugin is imported: ``sys.argv`` holds only the program's name (a plugin that
    parses the command line at import sees none of ours, so cannot act on it), and what it
    prints is captured (yielded) instead of mixing with the command's output."""
    argv = sys.argv
    captured = io.StringIO()
    sys.argv = argv[:1]
    try:
        with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
            yield captured
    finally:
        sys.argv = argv
