//! The workload of one inference: every tensor (size in bits, role, reads per inference) and
//! every operation (with its shapes), built from a model shape, an adapter spec, a storage plan
//! and a sequence length. Built once per (model, adapter, plan) so that evaluating a design
//! point only walks a short, pre-merged list of operations.

use serde::Serialize;

use adalbert_compress::{Encoding, TensorRole};
use adalbert_core::{AdapterKind, AdapterSpec, ModelShape, Sharing};

use crate::arch::Accelerator;
use crate::spec::StoragePlan;

/// Who a tensor belongs to: decides where a mapping policy may place it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Frozen, shared by every task (embeddings, the transformer layers, pooler).
    Backbone,
    /// Specific to one task (adapters, task layer norms, classifier head).
    Task,
    /// Produced and consumed during an inference.
    Activation,
}

/// One tensor (a parameter module with its bias, or an activation).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tensor {
    pub name: String,
    pub numel: u64,
    pub role: Role,
    /// Stored bits of the values (non-zeros only under bit-mask encoding).
    pub value_bits: u64,
    /// Bit-mask bits (one per element under bit-mask encoding, else 0).
    pub mask_bits: u64,
    /// Fraction of non-zero values the datapath can skip over (1 = dense).
    pub density: f64,
    /// Whole-tensor reads per inference (a gather of L rows reads L / rows of it).
    pub reads_per_inference: f64,
}

impl Tensor {
    /// Total stored bits (values + mask).
    pub fn bits(&self) -> u64 {
        self.value_bits + self.mask_bits
    }
}

/// What an operation does; decides its datapath unit and its activation traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OpKind {
    /// [m x k] . [k x n] with a stored weight.
    Matmul,
    /// [m x k] . [k x n] with both operands activations (attention scores, context).
    MatmulAct,
    /// Embedding lookup of m rows of width n.
    Gather,
    Softmax,
    LayerNorm,
    Gelu,
    Tanh,
    Add,
    Entropy,
}

/// One operation with its shapes; `count` executions per inference.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Op {
    pub name: String,
    pub kind: OpKind,
    pub count: u64,
    /// Matmul: [m x k] . [k x n]; element-wise: m rows of n elements (k = 1).
    pub m: u64,
    pub k: u64,
    pub n: u64,
    /// Index of the parameter tensor read, if any.
    pub weight: Option<usize>,
    /// Fraction of that tensor read per execution.
    pub weight_fraction: f64,
}

/// An operation folded for simulation: weight traffic resolved to role and bits, identical
/// operations merged (ALBERT's 12 applications become one entry with count 12).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SimOp {
    pub kind: OpKind,
    pub count: f64,
    pub m: u64,
    pub k: u64,
    pub n: u64,
    pub weight_role: Option<Role>,
    /// Value and mask bits read per execution.
    pub weight_value_bits: f64,
    pub weight_mask_bits: f64,
    /// Fraction of MACs not skipped by bit-mask zero-skipping.
    pub mac_density: f64,
}

/// Everything needed to describe a workload.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkloadSpec {
    pub model: ModelShape,
    /// `None`: the plain model (what the baselines run).
    pub adapter: Option<AdapterSpec>,
    pub sharing: Sharing,
    pub plan: StoragePlan,
    pub seq_len: u64,
    pub num_labels: u64,
    pub activation_bits: u64,
    /// A layer whose weights fit in this many bits is read once per inference.
    pub resident_weight_bits: f64,
}

impl WorkloadSpec {
    /// A spec whose datapath-dependent fields come from `arch`.
    pub fn new(
        model: ModelShape,
        adapter: Option<AdapterSpec>,
        sharing: Sharing,
        plan: StoragePlan,
        seq_len: u64,
        num_labels: u64,
        arch: &Accelerator,
    ) -> Self {
        WorkloadSpec {
            model,
            adapter,
            sharing,
            plan,
            seq_len,
            num_labels,
            activation_bits: arch.activation_bits,
            resident_weight_bits: arch.resident_weight_bits,
        }
    }
}

/// Stored totals a mapping needs, in bits.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Totals {
    pub backbone_params: u64,
    pub task_params: u64,
    pub backbone_value_bits: f64,
    pub backbone_mask_bits: f64,
    /// One task's task-specific tensors.
    pub task_bits: f64,
    /// Peak live activations.
    pub activation_bits: f64,
}

