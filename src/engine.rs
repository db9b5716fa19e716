//! [`Engine`], weir's embedded API: a DataFusion session that knows Kafka tables, weir's own
//! statements, and the session's default broker, and runs SQL to Arrow record batches.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::datatypes::{Schema, SchemaRef};
use datafusion::common::TableReference;
use datafusion::error::DataFusionError;
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::{DmlStatement, LogicalPlan, WriteOp};
use datafusion::physical_plan::{ExecutionPlan, collect};
use datafusion::prelude::SessionConfig;
use datafusion::sql::parser::{DFParserBuilder, Statement as DFStatement};
use datafusion::sql::sqlparser::ast::{Statement as SQLStatement, TableObject};

use crate::delta::{DeltaLakeTable, DeltaTableFactory, Maintenance};
use crate::embedded::EmbeddedKafka;
use crate::error::{Error, Result};
use crate::generate::{DatagenFunction, NexmarkFunction};
use crate::insert;
use crate::jdbc::{JdbcTable, JdbcTableFactory};
use crate::kafka::consumers::ConsumerPool;
use crate::kafka::options::parse_duration;
use crate::kafka::provider::DefaultBootstrap;
use crate::kafka::read_progress::{ReadProgress, ReadTotals};
use crate::kafka::scan::{metric, scans, sum_metric};
use crate::kafka::{KafkaTable, KafkaTableFactory};
use crate::queries::{QueryRegistry, StreamingSettings};
use crate::sinks::SinkKinds;
use crate::sinks::memory::{Kind as SinkKind, MemorySinkFactory};
use crate::sinks::parquet::ParquetTableFactory;
use crate::statements::{self, KAFKA_LOCATION, WeirStatement};
use crate::storage::S3Settings;
use crate::stream::query::{ProgressListener, reads_stream};
use crate::stream::{self, QueryHandle, QueryProgress, Trigger};
use crate::system_tables;
use crate::web::{self, Metrics};
use crate::window::{HopFunction, SessionFunction, TumbleFunction};

/// The environment variable holding the session's default Kafka broker list.
pub const BOOTSTRAP_ENV: &str = "WEIR_KAFKA_BOOTSTRAP";

/// Runs SQL over Kafka topics and returns Arrow record batches.
///
/// ```
/// # #[tokio::main] async fn main() -> weir::Result<()> {
/// use weir::Engine;
///
/// // An engine with its own in-process Kafka broker as the session default.
/// let engine = Engine::builder().embedded_kafka(true).build()?;
/// engine.sql("CREATE TOPIC greetings PARTITIONS 2").await?;
/// engine
///     .sql(
///         "CREATE EXTERNAL TABLE greetings STORED AS KAFKA
///            OPTIONS ('subscribe' 'greetings', 'endingOffsets' 'latest');
///          INSERT INTO greetings (key, value)
///            SELECT 'k' || CAST(n AS VARCHAR), 'hello ' || CAST(n AS VARCHAR) FROM generate_series(1, 3) AS t(n);",
///     )
///     .await?;
/// let batches = engine
///     .sql("SELECT CAST(value AS VARCHAR) AS greeting FROM greetings ORDER BY greeting")
///     .await?;
/// let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
/// assert_eq!(rows, 3);
/// # Ok(()) }
/// ```
pub struct Engine {
    ctx: SessionContext,
    default_bootstrap: DefaultBootstrap,
    /// Kafka consumers kept across queries and batches.
    consumers: Arc<ConsumerPool>,
    embedded: Option<EmbeddedKafka>,
    s3: Arc<RwLock<S3Settings>>,
    streaming: Mutex<StreamingSettings>,
    queries: Arc<QueryRegistry>,
    /// How far bounded Kafka reads have come.
    read_progress: Arc<ReadProgress>,
    /// Where the web UI listens, when it was asked for.
    ui: Option<SocketAddr>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("session_id", &self.ctx.session_id())
            .field("default_bootstrap", &self.default_bootstrap())
            .field("embedded", &self.embedded)
            .finish()
    }
}

