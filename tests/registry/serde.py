#!/usr/bin/env python3
"""Produce and consume registry-framed Avro and Protobuf records with Confluent's own Python
serializers, the independent side of weir's Avro and Protobuf tests.

    serde.py produce --topic T --schema JSON [--partition P] < records.jsonl
    serde.py consume --topic T --count N > records.jsonl
    serde.py consume-raw --topic T --count N > records.jsonl
    serde.py produce-proto --topic T [--plain] [--partition P] < orders.jsonl
    serde.py consume-proto --topic T --count N [--plain] > orders.jsonl
    serde.py descriptor-set --out FILE
    serde.py subjects

produce and produce-proto take --strategy topic|record|topic_record: Confluent's subject name
strategy of the serializers (topic by default).

Keys: with --key-schema JSON (produce: Avro keys under <topic>-key) or --key-format
avro|string|json (consume; string and json also produce) or --key-format proto (the
Protobuf commands: weir.test.Customer keys), each line is a JSON array [key, value].

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
from confluent_kafka.schema_registry import (
    SchemaRegistryClient,
    record_subject_name_strategy,
    topic_record_subject_name_strategy,
    topic_subject_name_strategy,
)
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


STRATEGIES = {
    "topic": topic_subject_name_strategy,
    "record": record_subject_name_strategy,
    "topic_record": topic_record_subject_name_strategy,
}


def serializer_conf(args, conf=None):
    """The serializer's configuration, with --strategy's subject name strategy."""
    conf = dict(conf or {})
    conf["subject.name.strategy"] = STRATEGIES[args.strategy]
    return conf


def key_writer(args):
    """The encoder of produced keys: Avro (--key-schema), UTF-8 text or JSON (--key-format)."""
    if args.key_schema:
        schema = json.loads(args.key_schema)
        serializer = AvroSerializer(registry(args), args.key_schema)
        ctx = SerializationContext(args.topic, MessageField.KEY)
        return lambda key: serializer(to_avro(key, schema), ctx)
    if args.key_format == "string":
        return lambda key: key.encode("utf-8")
    if args.key_format == "json":
        return lambda key: json.dumps(key).encode("utf-8")
    return None


def produce(args):
    schema = json.loads(args.schema)
    serializer = AvroSerializer(registry(args), args.schema, conf=serializer_conf(args))
    producer = Producer({"bootstrap.servers": args.bootstrap})
    encode_key = key_writer(args)
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        record, key = json.loads(line), None
        if encode_key is not None:
            key, record = record
            key = None if key is None else encode_key(key)
        ctx = SerializationContext(args.topic, MessageField.VALUE)
        value = None if record is None else serializer(to_avro(record, schema), ctx)
        if value is not None and args.print_id:
            print("schema_id=%d" % struct.unpack(">I", value[1:5])[0], file=sys.stderr)
        producer.produce(args.topic, key=key, value=value, partition=args.partition)
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


def read_records(args):
    """The (key, value) of the topic's first --count records, from the start
    (read_committed)."""
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
        if value is not None and len(value) >= 5 and value[0] == 0:
            print("schema_id=%d" % struct.unpack(">I", value[1:5])[0], file=sys.stderr)
        yield message.key(), value
    consumer.close()
    if seen < args.count:
        sys.exit("read %d of %d records from %s" % (seen, args.count, args.topic))


def key_reader(args):
    """The decoder of consumed keys (--key-format), or None to print values alone."""
    if args.key_format == "avro":
        deserializer = AvroDeserializer(registry(args))
        ctx = SerializationContext(args.topic, MessageField.KEY)
        return lambda key: plain(deserializer(key, ctx))
    if args.key_format == "string":
        return lambda key: key.decode("utf-8")
    if args.key_format == "json":
        return json.loads
    return None


def consume(args):
    deserializer = AvroDeserializer(registry(args))
    decode_key = key_reader(args)
    for key, value in read_records(args):
        ctx = SerializationContext(args.topic, MessageField.VALUE)
        record = None if value is None else plain(deserializer(value, ctx))
        if decode_key is not None:
            record = [None if key is None else decode_key(key), record]
        print(json.dumps(record, sort_keys=True))


def subjects(args):
    """Prints the registry's subjects, one per line."""
    for subject in registry(args).get_subjects():
        print(subject)


