//! The JSON the web page reads: `/api/queries`, `/api/queries/{name}` and
//! `/api/queries/{name}/progress?last=N`. Documented in docs/observability.md.

use serde::{Deserialize, Serialize};

use crate::stream::QueryProgress;
use crate::stream::query::{QueryHandle, QueryStatus};

/// One query in the list.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QuerySummary {
    name: String,
    id: String,
    run_id: String,
    status: &'static str,
    error: Option<String>,
    trigger: String,
    sink: String,
    batch: Option<u64>,
    input_rows_per_second: Option<f64>,
    processed_rows_per_second: Option<f64>,
    lag: Option<i64>,
    watermark_ms: Option<i64>,
    state_rows: Option<u64>,
}

impl QuerySummary {
    /// What `query` reports now.
    pub fn of(query: &QueryHandle) -> Self {
        let progress = query.progress();
        let status = query.status();
        QuerySummary {
            name: query.name().to_string(),
            id: query.id().to_string(),
            run_id: query.run_id().to_string(),
            status: status.label(),
            error: match status {
                QueryStatus::Failed(message) => Some(message),
                _ => None,
            },
            trigger: query.trigger().to_string(),
            sink: query.sink().to_string(),
            batch: progress.as_ref().map(|p| p.batch_id),
            input_rows_per_second: progress.as_ref().map(|p| p.input_rows_per_second),
            processed_rows_per_second: progress.as_ref().map(|p| p.processed_rows_per_second),
            lag: progress.as_ref().map(QueryProgress::total_lag),
            watermark_ms: progress
                .as_ref()
                .and_then(|p| p.event_time.next_watermark_ms),
            state_rows: progress.as_ref().map(|p| p.event_time.state_rows),
        }
    }
}

/// One query, whole.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryDetail {
    #[serde(flatten)]
    summary: QuerySummary,
    sql: String,
    plan: Option<String>,
}

impl QueryDetail {
    /// What `query` reports now, with its SQL and its latest physical plan.
    pub fn of(query: &QueryHandle) -> Self {
        QueryDetail {
            summary: QuerySummary::of(query),
            sql: query.sql().to_string(),
            plan: query.latest_plan(),
        }
    }
}

/// `?last=N`: how many of the latest progress records to return.
#[derive(Debug, Deserialize)]
pub struct ProgressQuery {
    /// At most this many (all kept, 100, when absent).
    pub last: Option<usize>,
}

/// The latest `last` progress records of `query`, oldest first.
pub fn progress(query: &QueryHandle, last: Option<usize>) -> Vec<QueryProgress> {
    let mut records = query.recent_progress();
    let keep = last.unwrap_or(records.len()).min(records.len());
    records.split_off(records.len() - keep)
}

/// An error the API answers with.
#[derive(Debug, Serialize)]
pub struct ApiError {
    /// What went wrong.
    pub error: String,
}