/// Configures an [`Engine`].
#[derive(Default)]
pub struct EngineBuilder {
    bootstrap: Option<String>,
    embedded_kafka: bool,
    config: Option<SessionConfig>,
    listener: Option<ProgressListener>,
    ui: Option<SocketAddr>,
}

impl std::fmt::Debug for EngineBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineBuilder")
            .field("bootstrap", &self.bootstrap)
            .field("embedded_kafka", &self.embedded_kafka)
            .field("progress_listener", &self.listener.is_some())
            .field("ui", &self.ui)
            .finish()
    }
}

impl EngineBuilder {
    /// Sets the session's default broker list (otherwise `WEIR_KAFKA_BOOTSTRAP`, if set).
    pub fn bootstrap_servers(mut self, servers: impl Into<String>) -> Self {
        self.bootstrap = Some(servers.into());
        self
    }

    /// Starts an embedded broker and makes it the session's default.
    pub fn embedded_kafka(mut self, enabled: bool) -> Self {
        self.embedded_kafka = enabled;
        self
    }

    /// Uses this DataFusion configuration (information_schema is always enabled).
    pub fn session_config(mut self, config: SessionConfig) -> Self {
        self.config = Some(config);
        self
    }

    /// Calls `listener` with the progress of every batch of every streaming query.
    pub fn progress_listener(mut self, listener: ProgressListener) -> Self {
        self.listener = Some(listener);
        self
    }

    /// Serves the web UI, its JSON API and Prometheus metrics on `address` (port 0 picks a
    /// free one; [`Engine::ui_address`] tells which). The engine must then be built inside a
    /// Tokio runtime, which serves the pages.
    pub fn ui(mut self, address: SocketAddr) -> Self {
        self.ui = Some(address);
        self
    }

    /// Builds the engine, starting the embedded broker and the web UI if asked.
    pub fn build(self) -> Result<Engine> {
        let embedded = if self.embedded_kafka {
            Some(EmbeddedKafka::start(1)?)
        } else {
            None
        };
        let bootstrap = match &embedded {
            Some(kafka) => Some(kafka.bootstrap_servers().to_string()),
            None => self
                .bootstrap
                .or_else(|| std::env::var(BOOTSTRAP_ENV).ok().filter(|s| !s.is_empty())),
        };
        let default_bootstrap: DefaultBootstrap = Arc::new(RwLock::new(bootstrap));
        let s3 = Arc::new(RwLock::new(S3Settings::default()));
        let consumers = Arc::new(ConsumerPool::default());
        let read_progress = Arc::new(ReadProgress::default());
        let sink_kinds = SinkKinds::new(vec![
            crate::kafka::provider::SINK_KIND,
            crate::jdbc::SINK_KIND,
            crate::sinks::parquet::SINK_KIND,
            crate::delta::SINK_KIND,
            crate::sinks::memory::SINK_KIND,
        ]);
        let config = self
            .config
            .unwrap_or_default()
            .with_information_schema(true)
            .with_extension(Arc::clone(&consumers))
            .with_extension(Arc::clone(&read_progress))
            .with_extension(Arc::new(sink_kinds));
        let ctx = SessionContext::new_with_config(config);
        ctx.register_udtf("nexmark", Arc::new(NexmarkFunction));
        ctx.register_udtf("datagen", Arc::new(DatagenFunction));
        ctx.register_udtf("tumble", Arc::new(TumbleFunction));
        ctx.register_udtf("hop", Arc::new(HopFunction));
        ctx.register_udtf("session", Arc::new(SessionFunction));
        {
            let state_ref = ctx.state_ref();
            let mut state = state_ref.write();
            let factories = state.table_factories_mut();
            factories.insert(
                "KAFKA".to_string(),
                Arc::new(KafkaTableFactory::new(Arc::clone(&default_bootstrap))),
            );
            factories.insert(
                "PARQUET".to_string(),
                Arc::new(ParquetTableFactory::new(Arc::clone(&s3))),
            );
            factories.insert(
                "DELTA".to_string(),
                Arc::new(DeltaTableFactory::new(Arc::clone(&s3))),
            );
            factories.insert("JDBC".to_string(), Arc::new(JdbcTableFactory));
            factories.insert(
                "MEMORY".to_string(),
                Arc::new(MemorySinkFactory::new(SinkKind::Memory)),
            );
            factories.insert(
                "CONSOLE".to_string(),
                Arc::new(MemorySinkFactory::new(SinkKind::Console)),
            );
        }
        let metrics = self.ui.map(|_| Arc::new(Metrics::default()));
        let listener = with_metrics(self.listener, metrics.clone());
        let queries = Arc::new(QueryRegistry::new(listener));
        if let Some(catalog) = ctx.catalog("datafusion") {
            catalog.register_schema(system_tables::SCHEMA, system_tables::schema(&queries)?)?;
        }
        let ui = self
            .ui
            .zip(metrics)
            .map(|(address, metrics)| web::serve(address, Arc::clone(&queries), metrics))
            .transpose()?;
        Ok(Engine {
            ctx,
            default_bootstrap,
            consumers,
            embedded,
            s3,
            streaming: Mutex::default(),
            queries,
            read_progress,
            ui,
        })
    }
}