def consume_raw(args):
    """Prints each record as [key, value], both as UTF-8 text (null when absent)."""
    text = lambda data: None if data is None else data.decode("utf-8")
    for key, value in read_records(args):
        print(json.dumps([text(key), text(value)], sort_keys=True))


HERE = os.path.dirname(os.path.abspath(__file__))


def protoc(args):
    from grpc_tools import protoc as grpc_protoc
    import grpc_tools

    well_known = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    command = ["protoc", "-I" + os.path.join(HERE, "proto"), "-I" + well_known] + args
    if grpc_protoc.main(command + ["weir/test/customer.proto", "weir/test/order.proto"]) != 0:
        sys.exit("protoc failed")


def message_types():
    """weir.test.Order and weir.test.Customer, compiled."""
    import importlib
    import tempfile

    out = tempfile.mkdtemp()
    protoc(["--python_out=" + out])
    sys.path.insert(0, out)
    order = importlib.import_module("weir.test.order_pb2").Order
    customer = importlib.import_module("weir.test.customer_pb2").Customer
    return order, customer


def produce_proto(args):
    from confluent_kafka.schema_registry.protobuf import ProtobufSerializer
    from google.protobuf import json_format

    order, customer = message_types()
    keyed = args.key_format == "proto"

    def encoder(kind, field):
        if args.plain:
            return lambda message: message.SerializeToString()
        conf = serializer_conf(args, {"use.deprecated.format": False})
        serializer = ProtobufSerializer(kind, registry(args), conf)
        return lambda message: serializer(message, SerializationContext(args.topic, field))

    encode_value = encoder(order, MessageField.VALUE)
    encode_key = encoder(customer, MessageField.KEY) if keyed else None
    producer = Producer({"bootstrap.servers": args.bootstrap})
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        record, key = json.loads(line), None
        if keyed:
            key, record = record
            key = None if key is None else encode_key(json_format.ParseDict(key, customer()))
        value = None
        if record is not None:
            value = encode_value(json_format.ParseDict(record, order()))
        producer.produce(args.topic, key=key, value=value, partition=args.partition)
    if producer.flush(30) != 0:
        sys.exit("records were not delivered")


def consume_proto(args):
    from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer
    from google.protobuf import json_format

    order, customer = message_types()

    def decoder(kind, field):
        if args.plain:
            return kind.FromString
        conf = {"use.deprecated.format": False}
        deserializer = ProtobufDeserializer(kind, conf, registry(args))
        return lambda value: deserializer(value, SerializationContext(args.topic, field))

    def as_json(decode, data):
        if data is None:
            return None
        return json_format.MessageToDict(decode(data), preserving_proto_field_name=True)

    decode_value = decoder(order, MessageField.VALUE)
    decode_key = decoder(customer, MessageField.KEY)
    for key, value in read_records(args):
        record = as_json(decode_value, value)
        if args.key_format == "proto":
            record = [as_json(decode_key, key), record]
        print(json.dumps(record, sort_keys=True))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "command",
        choices=["produce", "consume", "consume-raw", "produce-proto", "consume-proto",
                 "descriptor-set", "subjects"])
    parser.add_argument("--bootstrap", default=os.environ.get("WEIR_TEST_KAFKA"))
    parser.add_argument("--registry", default=os.environ.get("WEIR_TEST_SCHEMA_REGISTRY"))
    parser.add_argument("--user-info")
    parser.add_argument("--topic")
    parser.add_argument("--schema")
    parser.add_argument("--key-schema")
    parser.add_argument("--strategy", choices=sorted(STRATEGIES), default="topic")
    parser.add_argument("--key-format", choices=["avro", "string", "json", "proto"])
    parser.add_argument("--partition", type=int, default=0)
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--print-id", action="store_true")
    parser.add_argument("--plain", action="store_true")
    parser.add_argument("--out")
    args = parser.parse_args()
    commands = {
        "produce": produce,
        "consume": consume,
        "consume-raw": consume_raw,
        "subjects": subjects,
        "produce-proto": produce_proto,
        "consume-proto": consume_proto,
        "descriptor-set": lambda a: protoc(["--include_imports", "--descriptor_set_out=" + a.out]),
    }
    commands[args.command](args)


if __name__ == "__main__":
    main()