/// The built workload.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Workload {
    pub spec: WorkloadSpec,
    pub tensors: Vec<Tensor>,
    pub ops: Vec<Op>,
    pub sim_ops: Vec<SimOp>,
    pub totals: Totals,
}

impl Workload {
    /// Build tensors and operations for `spec`.
    pub fn build(spec: WorkloadSpec) -> Self {
        let mut b = Builder {
            spec: &spec,
            tensors: Vec::new(),
            ops: Vec::new(),
        };
        b.embeddings();
        b.encoder();
        b.head();
        b.activations();
        let Builder {
            mut tensors, ops, ..
        } = b;
        for op in &ops {
            if let Some(w) = op.weight {
                tensors[w].reads_per_inference += op.count as f64 * op.weight_fraction;
            }
        }
        let sim_ops = merge_ops(&tensors, &ops);
        let totals = totals(&tensors, &spec);
        Workload {
            spec,
            tensors,
            ops,
            sim_ops,
            totals,
        }
    }

    /// Total parameters of one role.
    pub fn params(&self, role: Role) -> u64 {
        self.tensors
            .iter()
            .filter(|t| t.role == role)
            .map(|t| t.numel)
            .sum()
    }

    /// MACs per inference (before zero-skipping).
    pub fn macs(&self) -> f64 {
        self.sim_ops
            .iter()
            .filter(|o| matches!(o.kind, OpKind::Matmul | OpKind::MatmulAct))
            .map(|o| o.count * (o.m * o.k * o.n) as f64)
            .sum()
    }
}

fn totals(tensors: &[Tensor], spec: &WorkloadSpec) -> Totals {
    let mut t = Totals::default();
    let mut phases = [0u64; 3];
    for x in tensors {
        match x.role {
            Role::Backbone => {
                t.backbone_params += x.numel;
                t.backbone_value_bits += x.value_bits as f64;
                t.backbone_mask_bits += x.mask_bits as f64;
            }
            Role::Task => {
                t.task_params += x.numel;
                t.task_bits += x.bits() as f64;
            }
            Role::Activation => {
                let phase = activation_phase(&x.name);
                phases[phase] += x.numel;
            }
        }
    }
    t.activation_bits = (phases.into_iter().max().unwrap_or(0) * spec.activation_bits) as f64;
    t
}

/// Activations live in one of three phases; the largest phase sets the SRAM working set.
fn activation_phase(name: &str) -> usize {
    if name.starts_with("act.embedding") {
        0
    } else if name.starts_with("act.attention") {
        1
    } else {
        2
    }
}

/// Merge operations that cost the same (same kind, shapes and weight traffic).
fn merge_ops(tensors: &[Tensor], ops: &[Op]) -> Vec<SimOp> {
    let mut out: Vec<SimOp> = Vec::new();
    for op in ops {
        let (role, vb, mb, density) = match op.weight {
            Some(w) => {
                let t = &tensors[w];
                let f = op.weight_fraction;
                (
                    Some(t.role),
                    t.value_bits as f64 * f,
                    t.mask_bits as f64 * f,
                    t.density,
                )
            }
            None => (None, 0.0, 0.0, 1.0),
        };
        let sim = SimOp {
            kind: op.kind,
            count: op.count as f64,
            m: op.m,
            k: op.k,
            n: op.n,
            weight_role: role,
            weight_value_bits: vb,
            weight_mask_bits: mb,
            mac_density: density,
        };
        match out.iter_mut().find(|o| same_cost(o, &sim)) {
            Some(o) => o.count += sim.count,
            None => out.push(sim),
        }
    }
    out
}

fn same_cost(a: &SimOp, b: &SimOp) -> bool {
    a.kind == b.kind
        && (a.m, a.k, a.n) == (b.m, b.k, b.n)
        && a.weight_role == b.weight_role
        && a.weight_value_bits == b.weight_value_bits
        && a.weight_mask_bits == b.weight_mask_bits
        && a.mac_density == b.mac_density
}

