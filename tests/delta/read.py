"""Reads a Delta table with the deltalake package (delta-rs's Python binding), a reader weir
does not share code with at run time, and prints what it sees as one JSON object:
{"version", "columns", "rows" (lists, in the columns' order), "txn" (query id -> last batch
id, from the log's txn actions), "files" (data files of the version), "partitions"}.

usage: read.py TABLE_URI [STORAGE_OPTIONS_JSON] [APP_ID,APP_ID...]
"""

import json
import os
import sys

from deltalake import DeltaTable


def main():
    uri = sys.argv[1]
    options = json.loads(sys.argv[2]) if len(sys.argv) > 2 and sys.argv[2] else None
    apps = [a for a in sys.argv[3].split(",") if a] if len(sys.argv) > 3 else []
    table = DeltaTable(uri, storage_options=options)
    data = table.to_pyarrow_table()
    columns = data.column_names
    rows = [[row[c] for c in columns] for row in data.to_pylist()]
    out = {
        "version": table.version(),
        "columns": columns,
        "rows": rows,
        "txn": {app: table.transaction_version(app) for app in apps},
        "files": len(table.file_uris()),
        "partitions": table.metadata().partition_columns,
    }
    print(json.dumps(out, default=str))


if __name__ == "__main__":
    main()
    sys.stdout.flush()
    # deltalake's runtime aborts while the interpreter tears down; the answer is out.
    os._exit(0)
