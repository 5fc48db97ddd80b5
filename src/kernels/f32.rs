//! f32 GEMM: `C = act(A · B + bias)` with B packed once at plan time.
//!
//! This is the baseline every quantized speed-up is measured against.

/// Activation fused into the GEMM's store.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Activation {
    /// Store as computed.
    None,
    /// `max(x, 0)`.
    Relu,
    /// `min(max(x, lo), hi)`.
    Clip(f32, f32),
}

impl Activation {
    /// Applies the activation to one value.
    #[inline(always)]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Activation::None => x,
            Activation::Relu => x.max(0.0),
            Activation::Clip(lo, hi) => x.max(lo).min(hi),
        }
    }
}

/// The right-hand operand B (K×N) in the layout the kernel reads, packed once.
#[derive(Debug, Clone)]
pub struct PackedB {
    k: usize,
    n: usize,
    data: Vec<f32>,
}

impl PackedB {
    /// Packs B given row-major as K×N (`b[kk * n + j]`).
    pub fn from_k_by_n(k: usize, n: usize, b: &[f32]) -> PackedB {
        assert_eq!(b.len(), k * n, "B must hold k*n elements");
        PackedB {
            k,
            n,
            data: b.to_vec(),
        }
    }

    /// Packs B given as its transpose, row-major N×K (`w[j * k + kk]`): the layout of ONNX Gemm
    /// with `transB=1` and of Conv weights.
    pub fn from_n_by_k(n: usize, k: usize, w: &[f32]) -> PackedB {
        assert_eq!(w.len(), k * n, "W must hold n*k elements");
        let mut data = vec![0.0; k * n];
        for j in 0..n {
            for kk in 0..k {
                data[kk * n + j] = w[j * k + kk];
            }
        }
        PackedB { k, n, data }
    }

    /// Inner dimension K.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Output columns N.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Bytes held by the packed form.
    pub fn size_bytes(&self) -> usize {
        self.data.len() * std::mem::size_of::<f32>()
    }
}

/// What is done to each output value as it is stored: bias added per column, then activation.
#[derive(Debug, Clone, Copy)]
pub struct Epilogue<'a> {
    /// N values added to every row, when given.
    pub bias: Option<&'a [f32]>,
    /// Activation applied after the bias.
    pub act: Activation,
}

/// `C[m×N] = act(A[m×K] · B + bias)`, A row-major with row stride `lda`, C with row stride `ldc`.
pub fn gemm(
    m: usize,
    a: &[f32],
    lda: usize,
    b: &PackedB,
    epi: Epilogue<'_>,
    c: &mut [f32],
    ldc: usize,
) {
    let (k, n) = (b.k, b.n);
    let (bias, act) = (epi.bias, epi.act);
    for i in 0..m {
        let arow = &a[i * lda..i * lda + k];
        let crow = &mut c[i * ldc..i * ldc + n];
        for (j, out) in crow.iter_mut().enumerate() {
            *out = bias.map_or(0.0, |bv| bv[j]);
        }
        for (kk, &av) in arow.iter().enumerate() {
            let brow = &b.data[kk * n..kk * n + n];
            for (out, &bv) in crow.iter_mut().zip(brow) {
                *out += av * bv;
            }
        }
        for out in crow.iter_mut() {
            *out = act.apply(*out);
        }
    }
}

/// Name of the f32 GEMM kernel that [`gemm`] runs in this process.
pub fn gemm_kernel_name() -> String {
    "f32-gemm-scalar".to_string()
}
