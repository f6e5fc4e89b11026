"""Narrow filters for known third-party noise, so that a first run prints only what was asked for.

Each filter drops one exact message of one library; nothing else is silenced:

- scvi-tools logs "Generating sequential column names" whenever coordinates in ``obsm`` are a plain array;
- Lightning advertises a cloud logger ("litlogger") at every training run;
- Lightning's pytree helper triggers torch's ``LeafSpec`` deprecation warning on every run.
"""

from __future__ import annotations

import logging
import warnings


class _DropMessages(logging.Filter):
    def __init__(self, *fragments: str):
        super().__init__()
        self.fragments = fragments

    def filter(self, record: logging.LogRecord) -> bool:
        return not any(fragment in str(record.msg) for fragment in self.fragments)


def install_filters() -> None:
    """Install the filters (idempotent)."""
    for name, fragment in (
        ("scvi.data.fields._arraylike_field", "Generating sequential column names"),
        ("lightning.pytorch.utilities.rank_zero", "litlogger"),
    ):
        log = logging.getLogger(name)
        if not any(isinstance(f, _DropMessages) for f in log.filters):
            log.addFilter(_DropMessages(fragment))
    warnings.filterwarnings(
        "ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated", category=FutureWarning
    )