/// `listener`, also recording every batch in `metrics` when there are metrics.
fn with_metrics(
    listener: Option<ProgressListener>,
    metrics: Option<Arc<Metrics>>,
) -> Option<ProgressListener> {
    let Some(metrics) = metrics else {
        return listener;
    };
    Some(Arc::new(move |progress: &QueryProgress| {
        metrics.record(progress);
        if let Some(listener) = &listener {
            listener(progress);
        }
    }))
}

/// What one statement produced.
#[derive(Debug)]
pub struct QueryResult {
    /// The schema of `batches`.
    pub schema: SchemaRef,
    /// The rows (empty for most DDL).
    pub batches: Vec<RecordBatch>,
    /// A message for statements that return no rows of their own (CREATE TOPIC, SET).
    pub message: Option<String>,
    /// What the statement read from Kafka.
    pub kafka: KafkaReadReport,
    /// How long the statement took.
    pub elapsed: Duration,
    /// The streaming query the statement started, if it started one.
    pub started_query: Option<Arc<QueryHandle>>,
}

impl QueryResult {
    /// The number of rows.
    pub fn row_count(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

/// What a statement read from Kafka.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct KafkaReadReport {
    /// Records fetched from brokers.
    pub records_fetched: usize,
    /// Offset ranges read.
    pub ranges: usize,
    /// Records whose value did not decode (dropped or nulled, as the table's mode says).
    pub malformed_records: usize,
    /// Stream tables read as a snapshot up to their latest offsets at query start.
    pub snapshot_tables: Vec<String>,
}

/// A table as `\d` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSummary {
    /// Table name.
    pub name: String,
    /// What the table is: "kafka (bounded)", "kafka (stream)", "table", "view".
    pub kind: String,
}

impl Engine {
    /// An engine configured by [`EngineBuilder`].
    pub fn builder() -> EngineBuilder {
        EngineBuilder::default()
    }

    /// The DataFusion session, to register tables and functions of your own.
    pub fn session(&self) -> &SessionContext {
        &self.ctx
    }

    /// The embedded broker's address, when the engine runs one.
    pub fn embedded_bootstrap(&self) -> Option<&str> {
        self.embedded.as_ref().map(EmbeddedKafka::bootstrap_servers)
    }

    /// The session's default broker list.
    pub fn default_bootstrap(&self) -> Option<String> {
        self.default_bootstrap.read().ok().and_then(|b| b.clone())
    }

