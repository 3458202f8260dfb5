//! Dynamic batching: one worker thread owns all model work (predictions and embeddings).
//!
//! Handlers resolve their tasks (holding an `Arc` of the exact version they saw), then queue a
//! [`Job`] on a bounded channel and await its answer. The worker takes the first waiting job,
//! keeps collecting for the batch window or until `max_batch` inputs, and answers the whole
//! batch with one [`MultiTask::predict_loaded`] call: rows of different tasks share the
//! backbone pass and go through their own adapters and head. Jobs whose client has gone or
//! whose deadline has passed are dropped before any model work is spent on them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use adalbert_model::tokenizer::TextInput;
use adalbert_model::{LoadedTask, ModelError, MultiTask, Prediction};
use tokio::sync::oneshot;

use crate::embed::{embed, Embedded, SentenceConfig};
use crate::metrics::Metrics;

/// One input of a request, bound to the task version it was admitted with.
pub struct Row {
    pub task: Arc<LoadedTask>,
    pub input: TextInput,
}

/// Why the worker could not answer a job.
#[derive(Debug, Clone, PartialEq)]
pub enum JobError {
    /// The input could not be processed (e.g. the tokenizer refused it).
    Input(String),
    /// The model failed.
    Model(String),
    /// The job waited past its deadline and was not run.
    Expired,
}

/// What a job asks for.
pub enum Work {
    /// Predictions, each row with its task (batched with other jobs' rows).
    Predict(Vec<Row>),
    /// Sentence embeddings from the bare backbone (`task: None`) or one task's adapters.
    Embed {
        task: Option<Arc<LoadedTask>>,
        inputs: Vec<TextInput>,
        /// Overrides the model's normalization.
        normalize: Option<bool>,
    },
}

impl Work {
    /// Inputs (rows of a model pass).
    pub fn size(&self) -> usize {
        match self {
            Work::Predict(rows) => rows.len(),
            Work::Embed { inputs, .. } => inputs.len(),
        }
    }
}

/// A job's answer, in input order.
pub enum Answer {
    Predictions(Vec<Prediction>),
    Embeddings(Embedded),
}

pub type Reply = Result<Answer, JobError>;

/// One request's work and where to send its answer.
pub struct Job {
    pub work: Work,
    pub deadline: Instant,
    pub reply: oneshot::Sender<Reply>,
}

pub struct BatchSettings {
    pub window: Duration,
    pub max_batch: usize,
    pub queue_depth: usize,
    pub embedding: SentenceConfig,
}

/// The handle the HTTP side holds. Dropping the last one stops the worker.
pub struct Batcher {
    tx: SyncSender<Job>,
    queued: Arc<AtomicUsize>,
    capacity: usize,
}

impl Batcher {
    pub fn start(
        mt: Arc<MultiTask>,
        settings: BatchSettings,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::sync_channel::<Job>(settings.queue_depth);
        let queued = Arc::new(AtomicUsize::new(0));
        let worker = Worker {
            mt,
            rx,
            queued: Arc::clone(&queued),
            metrics,
            window: settings.window,
            max_batch: settings.max_batch,
            embedding: settings.embedding,
        };
        std::thread::Builder::new()
            .name("adalbert-batcher".into())
            .spawn(move || worker.run())?;
        Ok(Self {
            tx,
            queued,
            capacity: settings.queue_depth,
        })
    }

    /// Queues a job, or hands it back when the queue is full (or the worker is gone).
    pub fn submit(&self, job: Job) -> Result<(), Job> {
        self.queued.fetch_add(1, Ordering::SeqCst);
        match self.tx.try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(job)) | Err(TrySendError::Disconnected(job)) => {
                self.queued.fetch_sub(1, Ordering::SeqCst);
                Err(job)
            }
        }
    }

    /// Jobs waiting for the worker.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::SeqCst)
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

struct Worker {
    mt: Arc<MultiTask>,
    rx: mpsc::Receiver<Job>,
    queued: Arc<AtomicUsize>,
    metrics: Arc<Metrics>,
    window: Duration,
    max_batch: usize,
    embedding: SentenceConfig,
}

impl Worker {
    fn take(&self, job: Job) -> Job {
        self.queued.fetch_sub(1, Ordering::SeqCst);
        job
    }

