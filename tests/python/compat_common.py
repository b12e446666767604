"""What the compatibility programs share: settings, steps, the summary.

Settings come from COMPAT_HOST, COMPAT_PORT, COMPAT_USER, COMPAT_PASSWORD, COMPAT_DATABASE,
COMPAT_TENANT and COMPAT_SEED_ID (an entity of the tenant, used to provoke a duplicate key).
A program prints one JSON summary; on a failure it prints the step, SQLSTATE and message and
exits 1.
"""
import contextlib
import json
import os
import sys

HOST = os.environ["COMPAT_HOST"]
PORT = int(os.environ["COMPAT_PORT"])
USER = os.environ["COMPAT_USER"]
PASSWORD = os.environ["COMPAT_PASSWORD"]
DATABASE = os.environ["COMPAT_DATABASE"]
TENANT = os.environ["COMPAT_TENANT"]
SEED_ID = os.environ["COMPAT_SEED_ID"]

class Rollback(Exception):
    """Raised to leave a transaction block by rolling it back."""


def need(package):
    """Stops the program, saying how to install a missing library."""
    sys.exit(f"{os.path.basename(sys.argv[0])}: {package} is missing: run scripts/drivers-deps to install it")


def sqlstate(e):
    """The SQLSTATE of the PostgreSQL error behind e, if any."""
    while e is not None:
        for attr in ("sqlstate", "pgcode"):
            if isinstance(getattr(e, attr, None), str):
                return getattr(e, attr)
        e = getattr(e, "orig", None) or e.__cause__
    return None


@contextlib.contextmanager
def step(name):
    try:
        yield
    except Exception as e:
        state = sqlstate(e)
        prefix = f"SQLSTATE {state}: " if state else ""
        sys.exit(f"step {name} failed: {prefix}{type(e).__name__}: {e}")


def report(summary):
    print(json.dumps(summary))
