//! quench's own engine behind the [`Runtime`] trait: plans on the first run for the given input
//! shapes and keeps one plan per distinct set of shapes (e.g. per batch size).

use std::collections::HashMap;
use std::sync::Arc;

use rayon::ThreadPool;

use super::{Runtime, RuntimeError};
use crate::engine::plan::thread_pool;
use crate::engine::{EngineError, Plan};
use crate::graph::Graph;
use crate::tensor::Tensor;

/// The native FP32 engine as a [`Runtime`].
pub struct NativeRuntime {
    graph: Graph,
    output_names: Vec<String>,
    threads: usize,
    pool: Arc<ThreadPool>,
    plans: HashMap<Vec<Vec<usize>>, Plan>,
    current: Option<Vec<Vec<usize>>>,
}

impl std::fmt::Debug for NativeRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NativeRuntime")
            .field("graph", &self.graph.name)
            .field("threads", &self.threads)
            .field("plans", &self.plans.len())
            .finish()
    }
}

fn failed(e: EngineError) -> RuntimeError {
    match e {
        EngineError::Input { name, message } => RuntimeError::BadInput { name, message },
        EngineError::Graph(e @ crate::graph::GraphError::Unsupported { .. }) => {
            RuntimeError::Unsupported {
                runtime: "native",
                message: e.to_string(),
            }
        }
        other => RuntimeError::Failed {
            runtime: "native",
            message: other.to_string(),
        },
    }
}

impl NativeRuntime {
    /// A runtime for `graph` computing on `threads` threads (at least 1).
    pub fn new(graph: Graph, threads: usize) -> Result<NativeRuntime, RuntimeError> {
        let pool = thread_pool(threads).map_err(failed)?;
        Ok(NativeRuntime {
            output_names: graph.outputs.iter().map(|o| o.name.clone()).collect(),
            graph,
            threads,
            pool,
            plans: HashMap::new(),
            current: None,
        })
    }

    /// Plans (or finds the cached plan) for the given input shapes, by graph input name, and
    /// makes it the current one.
    pub fn plan_for(&mut self, shapes: &[(&str, Vec<usize>)]) -> Result<&Plan, RuntimeError> {
        let key: Vec<Vec<usize>> = self
            .graph
            .inputs
            .iter()
            .map(|vi| {
                shapes
                    .iter()
                    .find(|(n, _)| *n == vi.name)
                    .map(|(_, s)| s.clone())
                    .ok_or_else(|| RuntimeError::BadInput {
                        name: vi.name.clone(),
                        message: "not given".into(),
                    })
            })
            .collect::<Result<_, _>>()?;
        if !self.plans.contains_key(&key) {
            let plan =
                Plan::with_pool(&self.graph, shapes, Arc::clone(&self.pool)).map_err(failed)?;
            self.plans.insert(key.clone(), plan);
        }
        self.current = Some(key.clone());
        self.plans.get(&key).ok_or_else(|| RuntimeError::Failed {
            runtime: "native",
            message: "plan cache lost an entry".into(),
        })
    }

    /// The most recently used plan, if any run or [`NativeRuntime::plan_for`] happened.
    pub fn current_plan(&self) -> Option<&Plan> {
        self.current.as_ref().and_then(|k| self.plans.get(k))
    }

    /// Bytes of packed weights of the current plan (0 before the first plan).
    pub fn packed_weight_bytes(&self) -> usize {
        self.current_plan().map_or(0, Plan::packed_weight_bytes)
    }

    /// Bytes of the current plan's activation arena and scratch (0 before the first plan).
    pub fn arena_bytes(&self) -> usize {
        self.current_plan().map_or(0, Plan::arena_bytes)
    }

    /// Number of plans cached (one per distinct set of input shapes seen).
    pub fn cached_plans(&self) -> usize {
        self.plans.len()
    }
}

impl Runtime for NativeRuntime {
    fn output_names(&self) -> &[String] {
        &self.output_names
    }

    fn into_graph(self: Box<Self>) -> Option<Graph> {
        Some(self.graph)
    }

    fn footprint(&self) -> Option<super::Footprint> {
        self.current.as_ref()?;
        Some(super::Footprint {
            packed_weight_bytes: self.packed_weight_bytes() as u64,
            arena_bytes: self.arena_bytes() as u64,
        })
    }

    fn name(&self) -> &'static str {
        "native"
    }

    fn threads(&self) -> usize {
        self.threads
    }

    fn run(&mut self, inputs: &[(&str, &Tensor)]) -> Result<Vec<Tensor>, RuntimeError> {
        let shapes: Vec<(&str, Vec<usize>)> = inputs
            .iter()
            .map(|(n, t)| (*n, t.shape().to_vec()))
            .collect();
        self.plan_for(&shapes)?;
        let key = self.current.as_ref().ok_or_else(|| RuntimeError::Failed {
            runtime: "native",
            message: "no plan".into(),
        })?;
        let plan = self
            .plans
            .get_mut(key)
            .ok_or_else(|| RuntimeError::Failed {
                runtime: "native",
                message: "plan cache lost an entry".into(),
            })?;
        plan.run(inputs).map_err(failed)
    }

    fn kernel_names(&self) -> Vec<String> {
        self.current_plan()
            .map(|p| p.kernel_names().to_vec())
            .unwrap_or_default()
    }
}
