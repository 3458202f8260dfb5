//! Which code runs: the one place that chooses between candle's ops and adalbert's kernels
//! ([`adalbert_kernels`]), and the process settings each workload needs.
//!
//! The choice has three inputs, each read once:
//! - the override `ADALBERT_KERNELS` (see [`Override`]): `candle` (candle's ops everywhere),
//!   `portable` (adalbert's kernels without SIMD, also for the frozen-weight GEMM in
//!   training), `bf16` (the compressed inference path), `auto` or unset (the default);
//!   other values count as unset;
//! - the CPU: [`Isa::detect`];
//! - what the caller asks for: [`Kernels`] for a backbone's inference
//!   ([`crate::Backbone::set_kernels`]) and [`TrainKernels`] for a training context
//!   ([`crate::Ctx::with_train_kernels`]).
//!
//! By default adalbert's kernels run where the CPU has AVX-512. Elsewhere candle's matrix
//! multiply, with its own AVX2/NEON code, is faster than adalbert's portable tile, so
//! inference keeps candle's ops and training keeps candle's matmul for frozen weights (the
//! fused elementwise training ops still run: they beat candle's composites on any CPU).
//!
//! [`inference_path`] and [`TrainKernels::detect`] turn these into the path that runs;
//! `Backbone`, `Ctx` and the training ops ask them instead of deciding for themselves.

use std::sync::OnceLock;

use adalbert_kernels::act::Act;
pub use adalbert_kernels::Isa;

use crate::config::Activation;

/// The value of `ADALBERT_KERNELS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Override {
    /// Unset, `auto`, or any value not listed here: the default choice.
    Auto,
    /// `candle`: candle's ops for inference and training.
    Candle,
    /// `portable`: adalbert's portable kernels, in inference and for training's frozen GEMM.
    Portable,
    /// `bf16`: the compressed inference path ([`Precision::Bf16`]) for every eval forward.
    Bf16,
}

impl Override {
    /// The override a value of `ADALBERT_KERNELS` asks for.
    pub fn parse(value: Option<&str>) -> Self {
        match value {
            Some("candle") => Override::Candle,
            Some("portable") => Override::Portable,
            Some("bf16") => Override::Bf16,
            _ => Override::Auto,
        }
    }

    /// `ADALBERT_KERNELS` as this process started with it (read once).
    pub fn from_env() -> Self {
        static OVERRIDE: OnceLock<Override> = OnceLock::new();
        *OVERRIDE.get_or_init(|| Override::parse(std::env::var("ADALBERT_KERNELS").ok().as_deref()))
    }

    /// The instruction set adalbert's kernels use when none is asked for: the CPU's best,
    /// or the portable one under `portable`.
    fn isa(self, cpu: Isa) -> Isa {
        if self == Override::Portable {
            Isa::Portable
        } else {
            cpu
        }
    }
}

/// The instruction set adalbert's kernels use by default in this process.
pub fn default_isa() -> Isa {
    Override::from_env().isa(Isa::detect())
}

/// Which kernels a backbone's inference (eval) forward pass should use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernels {
    /// adalbert's kernels with the best instruction set of this CPU when it has AVX-512, else
    /// candle's ops; `ADALBERT_KERNELS` overrides (see the module docs).
    Auto,
    /// candle's ops, as in training (the reference the fast path is tested against).
    Candle,
    /// adalbert's kernels with this instruction set (falls back to portable when the CPU
    /// lacks it).
    Isa(Isa),
    /// The compressed path: bf16 weights and bf16 products with fp32 accumulation on AMX
    /// where the CPU has it; elsewhere adalbert's fp32 kernels on the bf16-rounded weights.
    Bf16,
}

/// Number format of the packed backbone weights on adalbert's inference kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    F32,
    /// bf16 weights and products (AMX where available), fp32 accumulation.
    Bf16,
}

/// What runs a backbone's eval forward pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InferencePath {
    /// candle's ops.
    Candle,
    /// adalbert's kernels on this instruction set, with weights in this precision.
    Kernels { isa: Isa, precision: Precision },
}

/// The inference path for `requested` in this process (`ADALBERT_KERNELS` and the CPU).
pub fn inference_path(requested: Kernels) -> InferencePath {
    choose_inference(requested, Override::from_env(), Isa::detect())
}

fn choose_inference(requested: Kernels, over: Override, cpu: Isa) -> InferencePath {
    let kernels = |isa, precision| InferencePath::Kernels { isa, precision };
    match requested {
        Kernels::Candle => InferencePath::Candle,
        Kernels::Auto => match over {
            Override::Candle => InferencePath::Candle,
            Override::Bf16 => kernels(cpu, Precision::Bf16),
            Override::Portable => kernels(Isa::Portable, Precision::F32),
            // Without AVX-512, candle's AVX2 matrix multiply beats our portable tile.
            Override::Auto if cpu == Isa::Portable => InferencePath::Candle,
            Override::Auto => kernels(cpu, Precision::F32),
        },
        Kernels::Isa(isa) if isa.available() => kernels(isa, Precision::F32),
        Kernels::Isa(_) => kernels(Isa::Portable, Precision::F32),
        Kernels::Bf16 => kernels(over.isa(cpu), Precision::Bf16),
    }
}

/// Which fused ops ([`crate::train_ops`]) the training forward uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrainKernels {
    /// Instruction set of the elementwise kernels and the matrix multiply.
    pub isa: Isa,
    /// Whether frozen linear layers run on adalbert's GEMM
    /// ([`crate::train_ops::FrozenLinear`]) rather than candle's differentiable matmul.
    pub frozen_gemm: bool,
}

