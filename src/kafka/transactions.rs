//! Kafka transactions around each batch of a streaming query (table option `transactional`).
//!
//! [`Transactions`] is the four producer calls the sink makes; [`TransactionalWriter`] is the
//! state machine around them: initialise once (which also aborts what a crashed predecessor
//! with the same `transactional.id` left open), then per batch begin → produce → commit. An
//! abortable failure aborts the transaction and fails the batch (the query replays it on
//! restart); a fenced or fatal producer is never used again, and fencing is reported as another
//! instance of the query having taken over.
//!
//! The brokers available to weir's tests accept these calls without their semantics, so the
//! state machine is tested here against scripted answers, and the real calls only run.

use std::time::Duration;

use datafusion::error::{DataFusionError, Result};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, Producer, ProducerContext};

/// How a transactional call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Another producer with the same `transactional.id` took over.
    Fenced,
    /// The producer cannot be used again.
    Fatal,
    /// The transaction must be aborted; the producer stays usable.
    Abortable,
    /// The call may be made again.
    Retriable,
    /// The brokers have no transactions.
    Unsupported,
}

/// A failed transactional call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionFailure {
    /// What kind of failure.
    pub kind: FailureKind,
    /// The client's message.
    pub message: String,
}

/// The transactional calls of a producer.
pub trait Transactions {
    /// Registers the `transactional.id`, fencing older producers with it and aborting what
    /// they left open.
    fn init(&self, timeout: Duration) -> Result<(), TransactionFailure>;
    /// Starts a transaction.
    fn begin(&self) -> Result<(), TransactionFailure>;
    /// Commits the open transaction (flushing what was produced in it).
    fn commit(&self, timeout: Duration) -> Result<(), TransactionFailure>;
    /// Aborts the open transaction.
    fn abort(&self, timeout: Duration) -> Result<(), TransactionFailure>;
}

fn failure(error: KafkaError) -> TransactionFailure {
    let message = error.to_string();
    let kind = match &error {
        KafkaError::Transaction(e) => {
            if matches!(
                e.code(),
                RDKafkaErrorCode::Fenced | RDKafkaErrorCode::ProducerFenced
            ) {
                FailureKind::Fenced
            } else if matches!(
                e.code(),
                RDKafkaErrorCode::UnsupportedFeature | RDKafkaErrorCode::UnsupportedVersion
            ) {
                FailureKind::Unsupported
            } else if e.is_fatal() {
                FailureKind::Fatal
            } else if e.txn_requires_abort() {
                FailureKind::Abortable
            } else if e.is_retriable() {
                FailureKind::Retriable
            } else {
                FailureKind::Abortable
            }
        }
        _ => FailureKind::Fatal,
    };
    TransactionFailure { kind, message }
}

impl<C: ProducerContext> Transactions for BaseProducer<C> {
    fn init(&self, timeout: Duration) -> Result<(), TransactionFailure> {
        self.init_transactions(timeout).map_err(failure)
    }

    fn begin(&self) -> Result<(), TransactionFailure> {
        self.begin_transaction().map_err(failure)
    }

    fn commit(&self, timeout: Duration) -> Result<(), TransactionFailure> {
        self.commit_transaction(timeout).map_err(failure)
    }

    fn abort(&self, timeout: Duration) -> Result<(), TransactionFailure> {
        self.abort_transaction(timeout).map_err(failure)
    }
}

/// How many times a retriable call is made before the batch fails.
const ATTEMPTS: usize = 3;

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Uninitialised,
    Ready,
    /// Fenced or fatal: the message says why; nothing more is written.
    Broken(String),
    /// The brokers have no transactions.
    Unsupported(String),
}

/// Runs batches as transactions of one producer.
#[derive(Debug)]
pub struct TransactionalWriter {
    transactional_id: String,
    timeout: Duration,
    state: State,
}

impl TransactionalWriter {
    /// A writer for a producer configured with `transactional_id`.
    pub fn new(transactional_id: &str, timeout: Duration) -> Self {
        Self {
            transactional_id: transactional_id.to_string(),
            timeout,
            state: State::Uninitialised,
        }
    }

