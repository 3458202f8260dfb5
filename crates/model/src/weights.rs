//! Named tensors seen through a prefix, in the manner of candle-nn's `VarBuilder::pp`: each
//! module's `load` is handed the builder for its own prefix and names only its local tensors
//! (`Linear::load(vb.pp("query"), h, h)` reads `<prefix>.query.weight` and `.bias`).
//!
//! The same builder reads a checkpoint ([`Weights::new`]) and a task's tensors
//! ([`Weights::from_tensors`]); every lookup checks the shape, so a mismatched file fails with
//! the tensor's name, the expected shape and where it came from.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::rc::Rc;

use candle_core::{DType, Tensor};

use crate::checkpoint::Checkpoint;
use crate::error::{ModelError, Result};

/// A set of named tensors and the prefix the current module's names are relative to.
#[derive(Clone)]
pub struct Weights<'a> {
    tensors: &'a HashMap<String, Tensor>,
    /// Names the source in errors (a file, or e.g. "task parameters").
    origin: &'a Path,
    prefix: String,
    /// Full names read so far, shared by every builder derived with [`Weights::pp`].
    read: Rc<RefCell<BTreeSet<String>>>,
    /// Refuse NaN and infinite weights (everything but simulated faulty reads).
    check_finite: bool,
}

impl<'a> Weights<'a> {
    /// The tensors of a checkpoint, at its root.
    pub fn new(checkpoint: &'a Checkpoint) -> Self {
        Self {
            check_finite: !checkpoint.simulated_faults(),
            ..Self::from_tensors(checkpoint.tensors(), checkpoint.path())
        }
    }

    /// Tensors already in memory (e.g. a task's); `origin` names them in errors.
    pub fn from_tensors(tensors: &'a HashMap<String, Tensor>, origin: &'a Path) -> Self {
        Self {
            tensors,
            origin,
            prefix: String::new(),
            read: Rc::default(),
            check_finite: true,
        }
    }

    /// The builder for the sub-module `name` (which may itself be dotted, e.g.
    /// `attention.self.query`).
    pub fn pp(&self, name: impl AsRef<str>) -> Self {
        Self {
            prefix: self.full_name(name.as_ref()),
            ..self.clone()
        }
    }

    /// The full name of the local tensor `name`.
    pub fn full_name(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(&self.full_name(name))
    }

    /// The local tensor `name` as f32, checked against `shape`.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let name = self.full_name(name);
        let t = self
            .tensors
            .get(&name)
            .ok_or_else(|| ModelError::MissingTensor {
                name: name.clone(),
                expected: shape.to_vec(),
                path: self.origin.to_path_buf(),
            })?;
        if t.dims() != shape {
            return Err(ModelError::WrongShape {
                name,
                expected: shape.to_vec(),
                found: t.dims().to_vec(),
                path: self.origin.to_path_buf(),
            });
        }
        // An integer tensor where a float weight belongs is a wrong file, not a conversion.
        if !t.dtype().is_float() {
            return Err(ModelError::WrongDtype {
                name,
                found: format!("{:?}", t.dtype()),
                path: self.origin.to_path_buf(),
            });
        }
        let t = t.to_dtype(DType::F32)?;
        if self.check_finite {
            if let Some((index, value)) = first_non_finite(&t)? {
                return Err(ModelError::NonFinite {
                    name,
                    index,
                    value,
                    path: self.origin.to_path_buf(),
                });
            }
        }
        self.read.borrow_mut().insert(name);
        Ok(t)
    }

    /// The full names of every tensor read through this builder or one derived from it.
    pub fn names_read(&self) -> BTreeSet<String> {
        self.read.borrow().clone()
    }
}