    /// Runs every statement of `sql` in order and returns the rows of the last one.
    pub async fn sql(&self, sql: &str) -> Result<Vec<RecordBatch>> {
        let mut last = vec![];
        for statement in statements::split_statements(sql)? {
            last = self.execute(&statement.text).await?.batches;
        }
        Ok(last)
    }

    /// Runs one statement.
    pub async fn execute(&self, statement: &str) -> Result<QueryResult> {
        let started = Instant::now();
        if let Some(own) = statements::parse_weir_statement(statement)? {
            let (message, batches, started_query) = self.execute_weir_statement(own).await?;
            return Ok(QueryResult {
                schema: batches
                    .first()
                    .map_or_else(|| Arc::new(Schema::empty()), RecordBatch::schema),
                batches,
                message,
                kafka: KafkaReadReport::default(),
                elapsed: started.elapsed(),
                started_query,
            });
        }
        let parsed = self.parse(statement)?;
        if let Some(sink) = insert_target(&parsed)
            && reads_stream(&self.ctx, statement).await
        {
            let handle = self.start_query(&sink, statement, &[]).await?;
            return Ok(QueryResult {
                schema: Arc::new(Schema::empty()),
                batches: vec![],
                message: Some(format!(
                    "Started streaming query '{}' into '{sink}' (it reads a Kafka stream; STOP QUERY {} ends it)",
                    handle.name(),
                    handle.name()
                )),
                kafka: KafkaReadReport::default(),
                elapsed: started.elapsed(),
                started_query: Some(handle),
            });
        }
        let parsed = insert::prepare(&self.ctx, parsed).await?;
        let state = self.ctx.state();
        let logical = state.statement_to_plan(parsed).await?;
        self.check_kafka_insert(&logical).await?;
        let frame = self.ctx.execute_logical_plan(logical).await?;
        let physical: Arc<dyn ExecutionPlan> = frame.create_physical_plan().await?;
        let batches = collect(Arc::clone(&physical), self.ctx.task_ctx()).await?;
        let mut snapshot_tables: Vec<String> = scans(&physical)
            .iter()
            .filter(|s| s.is_snapshot())
            .map(|s| s.table().to_string())
            .collect();
        snapshot_tables.sort();
        snapshot_tables.dedup();
        let kafka = KafkaReadReport {
            records_fetched: sum_metric(&physical, metric::RECORDS_FETCHED),
            ranges: scans(&physical).iter().map(|s| s.ranges().len()).sum(),
            malformed_records: sum_metric(&physical, metric::MALFORMED_RECORDS),
            snapshot_tables,
        };
        Ok(QueryResult {
            schema: physical.schema(),
            batches,
            message: None,
            kafka,
            elapsed: started.elapsed(),
            started_query: None,
        })
    }

    /// Checks the record columns an INSERT into a Kafka table gives, before it runs.
    async fn check_kafka_insert(&self, plan: &LogicalPlan) -> Result<()> {
        if let LogicalPlan::Dml(DmlStatement {
            table_name,
            op: WriteOp::Insert(_),
            input,
            ..
        }) = plan
        {
            let provider = self.ctx.table_provider(table_name.clone()).await?;
            if let Some(kafka) = provider.downcast_ref::<KafkaTable>() {
                kafka.check_insert(input)?;
            }
        }
        Ok(())
    }

