//! `weir run FILE_OR_DIR…` and `weir -c SQL`: run statements in order, print each result, and
//! stop at the first failure with its file and line.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use tokio::runtime::Runtime;

use super::print::{OutputFormat, summary, write_rows};
use super::progress::{DrainCount, watched};
use super::{execute_cancellable, shown};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::statements::split_statements;
use crate::stream::{QueryHandle, Trigger};

/// Runs every file named, a directory's `.sql` files in name order.
pub fn run_paths(
    engine: &Engine,
    runtime: &Runtime,
    paths: &[PathBuf],
    format: OutputFormat,
) -> Result<ExitCode> {
    for file in sql_files(paths)? {
        let sql = std::fs::read_to_string(&file).map_err(|e| {
            Error::Io(std::io::Error::new(
                e.kind(),
                format!("cannot read {}: {e}", file.display()),
            ))
        })?;
        let code = run_text(engine, runtime, &file.display().to_string(), &sql, format)?;
        if code != ExitCode::SUCCESS {
            return Ok(code);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn sql_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = vec![];
    for path in paths {
        if path.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)?
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "sql"))
                .collect();
            found.sort();
            if found.is_empty() {
                return Err(Error::Io(std::io::Error::other(format!(
                    "{} holds no .sql files",
                    path.display()
                ))));
            }
            files.extend(found);
        } else if path.is_file() {
            files.push(path.clone());
        } else {
            return Err(Error::Io(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{}: no such file or directory", path.display()),
            )));
        }
    }
    Ok(files)
}

/// Runs the statements of `sql`, named `origin` in messages. Results go to stdout, summaries and
/// errors to stderr.
pub fn run_text(
    engine: &Engine,
    runtime: &Runtime,
    origin: &str,
    sql: &str,
    format: OutputFormat,
) -> Result<ExitCode> {
    let statements = match split_statements(sql) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {origin}: {}", shown(&e));
            return Ok(ExitCode::FAILURE);
        }
    };
    let mut stdout = std::io::stdout().lock();
    for statement in statements {
        match execute_cancellable(engine, runtime, &statement.text) {
            None => {
                eprintln!(
                    "cancelled: {} at {origin}:{}",
                    first_line(&statement.text),
                    statement.line
                );
                return Ok(ExitCode::from(130));
            }
            Some(Err(e)) => {
                stdout.flush()?;
                eprintln!("error: {}: {}", location(origin, statement.line), shown(&e));
                return Ok(ExitCode::FAILURE);
            }
            Some(Ok(result)) => {
                write_rows(&result, format, &mut stdout)?;
                eprintln!("{}", summary(&result));
                if let Some(query) = result
                    .started_query
                    .filter(|q| matches!(q.trigger(), Trigger::Once | Trigger::AvailableNow))
                {
                    let finished = runtime.block_on(drain(&query));
                    match finished {
                        None => {
                            eprintln!(
                                "cancelled: stopping streaming query '{}' at the end of its batch",
                                query.name()
                            );
                            runtime.block_on(query.stop())?;
                            return Ok(ExitCode::from(130));
                        }
                        Some(Err(e)) => {
                            eprintln!("error: {}: {}", location(origin, statement.line), shown(&e));
                            return Ok(ExitCode::FAILURE);
                        }
                        Some(Ok(())) => eprintln!("Streaming query '{}' finished.", query.name()),
                    }
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Waits for a query with a trigger that ends (once, availableNow), showing its progress;
/// `None` when Ctrl-C is pressed.
async fn drain(query: &QueryHandle) -> Option<Result<()>> {
    let mut count = DrainCount::default();
    watched(
        query.await_termination(),
        format!("query {}", query.name()),
        || count.update(query),
    )
    .await
}

fn location(origin: &str, line: usize) -> String {
    if Path::new(origin).exists() || origin != "-c" {
        format!("{origin}:{line}")
    } else {
        format!("statement at line {line} of -c")
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}