    fn broken(&mut self, what: &str, failure: TransactionFailure) -> DataFusionError {
        if failure.kind == FailureKind::Unsupported {
            let message = format!(
                "the Kafka brokers have no transactions (initialising transactional.id '{}' \
                 failed: {}); set the table option 'transactional' to 'false' to write without \
                 them",
                self.transactional_id, failure.message
            );
            self.state = State::Unsupported(message.clone());
            return DataFusionError::Execution(message);
        }
        let message = match failure.kind {
            FailureKind::Fenced => format!(
                "another producer with transactional.id '{}' took over while this instance was \
                 {what} (the producer was fenced): another instance of this query is running; \
                 only one may run, so this one stops ({})",
                self.transactional_id, failure.message
            ),
            _ => format!(
                "the Kafka producer with transactional.id '{}' failed {what} and cannot continue: \
                 {}",
                self.transactional_id, failure.message
            ),
        };
        self.state = State::Broken(message.clone());
        DataFusionError::Execution(message)
    }

    fn retry(
        &self,
        mut call: impl FnMut() -> Result<(), TransactionFailure>,
    ) -> Result<(), TransactionFailure> {
        let mut attempt = 1;
        loop {
            match call() {
                Err(f) if f.kind == FailureKind::Retriable && attempt < ATTEMPTS => {
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(100 * attempt as u64));
                }
                other => return other,
            }
        }
    }

    /// Aborts after `failure` of `what`; the batch fails with `error`.
    fn abort_after(
        &mut self,
        transactions: &dyn Transactions,
        error: DataFusionError,
    ) -> DataFusionError {
        match self.retry(|| transactions.abort(self.timeout)) {
            Ok(()) => error,
            Err(f) => self.broken("aborting a failed batch", f),
        }
    }

    /// Registers the `transactional.id` (once), which also completes or aborts what a crashed
    /// predecessor left open: a replay reads back what was written only after this.
    pub fn initialise(&mut self, transactions: &dyn Transactions) -> Result<()> {
        if let State::Broken(message) | State::Unsupported(message) = &self.state {
            return Err(DataFusionError::Execution(message.clone()));
        }
        if self.state == State::Uninitialised {
            self.retry(|| transactions.init(self.timeout))
                .map_err(|f| self.broken("initialising transactions", f))?;
            self.state = State::Ready;
        }
        Ok(())
    }

    /// Whether initialising found that the brokers have no transactions.
    pub fn unsupported(&self) -> bool {
        matches!(self.state, State::Unsupported(_))
    }

    /// Runs `produce` (which sends a batch's records) inside one transaction.
    pub fn run_batch(
        &mut self,
        transactions: &dyn Transactions,
        produce: impl FnOnce() -> Result<()>,
    ) -> Result<()> {
        self.initialise(transactions)?;
        if let Err(f) = transactions.begin() {
            return Err(self.broken("beginning a transaction", f));
        }
        if let Err(e) = produce() {
            return Err(self.abort_after(transactions, e));
        }
        match self.retry(|| transactions.commit(self.timeout)) {
            Ok(()) => Ok(()),
            Err(f) if f.kind == FailureKind::Abortable => {
                let error = DataFusionError::Execution(format!(
                    "the Kafka transaction of this batch could not be committed and was aborted \
                     (it will be written again): {}",
                    f.message
                ));
                Err(self.abort_after(transactions, error))
            }
            Err(f) => Err(self.broken("committing a transaction", f)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::VecDeque;

    use super::*;

    /// Records the calls made and answers them from a script (Ok when the script is empty).
    #[derive(Default)]
    struct Scripted {
        calls: RefCell<Vec<&'static str>>,
        answers: RefCell<VecDeque<(&'static str, FailureKind)>>,
    }

    impl Scripted {
        fn failing(answers: &[(&'static str, FailureKind)]) -> Self {
            Self {
                answers: RefCell::new(answers.iter().copied().collect()),
                ..Self::default()
            }
        }

        fn answer(&self, call: &'static str) -> Result<(), TransactionFailure> {
            self.calls.borrow_mut().push(call);
            let mut answers = self.answers.borrow_mut();
            match answers.front() {
                Some((failing, kind)) if *failing == call => {
                    let kind = *kind;
                    answers.pop_front();
                    Err(TransactionFailure {
                        kind,
                        message: format!("{call} failed"),
                    })
                }
                _ => Ok(()),
            }
        }

        fn calls(&self) -> Vec<&'static str> {
            self.calls.borrow().clone()
        }
    }

    impl Transactions for Scripted {
        fn init(&self, _: Duration) -> Result<(), TransactionFailure> {
            self.answer("init")
        }
        fn begin(&self) -> Result<(), TransactionFailure> {
            self.answer("begin")
        }
        fn commit(&self, _: Duration) -> Result<(), TransactionFailure> {
            self.answer("commit")
        }
        fn abort(&self, _: Duration) -> Result<(), TransactionFailure> {
            self.answer("abort")
        }
    }

    fn writer() -> TransactionalWriter {
        TransactionalWriter::new("weir-q1", Duration::from_millis(10))
    }

    #[test]
    fn initialises_once_then_one_transaction_per_batch() {
        let producer = Scripted::default();
        let mut writer = writer();
        writer.run_batch(&producer, || Ok(())).expect("batch 0");
        writer.run_batch(&producer, || Ok(())).expect("batch 1");
        assert_eq!(
            producer.calls(),
            ["init", "begin", "commit", "begin", "commit"]
        );
    }

    #[test]
    fn a_failed_produce_aborts_and_the_next_batch_starts_afresh() {
        let producer = Scripted::default();
        let mut writer = writer();
        let error = writer
            .run_batch(&producer, || {
                Err(DataFusionError::Execution("broker gone".into()))
            })
            .expect_err("batch fails");
        assert!(error.to_string().contains("broker gone"), "{error}");
        writer.run_batch(&producer, || Ok(())).expect("next batch");
        assert_eq!(
            producer.calls(),
            ["init", "begin", "abort", "begin", "commit"]
        );
    }

    #[test]
    fn retriable_commits_are_retried() {
        let producer = Scripted::failing(&[
            ("commit", FailureKind::Retriable),
            ("commit", FailureKind::Retriable),
        ]);
        writer()
            .run_batch(&producer, || Ok(()))
            .expect("third commit works");
        assert_eq!(
            producer.calls(),
            ["init", "begin", "commit", "commit", "commit"]
        );
    }

    #[test]
    fn an_abortable_commit_aborts_and_fails_the_batch() {
        let producer = Scripted::failing(&[("commit", FailureKind::Abortable)]);
        let error = writer().run_batch(&producer, || Ok(())).expect_err("fails");
        assert!(error.to_string().contains("aborted"), "{error}");
        assert_eq!(producer.calls(), ["init", "begin", "commit", "abort"]);
    }

    #[test]
    fn a_fenced_producer_stops_for_good_naming_the_other_instance() {
        let producer = Scripted::failing(&[("commit", FailureKind::Fenced)]);
        let mut writer = writer();
        let error = writer.run_batch(&producer, || Ok(())).expect_err("fenced");
        let message = error.to_string();
        assert!(message.contains("fenced"), "{message}");
        assert!(message.contains("weir-q1"), "{message}");
        assert!(message.contains("another instance"), "{message}");
        let again = writer
            .run_batch(&producer, || Ok(()))
            .expect_err("still broken");
        assert_eq!(again.to_string(), message);
        assert_eq!(producer.calls(), ["init", "begin", "commit"]);
    }

    #[test]
    fn a_fatal_abort_breaks_the_writer() {
        let producer = Scripted::failing(&[("abort", FailureKind::Fatal)]);
        let mut writer = writer();
        let error = writer
            .run_batch(&producer, || Err(DataFusionError::Execution("x".into())))
            .expect_err("fails");
        assert!(error.to_string().contains("cannot continue"), "{error}");
        assert!(writer.run_batch(&producer, || Ok(())).is_err());
        assert_eq!(producer.calls(), ["init", "begin", "abort"]);
    }
}
