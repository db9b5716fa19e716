//! Protobuf values: messages of a type named in a compiled descriptor file
//! (`'protobuf.descriptorFile'`, `'protobuf.message'`, as Spark's `from_protobuf`), or framed for
//! a Confluent-compatible schema registry (magic byte 0, a 4-byte schema id, the message's
//! indexes in its file, the message). [`ProtobufCodec`] finds each value's message type, decodes
//! a batch group by group (one group per type) into Arrow builders, fits the columns to the
//! table's declared ones by name, and encodes rows back into messages.
//!
//! Schemas from the registry are files registered as base64 `FileDescriptorProto`s (what
//! Confluent's Python and Java serializers send), with their imports as references; the
//! well-known `google/protobuf/*` files are built in.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use arrow::array::{BinaryArray, RecordBatch};
use arrow::buffer::{Buffer, OffsetBuffer, ScalarBuffer};
use arrow::datatypes::{Schema, SchemaRef};
use arrow::error::ArrowError;
use base64::Engine as _;
use datafusion::error::{DataFusionError, Result};
use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, FileDescriptor, MessageDescriptor};

use super::columns::{Members, check_fields, conform, decode_in_groups};
use super::protobuf_arrow::{MessageColumns, RowsAsMessages, fields_of};
use super::registry::{
    Reference, RegisteredSchema, RegistryClient, RegistryError, SchemaType, block_on,
    lookup_outcome, split_frame, unknown_ids,
};
use crate::kafka::formats::{ProtobufOptions, RecordPart, SubjectNaming};

/// Files by registry schema id, each with its imports; `Err` says why an id has none (the
/// registry lacks it), for this batch only.
type WriterFiles = HashMap<u32, Result<FileDescriptor, String>>;

/// Where each value's message type comes from.
#[derive(Debug)]
enum Framing {
    /// Bare messages of the table's type.
    Plain,
    /// Registry framing: a schema id and the message's indexes in that file.
    Registry(Arc<RegistryClient>),
}

/// How a table's Protobuf values are read and written.
#[derive(Debug)]
pub struct ProtobufCodec {
    framing: Framing,
    /// The table's message type: its fields are the columns, and rows are written as it.
    message: MessageDescriptor,
    /// The schema the message type was read from, when it came from the registry: writing
    /// registers it as it is (a file rebuilt from the message type would differ in bytes).
    registered: Option<RegisteredSchema>,
    /// Whether writing registers the message's file: it came from `'protobuf.descriptorFile'`,
    /// or the subject is named after the message (a record name strategy), so that the
    /// subject may not hold it yet.
    registers_file: bool,
    /// The registry subject written to: `subject`, else named by the strategy from the sink
    /// topic and the message type.
    write_subject: Option<String>,
    /// How the subjects are named, for messages.
    naming: SubjectNaming,
    writers: Mutex<WriterFiles>,
}

impl ProtobufCodec {
    /// The codec of a table with these options; `read_topic` and `write_topic` are the one
    /// topic read and written, when there is one. With a registry and no descriptor file, the
    /// message type is read from the subject's latest schema here.
    pub async fn open(
        options: &ProtobufOptions,
        read_topic: Option<&str>,
        write_topic: Option<&str>,
    ) -> Result<Self> {
        let plan = |e: String| DataFusionError::Plan(e);
        let option = |name| options.part().option(name);
        let client = match &options.registry {
            Some(registry) => Some(Arc::new(RegistryClient::new(registry).map_err(plan)?)),
            None => None,
        };
        let registers_file = options.descriptor_file.is_some() || options.subject.names_records();
        let (message, registered) = match (&options.descriptor_file, &client) {
            (Some(path), _) => {
                let message = message_in_file(path, options.message.as_deref(), options.part());
                (message.map_err(plan)?, None)
            }
            (None, Some(client)) => {
                let subject = options
                    .subject
                    .subject(read_topic, options.message.as_deref());
                let subject = subject.ok_or_else(|| {
                    plan(format!(
                        "there is no subject to read the message type from: give '{}', or {}",
                        option("protobuf.descriptorFile"),
                        options.subject.hint("protobuf.message")
                    ))
                })?;
                let name = options.message.as_deref();
                let (message, latest) =
                    latest_message(client, &subject, name, options.part()).await?;
                (message, Some(latest))
            }
            (None, None) => {
                return Err(plan(format!(
                    "'{}' 'protobuf' needs '{}' or 'schema.registry.url'",
                    option("format"),
                    option("protobuf.descriptorFile")
                )));
            }
        };
        fields_of(&message).map_err(plan)?;
        let write_subject = options
            .subject
            .subject(write_topic, Some(message.full_name()));
        Ok(Self {
            framing: client.map_or(Framing::Plain, Framing::Registry),
            message,
            registered,
            registers_file,
            write_subject,
            naming: options.subject.clone(),
            writers: Mutex::default(),
        })
    }

