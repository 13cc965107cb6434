"""Import and export of memories as JSON Lines (the format of services/jsonl.py).

Import (importer.py) runs as one transaction: a bad line raises ImportFailed naming it
and nothing is written; a dry run does all the work and rolls back, so its counts are
exactly what the real run would report. The source is read in whole-line chunks
(reading.py); past one chunk, a worker process parses and validates the next chunk
while this process writes the current one. Rows go in batches to a writer
(writers.py) that inserts the new ones in bulk with a `create` event each: on SQLite
one executemany with ON CONFLICT DO NOTHING and one INSERT ... SELECT for the events;
on PostgreSQL a COPY of rows and events inside a savepoint, falling back to one
INSERT ... ON CONFLICT DO NOTHING when a key already exists. Rows whose key exists
are compared field by field: changed ones are updated with an `update` event holding
the old and new values, identical ones are left alone. Into an empty table the
secondary and full-text indexes are dropped and built once at the end (otherwise
SQLite's full-text index is kept per batch, not per row); after an import that wrote
ANALYZE_AFTER_ROWS rows or more, the tables are analysed so the planner sees them.

Export (export.py) streams the matching memories, oldest id first, in the same format.
"""

from webapp.services.transfer.export import export_jsonl
from webapp.services.transfer.importer import ImportReport, import_jsonl

__all__ = ["ImportReport", "export_jsonl", "import_jsonl"]