/// The flat index and value of the first NaN or infinity in an f32 tensor: one such weight
/// turns every output into NaN, so it is refused at load rather than computed with.
pub(crate) fn first_non_finite(t: &Tensor) -> Result<Option<(usize, f32)>> {
    let v: Vec<f32> = t.flatten_all()?.to_vec1()?;
    Ok(v.into_iter().enumerate().find(|(_, x)| !x.is_finite()))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use candle_core::Device;

    use super::*;

    #[test]
    fn prefixes_join_and_errors_name_the_full_tensor() {
        let mut m = HashMap::new();
        m.insert(
            "albert.pooler.weight".to_string(),
            Tensor::zeros((2, 3), DType::F32, &Device::Cpu).unwrap(),
        );
        let ck = Checkpoint::from_tensors(m, PathBuf::from("x.safetensors"));
        let pooler = Weights::new(&ck).pp("pooler");
        assert!(pooler.contains("weight"));
        let e = pooler.get("weight", &[3, 3]).unwrap_err().to_string();
        assert!(
            e.contains("pooler.weight") && e.contains("[3, 3]") && e.contains("[2, 3]"),
            "{e}"
        );
        let e = pooler.get("bias", &[3]).unwrap_err().to_string();
        assert!(
            e.contains("pooler.bias") && e.contains("missing") && e.contains("x.safetensors"),
            "{e}"
        );
        pooler.get("weight", &[2, 3]).unwrap();
        let read: Vec<String> = Weights::new(&ck).names_read().into_iter().collect();
        assert!(read.is_empty(), "a fresh builder has read nothing");
        assert_eq!(
            pooler.pp("x").names_read().into_iter().collect::<Vec<_>>(),
            ["pooler.weight"]
        );
    }

    #[test]
    fn non_finite_and_integer_weights_are_refused_by_name() {
        let dev = Device::Cpu;
        let mut m = HashMap::new();
        m.insert(
            "a.weight".to_string(),
            Tensor::new(&[1.0f32, f32::NAN, 2.0], &dev).unwrap(),
        );
        m.insert(
            "b.weight".to_string(),
            Tensor::new(&[1.0f32, f32::NEG_INFINITY], &dev).unwrap(),
        );
        m.insert(
            "c.weight".to_string(),
            Tensor::new(&[1u32, 2, 3], &dev).unwrap(),
        );
        m.insert(
            "d.weight".to_string(),
            Tensor::new(&[1.0f32, -2.0], &dev)
                .unwrap()
                .to_dtype(DType::F16)
                .unwrap(),
        );
        let origin = PathBuf::from("m.safetensors");
        let w = Weights::from_tensors(&m, &origin);
        let e = w.get("a.weight", &[3]).unwrap_err().to_string();
        assert!(
            e.contains("`a.weight`") && e.contains("NaN") && e.contains("element 1"),
            "{e}"
        );
        assert!(e.contains("m.safetensors"), "{e}");
        let e = w.get("b.weight", &[2]).unwrap_err().to_string();
        assert!(e.contains("`b.weight`") && e.contains("-inf"), "{e}");
        let e = w.get("c.weight", &[3]).unwrap_err().to_string();
        assert!(
            e.contains("`c.weight`") && e.contains("U32") && e.contains("float"),
            "{e}"
        );
        // Half-precision floats are still read (as f32).
        let d: Vec<f32> = w.get("d.weight", &[2]).unwrap().to_vec1().unwrap();
        assert_eq!(d, [1.0, -2.0]);
    }

    /// A backbone read through simulated faulty memory computes with what the faults made
    /// (a flipped fp32 exponent bit gives NaN or infinity): that is the measurement.
    #[test]
    fn simulated_faults_may_be_non_finite() {
        let mut m = HashMap::new();
        let nan = Tensor::new(&[1.0f32, f32::NAN], &Device::Cpu).unwrap();
        m.insert("a.weight".to_string(), nan);
        let file = Checkpoint::from_tensors(m.clone(), PathBuf::from("x.safetensors"));
        assert!(Weights::new(&file).get("a.weight", &[2]).is_err());
        let faulty = Checkpoint::with_simulated_faults(m, PathBuf::from("x [faults]"));
        let v: Vec<f32> = Weights::new(&faulty)
            .get("a.weight", &[2])
            .unwrap()
            .to_vec1()
            .unwrap();
        assert!(v[0] == 1.0 && v[1].is_nan());
    }
}