    /// Whether the codec reads and writes the table's values or its keys.
    pub fn part(&self) -> RecordPart {
        self.naming.part
    }

    /// The columns of the table's message type: its fields, all nullable.
    pub fn columns(&self) -> Result<SchemaRef, String> {
        Ok(Arc::new(Schema::new(fields_of(&self.message)?)))
    }

    /// Fails when the message type's fields cannot fill the `declared` columns.
    pub fn check_declared(&self, declared: &SchemaRef) -> Result<(), String> {
        let fields = fields_of(&self.message)?;
        check_fields(&fields, declared.fields()).map_err(|e| {
            format!(
                "message {} does not fit the table's columns: {e}",
                self.message.full_name()
            )
        })
    }

    /// Fetches the file of every framed value whose schema id is new (or was missing from the
    /// registry before). An id the registry lacks leaves its values undecodable; a registry
    /// that cannot answer fails, naming the first record with the id (`locate(i)`).
    pub fn prepare(&self, values: &BinaryArray, locate: &dyn Fn(usize) -> String) -> Result<()> {
        let Framing::Registry(client) = &self.framing else {
            return Ok(());
        };
        let unknown = {
            let known = self.lock_writers()?;
            unknown_ids(values, |id| matches!(known.get(&id), Some(Ok(_))))
        };
        for (id, first) in unknown {
            let fetched = block_on(file_by_id(client, id))?;
            let entry = lookup_outcome(fetched, id, &locate(first))?;
            self.lock_writers()?.insert(id, entry);
        }
        Ok(())
    }

    fn lock_writers(&self) -> Result<MutexGuard<'_, WriterFiles>> {
        self.writers
            .lock()
            .map_err(|_| DataFusionError::Internal("Protobuf schema cache poisoned".to_string()))
    }

    /// The message type and the encoded message of `value`.
    fn frame<'a>(&self, value: &'a [u8]) -> Result<(MessageDescriptor, &'a [u8]), ArrowError> {
        let Framing::Registry(_) = &self.framing else {
            return Ok((self.message.clone(), value));
        };
        let (id, rest) = split_frame(value)?;
        let (indexes, payload) = message_indexes(rest)?;
        let file = match self.writers.lock().ok().and_then(|w| w.get(&id).cloned()) {
            Some(Ok(file)) => file,
            Some(Err(e)) => {
                return Err(ArrowError::ParseError(format!(
                    "its schema id {id} is unknown: {e}"
                )));
            }
            None => {
                return Err(ArrowError::ParseError(format!(
                    "its schema id {id} was not fetched"
                )));
            }
        };
        Ok((message_at(&file, &indexes, id)?, payload))
    }

    /// Decodes `values` into the columns `declared`; a value for which `nulled(i)` holds (a
    /// tombstone, a malformed value kept as PERMISSIVE) becomes a null row.
    pub fn decode(
        &self,
        values: &BinaryArray,
        nulled: &dyn Fn(usize) -> bool,
        declared: &SchemaRef,
    ) -> Result<RecordBatch, ArrowError> {
        let frame = |value| self.frame(value);
        let decode_group = |message: &MessageDescriptor, members: &Members| {
            decode_group(message, members, declared)
        };
        decode_in_groups(values, nulled, declared, frame, decode_group)
    }

    /// The registry and subject writing registers under, when the values are framed.
    pub(super) fn registry(&self) -> Option<(&RegistryClient, Option<&str>)> {
        match &self.framing {
            Framing::Registry(client) => Some((client, self.write_subject.as_deref())),
            Framing::Plain => None,
        }
    }

    /// The table's message type.
    pub(super) fn message(&self) -> &MessageDescriptor {
        &self.message
    }

    /// The schema the message type was read from, when it came from the registry.
    pub(super) fn registered(&self) -> Option<&RegisteredSchema> {
        self.registered.as_ref()
    }

    /// What to give when the subject written to cannot be named.
    pub(super) fn subject_hint(&self) -> String {
        self.naming.hint("protobuf.message")
    }

    /// Whether writing registers the message's file (see [`ProtobufCodec::open`]).
    pub(super) fn registers_its_file(&self) -> bool {
        self.registers_file
    }
}

