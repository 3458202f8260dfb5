//! Output buffers and per-thread temporaries.
//!
//! A training step allocates and frees the same buffers every step. Outputs that leave an op
//! (activations and gradients handed to the autograd graph) are fresh buffers
//! ([`output_buffer`]); temporaries that never leave it come from a per-thread pool
//! ([`Scratch`]), so after the first step they cost neither an allocation nor a fill.

use std::cell::RefCell;

use crate::gemm::PackedB;

/// A buffer of `n` floats for a kernel that writes every element (a GEMM without
/// accumulation, a row-wise pass over all rows). Zero-filled: handing uninitialized `f32`s to
/// safe code is undefined behaviour in Rust's rules even when each is written before it is
/// read.
pub fn output_buffer(n: usize) -> Vec<f32> {
    vec![0.0; n]
}

thread_local! {
    /// Temporaries of the backward passes, kept between steps (see [`Scratch`]).
    static SCRATCH_POOL: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
}

/// A temporary of `n` floats that never leaves its op (a gradient that is consumed by the
/// next product in the same backward pass), taken from a per-thread pool and returned on
/// drop. Its contents are whatever the last user left (initialized, stale): every user
/// overwrites all `n` before reading, so unlike [`output_buffer`] nothing is filled, and
/// after the first step no memory is allocated or zeroed for these at all.
pub struct Scratch {
    buf: Vec<f32>,
    n: usize,
}

impl Scratch {
    /// A temporary of `n` floats (stale contents).
    pub fn take(n: usize) -> Self {
        let mut buf = SCRATCH_POOL
            .with(|p| p.borrow_mut().pop())
            .unwrap_or_default();
        if buf.len() < n {
            buf.resize(n, 0.0);
        }
        Self { buf, n }
    }
}

impl std::ops::Deref for Scratch {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.buf[..self.n]
    }
}

impl std::ops::DerefMut for Scratch {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.buf[..self.n]
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        // The pool holds at most a few buffers (the most any backward pass keeps at once).
        let _ = SCRATCH_POOL.try_with(|p| {
            let mut p = p.borrow_mut();
            if p.len() < 8 {
                p.push(buf);
            }
        });
    }
}

/// Per-thread buffers of the products inside parallel tasks (the training attention and the
/// adapter's weight gradients): a packed right-hand side and two matrices.
#[derive(Default)]
pub(crate) struct TaskScratch {
    pub(crate) packed: PackedB,
    pub(crate) a: Vec<f32>,
    pub(crate) b: Vec<f32>,
}

thread_local! {
    static TASK_SCRATCH: RefCell<TaskScratch> = RefCell::new(TaskScratch::default());
}

/// Runs `f` with this thread's [`TaskScratch`] (a forward pass allocates nothing here after
/// the first call).
///
/// # Panics
/// If `f` calls `with_task_scratch` again on the same thread.
pub(crate) fn with_task_scratch<R>(f: impl FnOnce(&mut TaskScratch) -> R) -> R {
    TASK_SCRATCH.with(|s| f(&mut s.borrow_mut()))
}
