//! The training loop, range calibration without training, and evaluation of the
//! fake-quantized network.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::eval::Dataset;
use crate::graph::Graph;
use crate::measure::rng::SplitMix64;
use crate::quant::qat::compile::{compile, training_graph};
use crate::quant::qat::fake_quant::{weight_scales, WeightBits};
use crate::quant::qat::loss::{cross_entropy, distillation};
use crate::quant::qat::optim::OptState;
use crate::quant::qat::program::Program;
use crate::quant::qat::{
    Accuracy, BitSchedule, QatConfig, QatError, QatEvent, QatResult, StepRecord, WeightQuant,
};
use crate::tensor::{Tensor, TensorData};

/// Fine-tunes `graph` on `data` (the calibration split) with fake quantization, reporting
/// progress to `on_event`, and returns the trained graph and its quantization parameters.
pub fn train(
    graph: &Graph,
    data: &Dataset,
    config: &QatConfig,
    mut on_event: impl FnMut(QatEvent),
) -> Result<QatResult, QatError> {
    validate(config)?;
    let graph = &training_graph(graph, data)?;
    let output = output_name(graph, config.output.as_deref())?;
    let mut student = program_for(graph, data, &output)?;
    student.ema_decay = config.ema_decay;
    let classes = student.output_len();
    let mut teacher = match config.distill {
        Some(_) => Some(program_for(graph, data, &output)?),
        None => None,
    };
    let labels = labels(data, classes)?;
    let ce_weight = config.distill.map_or(1.0, |d| 1.0 - d.weight);
    if labels.is_none() && ce_weight > 0.0 {
        return Err(QatError::Config {
            field: "distill",
            value: format!("{:?}", config.distill),
            message: "the data has no labels: distil with weight 1 to train without them",
        });
    }
    let samples = all_samples(data)?;
    let per_sample = student.values[student.input].len;
    let n = data.len();
    let steps_per_epoch = n.div_ceil(config.batch_size);
    let total = steps_per_epoch * config.epochs;
    let last_step = config.max_steps.map_or(total, |m| m.min(total));
    let parameters = student.params.iter().map(|p| p.data.len()).sum();
    on_event(QatEvent::Started {
        total_steps: total,
        steps_per_epoch,
        samples: n,
        parameters,
    });
    let mut opt = OptState::new(
        config.optimizer,
        student.params.iter().map(|p| p.data.len()),
    );
    let mut rng = SplitMix64::new(config.seed);
    let mut order: Vec<usize> = (0..n).collect();
    let mut history = Vec::with_capacity(last_step);
    let started = Instant::now();
    let mut step = 0;
    'epochs: for epoch in 0..config.epochs {
        shuffle(&mut order, &mut rng);
        let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0usize, 0usize);
        for chunk in order.chunks(config.batch_size) {
            if step >= last_step {
                break 'epochs;
            }
            let bits = config.bits.at(step, total);
            if student.bits != Some(bits) {
                student.bits = Some(bits);
                on_event(QatEvent::BitsChanged { step, bits });
            }
            let batch = chunk.len();
            let mut x = Vec::with_capacity(batch * per_sample);
            for &i in chunk {
                x.extend_from_slice(&samples[i * per_sample..(i + 1) * per_sample]);
            }
            let teacher_tape = match &mut teacher {
                Some(t) => Some((t.forward(x.clone(), batch, false)?, t.output)),
                None => None,
            };
            let tape = student.forward(x, batch, true)?;
            let scores = tape.output(&student);
            let mut loss = 0.0;
            let mut grad = vec![0.0; scores.len()];
            let batch_labels: Option<Vec<usize>> = labels
                .as_ref()
                .map(|l| chunk.iter().map(|&i| l[i]).collect());
            if let (Some(y), true) = (&batch_labels, ce_weight > 0.0) {
                let (l, g) = cross_entropy(scores, y, classes);
                loss += ce_weight * l;
                grad.iter_mut()
                    .zip(g)
                    .for_each(|(a, b)| *a += ce_weight * b);
            }
            let mut agreement = None;
            if let (Some(d), Some((t, out))) = (config.distill, &teacher_tape) {
                let ts = &t.vals[*out];
                let (l, g) = distillation(scores, ts, classes, d.temperature);
                loss += d.weight * l;
                grad.iter_mut().zip(g).for_each(|(a, b)| *a += d.weight * b);
                agreement = Some(agree(scores, ts, classes) as f32 / batch as f32);
            }
            let accuracy = batch_labels.as_ref().map(|y| {
                let c = top1_correct(scores, y, classes);
                correct += c;
                c as f32 / batch as f32
            });
            let (pgrads, _) = student.backward(&tape, grad)?;
            let lr = config.schedule.rate(config.learning_rate, step, total);
            opt.step(student.params.iter_mut().map(|p| &mut p.data), &pgrads, lr);
            loss_sum += f64::from(loss) * batch as f64;
            seen += batch;
            let record = StepRecord {
                step,
                epoch,
                bits,
                lr,
                loss,
                accuracy,
                agreement,
            };
            history.push(record.clone());
            on_event(QatEvent::Step(record));
            step += 1;
        }
        on_event(QatEvent::Epoch {
            epoch,
            loss: (loss_sum / seen.max(1) as f64) as f32,
            accuracy: labels.as_ref().map(|_| correct as f32 / seen.max(1) as f32),
            elapsed: started.elapsed(),
        });
    }
    on_event(QatEvent::Finished {
        steps: step,
        elapsed: started.elapsed(),
    });
    let bits = config.bits.at(step.saturating_sub(1), total);
    student.bits = Some(bits);
    result(graph, &student, data, output, bits, history)
}

