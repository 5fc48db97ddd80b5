//! A data split ready to feed a model: stored samples (any supported element type) and optional
//! labels, preprocessed per the manifest into f32 batches `[B, ...sample_shape]` on demand, so
//! that memory holds the compact stored form rather than the (possibly channel-replicated) f32.

use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::eval::error::DataError;
use crate::eval::manifest::{InputSpec, Split};
use crate::eval::read::load_tensor;
use crate::tensor::{Tensor, TensorData};

/// Samples, labels and the preprocessing that turns one into model input.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// All stored samples as read; only the first `count` are used.
    samples: Tensor,
    count: usize,
    labels: Option<Vec<i64>>,
    input: InputSpec,
    stored_per_sample: usize,
    origin: PathBuf,
}

impl Dataset {
    /// Loads a split's samples and labels, keeping the first `limit` samples when given.
    pub fn load(
        split: &Split,
        input: &InputSpec,
        limit: Option<usize>,
    ) -> Result<Dataset, DataError> {
        let samples = load_tensor(&split.samples)?;
        let labels = match &split.labels {
            Some(path) => Some((load_tensor(path)?, path.as_path())),
            None => None,
        };
        Dataset::from_tensors(samples, &split.samples, labels, input, limit)
    }

    /// A dataset from tensors already in memory; `samples_origin` and the labels' path name them
    /// in errors. Fails when the counts disagree or a sample cannot take `input.sample_shape`.
    pub fn from_tensors(
        samples: Tensor,
        samples_origin: &Path,
        labels: Option<(Tensor, &Path)>,
        input: &InputSpec,
        limit: Option<usize>,
    ) -> Result<Dataset, DataError> {
        input
            .validate()
            .map_err(|(key, message)| DataError::invalid(samples_origin, key, message))?;
        let count = *samples.shape().first().ok_or_else(|| {
            DataError::invalid(samples_origin, "shape", "a scalar holds no samples")
        })?;
        if count == 0 {
            return Err(DataError::invalid(
                samples_origin,
                "shape",
                "holds no samples",
            ));
        }
        let stored_per_sample = samples.len() / count;
        let wanted = input.sample_elements();
        let expected_stored = if input.replicate_channels {
            wanted / input.channels()
        } else {
            wanted
        };
        if stored_per_sample != expected_stored {
            return Err(DataError::invalid(
                samples_origin,
                "shape",
                format!(
                    "samples of shape {:?} ({stored_per_sample} elements) cannot become sample_shape {:?}{} ({expected_stored} elements needed)",
                    &samples.shape()[1..],
                    input.sample_shape,
                    if input.replicate_channels { " by replicating channels" } else { "" },
                ),
            ));
        }
        let labels = match labels {
            Some((t, origin)) => Some(label_values(t, origin, count, samples_origin)?),
            None => None,
        };
        if limit == Some(0) {
            return Err(DataError::invalid(
                samples_origin,
                "limit",
                "0 samples leaves nothing to run",
            ));
        }
        let keep = limit.map_or(count, |n| n.min(count));
        Ok(Dataset {
            samples,
            count: keep,
            labels: labels.map(|mut l| {
                l.truncate(keep);
                l
            }),
            input: input.clone(),
            stored_per_sample,
            origin: samples_origin.to_path_buf(),
        })
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when there are no samples (never, for a dataset that loaded).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Class labels, one per sample, when the split has them.
    pub fn labels(&self) -> Option<&[i64]> {
        self.labels.as_deref()
    }

    /// The graph input the samples feed.
    pub fn input_name(&self) -> &str {
        &self.input.name
    }

    /// The input specification the batches follow.
    pub fn input(&self) -> &InputSpec {
        &self.input
    }

    /// Samples `range` preprocessed into one f32 tensor `[range.len(), ...sample_shape]`.
    pub fn batch(&self, range: Range<usize>) -> Result<Tensor, DataError> {
        let range = range.start.min(self.len())..range.end.min(self.len());
        let per_out = self.input.sample_elements();
        let mut out = Vec::with_capacity(range.len() * per_out);
        let mut stored = Vec::with_capacity(self.stored_per_sample);
        for i in range.clone() {
            stored.clear();
            let s = i * self.stored_per_sample;
            extend_f32(
                self.samples.data(),
                s..s + self.stored_per_sample,
                &mut stored,
            );
            self.preprocess_into(&stored, &mut out);
        }
        let mut shape = vec![range.len()];
        shape.extend_from_slice(&self.input.sample_shape);
        Tensor::from_f32(shape, out)
            .map_err(|e| DataError::invalid(&self.origin, "batch", e.to_string()))
    }

    /// Consecutive batches of `size` samples (the last one smaller), in order.
    pub fn batches(&self, size: usize) -> impl Iterator<Item = Result<Tensor, DataError>> + '_ {
        let size = size.max(1);
        (0..self.len())
            .step_by(size)
            .map(move |start| self.batch(start..start + size))
    }

