//! Typed access to node attributes, with errors that name the node and the attribute.

use super::{Attr, GraphError, Node};
use crate::tensor::Tensor;

impl Node {
    /// Integer attribute `name`, or `default` when absent.
    pub fn attr_int(&self, name: &str, default: i64) -> Result<i64, GraphError> {
        match self.attrs.get(name) {
            None => Ok(default),
            Some(Attr::Int(v)) => Ok(*v),
            Some(other) => Err(self.wrong_attr(name, "an integer", other)),
        }
    }

    /// Float attribute `name`, or `default` when absent (integers are accepted and widened).
    pub fn attr_float(&self, name: &str, default: f32) -> Result<f32, GraphError> {
        match self.attrs.get(name) {
            None => Ok(default),
            Some(Attr::Float(v)) => Ok(*v),
            Some(Attr::Int(v)) => Ok(*v as f32),
            Some(other) => Err(self.wrong_attr(name, "a float", other)),
        }
    }

    /// Integer-list attribute `name`, or `None` when absent.
    pub fn attr_ints(&self, name: &str) -> Result<Option<&[i64]>, GraphError> {
        match self.attrs.get(name) {
            None => Ok(None),
            Some(Attr::Ints(v)) => Ok(Some(v)),
            Some(other) => Err(self.wrong_attr(name, "a list of integers", other)),
        }
    }

    /// String attribute `name` (lossily decoded), or `default` when absent.
    pub fn attr_str(&self, name: &str, default: &str) -> Result<String, GraphError> {
        match self.attrs.get(name) {
            None => Ok(default.to_string()),
            Some(Attr::String(v)) => Ok(String::from_utf8_lossy(v).into_owned()),
            Some(other) => Err(self.wrong_attr(name, "a string", other)),
        }
    }

    /// Tensor attribute `name`, or `None` when absent.
    pub fn attr_tensor(&self, name: &str) -> Result<Option<&Tensor>, GraphError> {
        match self.attrs.get(name) {
            None => Ok(None),
            Some(Attr::Tensor(t)) => Ok(Some(t)),
            Some(other) => Err(self.wrong_attr(name, "a tensor", other)),
        }
    }

    /// Input `i`'s value name, or `None` when absent or omitted (empty name).
    pub fn input(&self, i: usize) -> Option<&str> {
        self.inputs
            .get(i)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }

    fn wrong_attr(&self, name: &str, want: &str, got: &Attr) -> GraphError {
        let kind = match got {
            Attr::Float(_) => "float",
            Attr::Int(_) => "int",
            Attr::String(_) => "string",
            Attr::Tensor(_) => "tensor",
            Attr::Floats(_) => "floats",
            Attr::Ints(_) => "ints",
            Attr::Strings(_) => "strings",
        };
        self.error(format!("attribute `{name}` must be {want}, found {kind}"))
    }
}
