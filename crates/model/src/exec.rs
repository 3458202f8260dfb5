//! Which code runs: the one place that chooses between candle's ops and adalbert's kernels
//! ([`adalbert_kernels`]), and the process settings each workload needs.
//!
//! The choice has three inputs, each read once:
//! - the override `ADALBERT_KERNELS` (see [`Override`]): `candle` (candle's ops everywhere),
//!   `portable` (adalbert's kernels without SIMD, also for the frozen-weight GEMM in
//!   training), `bf16` or `int8` (a compressed inference path for every eval forward), with
//!   an optional kernel after a colon to force one (`int8:portable`, `int8:avx512-vnni`,
//!   `bf16:avx512-bf16`, ...: the names of [`Int8Isa`] and [`Bf16Isa`]), `auto` or unset
//!   (the default); other values count as unset;
//! - the CPU: [`Cpu::detect`] (the fp32 instruction set and the best int8 and bf16 kernels);
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
pub use adalbert_kernels::bf16::Bf16Isa;
pub use adalbert_kernels::int8::Int8Isa;
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
    /// `bf16` or `bf16:KERNEL`: the bf16 inference path ([`Precision::Bf16`]) for every
    /// eval forward, on the named kernel where given (and available).
    Bf16(Option<Bf16Isa>),
    /// `int8` or `int8:KERNEL`: the int8 inference path ([`Precision::Int8`]) likewise.
    Int8(Option<Int8Isa>),
}

impl Override {
    /// The override a value of `ADALBERT_KERNELS` asks for.
    pub fn parse(value: Option<&str>) -> Self {
        match value {
            Some("candle") => Override::Candle,
            Some("portable") => Override::Portable,
            Some("bf16") => Override::Bf16(None),
            Some("int8") => Override::Int8(None),
            Some(v) => match v.split_once(':') {
                Some(("bf16", k)) => {
                    Bf16Isa::parse(k).map_or(Override::Auto, |k| Override::Bf16(Some(k)))
                }
                Some(("int8", k)) => {
                    Int8Isa::parse(k).map_or(Override::Auto, |k| Override::Int8(Some(k)))
                }
                _ => Override::Auto,
            },
            None => Override::Auto,
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

/// What this CPU runs: the fp32 kernels' instruction set and the best int8 and bf16 kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cpu {
    pub isa: Isa,
    pub int8: Int8Isa,
    pub bf16: Bf16Isa,
}

impl Cpu {
    /// This CPU (each part detected once by the kernels crate).
    pub fn detect() -> Self {
        Self {
            isa: Isa::detect(),
            int8: Int8Isa::detect(),
            bf16: Bf16Isa::detect(),
        }
    }

    /// The CPU's model name and the instruction-set flags that decide the kernels (from
    /// `/proc/cpuinfo` on Linux; what `std` detects elsewhere).
    pub fn describe() -> (String, Vec<&'static str>) {
        let model = adalbert_kernels::cpu_model_name();
        (model, isa_flags())
    }
}

/// The instruction-set extensions the kernels look for, as this CPU reports them.
fn isa_flags() -> Vec<&'static str> {
    #[cfg(target_arch = "x86_64")]
    {
        macro_rules! flags {
            ($($f:tt),*) => {{
                let mut v = Vec::new();
                $(if std::arch::is_x86_feature_detected!($f) { v.push($f); })*
                v
            }};
        }
        let mut v = flags!(
            "avx2",
            "fma",
            "avxvnni",
            "avx512f",
            "avx512bw",
            "avx512dq",
            "avx512vl",
            "avx512vnni",
            "avx512bf16"
        );
        let leaf7 = std::arch::x86_64::__cpuid_count(7, 0);
        for (bit, name) in [(24, "amx-tile"), (22, "amx-bf16"), (25, "amx-int8")] {
            if (leaf7.edx >> bit) & 1 == 1 {
                v.push(name);
            }
        }
        v
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        Vec::new()
    }
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
    /// The bf16 path: bf16 weights and bf16 products with fp32 accumulation on AMX or AVX-512
    /// BF16 where the CPU has them; elsewhere adalbert's fp32 kernels on the bf16-rounded
    /// weights.
    Bf16,
    /// The int8 path: weights int8 per output channel, activations int8 per row, integer
    /// products (AMX-INT8, AVX512-VNNI, AVX-VNNI or portable, the best the CPU has).
    Int8,
    /// The bf16 path on this kernel (the widened one where the CPU lacks it), whatever
    /// `ADALBERT_KERNELS` says: tests run every kernel the machine has with it.
    Bf16On(Bf16Isa),
    /// The int8 path on this kernel (the portable one where the CPU lacks it), likewise.
    Int8On(Int8Isa),
}

/// Number format of the packed backbone weights on adalbert's inference kernels, with the
/// kernel that multiplies them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    F32,
    /// bf16 weights and products, fp32 accumulation.
    Bf16(Bf16Isa),
    /// int8 weights and activations, i32 accumulation.
    Int8(Int8Isa),
}