/// Stored value bits, mask bits and MAC density of a module made of `parts` (compress role,
/// elements). Backbone modules are stored as the plan says for each role
/// ([`adalbert_compress::Plan::planned_storage`]: the same rules `adalbert compress` applies
/// to real weights); task modules densely at the plan's value width. The density (fraction
/// of MACs not skipped) is the stored non-zeros over the elements when a bit mask tells the
/// datapath where the zeros are, else 1.
pub fn stored_bits(
    parts: &[(TensorRole, u64)],
    plan: &StoragePlan,
    backbone: bool,
) -> (u64, u64, f64) {
    let numel: u64 = parts.iter().map(|p| p.1).sum();
    if !backbone {
        return (numel * u64::from(plan.value_bits()), 0, 1.0);
    }
    let mut s = adalbert_compress::storage::Storage::default();
    for &(role, n) in parts {
        s += plan.plan.planned_storage(role, n);
    }
    let density = match plan.plan.encoding {
        Encoding::Bitmask if numel > 0 => s.nnz as f64 / numel as f64,
        _ => 1.0,
    };
    (s.value_bits, s.mask_bits, density)
}

/// The parts of a linear module: its `[out, in]` weight matrix and its bias.
fn linear(in_dim: u64, out_dim: u64) -> [(TensorRole, u64); 2] {
    [
        (TensorRole::Matrix, in_dim * out_dim),
        (TensorRole::Bias, out_dim),
    ]
}

/// The parts of a LayerNorm of width `dim` (gain and shift).
fn norm(dim: u64) -> [(TensorRole, u64); 1] {
    [(TensorRole::Norm, 2 * dim)]
}

struct Builder<'a> {
    spec: &'a WorkloadSpec,
    tensors: Vec<Tensor>,
    ops: Vec<Op>,
}

/// Weights of one stored transformer layer.
struct LayerParams {
    q: usize,
    k: usize,
    v: usize,
    o: usize,
    attn_norm: usize,
    ffn: usize,
    ffn_out: usize,
    out_norm: usize,
}

/// Task-specific tensors attached to one layer execution (or shared by a layer's executions).
#[derive(Default)]
struct TaskParams {
    attn_adapter: Option<(usize, usize)>,
    ffn_adapter: Option<(usize, usize)>,
    lora: Option<[usize; 4]>,
    attn_norm: Option<usize>,
    out_norm: Option<usize>,
}