    fn parse(&self, statement: &str) -> Result<DFStatement> {
        let mut parser = match statements::with_kafka_location(statement)? {
            Some(tokens) => DFParserBuilder::new(tokens).build()?,
            None => DFParserBuilder::new(statement).build()?,
        };
        let mut parsed = parser.parse_statements()?;
        if parsed.len() != 1 {
            return Err(Error::Sql(format!(
                "expected one statement, found {}",
                parsed.len()
            )));
        }
        let parsed = parsed
            .pop_front()
            .ok_or_else(|| Error::Sql("empty statement".to_string()))?;
        if let DFStatement::CreateExternalTable(create) = &parsed {
            let kind = create.file_type.to_ascii_uppercase();
            if ["KAFKA", "MEMORY", "CONSOLE"].contains(&kind.as_str())
                && create.locations != [KAFKA_LOCATION]
            {
                let hint = if kind == "KAFKA" {
                    "; name its broker with the option 'kafka.bootstrap.servers'"
                } else {
                    ""
                };
                let label = if kind == "KAFKA" {
                    "Kafka"
                } else {
                    kind.as_str()
                };
                return Err(Error::Sql(format!("a {label} table has no LOCATION{hint}")));
            }
        }
        Ok(parsed)
    }

    async fn execute_weir_statement(
        &self,
        statement: WeirStatement,
    ) -> Result<(Option<String>, Vec<RecordBatch>, Option<Arc<QueryHandle>>)> {
        let mut started_query = None;
        let message = match statement {
            WeirStatement::CreateTopic {
                name,
                partitions,
                if_not_exists,
            } => match self.create_topic(&name, partitions).await {
                Ok(()) => format!("Created topic '{name}' with {partitions} partition(s)"),
                Err(Error::Kafka(m)) if if_not_exists && m.contains("already exists") => {
                    format!("Topic '{name}' already exists")
                }
                Err(e) => return Err(e),
            },
            WeirStatement::CreateStreamingQuery {
                name,
                options,
                insert: insert_sql,
            } => {
                let handle = self.start_query(&name, &insert_sql, &options).await?;
                let message = format!(
                    "Started streaming query '{name}' (id {}) into {}",
                    handle.id(),
                    handle.sink()
                );
                started_query = Some(handle);
                message
            }
            WeirStatement::ShowQueries => return Ok((None, vec![self.queries.show()?], None)),
            WeirStatement::StopQuery { name } => {
                let handle = self.queries.get(&name)?;
                handle.stop().await?;
                match handle.progress() {
                    Some(p) => format!(
                        "Stopped streaming query '{name}' after batch {}",
                        p.batch_id
                    ),
                    None => format!("Stopped streaming query '{name}' before its first batch"),
                }
            }
            WeirStatement::DescribeQuery { name } => {
                let handle = self.queries.get(&name)?;
                let status = format!("{:?}", handle.status());
                match handle.progress() {
                    Some(p) => format!(
                        "{status}\n{}",
                        serde_json::to_string_pretty(&p)
                            .map_err(|e| Error::Streaming(e.to_string()))?
                    ),
                    None => format!("{status}; no batch has run yet"),
                }
            }
            WeirStatement::Optimize { table } => {
                let result = self.maintain_delta(&table, Maintenance::Optimize).await?;
                return Ok((None, vec![result], None));
            }
            WeirStatement::Vacuum {
                table,
                retain_hours,
                dry_run,
            } => {
                let work = Maintenance::Vacuum {
                    retain_hours,
                    dry_run,
                };
                return Ok((None, vec![self.maintain_delta(&table, work).await?], None));
            }
            WeirStatement::SetWeir { key, value } => self.set(&key, &value)?,
        };
        Ok((Some(message), vec![], started_query))
    }

    /// Runs `OPTIMIZE` or `VACUUM` on the Delta table `name`.
    async fn maintain_delta(&self, name: &str, work: Maintenance) -> Result<RecordBatch> {
        let provider = self.ctx.table_provider(name).await?;
        let Some(table) = provider.downcast_ref::<DeltaLakeTable>() else {
            return Err(Error::Sql(format!(
                "{} works on Delta tables (STORED AS DELTA); '{name}' is not one",
                work.statement()
            )));
        };
        Ok(table.maintain(work).await?)
    }

