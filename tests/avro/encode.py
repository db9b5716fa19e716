"""Encodes records with fastavro, an encoder weir does not share, for weir's Avro tests.

    python3 encode.py SCHEMA_JSON < records.jsonl   # one hex line per record, Avro binary without framing

Each input line is a JSON record; "ts" fields given as milliseconds since the epoch are written
as datetimes, as fastavro expects for timestamp-millis.
"""
import datetime
import io
import json
import sys

import fastavro


def main():
    schema = fastavro.parse_schema(json.loads(sys.argv[1]))
    for line in sys.stdin:
        record = json.loads(line)
        if "ts" in record:
            record["ts"] = datetime.datetime.fromtimestamp(record["ts"] / 1000, datetime.timezone.utc)
        out = io.BytesIO()
        fastavro.schemaless_writer(out, schema, record)
        print(out.getvalue().hex())


if __name__ == "__main__":
    main()