impl Builder<'_> {
    fn param(&mut self, name: String, parts: &[(TensorRole, u64)], role: Role) -> usize {
        let (value_bits, mask_bits, density) =
            stored_bits(parts, &self.spec.plan, role == Role::Backbone);
        self.tensors.push(Tensor {
            name,
            numel: parts.iter().map(|p| p.1).sum(),
            role,
            value_bits,
            mask_bits,
            density,
            reads_per_inference: 0.0,
        });
        self.tensors.len() - 1
    }

    #[allow(clippy::too_many_arguments)]
    fn op(
        &mut self,
        name: &str,
        kind: OpKind,
        count: u64,
        m: u64,
        k: u64,
        n: u64,
        weight: Option<usize>,
        fraction: f64,
    ) {
        self.ops.push(Op {
            name: name.to_string(),
            kind,
            count,
            m,
            k,
            n,
            weight,
            weight_fraction: fraction,
        });
    }

    fn embeddings(&mut self) {
        let c = self.spec.model;
        let (l, e) = (self.spec.seq_len, c.embedding_size as u64);
        let (vocab, positions, types) = (
            c.vocab_size as u64,
            c.max_position_embeddings as u64,
            c.type_vocab_size as u64,
        );
        let table = |rows: u64| [(TensorRole::Embedding, rows * e)];
        let word = self.param(
            "embeddings.word_embeddings".into(),
            &table(vocab),
            Role::Backbone,
        );
        let pos = self.param(
            "embeddings.position_embeddings".into(),
            &table(positions),
            Role::Backbone,
        );
        let typ = self.param(
            "embeddings.token_type_embeddings".into(),
            &table(types),
            Role::Backbone,
        );
        let norm = self.param("embeddings.LayerNorm".into(), &norm(e), Role::Backbone);
        self.op(
            "embeddings.word_lookup",
            OpKind::Gather,
            1,
            l,
            1,
            e,
            Some(word),
            l as f64 / vocab as f64,
        );
        self.op(
            "embeddings.position_lookup",
            OpKind::Gather,
            1,
            l,
            1,
            e,
            Some(pos),
            l as f64 / positions as f64,
        );
        self.op(
            "embeddings.type_lookup",
            OpKind::Gather,
            1,
            l,
            1,
            e,
            Some(typ),
            l as f64 / types as f64,
        );
        self.op("embeddings.sum", OpKind::Add, 2, l, 1, e, None, 0.0);
        self.op(
            "embeddings.LayerNorm",
            OpKind::LayerNorm,
            1,
            l,
            1,
            e,
            Some(norm),
            1.0,
        );
        if c.has_projection() {
            let h = c.hidden_size as u64;
            let map = self.param(
                "encoder.embedding_hidden_mapping_in".into(),
                &linear(e, h),
                Role::Backbone,
            );
            self.op(
                "encoder.embedding_hidden_mapping_in",
                OpKind::Matmul,
                1,
                l,
                e,
                h,
                Some(map),
                1.0,
            );
        }
    }

    fn layer_params(&mut self, prefix: &str) -> LayerParams {
        let c = self.spec.model;
        let (h, f) = (c.hidden_size as u64, c.intermediate_size as u64);
        let n = c.family.module_names();
        let modules: [(&str, Vec<(TensorRole, u64)>); 8] = [
            (n.query, linear(h, h).to_vec()),
            (n.key, linear(h, h).to_vec()),
            (n.value, linear(h, h).to_vec()),
            (n.dense, linear(h, h).to_vec()),
            (n.attention_layer_norm, norm(h).to_vec()),
            (n.ffn, linear(h, f).to_vec()),
            (n.ffn_output, linear(f, h).to_vec()),
            (n.full_layer_layer_norm, norm(h).to_vec()),
        ];
        let ids: Vec<usize> = modules
            .iter()
            .map(|(name, parts)| self.param(format!("{prefix}.{name}"), parts, Role::Backbone))
            .collect();
        LayerParams {
            q: ids[0],
            k: ids[1],
            v: ids[2],
            o: ids[3],
            attn_norm: ids[4],
            ffn: ids[5],
            ffn_out: ids[6],
            out_norm: ids[7],
        }
    }

    fn task_params(&mut self, prefix: &str) -> TaskParams {
        let h = self.spec.model.hidden_size as u64;
        let mut t = TaskParams::default();
        let Some(spec) = self.spec.adapter else {
            return t;
        };
        let m = spec.size as u64;
        let bottleneck = |b: &mut Self, at: &str| {
            let down = b.param(
                format!("{prefix}.adapter_{at}.down"),
                &linear(h, m),
                Role::Task,
            );
            let up = b.param(
                format!("{prefix}.adapter_{at}.up"),
                &linear(m, h),
                Role::Task,
            );
            (down, up)
        };
        match spec.kind {
            AdapterKind::Houlsby => {
                t.attn_adapter = Some(bottleneck(self, "attention"));
                t.ffn_adapter = Some(bottleneck(self, "output"));
            }
            AdapterKind::Pfeiffer => t.ffn_adapter = Some(bottleneck(self, "output")),
            AdapterKind::Parallel => t.ffn_adapter = Some(bottleneck(self, "parallel")),
            AdapterKind::Lora => {
                let matrix = |rows: u64, cols: u64| [(TensorRole::Matrix, rows * cols)];
                t.lora = Some([
                    self.param(format!("{prefix}.lora_query.a"), &matrix(m, h), Role::Task),
                    self.param(format!("{prefix}.lora_query.b"), &matrix(h, m), Role::Task),
                    self.param(format!("{prefix}.lora_value.a"), &matrix(m, h), Role::Task),
                    self.param(format!("{prefix}.lora_value.b"), &matrix(h, m), Role::Task),
                ]);
                return t;
            }
        }
        t.attn_norm = Some(self.param(format!("{prefix}.attention_norm"), &norm(h), Role::Task));
        t.out_norm = Some(self.param(format!("{prefix}.output_norm"), &norm(h), Role::Task));
        t
    }

    fn encoder(&mut self) {
        let c = self.spec.model;
        let apps = c.layers_per_group() as u64;
        for g in 0..c.num_hidden_groups {
            for i in 0..c.inner_group_num {
                let prefix = c.layer_prefix(g, i);
                let layer = self.layer_params(&prefix);
                let layer_bits: u64 = self.tensors[layer.q..=layer.out_norm]
                    .iter()
                    .map(Tensor::bits)
                    .sum();
                let fraction = if layer_bits as f64 <= self.spec.resident_weight_bits {
                    1.0 / apps as f64
                } else {
                    1.0
                };
                match self.spec.sharing {
                    Sharing::Shared => {
                        let task = self.task_params(&format!("task.layer.{g}.{i}"));
                        self.layer_ops(&layer, &task, apps, fraction);
                    }
                    Sharing::PerApplication => {
                        for a in 0..apps {
                            let task = self
                                .task_params(&format!("task.layer.{}.{i}", g as u64 * apps + a));
                            self.layer_ops(&layer, &task, 1, fraction);
                        }
                    }
                }
            }
        }
    }

    fn adapter_ops(&mut self, name: &str, count: u64, ids: (usize, usize)) {
        let (l, h) = (self.spec.seq_len, self.spec.model.hidden_size as u64);
        let m = self.tensors[ids.0].numel / (h + 1);
        self.op(
            &format!("{name}.down"),
            OpKind::Matmul,
            count,
            l,
            h,
            m,
            Some(ids.0),
            1.0,
        );
        self.op(
            &format!("{name}.act"),
            OpKind::Gelu,
            count,
            l,
            1,
            m,
            None,
            0.0,
        );
        self.op(
            &format!("{name}.up"),
            OpKind::Matmul,
            count,
            l,
            m,
            h,
            Some(ids.1),
            1.0,
        );
        self.op(
            &format!("{name}.skip"),
            OpKind::Add,
            count,
            l,
            1,
            h,
            None,
            0.0,
        );
    }

    fn lora_ops(&mut self, name: &str, count: u64, a: usize, b: usize) {
        let (l, h) = (self.spec.seq_len, self.spec.model.hidden_size as u64);
        let r = self.tensors[a].numel / h;
        self.op(
            &format!("{name}.a"),
            OpKind::Matmul,
            count,
            l,
            h,
            r,
            Some(a),
            1.0,
        );
        self.op(
            &format!("{name}.b"),
            OpKind::Matmul,
            count,
            l,
            r,
            h,
            Some(b),
            1.0,
        );
        self.op(
            &format!("{name}.merge"),
            OpKind::Add,
            count,
            l,
            1,
            h,
            None,
            0.0,
        );
    }

    /// One layer execution's operations (`count` executions), in dataflow order.
    fn layer_ops(&mut self, p: &LayerParams, t: &TaskParams, count: u64, frac: f64) {
        let c = self.spec.model;
        let (l, h, f, heads) = (
            self.spec.seq_len,
            c.hidden_size as u64,
            c.intermediate_size as u64,
            c.num_attention_heads as u64,
        );
        let d = h / heads;
        self.op(
            "layer.attention.query",
            OpKind::Matmul,
            count,
            l,
            h,
            h,
            Some(p.q),
            frac,
        );
        self.op(
            "layer.attention.key",
            OpKind::Matmul,
            count,
            l,
            h,
            h,
            Some(p.k),
            frac,
        );
        self.op(
            "layer.attention.value",
            OpKind::Matmul,
            count,
            l,
            h,
            h,
            Some(p.v),
            frac,
        );
        if let Some([qa, qb, va, vb]) = t.lora {
            self.lora_ops("layer.lora_query", count, qa, qb);
            self.lora_ops("layer.lora_value", count, va, vb);
        }
        self.op(
            "layer.attention.scores",
            OpKind::MatmulAct,
            count * heads,
            l,
            d,
            l,
            None,
            0.0,
        );
        self.op(
            "layer.attention.softmax",
            OpKind::Softmax,
            count,
            heads * l,
            1,
            l,
            None,
            0.0,
        );
        self.op(
            "layer.attention.context",
            OpKind::MatmulAct,
            count * heads,
            l,
            l,
            d,
            None,
            0.0,
        );
        self.op(
            "layer.attention.dense",
            OpKind::Matmul,
            count,
            l,
            h,
            h,
            Some(p.o),
            frac,
        );
        if let Some(ids) = t.attn_adapter {
            self.adapter_ops("layer.adapter_attention", count, ids);
        }
        self.op(
            "layer.attention.residual",
            OpKind::Add,
            count,
            l,
            1,
            h,
            None,
            0.0,
        );
        let (norm1, f1) = t.attn_norm.map_or((p.attn_norm, frac), |n| (n, 1.0));
        self.op(
            "layer.attention.LayerNorm",
            OpKind::LayerNorm,
            count,
            l,
            1,
            h,
            Some(norm1),
            f1,
        );
        let parallel = self
            .spec
            .adapter
            .is_some_and(|a| a.kind == AdapterKind::Parallel);
        if let (true, Some(ids)) = (parallel, t.ffn_adapter) {
            self.adapter_ops("layer.adapter_parallel", count, ids);
        }
        self.op(
            "layer.ffn",
            OpKind::Matmul,
            count,
            l,
            h,
            f,
            Some(p.ffn),
            frac,
        );
        self.op("layer.ffn.gelu", OpKind::Gelu, count, l, 1, f, None, 0.0);
        self.op(
            "layer.ffn_output",
            OpKind::Matmul,
            count,
            l,
            f,
            h,
            Some(p.ffn_out),
            frac,
        );
        if let (false, Some(ids)) = (parallel, t.ffn_adapter) {
            self.adapter_ops("layer.adapter_output", count, ids);
        }
        self.op(
            "layer.output.residual",
            OpKind::Add,
            count,
            l,
            1,
            h,
            None,
            0.0,
        );
        let (norm2, f2) = t.out_norm.map_or((p.out_norm, frac), |n| (n, 1.0));
        self.op(
            "layer.output.LayerNorm",
            OpKind::LayerNorm,
            count,
            l,
            1,
            h,
            Some(norm2),
            f2,
        );
    }

    fn head(&mut self) {
        let (h, labels) = (self.spec.model.hidden_size as u64, self.spec.num_labels);
        let pooler = self.param("pooler".into(), &linear(h, h), Role::Backbone);
        let classifier = self.param("classifier".into(), &linear(h, labels), Role::Task);
        self.op(
            "pooler.dense",
            OpKind::Matmul,
            1,
            1,
            h,
            h,
            Some(pooler),
            1.0,
        );
        self.op("pooler.tanh", OpKind::Tanh, 1, 1, 1, h, None, 0.0);
        self.op(
            "classifier",
            OpKind::Matmul,
            1,
            1,
            h,
            labels,
            Some(classifier),
            1.0,
        );
        self.op("exit_entropy", OpKind::Entropy, 1, 1, 1, labels, None, 0.0);
    }

    /// Activation tensors of one layer execution (reused by every execution).
    fn activations(&mut self) {
        let c = self.spec.model;
        let (l, e, h, f, heads) = (
            self.spec.seq_len,
            c.embedding_size as u64,
            c.hidden_size as u64,
            c.intermediate_size as u64,
            c.num_attention_heads as u64,
        );
        let execs = c.applications() as f64;
        let m = self.spec.adapter.map_or(0, |a| a.size as u64);
        let mut acts = vec![
            ("act.embedding.sum", l * e, 1.0),
            ("act.embedding.hidden", l * h, 1.0),
            ("act.attention.input", l * h, execs),
            ("act.attention.qkv", 3 * l * h, execs),
            ("act.attention.scores", heads * l * l, execs),
            ("act.attention.context", l * h, execs),
            ("act.ffn.input", l * h, execs),
            ("act.ffn.intermediate", l * f, execs),
            ("act.ffn.output", l * h, execs),
        ];
        if m > 0 {
            acts.push(("act.attention.adapter_bottleneck", l * m, execs));
            acts.push(("act.ffn.adapter_bottleneck", l * m, execs));
        }
        let bits = self.spec.activation_bits;
        for (name, numel, reads) in acts {
            self.tensors.push(Tensor {
                name: name.into(),
                numel,
                role: Role::Activation,
                value_bits: numel * bits,
                mask_bits: 0,
                density: 1.0,
                reads_per_inference: reads,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A workload of a built-in model; adapter `none` is the plain model, plan `""` fp32.
    fn build(model: &str, adapter: &str, sharing: Sharing, plan: &str) -> Workload {
        let arch = Accelerator::builtin().unwrap();
        let plan = if plan.is_empty() { "fp32" } else { plan };
        let spec = WorkloadSpec::new(
            ModelShape::resolve(model).unwrap(),
            (adapter != "none").then(|| adapter.parse().unwrap()),
            sharing,
            StoragePlan::parse(plan, 1).unwrap(),
            128,
            2,
            &arch,
        );
        Workload::build(spec)
    }

    fn sum_prefix(w: &Workload, prefix: &str) -> u64 {
        w.tensors
            .iter()
            .filter(|t| t.name.starts_with(prefix))
            .map(|t| t.numel)
            .sum()
    }

    #[test]
    fn albert_base_parameter_breakdown_matches_reference() {
        let w = build("albert-base", "none", Sharing::PerApplication, "");
        assert_eq!(w.params(Role::Backbone), 11_683_584);
        assert_eq!(sum_prefix(&w, "embeddings."), 3_906_048);
        assert_eq!(
            sum_prefix(&w, "encoder.embedding_hidden_mapping_in"),
            99_072
        );
        assert_eq!(sum_prefix(&w, "encoder.albert_layer_groups"), 7_087_872);
        assert_eq!(sum_prefix(&w, "pooler"), 590_592);
        // classifier head: 768 * 2 + 2
        assert_eq!(w.params(Role::Task), 1_538);
    }

    #[test]
    fn bert_base_parameter_count_matches_reference() {
        let w = build("bert-base", "none", Sharing::PerApplication, "");
        assert_eq!(w.params(Role::Backbone), 109_482_240);
    }

    #[test]
    fn houlsby_counts_match_reference() {
        let per = build("albert-base", "houlsby:64", Sharing::PerApplication, "");
        let adapters = |w: &Workload| -> u64 {
            w.tensors
                .iter()
                .filter(|t| t.name.contains(".adapter_") && t.role == Role::Task)
                .map(|t| t.numel)
                .sum()
        };
        let norms = |w: &Workload| -> u64 {
            w.tensors
                .iter()
                .filter(|t| t.name.ends_with("_norm") && t.role == Role::Task)
                .map(|t| t.numel)
                .sum()
        };
        assert_eq!(adapters(&per), 12 * 198_272);
        assert_eq!(norms(&per), 12 * 3_072);
        let shared = build("albert-base", "houlsby:64", Sharing::Shared, "");
        assert_eq!(adapters(&shared), 198_272);
        assert_eq!(norms(&shared), 3_072);
        // 1.70% and 20.36% of ALBERT (docs/sources.md#houlsby-adapters)
        let pct = |n: u64| (n as f64 / 11_683_584.0 * 10_000.0).round() / 100.0;
        assert_eq!((pct(198_272), pct(12 * 198_272)), (1.70, 20.36));
    }

    #[test]
    fn lora_and_single_adapters_count() {
        let w = build("albert-base", "lora:r=8", Sharing::Shared, "");
        // q and v: 2 * (768*8 + 8*768) + classifier
        assert_eq!(w.params(Role::Task), 2 * 2 * 768 * 8 + 1_538);
        let p = build("albert-base", "pfeiffer:64", Sharing::Shared, "");
        assert_eq!(p.params(Role::Task), 99_136 + 3_072 + 1_538);
    }

    #[test]
    fn bitmask_storage_follows_the_compression_plan() {
        let bytes =
            |w: &Workload| (w.totals.backbone_value_bits + w.totals.backbone_mask_bits) / 8.0;
        let dense = build("albert-base", "none", Sharing::Shared, "int8+scope=all");
        assert_eq!(bytes(&dense), 11_683_584.0);
        // Matrices and embeddings (11,671,808 elements) half pruned, biases and norms (11,776)
        // kept; everything at 8 bits with one mask bit per element:
        // (5,835,904 + 11,776) * 8 + 11,683,584 bits = 7,308,128 bytes.
        let all = build(
            "albert-base",
            "none",
            Sharing::Shared,
            "int8+prune=0.5:emb+bitmask+scope=all",
        );
        assert_eq!(bytes(&all), 7_308_128.0);
        // The default scope keeps biases and norms dense fp32 (no mask):
        // 5,835,904 * 8 + 11,671,808 mask bits + 11,776 * 32 bits = 7,341,984 bytes.
        let weights = build(
            "albert-base",
            "none",
            Sharing::Shared,
            "int8+prune=0.5:emb+bitmask",
        );
        assert_eq!(bytes(&weights), 7_341_984.0);
        // Without `emb` the embedding tables (3,905,792 elements) are not pruned.
        let matrices = build(
            "albert-base",
            "none",
            Sharing::Shared,
            "int8+prune=0.5+bitmask",
        );
        assert_eq!(
            bytes(&matrices),
            ((3_905_792 + 3_883_008) * 8 + 11_671_808 + 11_776 * 32) as f64 / 8.0
        );
    }

    #[test]
    fn shared_layer_is_read_once_per_application() {
        let w = build("albert-base", "houlsby:64", Sharing::PerApplication, "");
        let q = w
            .tensors
            .iter()
            .find(|t| t.name.ends_with("attention.query"))
            .unwrap();
        assert_eq!(q.reads_per_inference, 12.0);
        let word = w
            .tensors
            .iter()
            .find(|t| t.name == "embeddings.word_embeddings")
            .unwrap();
        assert!((word.reads_per_inference - 128.0 / 30_000.0).abs() < 1e-15);
        let adapter = w
            .tensors
            .iter()
            .find(|t| t.name == "task.layer.3.0.adapter_output.up")
            .unwrap();
        assert_eq!(adapter.reads_per_inference, 1.0);
        // the 12 per-application executions merge into one costed op of count 12
        let ffn = w
            .sim_ops
            .iter()
            .filter(|o| o.kind == OpKind::Matmul && o.k == 768 && o.n == 3072)
            .count();
        assert_eq!(ffn, 1);
    }

    #[test]
    fn a_layer_that_fits_the_buffer_is_read_once_per_inference() {
        let json = r#"{"model_type": "albert", "vocab_size": 100, "embedding_size": 16,
            "hidden_size": 32, "num_hidden_layers": 12, "num_attention_heads": 2,
            "intermediate_size": 64, "num_hidden_groups": 1, "inner_group_num": 1,
            "max_position_embeddings": 64, "type_vocab_size": 2}"#;
        let model = ModelShape::from_json(json, "tiny.json").unwrap();
        let arch = Accelerator::builtin().unwrap();
        let spec = WorkloadSpec::new(
            model,
            None,
            Sharing::Shared,
            StoragePlan::parse("int8+scope=all", 1).unwrap(),
            16,
            2,
            &arch,
        );
        let w = Workload::build(spec);
        // layer = 4 * (32*32 + 32) + 2 * 64 + (32*64 + 64) + (64*32 + 32) = 8,544 params, 8 bits each
        assert_eq!(sum_prefix(&w, "encoder.albert_layer_groups"), 8_544);
        assert!(8_544.0 * 8.0 <= arch.resident_weight_bits);
        let ffn = w.tensors.iter().find(|t| t.name.ends_with(".ffn")).unwrap();
        assert!((ffn.reads_per_inference - 1.0).abs() < 1e-12);
    }

    #[test]
    fn macs_of_albert_base_are_hand_computed() {
        let w = build("albert-base", "none", Sharing::Shared, "");
        let (l, h, f) = (128.0, 768.0, 3072.0);
        let layer = 4.0 * l * h * h + 2.0 * l * l * h + 2.0 * l * h * f;
        let expected = 12.0 * layer + l * 128.0 * h + h * h + h * 2.0;
        assert_eq!(w.macs(), expected);
    }

    #[test]
    fn activation_working_set_is_the_largest_phase() {
        let w = build("albert-base", "none", Sharing::Shared, "");
        // attention phase: (1 + 3 + 1) * 128*768 + 12 * 128 * 128 elements at 16 bits
        let attention = 5 * 128 * 768 + 12 * 128 * 128;
        let ffn = 2 * 128 * 768 + 128 * 3072;
        assert!(attention > ffn);
        assert_eq!(w.totals.activation_bits, (attention * 16) as f64);
    }
}