/// The messages `members` (value index, encoded message), all of type `message`, as rows of
/// `declared`.
fn decode_group(
    message: &MessageDescriptor,
    members: &[(usize, &[u8])],
    declared: &SchemaRef,
) -> Result<RecordBatch, ArrowError> {
    let mut columns =
        MessageColumns::new(message, members.len()).map_err(ArrowError::SchemaError)?;
    for (_, payload) in members {
        let decoded = DynamicMessage::decode(message.clone(), *payload).map_err(|e| {
            ArrowError::ParseError(format!(
                "the payload is not a {} message: {e}",
                message.full_name()
            ))
        })?;
        columns.append(Some(&decoded));
    }
    let fields = fields_of(message).map_err(ArrowError::SchemaError)?;
    let schema = Schema::new(fields);
    conform(&schema, &columns.finish(), members.len(), declared)
}

/// The message named `name` in the compiled descriptor file at `path` (a `FileDescriptorSet`,
/// as `protoc --include_imports --descriptor_set_out` writes).
fn message_in_file(
    path: &str,
    name: Option<&str>,
    part: RecordPart,
) -> Result<MessageDescriptor, String> {
    let file_option = part.option("protobuf.descriptorFile");
    let bytes =
        std::fs::read(path).map_err(|e| format!("cannot read '{file_option}' ('{path}'): {e}"))?;
    let pool = DescriptorPool::decode(bytes.as_slice()).map_err(|e| {
        format!(
            "'{file_option}' ('{path}') is not a compiled descriptor set (protoc \
             --include_imports --descriptor_set_out): {e}"
        )
    })?;
    let name = name.ok_or_else(|| {
        format!(
            "'{file_option}' needs '{}': the full name of the {}s' message type",
            part.option("protobuf.message"),
            part.name()
        )
    })?;
    pool.get_message_by_name(name).ok_or_else(|| {
        let known: Vec<String> = pool
            .all_messages()
            .filter(|m| !m.full_name().starts_with("google.protobuf."))
            .map(|m| m.full_name().to_string())
            .collect();
        format!(
            "'{file_option}' ('{path}') has no message '{name}'; it has {}",
            known.join(", ")
        )
    })
}

/// The message type of the latest schema of `subject` (`name`, else the file's one message),
/// and that schema as registered.
async fn latest_message(
    client: &RegistryClient,
    subject: &str,
    name: Option<&str>,
    part: RecordPart,
) -> Result<(MessageDescriptor, RegisteredSchema)> {
    let plan = |e: String| DataFusionError::Plan(format!("cannot use the schema registry: {e}"));
    let latest = client
        .latest(subject, SchemaType::Protobuf)
        .await
        .map_err(|e| plan(e.to_string()))?
        .ok_or_else(|| {
            DataFusionError::Plan(format!(
                "the subject '{subject}' has no schema in the registry to take the message \
                 type from; give '{}' and '{}'",
                part.option("protobuf.descriptorFile"),
                part.option("protobuf.message")
            ))
        })?;
    let file = load_file(client, &latest)
        .await
        .map_err(|e| plan(e.to_string()))?;
    let message = match name {
        Some(name) => file.parent_pool().get_message_by_name(name).ok_or_else(|| {
            plan(format!(
                "the latest schema of '{subject}' has no message '{name}'"
            ))
        }),
        None => {
            let mut messages = file.messages();
            match (messages.next(), messages.next()) {
                (Some(only), None) => Ok(only),
                (None, _) => Err(plan(format!(
                    "the latest schema of '{subject}' has no message"
                ))),
                (Some(_), Some(_)) => {
                    let names: Vec<String> =
                        file.messages().map(|m| m.full_name().to_string()).collect();
                    Err(plan(format!(
                        "the latest schema of '{subject}' has several messages ({}); set \
                         '{}' to the one the table holds",
                        names.join(", "),
                        part.option("protobuf.message")
                    )))
                }
            }
        }
    }?;
    Ok((message, latest))
}

