//! [`KafkaTable`], the DataFusion table over Kafka topics, and [`KafkaTableFactory`], which
//! builds one from `CREATE EXTERNAL TABLE … STORED AS KAFKA`.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use arrow::datatypes::{DataType, FieldRef, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProviderFactory};
use datafusion::common::DFSchema;
use datafusion::datasource::sink::DataSinkExec;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::SessionState;
use datafusion::logical_expr::ExprSchemable;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::simplify::SimplifyContext;
use datafusion::logical_expr::{
    CreateExternalTable, Expr, LogicalPlan, TableProviderFilterPushDown,
};
use datafusion::optimizer::simplify_expressions::ExprSimplifier;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::ExecutionPlan;

use super::client::BrokerClient;
use super::exactly_once::KafkaStreamingSink;
use super::formats::ValueFormat;
use super::layout::Column;
use super::layout::TableLayout;
use super::offsets::{Narrowing, PartitionRange, narrow_fixed, plan_ranges, split_ranges};
use super::options::KafkaTableOptions;
use super::pushdown::{can_narrow, narrowing_of};
use super::records::{Produced, check_produced, produced_by_logical, raw_value_column};
use super::scan::{KafkaScanExec, ScanKind, ScanSource};
use super::sink::KafkaSink;
use crate::format::{PartFormat, RecordDecoder, SchemaCodec};
use crate::sinks::SinkKind;

/// A Kafka table: bounded when it has an end, a stream otherwise.
#[derive(Debug, Clone)]
pub struct KafkaTable {
    source: Arc<ScanSource>,
    /// The exact ranges to read, for a batch of a streaming query; planned per query otherwise.
    fixed_ranges: Option<Vec<PartitionRange>>,
}

impl KafkaTable {
    /// A table named `name` with these options and columns (declared, or from the schemas of
    /// its avro or protobuf values and keys, whose `codecs` these are); `session` compiles the
    /// `watermark` expression.
    pub fn try_new(
        name: &str,
        options: KafkaTableOptions,
        declared: Option<SchemaRef>,
        codecs: TableCodecs,
        session: &dyn Session,
    ) -> Result<Self> {
        let layout = TableLayout::new(declared, options.include_headers)?;
        let decoder = match (&options.format, &layout.declared) {
            (ValueFormat::RawRecord, _) | (_, None) => None,
            (format, Some(schema)) => Some(record_decoder(&options, format, schema, codecs)?),
        };
        let event_time = match (&options.watermark, &layout.declared) {
            (Some(text), Some(declared)) => Some(compile_watermark(session, name, text, declared)?),
            _ => None,
        };
        Ok(Self {
            source: Arc::new(ScanSource {
                table: name.to_string(),
                options: Arc::new(options),
                layout,
                decoder,
                event_time,
            }),
            fixed_ranges: None,
        })
    }

    /// The table's validated options.
    pub fn options(&self) -> &KafkaTableOptions {
        &self.source.options
    }

    /// The same table reading exactly `ranges` (one batch of a streaming query).
    pub fn bound_to(&self, ranges: Vec<PartitionRange>) -> KafkaTable {
        KafkaTable {
            source: Arc::clone(&self.source),
            fixed_ranges: Some(ranges),
        }
    }

    /// The table's name.
    pub fn name(&self) -> &str {
        &self.source.table
    }

    /// Whether the table has a headers column (`includeHeaders`).
    pub fn has_headers_column(&self) -> bool {
        self.source.options.include_headers
    }

    /// The same table with a headers column, for INSERTs that write headers: Spark's Kafka sink
    /// takes a `headers` column whether or not the table reads headers (`includeHeaders`).
    pub fn with_headers_column(&self) -> Result<KafkaTable> {
        let layout = TableLayout::new(self.source.layout.declared.clone(), true)?;
        Ok(KafkaTable {
            source: Arc::new(ScanSource {
                table: self.source.table.clone(),
                options: Arc::clone(&self.source.options),
                layout,
                decoder: self.source.decoder.clone(),
                event_time: self.source.event_time.clone(),
            }),
            fixed_ranges: None,
        })
    }