    fn run(self) {
        // A job that would have overflowed the previous batch opens the next one.
        let mut carry: Option<Job> = None;
        loop {
            let first = match carry.take() {
                Some(j) => j,
                None => match self.rx.recv() {
                    Ok(j) => self.take(j),
                    Err(_) => return, // every sender dropped: the server is shutting down
                },
            };
            let mut rows = first.work.size();
            let mut jobs = vec![first];
            let close = Instant::now() + self.window;
            while rows < self.max_batch {
                let now = Instant::now();
                let next = if now >= close {
                    self.rx.try_recv().ok()
                } else {
                    self.rx.recv_timeout(close - now).ok()
                };
                let Some(job) = next else { break };
                let job = self.take(job);
                if rows + job.work.size() > self.max_batch {
                    carry = Some(job);
                    break;
                }
                rows += job.work.size();
                jobs.push(job);
            }
            self.answer(jobs);
        }
    }

    fn answer(&self, jobs: Vec<Job>) {
        let now = Instant::now();
        let mut live: Vec<(Vec<Row>, oneshot::Sender<Reply>)> = Vec::with_capacity(jobs.len());
        for job in jobs {
            if job.reply.is_closed() {
                continue; // the client gave up (timeout or disconnect)
            }
            if now >= job.deadline {
                let _ = job.reply.send(Err(JobError::Expired));
                continue;
            }
            match job.work {
                Work::Predict(rows) => live.push((rows, job.reply)),
                Work::Embed {
                    task,
                    inputs,
                    normalize,
                } => {
                    let r = self.embed(task.as_deref(), &inputs, normalize);
                    let _ = job.reply.send(r.map(Answer::Embeddings));
                }
            }
        }
        if live.is_empty() {
            return;
        }
        match self.predict(live.iter().flat_map(|j| &j.0)) {
            Ok(mut preds) => {
                for (rows, reply) in live.into_iter().rev() {
                    let mine = preds.split_off(preds.len() - rows.len());
                    let _ = reply.send(Ok(Answer::Predictions(mine)));
                }
            }
            // A bad job must not fail its batch neighbours: answer each on its own.
            Err(_) if live.len() > 1 => {
                for (rows, reply) in live {
                    let r = self.predict(rows.iter());
                    let _ = reply.send(r.map(Answer::Predictions));
                }
            }
            Err(e) => {
                if let Some((_, reply)) = live.into_iter().next() {
                    let _ = reply.send(Err(e));
                }
            }
        }
    }

    /// Embeddings in passes of at most `max_batch` inputs.
    fn embed(
        &self,
        task: Option<&LoadedTask>,
        inputs: &[TextInput],
        normalize: Option<bool>,
    ) -> Result<Embedded, JobError> {
        let mut all = Embedded {
            vectors: Vec::with_capacity(inputs.len()),
            tokens: Vec::with_capacity(inputs.len()),
            truncated: Vec::with_capacity(inputs.len()),
        };
        for chunk in inputs.chunks(self.max_batch) {
            self.metrics.batch(chunk.len());
            let part =
                embed(&self.mt, task, chunk, &self.embedding, normalize).map_err(job_error)?;
            all.vectors.extend(part.vectors);
            all.tokens.extend(part.tokens);
            all.truncated.extend(part.truncated);
        }
        Ok(all)
    }

    /// Runs rows in passes of at most `max_batch` (one oversized request is split).
    fn predict<'a>(
        &self,
        rows: impl Iterator<Item = &'a Row>,
    ) -> Result<Vec<Prediction>, JobError> {
        let rows: Vec<(&LoadedTask, TextInput)> =
            rows.map(|r| (&*r.task, r.input.clone())).collect();
        let mut out = Vec::with_capacity(rows.len());
        for chunk in rows.chunks(self.max_batch) {
            self.metrics.batch(chunk.len());
            let preds = self.mt.predict_loaded(chunk).map_err(job_error)?;
            out.extend(preds);
        }
        Ok(out)
    }
}

fn job_error(e: ModelError) -> JobError {
    match e {
        ModelError::Input(m) | ModelError::Tokenizer(m) => JobError::Input(m),
        other => JobError::Model(other.to_string()),
    }
}