/// Post-training calibration with no training: runs up to `max_batches` batches of `data`
/// through the FP32 network to track activation ranges (the same EMA as training), and
/// quantizes the weights as they are to `bits`. The baseline that QAT is compared against.
pub fn calibrate(
    graph: &Graph,
    data: &Dataset,
    bits: WeightBits,
    batch_size: usize,
    max_batches: usize,
) -> Result<QatResult, QatError> {
    if batch_size == 0 {
        return Err(QatError::Config {
            field: "batch_size",
            value: "0".into(),
            message: "must be at least 1",
        });
    }
    let graph = &training_graph(graph, data)?;
    let output = output_name(graph, None)?;
    let mut program = program_for(graph, data, &output)?;
    for b in data.batches(batch_size).take(max_batches) {
        let b = b?;
        let batch = b.shape()[0];
        program.forward(tensor_values(b)?, batch, true)?;
    }
    program.bits = Some(bits);
    result(graph, &program, data, output, bits, Vec::new())
}

impl QatResult {
    /// Top-1 accuracy of the fake-quantized network (trained weights rounded to their grid,
    /// activations rounded over the learned ranges) on a labelled split.
    pub fn evaluate(&self, data: &Dataset, batch_size: usize) -> Result<Accuracy, QatError> {
        let mut program = program_for(&self.graph, data, &self.output)?;
        program.bits = Some(self.bits);
        for (v, r) in program.values.iter().zip(program.ranges.iter_mut()) {
            *r = self.activation_ranges.get(&v.name).copied();
        }
        accuracy(&mut program, data, batch_size)
    }
}

/// Top-1 accuracy of the FP32 network `graph` (no fake quantization) on a labelled split.
pub fn fp32_accuracy(
    graph: &Graph,
    data: &Dataset,
    batch_size: usize,
) -> Result<Accuracy, QatError> {
    let graph = &training_graph(graph, data)?;
    let output = output_name(graph, None)?;
    let mut program = program_for(graph, data, &output)?;
    accuracy(&mut program, data, batch_size)
}

fn accuracy(
    program: &mut Program,
    data: &Dataset,
    batch_size: usize,
) -> Result<Accuracy, QatError> {
    let classes = program.output_len();
    let labels = labels(data, classes)?.ok_or_else(|| {
        QatError::Graph(format!(
            "input `{}`: the split has no labels to score accuracy against",
            data.input_name()
        ))
    })?;
    let mut acc = Accuracy {
        correct: 0,
        total: 0,
    };
    for b in data.batches(batch_size.max(1)) {
        let b = b?;
        let batch = b.shape()[0];
        let tape = program.forward(tensor_values(b)?, batch, false)?;
        let y = &labels[acc.total..acc.total + batch];
        acc.correct += top1_correct(tape.output(program), y, classes);
        acc.total += batch;
    }
    Ok(acc)
}

