//! Which task parameters each row of a batch uses, and running a step per task.

use candle_core::Tensor;

use crate::adapters::{TaskLayer, TaskParams};
use crate::error::{ModelError, Result};

/// Which task parameters each row of a batch uses.
pub enum Route<'a> {
    /// The bare backbone.
    Backbone,
    /// One task for every row.
    Task(&'a TaskParams),
    /// Consecutive row ranges `(start, len)`, each with its task; together they must cover
    /// the batch exactly, in order.
    Rows(Vec<(usize, usize, &'a TaskParams)>),
}

impl Route<'_> {
    pub(crate) fn check(&self, batch: usize) -> Result<()> {
        if let Route::Rows(parts) = self {
            let mut next = 0;
            for (start, len, _) in parts {
                if *start != next || *len == 0 {
                    return Err(ModelError::Input(format!(
                        "row routing must cover the batch in order: range at {start} (len {len}) after row {next}"
                    )));
                }
                next = start + len;
            }
            if next != batch {
                return Err(ModelError::Input(format!(
                    "row routing covers {next} rows, the batch has {batch}"
                )));
            }
        }
        Ok(())
    }

    /// `(first token row, token rows, task)` per task, for a batch of `batch` sequences of
    /// `seq` tokens.
    pub(crate) fn token_parts(
        &self,
        batch: usize,
        seq: usize,
    ) -> Vec<(usize, usize, Option<&TaskParams>)> {
        match self {
            Route::Backbone => vec![(0, batch * seq, None)],
            Route::Task(t) => vec![(0, batch * seq, Some(*t))],
            Route::Rows(parts) => parts
                .iter()
                .map(|(start, len, t)| (start * seq, len * seq, Some(*t)))
                .collect(),
        }
    }

    pub(crate) fn any_task(&self, pred: impl Fn(&TaskParams) -> bool) -> bool {
        match self {
            Route::Backbone => false,
            Route::Task(t) => pred(t),
            Route::Rows(parts) => parts.iter().any(|(_, _, t)| pred(t)),
        }
    }

    pub(crate) fn any_layer(&self, application: usize, pred: impl Fn(&TaskLayer) -> bool) -> bool {
        self.any_task(|t| t.layer(application).is_some_and(&pred))
    }

    /// Applies `step` to the rows of each task (all inputs narrowed to the same rows) and
    /// stacks the results back in batch order.
    pub(crate) fn per_task(
        &self,
        inputs: &[&Tensor],
        step: impl Fn(Option<&TaskParams>, &[Tensor]) -> Result<Tensor>,
    ) -> Result<Tensor> {
        let whole = || inputs.iter().map(|t| (*t).clone()).collect::<Vec<_>>();
        match self {
            Route::Backbone => step(None, &whole()),
            Route::Task(t) => step(Some(t), &whole()),
            Route::Rows(parts) if parts.len() == 1 => step(Some(parts[0].2), &whole()),
            Route::Rows(parts) => {
                let mut outs = Vec::with_capacity(parts.len());
                for (start, len, task) in parts {
                    let rows = inputs
                        .iter()
                        .map(|t| t.narrow(0, *start, *len))
                        .collect::<candle_core::Result<Vec<_>>>()?;
                    outs.push(step(Some(task), &rows)?);
                }
                Ok(Tensor::cat(&outs, 0)?)
            }
        }
    }
}