impl TrainKernels {
    /// The default for this process: `None` (candle's composed ops) under
    /// `ADALBERT_KERNELS=candle`; otherwise the fused ops on the default instruction set,
    /// with the frozen-weight GEMM where the CPU has AVX-512 or `portable` asks for it.
    /// Without AVX-512 candle's AVX2/NEON matrix multiply outruns our plain-Rust tile, even
    /// though candle also computes the unused weight gradient.
    pub fn detect() -> Option<Self> {
        choose_training(Override::from_env(), Isa::detect())
    }

    /// Every fused op on `isa` (portable where the CPU lacks it); tests compare these against
    /// candle's composites.
    pub fn all(isa: Isa) -> Self {
        Self {
            isa: isa.or_portable(),
            frozen_gemm: true,
        }
    }
}

fn choose_training(over: Override, cpu: Isa) -> Option<TrainKernels> {
    if over == Override::Candle {
        return None;
    }
    let isa = over.isa(cpu);
    Some(TrainKernels {
        isa,
        frozen_gemm: isa == Isa::Avx512 || over == Override::Portable,
    })
}

/// The kernels' name for an activation function.
pub(crate) fn kernel_act(act: Activation) -> Act {
    match act {
        Activation::Gelu => Act::GeluErf,
        Activation::GeluNew => Act::GeluTanh,
        Activation::Relu => Act::Relu,
    }
}

/// What a process is about to do, for [`configure_process`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// Training (`train`, `run`, `bench --train`).
    Train,
    /// Serving requests over HTTP.
    Serve,
    /// Any other inference (eval, predict, embed, bench).
    Infer,
}

/// Sets the process-wide policy `workload` needs. Call it first thing in `main`, before any
/// thread starts: it may set an environment variable (which other threads must not be
/// reading at the same time, and which candle reads when its thread pool starts) and tune the
/// allocator (which should happen before the buffers it governs are allocated).
///
/// Training:
/// - Where the training ops use adalbert's GEMM for frozen weights, the matrix multiplies and
///   the heavy elementwise work run on the rayon pool; what stays on candle's ops is small
///   (gradient accumulation, adapter products), and candle's own worker threads spin after
///   each of those ops, taking cores from the rayon workers. So candle runs on one thread
///   (`CANDLE_NUM_THREADS=1`) unless the user set `CANDLE_NUM_THREADS`. Where the training
///   ops leave the matrix multiplies to candle, candle keeps its threads.
/// - glibc keeps freed memory for reuse ([`adalbert_kernels::process::retain_freed_memory`]):
///   every step allocates and frees the same large activation and gradient buffers.
///
/// Serving and other inference keep the defaults: their forward passes run either on the
/// rayon pool or on candle's ops, not both at once, and they allocate little per request.
pub fn configure_process(workload: Workload) {
    if workload != Workload::Train {
        return;
    }
    if std::env::var_os("CANDLE_NUM_THREADS").is_none()
        && TrainKernels::detect().is_some_and(|k| k.frozen_gemm)
    {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
    adalbert_kernels::process::retain_freed_memory();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn override_values_parse_and_unknown_ones_mean_auto() {
        assert_eq!(Override::parse(None), Override::Auto);
        assert_eq!(Override::parse(Some("auto")), Override::Auto);
        assert_eq!(Override::parse(Some("candle")), Override::Candle);
        assert_eq!(Override::parse(Some("portable")), Override::Portable);
        assert_eq!(Override::parse(Some("bf16")), Override::Bf16);
        assert_eq!(Override::parse(Some("AVX512")), Override::Auto);
    }

    #[test]
    fn inference_path_follows_request_override_and_cpu() {
        use InferencePath::{Candle, Kernels as K};
        use Precision::{Bf16, F32};
        let (avx, port) = (Isa::Avx512, Isa::Portable);
        let cases = [
            (
                Kernels::Auto,
                Override::Auto,
                avx,
                K {
                    isa: avx,
                    precision: F32,
                },
            ),
            (Kernels::Auto, Override::Auto, port, Candle),
            (Kernels::Auto, Override::Candle, avx, Candle),
            (
                Kernels::Auto,
                Override::Portable,
                avx,
                K {
                    isa: port,
                    precision: F32,
                },
            ),
            (
                Kernels::Auto,
                Override::Portable,
                port,
                K {
                    isa: port,
                    precision: F32,
                },
            ),
            (
                Kernels::Auto,
                Override::Bf16,
                avx,
                K {
                    isa: avx,
                    precision: Bf16,
                },
            ),
            (Kernels::Candle, Override::Portable, avx, Candle),
            (
                Kernels::Bf16,
                Override::Portable,
                avx,
                K {
                    isa: port,
                    precision: Bf16,
                },
            ),
            (
                Kernels::Bf16,
                Override::Candle,
                avx,
                K {
                    isa: avx,
                    precision: Bf16,
                },
            ),
            (
                Kernels::Isa(port),
                Override::Candle,
                avx,
                K {
                    isa: port,
                    precision: F32,
                },
            ),
        ];
        for (requested, over, cpu, want) in cases {
            let got = choose_inference(requested, over, cpu);
            assert_eq!(got, want, "{requested:?} {over:?} {cpu:?}");
        }
    }

    #[test]
    fn training_uses_the_frozen_gemm_on_avx512_or_when_asked() {
        let (avx, port) = (Isa::Avx512, Isa::Portable);
        let k = |isa, frozen_gemm| Some(TrainKernels { isa, frozen_gemm });
        assert_eq!(choose_training(Override::Auto, avx), k(avx, true));
        assert_eq!(choose_training(Override::Auto, port), k(port, false));
        assert_eq!(choose_training(Override::Portable, avx), k(port, true));
        assert_eq!(choose_training(Override::Bf16, avx), k(avx, true));
        assert_eq!(choose_training(Override::Candle, avx), None);
    }
}
