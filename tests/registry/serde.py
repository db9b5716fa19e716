#!/usr/bin/env python3
"""Produce and consume registry-framed Avro and Protobuf records with Confluent's own Python
serializers, the independent side of weir's Avro and Protobuf tests.

    serde.py produce --topic T --schema JSON [--partition P] < records.jsonl
    serde.py consume --topic T --count N > records.jsonl
    serde.py produce-proto --topic T [--plain] [--partition P] < orders.jsonl
    serde.py consume-proto --topic T --count N [--plain] > orders.jsonl
    serde.py descriptor-set --out FILE

The Protobuf commands use weir.test.Order of proto/weir/test/order.proto, compiled at start
with grpcio-tools; records are in Protobuf's JSON mapping (json_format), `null` for a
tombstone. With --plain, values are bare messages (no registry). `descriptor-set` writes the
compiled FileDescriptorSet (with imports) that 'protobuf.descriptorFile' takes.

Both take --bootstrap and --registry (default $WEIR_TEST_KAFKA and $WEIR_TEST_SCHEMA_REGISTRY)
and --user-info for basic auth. `produce` registers the schema under <topic>-value (or
--subject) with AvroSerializer and writes one record per input line; a line `null` is a
tombstone. `consume` reads the topic from the start with AvroDeserializer (read_committed) and
prints each record as a JSON line, with datetimes as milliseconds since the epoch (key "_ms")
dates as days ("_days"), decimals and uuids as strings, and bytes as hex; a tombstone prints
`null`. Input lines give those types the same way, but plainly (a number of milliseconds or
days, a string, hex). It prints `schema_id=N` lines to stderr.
"""

import argparse
import datetime
import decimal
import json
import os
import struct
import uuid
import sys

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def registry(args):
    conf = {"url": args.registry, "timeout": 10}
    if args.user_info:
        conf["basic.auth.user.info"] = args.user_info
    return SchemaRegistryClient(conf)


def to_avro(value, schema):
    """JSON input to what fastavro expects: timestamp-millis/micros fields given as milliseconds
    become datetimes."""
    if isinstance(value, dict) and isinstance(schema, dict) and schema.get("type") == "record":
        fields = {f["name"]: f["type"] for f in schema["fields"]}
        return {k: to_avro(v, fields.get(k)) for k, v in value.items()}
    if isinstance(schema, list):
        for branch in schema:
            if branch != "null" and value is not None:
                return to_avro(value, branch)
        return value
    if isinstance(schema, dict) and schema.get("type") in ("array", "map"):
        items = schema.get("items", schema.get("values"))
        if isinstance(value, list):
            return [to_avro(v, items) for v in value]
        return {k: to_avro(v, items) for k, v in value.items()}
    logical = schema.get("logicalType", "") if isinstance(schema, dict) else ""
    kind = schema.get("type") if isinstance(schema, dict) else schema
    if logical.startswith("timestamp-"):
        return EPOCH + datetime.timedelta(milliseconds=value)
    if logical == "date":
        return EPOCH.date() + datetime.timedelta(days=value)
    if logical == "decimal":
        return decimal.Decimal(value)
    if kind == "bytes":
        return bytes.fromhex(value)
    return value


def produce(args):
    schema = json.loads(args.schema)
    serializer = AvroSerializer(registry(args), args.schema)
    producer = Producer({"bootstrap.servers": args.bootstrap})
    subject_topic = args.topic
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        record = json.loads(line)
        ctx = SerializationContext(subject_topic, MessageField.VALUE)
        value = None if record is None else serializer(to_avro(record, schema), ctx)
        if value is not None and args.print_id:
            print("schema_id=%d" % struct.unpack(">I", value[1:5])[0], file=sys.stderr)
        producer.produce(args.topic, value=value, partition=args.partition)
    if producer.flush(30) != 0:
        sys.exit("records were not delivered")