    /// Applies `SET weir.<key> = value`.
    fn set(&self, key: &str, value: &str) -> Result<String> {
        let poisoned = || Error::Streaming("session settings lock poisoned".to_string());
        match key {
            "kafka.bootstrap.servers" => {
                *self.default_bootstrap.write().map_err(|_| poisoned())? = Some(value.to_string());
                Ok(format!("Default Kafka brokers set to {value}"))
            }
            "checkpoint_root" => {
                self.streaming
                    .lock()
                    .map_err(|_| poisoned())?
                    .checkpoint_root = Some(value.to_string());
                Ok(format!(
                    "Streaming queries keep their checkpoints under {value}/<query name>"
                ))
            }
            "spark.kafka.consumer.cache.capacity" => {
                let capacity = value.trim().parse::<usize>().map_err(|_| {
                    Error::Sql(format!(
                        "spark.kafka.consumer.cache.capacity is '{value}'; expected a number of consumers"
                    ))
                })?;
                let mut settings = self.consumers.settings();
                settings.capacity = capacity;
                self.consumers.configure(settings);
                Ok(format!("At most {capacity} idle Kafka consumers are kept"))
            }
            "spark.kafka.consumer.cache.timeout" => {
                let timeout = parse_duration(value).ok_or_else(|| {
                    Error::Sql(format!(
                        "spark.kafka.consumer.cache.timeout is '{value}'; expected a duration such as 5m"
                    ))
                })?;
                let mut settings = self.consumers.settings();
                settings.idle_timeout = timeout;
                self.consumers.configure(settings);
                Ok(format!(
                    "Idle Kafka consumers are closed after {} s",
                    timeout.as_secs_f64()
                ))
            }
            "spark.sql.streaming.statestore.mindeltasforsnapshot" => {
                let deltas = value
                    .trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| {
                        Error::Sql(format!(
                            "spark.sql.streaming.stateStore.minDeltasForSnapshot is '{value}'; \
                         expected a positive number of batches"
                        ))
                    })?;
                self.streaming
                    .lock()
                    .map_err(|_| poisoned())?
                    .deltas_per_snapshot = Some(deltas);
                Ok(format!(
                    "Streaming queries save their whole state at least every {deltas} batches"
                ))
            }
            "trigger" => {
                Trigger::parse(value)?;
                self.streaming.lock().map_err(|_| poisoned())?.trigger = Some(value.to_string());
                Ok(format!(
                    "Streaming queries default to the trigger '{value}'"
                ))
            }
            other => match other.strip_prefix("s3.") {
                Some(s3_key)
                    if self
                        .s3
                        .write()
                        .map_err(|_| poisoned())?
                        .set(s3_key, value)? =>
                {
                    Ok(format!("Set weir.{other}"))
                }
                _ => Err(Error::Sql(format!(
                    "unknown setting '{}'; the settings are weir.kafka.bootstrap.servers, \
                     weir.checkpoint_root, weir.trigger, weir.s3.(endpoint|region|access_key_id|\
                     secret_access_key|allow_http), spark.kafka.consumer.cache.(capacity|timeout) and \
                     spark.sql.streaming.stateStore.minDeltasForSnapshot",
                    if other.starts_with("spark.") {
                        other.to_string()
                    } else {
                        format!("weir.{other}")
                    }
                ))),
            },
        }
    }

    /// Starts streaming query `name` running `insert_sql` (an `INSERT INTO sink SELECT …` over
    /// Kafka stream tables), with the WITH options `options` and the session's defaults.
    pub async fn start_query(
        &self,
        name: &str,
        insert_sql: &str,
        options: &[(String, String)],
    ) -> Result<Arc<QueryHandle>> {
        self.queries.check_free(name)?;
        let settings = self
            .streaming
            .lock()
            .map_err(|_| Error::Streaming("session settings lock poisoned".to_string()))?
            .clone();
        let options = settings.query_options(name, options)?;
        let s3 = self.s3.read().map(|s| s.clone()).unwrap_or_default();
        let prepared = insert::prepare(&self.ctx, self.parse(insert_sql)?)
            .await?
            .to_string();
        let handle = Arc::new(
            stream::query::start(
                self.ctx.clone(),
                name,
                &prepared,
                options,
                &s3,
                self.queries.listener.clone(),
            )
            .await?,
        );
        self.queries.add(Arc::clone(&handle))?;
        Ok(handle)
    }

    /// The streaming query named `name`.
    pub fn query(&self, name: &str) -> Result<Arc<QueryHandle>> {
        self.queries.get(name)
    }

    /// Every streaming query of the session.
    pub fn queries(&self) -> Vec<Arc<QueryHandle>> {
        self.queries.all()
    }

    /// Where the web UI listens, when the engine was built with [`EngineBuilder::ui`].
    pub fn ui_address(&self) -> Option<SocketAddr> {
        self.ui
    }

    /// How far the session's bounded Kafka reads have come since the engine started.
    pub fn read_progress(&self) -> ReadTotals {
        self.read_progress.totals()
    }

    /// Creates a topic on the session's default broker (the embedded one, or through the
    /// Kafka admin API of a real cluster).
    pub async fn create_topic(&self, name: &str, partitions: i32) -> Result<()> {
        let bootstrap = self.default_bootstrap().ok_or_else(|| {
            Error::Kafka(
                "no default Kafka broker to create the topic on: use --embedded-kafka, \
                          WEIR_KAFKA_BOOTSTRAP or SET weir.kafka.bootstrap.servers"
                    .to_string(),
            )
        })?;
        match &self.embedded {
            Some(kafka) if kafka.bootstrap_servers() == bootstrap => {
                kafka.create_topic(name, partitions)
            }
            _ => crate::admin::create_topic(&bootstrap, name, partitions).await,
        }
    }

    /// The tables of the session, with their kinds, by name.
    pub async fn tables(&self) -> Result<Vec<TableSummary>> {
        let mut out = vec![];
        let Some(catalog) = self.ctx.catalog("datafusion") else {
            return Ok(out);
        };
        let Some(schema) = catalog.schema("public") else {
            return Ok(out);
        };
        let mut names = schema.table_names();
        names.sort();
        for name in names {
            let Some(provider) = schema.table(&name).await? else {
                continue;
            };
            let kind = match provider.downcast_ref::<KafkaTable>() {
                Some(kafka) if kafka.options().is_bounded() => "kafka (bounded)".to_string(),
                Some(_) => "kafka (stream)".to_string(),
                None => format!("{:?}", provider.table_type()).to_lowercase(),
            };
            out.push(TableSummary { name, kind });
        }
        Ok(out)
    }

    /// A table's columns (name, type, nullable) and, for a Kafka table, its options with
    /// secrets redacted.
    pub async fn describe(&self, table: &str) -> Result<(SchemaRef, Vec<(String, String)>)> {
        let provider = self
            .ctx
            .table_provider(TableReference::from(table))
            .await
            .map_err(|_| {
                Error::DataFusion(DataFusionError::Plan(format!("no table named '{table}'")))
            })?;
        let options = if let Some(kafka) = provider.downcast_ref::<KafkaTable>() {
            kafka.options().describe().to_vec()
        } else if let Some(jdbc) = provider.downcast_ref::<JdbcTable>() {
            vec![("stored in".to_string(), jdbc.sink().describe())]
        } else {
            vec![]
        };
        Ok((provider.schema(), options))
    }
}

/// The table an INSERT writes to.
fn insert_target(statement: &DFStatement) -> Option<String> {
    let DFStatement::Statement(boxed) = statement else {
        return None;
    };
    let SQLStatement::Insert(insert) = boxed.as_ref() else {
        return None;
    };
    match &insert.table {
        TableObject::TableName(name) => Some(name.to_string()),
        _ => None,
    }
}