    /// Whether the table's records carry their value in one column (`value`, or the one
    /// declared column of 'format' 'raw') that an INSERT must give, as Spark's Kafka sink
    /// requires; its name.
    pub fn required_value_column(&self) -> Option<String> {
        match self.source.options.format {
            ValueFormat::RawRecord => Some("value".to_string()),
            ValueFormat::RawValue => {
                let declared = self.source.layout.declared.as_ref()?;
                raw_value_column(&self.source).map(|i| declared.field(i).name().clone())
            }
            _ => None,
        }
    }

    /// True for a table without an end that no batch has bound.
    pub fn is_stream(&self) -> bool {
        !self.source.options.is_bounded() && self.fixed_ranges.is_none()
    }

    /// The table's column layout.
    pub fn layout(&self) -> &TableLayout {
        &self.source.layout
    }

    /// Checks the columns the INSERT plan `input` gives this table (see
    /// [`check_produced`]), before a streaming query starts.
    pub fn check_insert(&self, input: &LogicalPlan) -> Result<()> {
        check_produced(&self.source, &produced_by_logical(input)?)
    }

    /// The table as the exactly-once sink of a streaming query whose INSERT input is `input`.
    pub fn streaming_sink(&self, input: &LogicalPlan) -> Result<KafkaStreamingSink> {
        let key = self.source.layout.index_of(Column::Key);
        let key_fields = self
            .source
            .options
            .key
            .as_ref()
            .map(|k| k.fields.as_slice());
        let keyed = produced_by_logical(input)?.iter().any(|(name, produced)| {
            let holds_key = match key_fields {
                Some(fields) => fields.contains(name),
                None => key.is_some() && self.source.layout.schema.index_of(name).ok() == key,
            };
            matches!(produced, Produced::Values(_)) && holds_key
        });
        KafkaStreamingSink::try_new(
            Arc::clone(&self.source),
            Arc::clone(&self.source.layout.schema),
            keyed,
        )
    }
}

#[async_trait]
impl TableProvider for KafkaTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.source.layout.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let readers = state
            .config()
            .target_partitions()
            .max(self.source.options.min_partitions.unwrap_or(0));
        let narrowing = filters
            .iter()
            .filter_map(|f| narrowing_of(f, &self.source.layout))
            .fold(Narrowing::default(), Narrowing::and);
        if let Some(fixed) = &self.fixed_ranges {
            let ranges = narrow_fixed(fixed, &narrowing);
            return Ok(Arc::new(KafkaScanExec::new(
                Arc::clone(&self.source),
                ranges,
                readers,
                projection,
                limit,
                ScanKind::Slice,
            )?));
        }
        let options = Arc::clone(&self.source.options);
        let ranges = tokio::task::spawn_blocking(move || {
            let client = BrokerClient::new(&options)?;
            plan_ranges(&options, &client, &narrowing)
        })
        .await
        .map_err(|e| DataFusionError::Execution(format!("offset planning stopped: {e}")))??;
        let ranges = split_ranges(ranges, self.source.options.min_partitions);
        let kind = if self.source.options.is_bounded() {
            ScanKind::Bounded
        } else {
            ScanKind::Snapshot
        };
        Ok(Arc::new(KafkaScanExec::new(
            Arc::clone(&self.source),
            ranges,
            readers,
            projection,
            limit,
            kind,
        )?))
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| {
                if can_narrow(f, &self.source.layout) {
                    TableProviderFilterPushDown::Inexact
                } else {
                    TableProviderFilterPushDown::Unsupported
                }
            })
            .collect())
    }

    async fn insert_into(
        &self,
        _state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if insert_op != InsertOp::Append {
            return Err(DataFusionError::Plan(format!(
                "Kafka table '{}' only supports INSERT INTO (appending records), not {insert_op}",
                self.source.table
            )));
        }
        let sink = KafkaSink::try_new(Arc::clone(&self.source), input.schema())?;
        Ok(Arc::new(DataSinkExec::new(input, Arc::new(sink), None)))
    }
}

