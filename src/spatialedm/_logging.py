"""Narrow filters for known third-party noise, applied only while spatialedm itself calls that library.

Each filter drops one exact message of one library; nothing else is silenced:

- scvi-tools logs "Generating sequential column names" whenever coordinates in ``obsm`` are a plain array
  (:meth:`~spatialedm.SpatialEDM.setup_anndata`, and ``load`` through it);
- Lightning advertises a cloud logger ("litlogger") at every training run;
- Lightning's pytree helper triggers torch's ``LeafSpec`` deprecation warning on every run.

Importing spatialedm installs nothing: the filters live inside :func:`quiet_third_party`, which the model
enters around those calls, so the same messages from the user's own use of these libraries still show.
"""

from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

#: ``(logger name, fragment)`` of each dropped log message.
MESSAGES = (
    ("scvi.data.fields._arraylike_field", "Generating sequential column names"),
    ("lightning.pytorch.utilities.rank_zero", "litlogger"),
)
#: ``(message pattern, category)`` of each ignored warning.
WARNINGS = ((r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning),)


class _DropMessages(logging.Filter):
    def __init__(self, *fragments: str):
        super().__init__()
        self.fragments = fragments

    def filter(self, record: logging.LogRecord) -> bool:
        return not any(fragment in str(record.msg) for fragment in self.fragments)


@contextmanager
def quiet_third_party(*, training: bool = False) -> Iterator[None]:
    """Drop the known third-party messages while the block runs; restore every filter after it.

    The logger filters added are removed again, also when the block raises.

    Parameters
    ----------
    training
        Also ignore the warnings of :data:`WARNINGS` (Lightning's, during a training run), inside a
        :class:`warnings.catch_warnings` that restores the warning filters. Off elsewhere: any change to
        the warning filters makes Python show again warnings it had already shown once.

    Examples
    --------
    >>> import logging
    >>> log = logging.getLogger("scvi.data.fields._arraylike_field")
    >>> record = logging.makeLogRecord({"name": log.name, "msg": "Generating sequential column names"})
    >>> with quiet_third_party():
    ...     bool(log.filter(record))
    False
    >>> bool(log.filter(record))
    True
    """
    added = []
    for name, fragment in MESSAGES:
        log, drop = logging.getLogger(name), _DropMessages(fragment)
        log.addFilter(drop)
        added.append((log, drop))
    try:
        if training:
            with warnings.catch_warnings():
                for message, category in WARNINGS:
                    warnings.filterwarnings("ignore", message=message, category=category)
                yield
        else:
            yield
    finally:
        for log, drop in added:
            log.removeFilter(drop)