    /// Appends one preprocessed sample: `((x * scale) - mean[c]) / std[c]`, with the grey plane
    /// copied into every channel when `replicate_channels` is set.
    fn preprocess_into(&self, stored: &[f32], out: &mut Vec<f32>) {
        let spec = &self.input;
        let channels = spec.channels();
        let plane = spec.sample_elements() / channels;
        let pick = |v: &[f32], c: usize| if v.len() == 1 { v[0] } else { v[c] };
        for c in 0..channels {
            let (mean, std) = (pick(&spec.mean, c), pick(&spec.std, c));
            let src = if spec.replicate_channels {
                &stored[..plane]
            } else {
                &stored[c * plane..(c + 1) * plane]
            };
            out.extend(src.iter().map(|&x| ((x * spec.scale) - mean) / std));
        }
    }
}

/// Integer labels as i64, one per sample.
fn label_values(
    labels: Tensor,
    origin: &Path,
    samples: usize,
    samples_origin: &Path,
) -> Result<Vec<i64>, DataError> {
    let rows = labels.shape().first().copied().unwrap_or(1);
    if rows != labels.len() {
        return Err(DataError::invalid(
            origin,
            "shape",
            format!(
                "labels of shape {:?} are not one per sample",
                labels.shape()
            ),
        ));
    }
    if rows != samples {
        return Err(DataError::invalid(
            origin,
            "count",
            format!(
                "{rows} labels for the {samples} samples of {}",
                samples_origin.display()
            ),
        ));
    }
    labels.to_i64_vec().map_err(|_| {
        DataError::invalid(origin, "element type", "labels must be integers, found f32")
    })
}