def plain(value):
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.timezone.utc)
        delta = value - EPOCH
        return {"_ms": (delta.days * 86400 + delta.seconds) * 1000 + delta.microseconds // 1000}
    if isinstance(value, datetime.date):
        return {"_days": (value - EPOCH.date()).days}
    if isinstance(value, (decimal.Decimal, uuid.UUID)):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def read_values(args):
    """The values of the topic's first --count records, from the start (read_committed)."""
    consumer = Consumer({
        "bootstrap.servers": args.bootstrap,
        "group.id": "serde-%d" % os.getpid(),
        "enable.auto.commit": False,
        "isolation.level": "read_committed",
    })
    metadata = consumer.list_topics(args.topic, timeout=10).topics[args.topic]
    if metadata.error is not None:
        raise KafkaException(metadata.error)
    consumer.assign([TopicPartition(args.topic, p, 0) for p in sorted(metadata.partitions)])
    seen = 0
    idle = 0
    while seen < args.count and idle < 30:
        message = consumer.poll(1.0)
        if message is None:
            idle += 1
            continue
        if message.error():
            raise KafkaException(message.error())
        idle = 0
        seen += 1
        value = message.value()
        if value is not None:
            print("schema_id=%d" % struct.unpack(">I", value[1:5])[0], file=sys.stderr)
        yield value
    consumer.close()
    if seen < args.count:
        sys.exit("read %d of %d records from %s" % (seen, args.count, args.topic))


def consume(args):
    deserializer = AvroDeserializer(registry(args))
    for value in read_values(args):
        if value is None:
            print("null")
            continue
        ctx = SerializationContext(args.topic, MessageField.VALUE)
        print(json.dumps(plain(deserializer(value, ctx)), sort_keys=True))


HERE = os.path.dirname(os.path.abspath(__file__))


def protoc(args):
    from grpc_tools import protoc as grpc_protoc
    import grpc_tools

    well_known = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    command = ["protoc", "-I" + os.path.join(HERE, "proto"), "-I" + well_known] + args
    if grpc_protoc.main(command + ["weir/test/customer.proto", "weir/test/order.proto"]) != 0:
        sys.exit("protoc failed")


def order_type():
    import importlib
    import tempfile

    out = tempfile.mkdtemp()
    protoc(["--python_out=" + out])
    sys.path.insert(0, out)
    return importlib.import_module("weir.test.order_pb2").Order


def produce_proto(args):
    from confluent_kafka.schema_registry.protobuf import ProtobufSerializer
    from google.protobuf import json_format

    order = order_type()
    serializer = None
    if not args.plain:
        serializer = ProtobufSerializer(order, registry(args), {"use.deprecated.format": False})
    producer = Producer({"bootstrap.servers": args.bootstrap})
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        record = json.loads(line)
        value = None
        if record is not None:
            message = json_format.ParseDict(record, order())
            if serializer is None:
                value = message.SerializeToString()
            else:
                value = serializer(message, SerializationContext(args.topic, MessageField.VALUE))
        producer.produce(args.topic, value=value, partition=args.partition)
    if producer.flush(30) != 0:
        sys.exit("records were not delivered")


def consume_proto(args):
    from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer
    from google.protobuf import json_format

    order = order_type()
    deserializer = None
    if not args.plain:
        deserializer = ProtobufDeserializer(
            order, {"use.deprecated.format": False}, registry(args))

    def decode(value):
        if deserializer is None:
            return order.FromString(value)
        return deserializer(value, SerializationContext(args.topic, MessageField.VALUE))

    for value in read_values(args):
        if value is None:
            print("null")
            continue
        message = json_format.MessageToDict(decode(value), preserving_proto_field_name=True)
        print(json.dumps(message, sort_keys=True))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "command", choices=["produce", "consume", "produce-proto", "consume-proto", "descriptor-set"])
    parser.add_argument("--bootstrap", default=os.environ.get("WEIR_TEST_KAFKA"))
    parser.add_argument("--registry", default=os.environ.get("WEIR_TEST_SCHEMA_REGISTRY"))
    parser.add_argument("--user-info")
    parser.add_argument("--topic")
    parser.add_argument("--schema")
    parser.add_argument("--partition", type=int, default=0)
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--print-id", action="store_true")
    parser.add_argument("--plain", action="store_true")
    parser.add_argument("--out")
    args = parser.parse_args()
    commands = {
        "produce": produce,
        "consume": consume,
        "produce-proto": produce_proto,
        "consume-proto": consume_proto,
        "descriptor-set": lambda a: protoc(["--include_imports", "--descriptor_set_out=" + a.out]),
    }
    commands[args.command](args)


if __name__ == "__main__":
    main()