/// The codecs of a table's avro and protobuf values and keys.
#[derive(Debug, Default)]
pub struct TableCodecs {
    /// The values' codec.
    pub value: Option<SchemaCodec>,
    /// The keys' codec (`key.format`).
    pub key: Option<SchemaCodec>,
}

impl TableCodecs {
    /// Opens the codecs `options` call for (asking the registry for the subjects' latest
    /// schemas, so an unreachable registry fails here).
    pub async fn open(options: &KafkaTableOptions) -> Result<Self> {
        let (read, write) = (options.single_read_topic(), options.sink_topic.as_deref());
        let value = SchemaCodec::open(&options.format, read, write).await?;
        let key = match &options.key {
            Some(key) => SchemaCodec::open(&key.format, read, write).await?,
            None => None,
        };
        Ok(Self { value, key })
    }

    /// The columns of a table that declares none: the key schema's fields, then the value
    /// schema's fields that the key does not hold; `None` without a value schema.
    fn columns(&self) -> Result<Option<SchemaRef>> {
        let Some(value) = &self.value else {
            return Ok(None);
        };
        let value = value.columns().map_err(DataFusionError::Plan)?;
        let Some(key) = &self.key else {
            return Ok(Some(value));
        };
        let key = key
            .columns()
            .map_err(|e| DataFusionError::Plan(format!("the keys' schema: {e}")))?;
        let mut fields: Vec<FieldRef> = key.fields().iter().cloned().collect();
        for field in value.fields() {
            if key.field_with_name(field.name()).is_err() {
                fields.push(Arc::clone(field));
            }
        }
        Ok(Some(Arc::new(Schema::new(fields))))
    }

    /// The key columns a table whose `key.fields` is not given holds: its key schema's fields,
    /// each of which must be one of the `declared` columns.
    fn key_fields(&self, declared: Option<&SchemaRef>) -> Result<Vec<String>> {
        let key = self.key.as_ref().ok_or_else(|| {
            DataFusionError::Plan(
                "'key.format' needs 'key.fields': the declared columns the key holds".to_string(),
            )
        })?;
        let columns = key
            .columns()
            .map_err(|e| DataFusionError::Plan(format!("the keys' schema: {e}")))?;
        let fields: Vec<String> = columns.fields().iter().map(|f| f.name().clone()).collect();
        if let Some(declared) = declared
            && let Some(missing) = fields.iter().find(|f| declared.index_of(f).is_err())
        {
            return Err(DataFusionError::Plan(format!(
                "the keys' schema has the field '{missing}', which the table does not declare; \
                 declare it, or name the columns the key holds with 'key.fields'"
            )));
        }
        Ok(fields)
    }
}

/// The decoder of a table's `declared` columns from its values (in `format`) and keys.
fn record_decoder(
    options: &KafkaTableOptions,
    format: &ValueFormat,
    declared: &SchemaRef,
    codecs: TableCodecs,
) -> Result<RecordDecoder> {
    let value = PartFormat {
        format: format.clone(),
        codec: codecs.value,
    };
    let Some(key) = &options.key else {
        return RecordDecoder::of_values(Arc::clone(declared), options.malformed, value);
    };
    let key_part = PartFormat {
        format: key.format.clone(),
        codec: codecs.key,
    };
    RecordDecoder::of_keys_and_values(
        Arc::clone(declared),
        options.malformed,
        value,
        key_part,
        &key.fields,
        key.value_includes_key,
    )
}

/// Kafka tables as streaming sinks.
pub const SINK_KIND: SinkKind = SinkKind {
    tables: "Kafka tables",
    find: |provider, input| match provider.downcast_ref::<KafkaTable>() {
        Some(table) => Ok(Some(Arc::new(table.streaming_sink(input)?))),
        None => Ok(None),
    },
};