/// The file of schema id `id`, with its imports.
async fn file_by_id(client: &RegistryClient, id: u32) -> Result<FileDescriptor, RegistryError> {
    let registered = client.schema_by_id(id, SchemaType::Protobuf).await?;
    load_file(client, &registered).await
}

/// `registered`'s file in a pool with the files it references (fetched from the registry,
/// imports first) and the well-known types.
async fn load_file(
    client: &RegistryClient,
    registered: &RegisteredSchema,
) -> Result<FileDescriptor, RegistryError> {
    let mut pool = DescriptorPool::global();
    let mut pending: Vec<Reference> = registered.references.clone();
    let mut files = vec![];
    while let Some(reference) = pending.pop() {
        if pool.get_file_by_name(&reference.name).is_some()
            || files.iter().any(|(name, _)| *name == reference.name)
        {
            continue;
        }
        let version = reference.version.to_string();
        let imported = client
            .version(&reference.subject, &version, SchemaType::Protobuf)
            .await?;
        pending.extend(imported.references.iter().cloned());
        files.push((
            reference.name.clone(),
            file_proto(&imported.schema, &reference.name)?,
        ));
    }
    let main = file_proto(&registered.schema, &format!("schema id {}", registered.id))?;
    let name = main.name().to_string();
    for (_, file) in files.into_iter().rev() {
        add_file(&mut pool, file)?;
    }
    add_file(&mut pool, main)?;
    pool.get_file_by_name(&name).ok_or_else(|| {
        RegistryError::Failed(format!("the file of schema id {} vanished", registered.id))
    })
}

fn add_file(
    pool: &mut DescriptorPool,
    file: prost_types::FileDescriptorProto,
) -> Result<(), RegistryError> {
    let name = file.name().to_string();
    pool.add_file_descriptor_proto(file).map_err(|e| {
        RegistryError::Failed(format!(
            "the registry's Protobuf file '{name}' does not build: {e}"
        ))
    })
}

/// A registered Protobuf schema as a file descriptor: a base64 `FileDescriptorProto`.
fn file_proto(schema: &str, what: &str) -> Result<prost_types::FileDescriptorProto, RegistryError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(schema.trim())
        .map_err(|_| {
            RegistryError::Failed(format!(
                "{what} is .proto text; weir reads Protobuf schemas registered as base64 \
                 descriptors, as Confluent's serializers register them"
            ))
        })?;
    prost_types::FileDescriptorProto::decode(bytes.as_slice()).map_err(|e| {
        RegistryError::Failed(format!("{what} is not a Protobuf file descriptor: {e}"))
    })
}

/// The message indexes at the start of `rest` (Confluent's zig-zag varints: a count, then the
/// indexes; a count of 0 stands for `[0]`), and the message after them.
fn message_indexes(rest: &[u8]) -> Result<(Vec<i64>, &[u8]), ArrowError> {
    let mut at = 0;
    let mut next = || -> Result<i64, ArrowError> {
        let mut raw: u64 = 0;
        for shift in (0..64).step_by(7) {
            let byte = *rest.get(at).ok_or_else(|| {
                ArrowError::ParseError("the payload ends inside its message indexes".to_string())
            })?;
            at += 1;
            raw |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok((raw >> 1) as i64 ^ -((raw & 1) as i64));
            }
        }
        Err(ArrowError::ParseError(
            "a message index is not a varint".to_string(),
        ))
    };
    let count = next()?;
    if !(0..=100).contains(&count) {
        return Err(ArrowError::ParseError(format!(
            "the message index count ({count}) is not a count"
        )));
    }
    let indexes = if count == 0 {
        vec![0]
    } else {
        (0..count).map(|_| next()).collect::<Result<_, _>>()?
    };
    Ok((indexes, &rest[at..]))
}

/// The message at `indexes` in `file`: the file's message at the first, then nested ones.
fn message_at(
    file: &FileDescriptor,
    indexes: &[i64],
    id: u32,
) -> Result<MessageDescriptor, ArrowError> {
    let missing = || {
        ArrowError::ParseError(format!(
            "schema id {id} ({}) has no message at indexes {indexes:?}",
            file.name()
        ))
    };
    let (first, nested) = indexes.split_first().ok_or_else(missing)?;
    let mut message = file
        .messages()
        .nth(usize::try_from(*first).map_err(|_| missing())?)
        .ok_or_else(missing)?;
    for index in nested {
        let index = usize::try_from(*index).map_err(|_| missing())?;
        let child = message.child_messages().nth(index);
        message = child.ok_or_else(missing)?;
    }
    Ok(message)
}

