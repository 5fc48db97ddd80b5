//! Quantization-aware fine-tuning of a bundled MNIST model, evaluated on the 10,000 test images
//! as the fake-quantized network (weights on their grid, activations on u8 grids).
//!
//! ```sh
//! RAYON_NUM_THREADS=1 cargo run --release --example qat_mnist -- --bits binary --epochs 3
//! ```
//!
//! Prints the FP32 accuracy, the accuracy of post-training quantization at the same precision
//! (calibrated ranges, weights rounded as they are), then trains on the manifest's calibration
//! split (never the test split) and prints the QAT accuracy and the training time.
//!
//! Measured on 2026-11-30 (AMD EPYC, one rayon thread, release, machine shared with other
//! jobs), mnist-cnn, all 10,000 calibration images, batch 64, Adam lr 1e-3 cosine, test split:
//!
//! | weights (u8 activations) | schedule | test accuracy | training |
//! |---|---|---|---|
//! | FP32 (quench's forward) | — | 99.05% | — |
//! | binary, PTQ (no training) | — | 92.90% | — |
//! | binary, QAT on labels | 3 epochs | 98.61% | 55.4 s |
//! | binary, QAT, labels + distillation T=4 (weight 0.5) | 3 epochs | 98.71% | 83.9 s |
//! | binary, QAT, distillation only (no labels) | 3 epochs | 98.58% | 72.8 s |
//! | 8 → 4 → 1 bits in thirds | 3 epochs | 97.83% | 62.7 s |
//! | 8 → 4 → 1 bits in thirds | 6 epochs | 98.25% | 131.3 s |
//!
//! (`--distill 4`, `--distill 4 --distill-weight 1`, `--bits gradual [--epochs 6]`.) With equal
//! thirds the binary stage gets only the low-rate tail of the cosine schedule, which is why the
//! gradual runs trail training binary from the start.

use std::path::PathBuf;
use std::time::Instant;

use clap::{Parser, ValueEnum};
use quench::eval::{Dataset, Manifest};
use quench::quant::qat::{
    self, BitSchedule, Distillation, LrSchedule, Optimizer, QatConfig, QatEvent, WeightBits,
};

#[derive(Clone, Copy, ValueEnum)]
enum Bits {
    Int8,
    Int4,
    Binary,
    /// 8 → 4 → 1 bits in equal thirds of the run.
    Gradual,
}

#[derive(Parser)]
struct Args {
    /// Model manifest.
    #[arg(long, default_value = "assets/models/mnist-cnn.toml")]
    manifest: PathBuf,
    /// Weight precision (activations are u8 throughout).
    #[arg(long, value_enum, default_value = "binary")]
    bits: Bits,
    #[arg(long, default_value_t = 3)]
    epochs: usize,
    #[arg(long, default_value_t = 64)]
    batch: usize,
    #[arg(long, default_value_t = 1e-3)]
    lr: f32,
    /// Use SGD with momentum 0.9 instead of Adam.
    #[arg(long)]
    sgd: bool,
    /// Distillation temperature; 0 trains on labels only.
    #[arg(long, default_value_t = 0.0)]
    distill: f32,
    /// Share of the distillation term in the loss.
    #[arg(long, default_value_t = 0.5)]
    distill_weight: f32,
    /// Training samples to use (default: the whole calibration split).
    #[arg(long)]
    limit: Option<usize>,
    /// Write the result (trained ONNX + quantization metadata) here.
    #[arg(long)]
    save: Option<PathBuf>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let manifest = Manifest::load(&args.manifest)?;
    let graph = quench::onnx::load(&manifest.model.file)?;
    let calib = manifest
        .data
        .calibration
        .as_ref()
        .ok_or("the manifest has no calibration split")?;
    let train_data = Dataset::load(calib, &manifest.input, args.limit)?;
    let test = Dataset::load(&manifest.data.test, &manifest.input, None)?;
    let (schedule, last) = match args.bits {
        Bits::Int8 => (BitSchedule::constant(WeightBits::Int8), WeightBits::Int8),
        Bits::Int4 => (BitSchedule::constant(WeightBits::Int4), WeightBits::Int4),
        Bits::Binary => (
            BitSchedule::constant(WeightBits::Binary),
            WeightBits::Binary,
        ),
        Bits::Gradual => (
            BitSchedule::gradual(&[WeightBits::Int8, WeightBits::Int4, WeightBits::Binary])?,
            WeightBits::Binary,
        ),
    };
    let fp32 = qat::fp32_accuracy(&graph, &test, 500)?;
    println!("fp32 (quench forward): {:.2}%", 100.0 * fp32.fraction());
    let ptq = qat::calibrate(&graph, &train_data, last, 256, 40)?.evaluate(&test, 500)?;
    println!(
        "{last} weights + u8 activations, PTQ: {:.2}%",
        100.0 * ptq.fraction()
    );
    let config = QatConfig {
        epochs: args.epochs,
        batch_size: args.batch,
        learning_rate: args.lr,
        optimizer: if args.sgd {
            Optimizer::Sgd {
                momentum: 0.9,
                weight_decay: 0.0,
            }
        } else {
            QatConfig::default().optimizer
        },
        schedule: LrSchedule::Cosine,
        bits: schedule,
        distill: (args.distill > 0.0).then_some(Distillation {
            temperature: args.distill,
            weight: args.distill_weight,
        }),
        ..QatConfig::default()
    };
    println!(
        "QAT: {} samples, {} epochs, batch {}, lr {} cosine, {}, bits {:?}, distill {:?}, {} rayon threads",
        train_data.len(),
        config.epochs,
        config.batch_size,
        config.learning_rate,
        if args.sgd { "SGD momentum 0.9" } else { "Adam" },
        config.bits.stages(),
        config.distill,
        rayon::current_num_threads()
    );
    let started = Instant::now();
    let result = qat::train(&graph, &train_data, &config, |e| match e {
        QatEvent::BitsChanged { step, bits } => println!("  step {step}: weights now {bits}"),
        QatEvent::Epoch {
            epoch,
            loss,
            accuracy,
            elapsed,
        } => println!(
            "  epoch {epoch}: loss {loss:.4}, train accuracy {:.2}%, {:.1} s",
            100.0 * accuracy.unwrap_or(f32::NAN),
            elapsed.as_secs_f64()
        ),
        _ => {}
    })?;
    let train_secs = started.elapsed().as_secs_f64();
    let acc = result.evaluate(&test, 500)?;
    println!(
        "{last} weights + u8 activations, QAT: {:.2}% ({}/{}) on the test split; training {:.1} s",
        100.0 * acc.fraction(),
        acc.correct,
        acc.total,
        train_secs
    );
    if let Some(path) = args.save {
        result.save(&path)?;
        println!("saved {}", path.display());
    }
    Ok(())
}
