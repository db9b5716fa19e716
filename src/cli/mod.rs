//! The `weir` command: the REPL (no arguments), the runner (`weir run`), one-shot SQL (`-c`),
//! and a standalone embedded broker (`weir broker`). Terminal input and output only; the work is
//! done by [`crate::Engine`].

mod broker;
mod print;
mod progress;
mod repl;
mod runner;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::{Parser, Subcommand};

pub use print::OutputFormat;

use crate::engine::{BOOTSTRAP_ENV, Engine};
use crate::error::{Error, Result};
use crate::stream::QueryProgress;
use progress::{Console, watched};
use std::sync::Arc;

/// weir: streaming SQL for Apache Kafka.
#[derive(Debug, Parser)]
#[command(name = "weir", version, about, long_about = None)]
struct Args {
    /// Start an in-process Kafka broker (librdkafka's mock cluster) and make it the default.
    #[arg(long, global = true)]
    embedded_kafka: bool,

    /// Default Kafka brokers for tables without 'kafka.bootstrap.servers'.
    #[arg(long, global = true, env = BOOTSTRAP_ENV, value_name = "HOST:PORT[,…]")]
    bootstrap_servers: Option<String>,

    /// How query results are printed.
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Table)]
    format: OutputFormat,

    /// Under each error, print the errors it came from, in the words of the libraries below.
    #[arg(short = 'v', long, global = true)]
    verbose: bool,

    /// Serve the web UI (queries, live charts), its JSON API and Prometheus metrics here.
    #[arg(long, global = true, value_name = "HOST:PORT")]
    ui: Option<std::net::SocketAddr>,

    /// Run these statements (separated by ';') and exit.
    #[arg(short = 'c', long = "command", value_name = "SQL")]
    sql: Option<String>,

    #[command(subcommand)]
    command_name: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the statements of .sql files, and of directories' .sql files in name order.
    Run {
        /// Files or directories.
        #[arg(required = true, value_name = "FILE_OR_DIR")]
        paths: Vec<PathBuf>,
    },
    /// Run an embedded Kafka broker in the foreground until standard input closes.
    Broker {
        /// Number of brokers in the cluster.
        #[arg(long, default_value_t = 1)]
        brokers: i32,
        /// Topics to create at start, as NAME:PARTITIONS.
        #[arg(long = "topic", value_name = "NAME:PARTITIONS")]
        topics: Vec<String>,
    },
}

/// Whether errors are shown with their causes (`--verbose`).
static VERBOSE: AtomicBool = AtomicBool::new(false);

/// An error as the command shows it: its message, and with `--verbose` its causes below it.
fn shown(error: &Error) -> String {
    let mut text = error.to_string();
    if VERBOSE.load(Ordering::Relaxed) {
        for cause in error.causes() {
            text.push_str("\n  caused by: ");
            text.push_str(&cause);
        }
    }
    text
}

/// Runs the `weir` command with the process's arguments.
pub fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let args = Args::parse();
    VERBOSE.store(args.verbose, Ordering::Relaxed);
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", shown(&e));
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<ExitCode> {
    if let Some(Command::Broker { brokers, topics }) = &args.command_name {
        return broker::run(*brokers, topics);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let scripted = args.command_name.is_some() || args.sql.is_some();
    let mut builder = Engine::builder().embedded_kafka(args.embedded_kafka);
    if scripted {
        builder =
            builder.progress_listener(Arc::new(|p: &QueryProgress| Console::line(&p.summary())));
    }
    if let Some(address) = args.ui {
        builder = builder.ui(address);
    }
    if let Some(servers) = args.bootstrap_servers {
        builder = builder.bootstrap_servers(servers);
    }
    let engine = runtime.block_on(async { builder.build() })?;
    if let Some(bootstrap) = engine.embedded_bootstrap() {
        eprintln!(
            "Embedded Kafka broker listening on {bootstrap} (the session's default brokers)."
        );
    }
    if let Some(address) = engine.ui_address() {
        eprintln!("Web UI at http://{address}/ (metrics at /metrics).");
    }
    let code = match (args.command_name, args.sql) {
        (Some(_), Some(_)) => {
            eprintln!(
                "error: -c runs statements on its own; it cannot be combined with a subcommand"
            );
            Ok(ExitCode::from(2))
        }
        (Some(Command::Run { paths }), None) => {
            runner::run_paths(&engine, &runtime, &paths, args.format)
        }
        (None, Some(sql)) => runner::run_text(&engine, &runtime, "-c", &sql, args.format),
        (None, None) => repl::run(&engine, &runtime, args.format),
        (Some(Command::Broker { .. }), None) => unreachable!("handled above"),
    }?;
    if code != ExitCode::SUCCESS {
        runtime.block_on(stop_queries(&engine));
        return Ok(code);
    }
    let code = runtime.block_on(await_queries(&engine));
    if let Some(address) = engine.ui_address()
        && scripted
        && code == ExitCode::SUCCESS
    {
        eprintln!("The statements have run; the web UI stays at http://{address}/ until Ctrl-C.");
        runtime.block_on(tokio::signal::ctrl_c())?;
    }
    Ok(code)
}

/// Waits for the session's streaming queries to end (availableNow and once end by themselves);
/// Ctrl-C stops them cleanly at a batch boundary.
async fn await_queries(engine: &Engine) -> ExitCode {
    let mut code = ExitCode::SUCCESS;
    for query in engine.queries() {
        let outcome = tokio::select! {
            outcome = query.await_termination() => outcome,
            _ = tokio::signal::ctrl_c() => {
                eprintln!("Stopping streaming queries at the end of their current batch…");
                stop_queries(engine).await;
                return ExitCode::from(130);
            }
        };
        if let Err(e) = outcome {
            eprintln!("error: {}", shown(&e));
            code = ExitCode::FAILURE;
        }
    }
    code
}

/// Stops every running streaming query at a batch boundary.
async fn stop_queries(engine: &Engine) {
    for query in engine.queries() {
        if let Err(e) = query.stop().await {
            eprintln!("error: {}", shown(&e));
        }
    }
}

/// Runs one statement, or gives up when Ctrl-C is pressed (`None`). A long read from Kafka shows
/// its progress meanwhile.
fn execute_cancellable(
    engine: &Engine,
    runtime: &tokio::runtime::Runtime,
    statement: &str,
) -> Option<Result<crate::QueryResult>> {
    let before = engine.read_progress();
    runtime.block_on(watched(
        engine.execute(statement),
        "reading".to_string(),
        || {
            let read = engine.read_progress().since(before);
            (read.read, read.planned)
        },
    ))
}