impl Precision {
    /// The short name: `fp32`, `bf16`, `int8`.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "fp32",
            Precision::Bf16(_) => "bf16",
            Precision::Int8(_) => "int8",
        }
    }
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
    choose_inference(requested, Override::from_env(), Cpu::detect())
}

fn choose_inference(requested: Kernels, over: Override, cpu: Cpu) -> InferencePath {
    let kernels = |isa, precision| InferencePath::Kernels { isa, precision };
    // A compressed path's kernel: the one the override names (where it runs), the portable
    // one under `portable`, else the CPU's best.
    let bf16 = || match over {
        Override::Bf16(Some(k)) => k.or_widened(),
        Override::Portable => Bf16Isa::Widened,
        _ => cpu.bf16,
    };
    let int8 = || match over {
        Override::Int8(Some(k)) => k.or_portable(),
        Override::Portable => Int8Isa::Portable,
        _ => cpu.int8,
    };
    match requested {
        Kernels::Candle => InferencePath::Candle,
        Kernels::Auto => match over {
            Override::Candle => InferencePath::Candle,
            Override::Bf16(_) => kernels(cpu.isa, Precision::Bf16(bf16())),
            Override::Int8(_) => kernels(cpu.isa, Precision::Int8(int8())),
            Override::Portable => kernels(Isa::Portable, Precision::F32),
            // Without AVX-512, candle's AVX2 matrix multiply beats our portable tile.
            Override::Auto if cpu.isa == Isa::Portable => InferencePath::Candle,
            Override::Auto => kernels(cpu.isa, Precision::F32),
        },
        Kernels::Isa(isa) if isa.available() => kernels(isa, Precision::F32),
        Kernels::Isa(_) => kernels(Isa::Portable, Precision::F32),
        Kernels::Bf16 => kernels(over.isa(cpu.isa), Precision::Bf16(bf16())),
        Kernels::Int8 => kernels(over.isa(cpu.isa), Precision::Int8(int8())),
        Kernels::Bf16On(k) => kernels(cpu.isa, Precision::Bf16(k.or_widened())),
        Kernels::Int8On(k) => kernels(cpu.isa, Precision::Int8(k.or_portable())),
    }
}

/// What each inference precision runs in this process (`ADALBERT_KERNELS` and the CPU), as
/// `(precision, kernels)` lines for `adalbert info --kernels`.
pub fn kernel_table() -> Vec<(&'static str, String)> {
    [
        ("fp32", Kernels::Auto),
        ("bf16", Kernels::Bf16),
        ("int8", Kernels::Int8),
    ]
    .into_iter()
    .map(|(name, k)| (name, describe(inference_path(k))))
    .collect()
}