/// Appends elements `range` of `data` widened to f32 (bools as 0 and 1).
fn extend_f32(data: &TensorData, range: Range<usize>, out: &mut Vec<f32>) {
    match data {
        TensorData::F32(v) => out.extend_from_slice(&v[range]),
        TensorData::U8(v) => out.extend(v[range].iter().map(|&x| f32::from(x))),
        TensorData::I8(v) => out.extend(v[range].iter().map(|&x| f32::from(x))),
        TensorData::I32(v) => out.extend(v[range].iter().map(|&x| x as f32)),
        TensorData::I64(v) => out.extend(v[range].iter().map(|&x| x as f32)),
        TensorData::Bool(v) => out.extend(v[range].iter().map(|&x| f32::from(u8::from(x)))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(shape: Vec<usize>) -> InputSpec {
        InputSpec {
            name: "x".into(),
            sample_shape: shape,
            scale: 0.5,
            mean: vec![1.0],
            std: vec![2.0],
            replicate_channels: false,
        }
    }

    fn idx_u8(dir: &Path, name: &str, dims: &[u32], payload: &[u8]) -> PathBuf {
        let mut v = vec![0, 0, 0x08, dims.len() as u8];
        for d in dims {
            v.extend_from_slice(&d.to_be_bytes());
        }
        v.extend_from_slice(payload);
        let p = dir.join(name);
        std::fs::write(&p, v).unwrap();
        p
    }

    #[test]
    fn loads_idx_preprocesses_and_batches() {
        let dir = tempfile::tempdir().unwrap();
        // Five 2×2 "images" valued 10·i + j, labels 0..5.
        let pixels: Vec<u8> = (0..5u8)
            .flat_map(|i| (0..4u8).map(move |j| 10 * i + j))
            .collect();
        let split = Split {
            samples: idx_u8(dir.path(), "x.idx", &[5, 2, 2], &pixels),
            labels: Some(idx_u8(dir.path(), "y.idx", &[5], &[0, 1, 2, 3, 4])),
        };
        // Reshaped 2×2 -> [4]: y = (x·0.5 − 1) / 2.
        let ds = Dataset::load(&split, &spec(vec![4]), None).unwrap();
        assert_eq!(ds.len(), 5);
        assert_eq!(ds.labels(), Some(&[0i64, 1, 2, 3, 4][..]));
        let batches: Vec<Tensor> = ds.batches(2).map(|b| b.unwrap()).collect();
        assert_eq!(batches.len(), 3);
        assert_eq!(batches[0].shape(), &[2, 4]);
        assert_eq!(batches[2].shape(), &[1, 4]);
        assert_eq!(
            batches[0].as_f32().unwrap(),
            &[-0.5, -0.25, 0.0, 0.25, 2.0, 2.25, 2.5, 2.75]
        );
        assert_eq!(batches[2].as_f32().unwrap(), &[9.5, 9.75, 10.0, 10.25]);

        let limited = Dataset::load(&split, &spec(vec![4]), Some(3)).unwrap();
        assert_eq!(limited.len(), 3);
        assert_eq!(limited.labels(), Some(&[0i64, 1, 2][..]));
        assert_eq!(limited.batches(8).count(), 1);
        assert!(Dataset::load(&split, &spec(vec![4]), Some(0)).is_err());
    }

    #[test]
    fn per_channel_normalisation_and_replication() {
        let samples = Tensor::new(vec![1, 2, 2], TensorData::U8(vec![0, 2, 4, 6])).unwrap();
        let mut s = spec(vec![3, 2, 2]);
        s.replicate_channels = true;
        s.scale = 1.0;
        s.mean = vec![0.0, 1.0, 2.0];
        s.std = vec![1.0, 2.0, 4.0];
        let ds = Dataset::from_tensors(samples.clone(), Path::new("m"), None, &s, None).unwrap();
        let b = ds.batch(0..1).unwrap();
        assert_eq!(b.shape(), &[1, 3, 2, 2]);
        assert_eq!(
            b.as_f32().unwrap(),
            &[0.0, 2.0, 4.0, 6.0, -0.5, 0.5, 1.5, 2.5, -0.5, 0.0, 0.5, 1.0]
        );

        // Without replication the 4 stored elements cannot fill 12.
        s.replicate_channels = false;
        let err = Dataset::from_tensors(samples, Path::new("m.idx"), None, &s, None).unwrap_err();
        assert!(err.to_string().contains("m.idx: shape:"), "{err}");
    }

    #[test]
    fn label_count_and_type_are_checked() {
        let samples = Tensor::new(vec![3, 2], TensorData::U8(vec![0; 6])).unwrap();
        let labels = Tensor::new(vec![2], TensorData::U8(vec![0, 1])).unwrap();
        let err = Dataset::from_tensors(
            samples.clone(),
            Path::new("x.idx"),
            Some((labels, Path::new("y.idx"))),
            &spec(vec![2]),
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("y.idx: count: 2 labels for the 3 samples of x.idx"),
            "{err}"
        );

        let labels = Tensor::from_f32(vec![3], vec![0.0; 3]).unwrap();
        let err = Dataset::from_tensors(
            samples,
            Path::new("x.idx"),
            Some((labels, Path::new("y.npy"))),
            &spec(vec![2]),
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("y.npy: element type"), "{err}");
    }
}