/// The indexes of `message` in its file, as the registry framing writes them.
fn indexes_of(message: &MessageDescriptor) -> Vec<i64> {
    let mut path = vec![];
    let mut current = message.clone();
    while let Some(parent) = current.parent_message() {
        let at = parent
            .child_messages()
            .position(|m| m == current)
            .unwrap_or(0);
        path.push(at as i64);
        current = parent;
    }
    let file = current.parent_file();
    path.push(file.messages().position(|m| m == current).unwrap_or(0) as i64);
    path.reverse();
    path
}

/// Confluent's framing prefix of values of `message` written with schema `id`.
pub(super) fn frame_prefix(id: u32, message: &MessageDescriptor) -> Vec<u8> {
    fn zigzag(n: i64, out: &mut Vec<u8>) {
        let mut z = ((n << 1) ^ (n >> 63)) as u64;
        while z >= 0x80 {
            out.push((z as u8) | 0x80);
            z >>= 7;
        }
        out.push(z as u8);
    }
    let mut out = vec![0];
    out.extend_from_slice(&id.to_be_bytes());
    let indexes = indexes_of(message);
    if indexes == [0] {
        out.push(0);
    } else {
        zigzag(indexes.len() as i64, &mut out);
        for index in indexes {
            zigzag(index, &mut out);
        }
    }
    out
}

/// Registers `file` under `subject`, after the files it imports (each under its own name, as
/// Confluent's serializers do; the well-known types are not registered), and returns its id.
pub(super) async fn register_file(
    client: &RegistryClient,
    subject: &str,
    file: &FileDescriptor,
) -> Result<u32, RegistryError> {
    let references = register_imports(client, file).await?;
    client
        .register(
            subject,
            SchemaType::Protobuf,
            &encoded_file(file),
            &references,
        )
        .await
}

/// Registers each file `file` imports (its own imports first) under its own name, unless a
/// version is registered there already (its latest is then referenced), and returns the
/// references to them.
async fn register_imports(
    client: &RegistryClient,
    file: &FileDescriptor,
) -> Result<Vec<Reference>, RegistryError> {
    let mut references = vec![];
    for import in file.dependencies() {
        if import.name().starts_with("google/protobuf/") {
            continue;
        }
        let kind = SchemaType::Protobuf;
        let registered = client.latest(import.name(), kind).await?;
        let version = match registered.and_then(|r| r.version) {
            Some(version) => version,
            None => {
                let nested = Box::pin(register_imports(client, &import)).await?;
                let schema = encoded_file(&import);
                client
                    .register(import.name(), kind, &schema, &nested)
                    .await?;
                client
                    .version_of(import.name(), kind, &schema, &nested)
                    .await?
            }
        };
        references.push(Reference {
            name: import.name().to_string(),
            subject: import.name().to_string(),
            version,
        });
    }
    Ok(references)
}

/// `file` as the registry holds it: its `FileDescriptorProto`, base64.
fn encoded_file(file: &FileDescriptor) -> String {
    base64::engine::general_purpose::STANDARD.encode(file.file_descriptor_proto().encode_to_vec())
}

/// Encodes each row of `batch` as one message of `rows`' type, after `prefix`.
pub(super) fn encode_rows(
    rows: &RowsAsMessages,
    count: usize,
    prefix: &[u8],
) -> Result<BinaryArray, String> {
    let mut bytes = Vec::with_capacity(count * 32);
    let mut offsets = Vec::with_capacity(count + 1);
    offsets.push(0i32);
    for row in 0..count {
        bytes.extend_from_slice(prefix);
        rows.message(row)?
            .encode(&mut bytes)
            .map_err(|e| format!("cannot encode row {}: {e}", row + 1))?;
        offsets.push(
            i32::try_from(bytes.len())
                .map_err(|_| "a batch of values exceeds 2 GiB".to_string())?,
        );
    }
    Ok(BinaryArray::new(
        OffsetBuffer::new(ScalarBuffer::from(offsets)),
        Buffer::from_vec(bytes),
        None,
    ))
}