/// What runs an inference path's matrix multiplies, e.g. `avx512`, `amx-bf16`,
/// `avx512-vnni` or `bf16 weights on avx512`.
pub fn describe(path: InferencePath) -> String {
    match path {
        InferencePath::Candle => "candle".to_string(),
        InferencePath::Kernels { isa, precision } => match precision {
            Precision::F32 => isa.name().to_string(),
            Precision::Bf16(Bf16Isa::Amx) => "amx-bf16".to_string(),
            Precision::Bf16(Bf16Isa::Avx512Bf16) => "avx512-bf16".to_string(),
            Precision::Bf16(Bf16Isa::Widened) => format!("bf16 weights on {}", isa.name()),
            Precision::Int8(Int8Isa::Amx) => "amx-int8".to_string(),
            Precision::Int8(Int8Isa::Portable) => "int8 portable".to_string(),
            Precision::Int8(k) => k.name().to_string(),
        },
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

/// Returns memory freed by unloaded weights to the operating system, for long-running
/// processes that load and unload task bundles (the server after an eviction or removal).
/// See [`adalbert_kernels::process::release_free_heap`]; `false` where nothing was released.
pub fn release_unused_memory() -> bool {
    adalbert_kernels::process::release_free_heap()
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
        assert_eq!(Override::parse(Some("bf16")), Override::Bf16(None));
        assert_eq!(Override::parse(Some("int8")), Override::Int8(None));
        assert_eq!(
            Override::parse(Some("int8:avx512-vnni")),
            Override::Int8(Some(Int8Isa::Avx512Vnni))
        );
        assert_eq!(
            Override::parse(Some("bf16:avx512-bf16")),
            Override::Bf16(Some(Bf16Isa::Avx512Bf16))
        );
        assert_eq!(Override::parse(Some("int8:sse")), Override::Auto);
        assert_eq!(Override::parse(Some("AVX512")), Override::Auto);
    }

    #[test]
    fn inference_path_follows_request_override_and_cpu() {
        use InferencePath::{Candle, Kernels as K};
        use Precision::{Bf16, Int8, F32};
        let (avx, port) = (Isa::Avx512, Isa::Portable);
        // A CPU with AVX-512 and VNNI but no AMX or AVX-512 BF16, and one with nothing.
        let vnni = Cpu {
            isa: avx,
            int8: Int8Isa::Avx512Vnni,
            bf16: Bf16Isa::Widened,
        };
        let plain = Cpu {
            isa: port,
            int8: Int8Isa::Portable,
            bf16: Bf16Isa::Widened,
        };
        let k = |isa, precision| K { isa, precision };
        let widened = Bf16(Bf16Isa::Widened);
        let cases = [
            (Kernels::Auto, Override::Auto, vnni, k(avx, F32)),
            (Kernels::Auto, Override::Auto, plain, Candle),
            (Kernels::Auto, Override::Candle, vnni, Candle),
            (Kernels::Auto, Override::Portable, vnni, k(port, F32)),
            (Kernels::Auto, Override::Portable, plain, k(port, F32)),
            (Kernels::Auto, Override::Bf16(None), vnni, k(avx, widened)),
            (
                Kernels::Auto,
                Override::Int8(None),
                vnni,
                k(avx, Int8(Int8Isa::Avx512Vnni)),
            ),
            (
                Kernels::Auto,
                Override::Int8(Some(Int8Isa::Portable)),
                vnni,
                k(avx, Int8(Int8Isa::Portable)),
            ),
            (Kernels::Candle, Override::Portable, vnni, Candle),
            (Kernels::Bf16, Override::Portable, vnni, k(port, widened)),
            (Kernels::Bf16, Override::Candle, vnni, k(avx, widened)),
            (
                Kernels::Int8,
                Override::Auto,
                vnni,
                k(avx, Int8(Int8Isa::Avx512Vnni)),
            ),
            (
                Kernels::Int8,
                Override::Portable,
                vnni,
                k(port, Int8(Int8Isa::Portable)),
            ),
            (
                Kernels::Int8,
                Override::Auto,
                plain,
                k(port, Int8(Int8Isa::Portable)),
            ),
            (Kernels::Isa(port), Override::Candle, vnni, k(port, F32)),
        ];
        for (requested, over, cpu, want) in cases {
            let got = choose_inference(requested, over, cpu);
            assert_eq!(got, want, "{requested:?} {over:?} {cpu:?}");
        }
    }

    #[test]
    fn forced_kernels_fall_back_where_the_cpu_lacks_them() {
        let cpu = Cpu::detect();
        for k in Int8Isa::ALL {
            let got = choose_inference(Kernels::Int8, Override::Int8(Some(k)), cpu);
            let want = if k.available() { k } else { Int8Isa::Portable };
            assert_eq!(
                got,
                InferencePath::Kernels {
                    isa: cpu.isa,
                    precision: Precision::Int8(want)
                }
            );
        }
        for k in Bf16Isa::ALL {
            let got = choose_inference(Kernels::Bf16, Override::Bf16(Some(k)), cpu);
            let want = if k.available() { k } else { Bf16Isa::Widened };
            assert_eq!(
                got,
                InferencePath::Kernels {
                    isa: cpu.isa,
                    precision: Precision::Bf16(want)
                }
            );
        }
        assert_eq!(kernel_table().len(), 3);
    }

    #[test]
    fn training_uses_the_frozen_gemm_on_avx512_or_when_asked() {
        let (avx, port) = (Isa::Avx512, Isa::Portable);
        let k = |isa, frozen_gemm| Some(TrainKernels { isa, frozen_gemm });
        assert_eq!(choose_training(Override::Auto, avx), k(avx, true));
        assert_eq!(choose_training(Override::Auto, port), k(port, false));
        assert_eq!(choose_training(Override::Portable, avx), k(port, true));
        assert_eq!(choose_training(Override::Bf16(None), avx), k(avx, true));
        assert_eq!(choose_training(Override::Int8(None), avx), k(avx, true));
        assert_eq!(choose_training(Override::Candle, avx), None);
    }
}
