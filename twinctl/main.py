"""twinctl: the admin tool. One sub-command module per noun; errors are one line + exit 1."""
from __future__ import annotations

import os
import sys
from typing import Optional

import psycopg
import typer

from twinning.config import ConfigError
from twinning.numbers import NumberError

from . import context
from .commands import calls, db, stack, status, subscriber, trunk, twin
from .errors import TwinctlError

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  rich_markup_mode=None, help="Administer the desk/mobile twinning service.")
app.add_typer(stack.app, name="stack")
app.add_typer(db.app, name="db")
app.add_typer(subscriber.app, name="subscriber")
app.add_typer(twin.app, name="twin")
app.add_typer(status.app, name="status")
app.add_typer(trunk.app, name="trunk")
app.add_typer(calls.app, name="calls")


@app.callback()
def _root(config: Optional[str] = typer.Option(
        None, "--config", envvar="TWIN_CONFIG", help="Site config file (TOML).")) -> None:
    context.set_config_path(config)


def _fail(message: str, code: int = 1) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def main() -> None:
    try:
        rv = app(standalone_mode=False)
    except (TwinctlError, ConfigError, NumberError) as exc:
        _fail(str(exc))
    except psycopg.Error as exc:
        text = str(exc).strip().splitlines()
        _fail(f"database: {text[0] if text else type(exc).__name__}")
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except Exception as exc:  # noqa: BLE001
        # typer raises click's exceptions (or, in newer releases, its vendored copies of them):
        # recognise them by shape rather than by an import that differs between releases.
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):
            ctx = getattr(exc, "ctx", None)
            hint = f" (see: {ctx.command_path} --help)" if ctx is not None else ""
            _fail(f"{exc.format_message()}{hint}", exc.exit_code)
        if type(exc).__name__ == "Abort":
            _fail("aborted", 1)
        if os.environ.get("TWINCTL_DEBUG"):
            raise
        _fail(f"internal error ({type(exc).__name__}: {exc}); "
              "run again with TWINCTL_DEBUG=1 for details", 70)
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    main()