fn validate(c: &QatConfig) -> Result<(), QatError> {
    let bad = |field, value: String, message| {
        Err(QatError::Config {
            field,
            value,
            message,
        })
    };
    if c.epochs == 0 {
        return bad("epochs", "0".into(), "must be at least 1");
    }
    if c.batch_size == 0 {
        return bad("batch_size", "0".into(), "must be at least 1");
    }
    if !(c.learning_rate.is_finite() && c.learning_rate > 0.0) {
        return bad(
            "learning_rate",
            c.learning_rate.to_string(),
            "must be finite and positive",
        );
    }
    // A schedule read through serde skipped the constructor's checks.
    BitSchedule::new(c.bits.stages().to_vec())?;
    if !(0.0..1.0).contains(&c.ema_decay) {
        return bad("ema_decay", c.ema_decay.to_string(), "must be in [0, 1)");
    }
    if let Some(d) = c.distill {
        if !(d.temperature.is_finite() && d.temperature > 0.0) {
            return bad(
                "distill.temperature",
                d.temperature.to_string(),
                "must be finite and positive",
            );
        }
        if !(0.0..=1.0).contains(&d.weight) {
            return bad("distill.weight", d.weight.to_string(), "must be in [0, 1]");
        }
    }
    Ok(())
}

fn output_name(graph: &Graph, wanted: Option<&str>) -> Result<String, QatError> {
    match wanted {
        Some(o) => Ok(o.to_string()),
        None => graph
            .outputs
            .first()
            .map(|o| o.name.clone())
            .ok_or_else(|| QatError::Graph(format!("graph `{}` declares no output", graph.name))),
    }
}

fn program_for(graph: &Graph, data: &Dataset, output: &str) -> Result<Program, QatError> {
    compile(graph, data.input_name(), &data.input().sample_shape, output)
}

/// The split's labels as class indices, checked against the class count.
fn labels(data: &Dataset, classes: usize) -> Result<Option<Vec<usize>>, QatError> {
    let Some(l) = data.labels() else {
        return Ok(None);
    };
    l.iter()
        .enumerate()
        .map(|(i, &y)| {
            usize::try_from(y)
                .ok()
                .filter(|&c| c < classes)
                .ok_or_else(|| {
                    QatError::Graph(format!(
                        "label {y} of sample {i} is not a class of the {classes}-way output"
                    ))
                })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// The elements of a dataset batch (f32 by construction; anything else is reported).
fn tensor_values(t: Tensor) -> Result<Vec<f32>, QatError> {
    match t.into_parts().1 {
        TensorData::F32(v) => Ok(v),
        other => Err(QatError::Graph(format!(
            "dataset batch holds {} values, f32 expected",
            other.dtype()
        ))),
    }
}

fn all_samples(data: &Dataset) -> Result<Vec<f32>, QatError> {
    tensor_values(data.batch(0..data.len())?)
}

/// Fisher–Yates.
fn shuffle(v: &mut [usize], rng: &mut SplitMix64) {
    for i in (1..v.len()).rev() {
        v.swap(i, rng.below(i + 1));
    }
}

fn argmax(row: &[f32]) -> usize {
    row.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| {
            if v > bv {
                (i, v)
            } else {
                (bi, bv)
            }
        })
        .0
}

fn top1_correct(scores: &[f32], labels: &[usize], classes: usize) -> usize {
    scores
        .chunks(classes)
        .zip(labels)
        .filter(|(row, &y)| argmax(row) == y)
        .count()
}

fn agree(a: &[f32], b: &[f32], classes: usize) -> usize {
    a.chunks(classes)
        .zip(b.chunks(classes))
        .filter(|(x, y)| argmax(x) == argmax(y))
        .count()
}

/// Packs the trained program back into a graph and its quantization parameters.
fn result(
    graph: &Graph,
    program: &Program,
    data: &Dataset,
    output: String,
    bits: WeightBits,
    history: Vec<StepRecord>,
) -> Result<QatResult, QatError> {
    let mut graph = graph.clone();
    let mut weights = BTreeMap::new();
    for p in &program.params {
        let t = Tensor::from_f32(p.shape.clone(), p.data.clone())
            .map_err(|e| QatError::Graph(format!("initializer `{}`: {e}", p.name)))?;
        graph.initializers.insert(p.name.clone(), t);
        if let Some((node, axis_index, axis)) = &p.layer {
            weights.insert(
                node.clone(),
                WeightQuant {
                    weight: p.name.clone(),
                    bits,
                    axis: *axis_index,
                    scales: weight_scales(&p.data, *axis, bits),
                },
            );
        }
    }
    let activation_ranges = program
        .values
        .iter()
        .zip(&program.ranges)
        .filter_map(|(v, r)| r.map(|r| (v.name.clone(), r)))
        .collect();
    Ok(QatResult {
        graph,
        input: data.input_name().to_string(),
        output,
        activation_ranges,
        weights,
        bits,
        history,
    })
}