/// Compiles a table's `watermark` option: a timestamp expression over its declared columns.
fn compile_watermark(
    session: &dyn Session,
    table: &str,
    text: &str,
    declared: &SchemaRef,
) -> Result<Arc<dyn PhysicalExpr>> {
    let state = session
        .as_any()
        .downcast_ref::<SessionState>()
        .ok_or_else(|| DataFusionError::Internal("a session without SQL planning".to_string()))?;
    let schema = DFSchema::try_from(declared.as_ref().clone())?;
    let invalid = |why: String| {
        DataFusionError::Plan(format!(
            "option 'watermark' of Kafka table '{table}' ('{text}') {why}; give a timestamp \
             expression over the declared columns, such as ts - INTERVAL '5' SECOND"
        ))
    };
    let expr = state.create_logical_expr(text, &schema).map_err(|e| {
        invalid(format!(
            "is not an expression over the table's columns: {e}"
        ))
    })?;
    // Physical planning expects simplified expressions (coalesce becomes CASE, for one).
    let context = SimplifyContext::builder()
        .with_schema(Arc::new(schema.clone()))
        .build();
    let expr = ExprSimplifier::new(context).simplify(expr)?;
    let data_type = expr.get_type(&schema)?;
    if !matches!(data_type, DataType::Timestamp(_, _)) {
        return Err(invalid(format!("is {data_type}, not a timestamp")));
    }
    state.create_physical_expr(expr, &schema)
}

/// Where a factory finds the session's default broker list.
pub type DefaultBootstrap = Arc<RwLock<Option<String>>>;

/// Builds [`KafkaTable`]s for `CREATE EXTERNAL TABLE … STORED AS KAFKA`.
#[derive(Debug, Default)]
pub struct KafkaTableFactory {
    default_bootstrap: DefaultBootstrap,
}

impl KafkaTableFactory {
    /// A factory that fills in `default_bootstrap` for tables without `kafka.bootstrap.servers`.
    pub fn new(default_bootstrap: DefaultBootstrap) -> Self {
        Self { default_bootstrap }
    }
}

/// DataFusion lower-cases option names and prefixes those without a dot with `format.`; this
/// undoes the prefix (Kafka option names ignore case anyway).
fn kafka_options(cmd: &CreateExternalTable) -> HashMap<String, String> {
    cmd.options
        .iter()
        .map(|(k, v)| {
            let key = k.strip_prefix("format.").unwrap_or(k);
            (key.to_string(), v.clone())
        })
        .collect()
}

#[async_trait]
impl TableProviderFactory for KafkaTableFactory {
    async fn create(
        &self,
        state: &dyn Session,
        cmd: &CreateExternalTable,
    ) -> Result<Arc<dyn TableProvider>> {
        if !cmd.table_partition_cols.is_empty() {
            return Err(DataFusionError::Plan(
                "PARTITIONED BY does not apply to Kafka tables (partitions are Kafka's own)"
                    .to_string(),
            ));
        }
        let declared = (!cmd.schema.fields().is_empty()).then(|| Arc::clone(cmd.schema.inner()));
        let default_bootstrap = self
            .default_bootstrap
            .read()
            .map_err(|_| DataFusionError::Internal("session settings lock poisoned".to_string()))?
            .clone();
        let mut options = KafkaTableOptions::parse(
            &kafka_options(cmd),
            declared.is_some(),
            default_bootstrap.as_deref(),
        )?;
        let codecs = TableCodecs::open(&options).await?;
        let declared = match declared {
            None => codecs.columns()?,
            declared => declared,
        };
        if let Some(key) = &mut options.key
            && key.fields.is_empty()
        {
            key.fields = codecs.key_fields(declared.as_ref())?;
        }
        let table = KafkaTable::try_new(&cmd.name.to_string(), options, declared, codecs, state)?;
        Ok(Arc::new(table))
    }
}
