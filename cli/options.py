"""Types of the command line's options: argparse refuses a wrong value naming the option."""

from __future__ import annotations

import argparse

from sluice.vocabulary import TENANT_RULE, is_tenant


def positive_int(text: str) -> int:
    """An option that counts something: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is below 1")
    return value


def tenant_name(text: str) -> str:
    """A tenant, by the one rule of every entry point (sluice.vocabulary)."""
    if not is_tenant(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a tenant name: {TENANT_RULE}")
    return text
