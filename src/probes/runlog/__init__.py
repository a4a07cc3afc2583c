"""The run log: crash-safe safetensors shards of probe records, and a lazy reader.

Write with :class:`RunWriter` (or the :class:`probes.callbacks.run_log.RunLog` callback), read
with :func:`open_run`. The format is described in ``docs/runlog.md``.
"""

from probes.runlog.errors import (
    CorruptShardError,
    ExistingRunError,
    InvalidRecordError,
    RecordsLostError,
    RunLogError,
    RunLogWarning,
    UnsafeEntryError,
    UnsupportedSchemaError,
)
from probes.runlog.layout import FORMAT_NAME, SCHEMA_VERSION
from probes.runlog.lineage import Branch
from probes.runlog.reader import RunReader, UnknownMetricError, open_run
from probes.runlog.writer import RunWriter, ShardInfo

__all__ = [
    "FORMAT_NAME",
    "SCHEMA_VERSION",
    "Branch",
    "CorruptShardError",
    "ExistingRunError",
    "InvalidRecordError",
    "RecordsLostError",
    "RunLogError",
    "RunLogWarning",
    "RunReader",
    "RunWriter",
    "ShardInfo",
    "UnknownMetricError",
    "UnsafeEntryError",
    "UnsupportedSchemaError",
    "open_run",
]
