//! Checking that every node input is produced exactly once and ordering nodes so that producers
//! come before consumers (Kahn's algorithm, keeping the file's order where it is already valid).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use super::error::Problem;
use crate::graph::Node;

/// Returns `nodes` in topological order. `sources` maps the names of values available before any
/// node runs (graph inputs, initializers) to a description of what defines them.
///
/// Errors carry the location (``node `X` ``…) and the problem: a value defined twice, an input
/// nothing produces, or a cycle.
pub fn sort(
    nodes: Vec<Node>,
    sources: &HashMap<String, String>,
) -> Result<Vec<Node>, (String, Problem)> {
    let producers = producers(&nodes, sources)?;
    // For each node, the nodes it waits for (one entry per input edge) and the reverse.
    let mut waiting = vec![0usize; nodes.len()];
    let mut consumers: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    for (i, node) in nodes.iter().enumerate() {
        for (index, input) in node.inputs.iter().enumerate() {
            if input.is_empty() || sources.contains_key(input) {
                continue;
            }
            let Some(&p) = producers.get(input.as_str()) else {
                return Err((
                    format!("node `{}`", node.name),
                    Problem::MissingInput {
                        index,
                        name: input.clone(),
                    },
                ));
            };
            waiting[i] += 1;
            consumers[p].push(i);
        }
    }
    let mut ready: BinaryHeap<Reverse<usize>> = (0..nodes.len())
        .filter(|&i| waiting[i] == 0)
        .map(Reverse)
        .collect();
    let mut order = Vec::with_capacity(nodes.len());
    while let Some(Reverse(i)) = ready.pop() {
        order.push(i);
        for &c in &consumers[i] {
            waiting[c] -= 1;
            if waiting[c] == 0 {
                ready.push(Reverse(c));
            }
        }
    }
    if order.len() < nodes.len() {
        return Err(cycle_error(&nodes, &producers, &waiting));
    }
    let mut slots: Vec<Option<Node>> = nodes.into_iter().map(Some).collect();
    Ok(order.into_iter().filter_map(|i| slots[i].take()).collect())
}

/// Maps every node output to its node, refusing a value defined twice.
fn producers<'a>(
    nodes: &'a [Node],
    sources: &HashMap<String, String>,
) -> Result<HashMap<&'a str, usize>, (String, Problem)> {
    let mut producers: HashMap<&str, usize> = HashMap::new();
    for (i, node) in nodes.iter().enumerate() {
        for (index, output) in node.outputs.iter().enumerate() {
            if output.is_empty() {
                continue;
            }
            let first = match (sources.get(output), producers.get(output.as_str())) {
                (Some(what), _) => Some(what.clone()),
                (None, Some(&p)) => Some(format!("node `{}`", nodes[p].name)),
                (None, None) => None,
            };
            if let Some(first) = first {
                return Err((
                    format!("node `{}` output {index}", node.name),
                    Problem::Duplicate {
                        kind: "value",
                        name: output.clone(),
                        first,
                    },
                ));
            }
            producers.insert(output, i);
        }
    }
    Ok(producers)
}

/// Names one edge of a cycle among the nodes left unsorted (`waiting[i] > 0`).
///
/// Every unsorted node has an input produced by another unsorted node, so walking from one to
/// such a producer must revisit a node; the edge found there lies on a cycle.
fn cycle_error(
    nodes: &[Node],
    producers: &HashMap<&str, usize>,
    waiting: &[usize],
) -> (String, Problem) {
    let stuck_input = |i: usize| {
        nodes[i]
            .inputs
            .iter()
            .enumerate()
            .find_map(|(index, name)| {
                producers
                    .get(name.as_str())
                    .filter(|&&p| waiting[p] > 0)
                    .map(|&p| (index, name, p))
            })
    };
    let mut seen = vec![false; nodes.len()];
    let mut at = waiting.iter().position(|&w| w > 0).unwrap_or(0);
    loop {
        let Some((index, name, p)) = stuck_input(at) else {
            // Unreachable for a consistent `waiting`; report the node rather than panic.
            return (
                format!("node `{}`", nodes[at].name),
                Problem::Missing { field: "input" },
            );
        };
        if seen[at] {
            return (
                format!("node `{}`", nodes[at].name),
                Problem::Cycle {
                    index,
                    name: name.clone(),
                    producer: nodes[p].name.clone(),
                },
            );
        }
        seen[at] = true;
        at = p;
    }
}
