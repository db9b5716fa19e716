//! The interactive shell: multi-line statements ended by `;`, history kept between runs,
//! backslash commands, and Ctrl-C that cancels the running statement, not the shell.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use rustyline::DefaultEditor;
use rustyline::error::ReadlineError;
use tokio::runtime::Runtime;

use super::print::{OutputFormat, summary, write_rows};
use super::{execute_cancellable, shown};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::redact::redact_statement;
use crate::statements::{is_complete, split_statements};

const HELP: &str = "\
Statements end with ';' and may span lines.
  \\d           list tables
  \\d NAME      describe a table (columns and options)
  \\?           this help
  \\q           quit (Ctrl-D too)
Ctrl-C cancels the running statement, or clears a statement being typed.
weir's own statements:
  CREATE TOPIC [IF NOT EXISTS] name [PARTITIONS n]
  SET weir.kafka.bootstrap.servers = 'host:port'
See docs/ for Kafka table options.";

/// Where history is kept: `$WEIR_HISTORY`, or `~/.weir_history`.
fn history_path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("WEIR_HISTORY") {
        return Some(PathBuf::from(path));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".weir_history"))
}

/// Runs the shell until `\q` or end of input.
pub fn run(engine: &Engine, runtime: &Runtime, format: OutputFormat) -> Result<ExitCode> {
    let readline_error = |e: ReadlineError| Error::Io(std::io::Error::other(e.to_string()));
    let mut editor = DefaultEditor::new().map_err(readline_error)?;
    let history = history_path();
    if let Some(path) = &history {
        let _ = editor.load_history(path);
    }
    println!(
        "weir {} — type \\? for help, \\q to quit.",
        env!("CARGO_PKG_VERSION")
    );
    let mut buffer = String::new();
    loop {
        let prompt = if buffer.is_empty() {
            "weir> "
        } else {
            "   -> "
        };
        match editor.readline(prompt) {
            Ok(line) => {
                if buffer.is_empty() && line.trim_start().starts_with('\\') {
                    let _ = editor.add_history_entry(line.trim());
                    if !backslash_command(engine, runtime, line.trim())? {
                        break;
                    }
                    continue;
                }
                buffer.push_str(&line);
                buffer.push('\n');
                if is_complete(&buffer) {
                    let _ = editor.add_history_entry(redact_statement(buffer.trim_end()));
                    run_buffer(engine, runtime, &buffer, format)?;
                    buffer.clear();
                }
            }
            Err(ReadlineError::Interrupted) => {
                buffer.clear();
                println!("^C");
            }
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(readline_error(e)),
        }
    }
    for query in engine.queries() {
        if let Err(e) = runtime.block_on(query.stop()) {
            eprintln!("error: {}", shown(&e));
        }
    }
    if let Some(path) = &history
        && let Err(e) = editor.save_history(path)
    {
        eprintln!("warning: could not save history to {}: {e}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn run_buffer(
    engine: &Engine,
    runtime: &Runtime,
    buffer: &str,
    format: OutputFormat,
) -> Result<()> {
    let statements = match split_statements(buffer) {
        Ok(s) => s,
        Err(e) => {
            println!("error: {}", shown(&e));
            return Ok(());
        }
    };
    let mut stdout = std::io::stdout().lock();
    for statement in statements {
        match execute_cancellable(engine, runtime, &statement.text) {
            None => {
                writeln!(stdout, "Statement cancelled.")?;
                break;
            }
            Some(Err(e)) => {
                writeln!(stdout, "error: {}", shown(&e))?;
                break;
            }
            Some(Ok(result)) => {
                write_rows(&result, format, &mut stdout)?;
                writeln!(stdout, "{}", summary(&result))?;
            }
        }
    }
    stdout.flush()?;
    Ok(())
}

/// Runs a backslash command; false means quit.
fn backslash_command(engine: &Engine, runtime: &Runtime, line: &str) -> Result<bool> {
    let mut words = line.split_whitespace();
    let command = words.next().unwrap_or_default();
    let argument = words.next();
    let mut out = std::io::stdout().lock();
    match (command, argument) {
        ("\\q", _) => return Ok(false),
        ("\\?" | "\\h" | "\\help", _) => writeln!(out, "{HELP}")?,
        ("\\d", None) => {
            let tables = runtime.block_on(engine.tables())?;
            if tables.is_empty() {
                writeln!(out, "No tables.")?;
            }
            let width = tables.iter().map(|t| t.name.len()).max().unwrap_or(0);
            for table in tables {
                writeln!(out, "{:width$}  {}", table.name, table.kind)?;
            }
        }
        ("\\d", Some(name)) => match runtime.block_on(engine.describe(name)) {
            Ok((schema, options)) => {
                let width = schema
                    .fields()
                    .iter()
                    .map(|f| f.name().len())
                    .max()
                    .unwrap_or(0);
                for field in schema.fields() {
                    let null = if field.is_nullable() { "" } else { " not null" };
                    writeln!(out, "{:width$}  {}{null}", field.name(), field.data_type())?;
                }
                if !options.is_empty() {
                    writeln!(out, "Options:")?;
                    for (key, value) in options {
                        writeln!(out, "  {key} = {value}")?;
                    }
                }
            }
            Err(e) => writeln!(out, "error: {}", shown(&e))?,
        },
        _ => writeln!(out, "unknown command '{line}'; \\? lists the commands")?,
    }
    Ok(true)
}
