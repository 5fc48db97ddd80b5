//! What happens to each i32 accumulator as it is stored: kept, dequantized to f32, or requantized
//! to u8/s8 with the ONNX `QuantizeLinear` rounding.

use super::{I8Error, NR};

/// A scale per tensor or per output column.
#[derive(Debug, Clone, Copy)]
pub enum Scale<'a> {
    /// One scale for every column.
    PerTensor(f32),
    /// One scale per output column (N values).
    PerChannel(&'a [f32]),
}

/// Entries `j0 .. j0 + n` of a per-column parameter, or a length error naming `what`.
pub(super) fn columns_of<'a, T>(
    what: &'static str,
    v: &'a [T],
    j0: usize,
    n: usize,
) -> Result<&'a [T], I8Error> {
    j0.checked_add(n)
        .and_then(|end| v.get(j0..end))
        .ok_or(I8Error::Length {
            what,
            expected: j0.saturating_add(n),
            got: v.len(),
        })
}

impl<'a> Scale<'a> {
    /// The scales of columns `j0 .. j0 + n` (a per-tensor scale is the same for any columns).
    pub fn columns(self, j0: usize, n: usize) -> Result<Scale<'a>, I8Error> {
        Ok(match self {
            Scale::PerTensor(s) => Scale::PerTensor(s),
            Scale::PerChannel(s) => Scale::PerChannel(columns_of("scale", s, j0, n)?),
        })
    }
}

impl Scale<'_> {
    #[inline(always)]
    fn at(&self, j: usize) -> f32 {
        match *self {
            Scale::PerTensor(s) => s,
            Scale::PerChannel(s) => s[j],
        }
    }

    /// The scales of columns `j0 .. j0 + NR` (all inside N).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    #[inline(always)]
    fn row(&self, j0: usize) -> [f32; NR] {
        match *self {
            Scale::PerTensor(s) => [s; NR],
            Scale::PerChannel(s) => row(s, j0),
        }
    }

    fn check(&self, what: &'static str, n: usize) -> Result<(), I8Error> {
        match *self {
            Scale::PerChannel(s) if s.len() != n => Err(I8Error::Length {
                what,
                expected: n,
                got: s.len(),
            }),
            _ => Ok(()),
        }
    }
}

/// Entries `j0 .. j0 + NR` of a per-column parameter (all inside N): one bounds check.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
#[inline(always)]
fn row<T: Copy>(v: &[T], j0: usize) -> [T; NR] {
    let v = &v[j0..][..NR];
    std::array::from_fn(|c| v[c])
}

/// Dequantization to f32: `y = act(acc · scale[j] + bias[j])`, where `scale` is the product of
/// the activation and weight scales. Multiply then add, in that order, never fused; the ReLU is
/// `if y > 0 { y } else { 0 }` (NaN and -0 become +0).
#[derive(Debug, Clone, Copy)]
pub struct Dequantize<'a> {
    /// `scale_a · scale_b[j]`.
    pub scale: Scale<'a>,
    /// f32 bias per column, added after scaling.
    pub bias: Option<&'a [f32]>,
    /// Fused ReLU.
    pub relu: bool,
}

/// Requantization to u8/s8 as ONNX `QLinearConv`/`QLinearMatMul` do it:
/// `y = saturate(round_half_even((acc + bias[j]) · multiplier[j]) + zero_point)`, where
/// `multiplier = scale_a · scale_b[j] / scale_y`. A fused ReLU clamps at `zero_point`. The
/// rounded value is clamped in f32 before conversion, so huge values saturate and NaN gives the
/// lowest output.
#[derive(Debug, Clone, Copy)]
pub struct Requantize<'a> {
    /// `scale_a · scale_b[j] / scale_y`.
    pub multiplier: Scale<'a>,
    /// i32 bias per column (ONNX QLinearConv's `B`, quantized with scale `scale_a · scale_b`).
    pub bias: Option<&'a [i32]>,
    /// Output zero point: in [0, 255] for u8, [-128, 127] for s8.
    pub zero_point: i32,
    /// Fused ReLU.
    pub relu: bool,
}

/// Where the GEMM stores its result and how.
#[derive(Debug)]
pub enum Output<'a> {
    /// The exact i32 accumulators.
    I32(&'a mut [i32]),
    /// Dequantized f32.
    F32(&'a mut [f32], Dequantize<'a>),
    /// Requantized u8.
    U8(&'a mut [u8], Requantize<'a>),
    /// Requantized s8.
    S8(&'a mut [i8], Requantize<'a>),
}

impl Output<'_> {
    /// The output restricted to columns `j0 .. j0 + n`: the buffer from column `j0` on (rows
    /// keep their stride) and the per-column parameters of those columns. A grouped convolution
    /// stores each group's GEMM through the columns of its output channels.
    pub fn columns(&mut self, j0: usize, n: usize) -> Result<Output<'_>, I8Error> {
        fn from<T>(c: &mut [T], j0: usize) -> Result<&mut [T], I8Error> {
            let got = c.len();
            c.get_mut(j0..).ok_or(I8Error::Length {
                what: "output",
                expected: j0,
                got,
            })
        }
        Ok(match self {
            Output::I32(c) => Output::I32(from(c, j0)?),
            Output::F32(c, d) => Output::F32(
                from(c, j0)?,
                Dequantize {
                    scale: d.scale.columns(j0, n)?,
                    bias: d.bias.map(|b| columns_of("bias", b, j0, n)).transpose()?,
                    relu: d.relu,
                },
            ),
            Output::U8(c, r) => Output::U8(from(c, j0)?, r.columns(j0, n)?),
            Output::S8(c, r) => Output::S8(from(c, j0)?, r.columns(j0, n)?),
        })
    }

    /// Checks buffer lengths and parameters against an `m × n` result with row stride `ldc`.
    pub(super) fn check(&self, m: usize, n: usize, ldc: usize) -> Result<(), I8Error> {
        let got = self.check_params(n)?;
        super::check_len("output", m, ldc, n, got)
    }

    /// Checks the per-channel parameters against `n` channels; returns the buffer length.
    pub(super) fn check_params(&self, n: usize) -> Result<usize, I8Error> {
        Ok(match self {
            Output::I32(c) => c.len(),
            Output::F32(c, d) => {
                d.scale.check("dequantize scale", n)?;
                check_bias(d.bias.map(|b| b.len()), n)?;
                c.len()
            }
            Output::U8(c, r) => {
                r.check(n, 0, 255)?;
                c.len()
            }
            Output::S8(c, r) => {
                r.check(n, -128, 127)?;
                c.len()
            }
        })
    }
}

fn check_bias(len: Option<usize>, n: usize) -> Result<(), I8Error> {
    match len {
        Some(got) if got != n => Err(I8Error::Length {
            what: "bias",
            expected: n,
            got,
        }),
        _ => Ok(()),
    }
}

impl<'a> Requantize<'a> {
    /// The parameters of columns `j0 .. j0 + n`.
    fn columns(&self, j0: usize, n: usize) -> Result<Requantize<'a>, I8Error> {
        Ok(Requantize {
            multiplier: self.multiplier.columns(j0, n)?,
            bias: self
                .bias
                .map(|b| columns_of("bias", b, j0, n))
                .transpose()?,
            ..*self
        })
    }

    fn check(&self, n: usize, lo: i32, hi: i32) -> Result<(), I8Error> {
        self.multiplier.check("requantize multiplier", n)?;
        check_bias(self.bias.map(|b| b.len()), n)?;
        if !(lo..=hi).contains(&self.zero_point) {
            return Err(I8Error::ZeroPoint {
                zp: self.zero_point,
                lo,
                hi,
            });
        }
        Ok(())
    }

    pub(super) fn for_u8(self) -> Requant<'a, u8> {
        self.bounded(0, 255)
    }

    pub(super) fn for_s8(self) -> Requant<'a, i8> {
        self.bounded(-128, 127)
    }
}

/// Turns a finished accumulator of column `j` into an output value.
pub(super) trait Finish<T>: Sync {
    /// One value of column `j`.
    fn finish(&self, acc: i32, j: usize) -> T;

    /// One tile row starting at column `j0` (`out.len()` ≤ NR columns). `simd` allows the AVX2
    /// form, which must give the same bits as [`Finish::finish`].
    #[inline(always)]
    fn finish_row(&self, simd: bool, v: &[i32; NR], j0: usize, out: &mut [T]) {
        let _ = simd;
        for (c, o) in out.iter_mut().enumerate() {
            *o = self.finish(v[c], j0 + c);
        }
    }

    /// Up to NR values (`out.len()`) that all belong to column `j` (a run of one depthwise
    /// channel's outputs). `simd` allows the AVX2 form, which must give the same bits as
    /// [`Finish::finish`].
    #[inline(always)]
    fn finish_col(&self, simd: bool, v: &[i32; NR], j: usize, out: &mut [T]) {
        let _ = simd;
        for (c, o) in out.iter_mut().enumerate() {
            *o = self.finish(v[c], j);
        }
    }

    /// Columns `j0 .. j0 + out.len()` (at most 16) of one row from a vector of accumulators
    /// (zero-point terms folded in): the AVX-512 form of [`Finish::finish_row`], same bits.
    ///
    /// # Safety
    /// AVX-512 F/BW/VL must be enabled in the caller: it inlines into the VNNI row loop.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn finish16(&self, v: std::arch::x86_64::__m512i, j0: usize, out: &mut [T]) {
        let mut a = [0i32; 16];
        // SAFETY: forwarded from the caller.
        unsafe { super::vnni::store_i32(v, &mut a) };
        for (c, o) in out.iter_mut().enumerate() {
            *o = self.finish(a[c], j0 + c);
        }
    }
}

/// The parameters of columns `j0 .. j0 + cols` (at most 16; all inside N) as a vector: a per
/// tensor value broadcast, per column values loaded (0 past `cols`).
///
/// # Safety
/// AVX-512 F must be enabled in the caller.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn scale16(s: &Scale<'_>, j0: usize, cols: usize) -> std::arch::x86_64::__m512 {
    // SAFETY: AVX-512 F is enabled by the caller; the per-column slice is bounds-checked.
    unsafe {
        match *s {
            Scale::PerTensor(v) => std::arch::x86_64::_mm512_set1_ps(v),
            Scale::PerChannel(v) => super::vnni::load_f32(&v[j0..j0 + cols]),
        }
    }
}

/// Keeps the i32 accumulator.
pub(super) struct Raw;

impl Finish<i32> for Raw {
    #[inline(always)]
    fn finish(&self, acc: i32, _j: usize) -> i32 {
        acc
    }

    #[inline(always)]
    fn finish_row(&self, _simd: bool, v: &[i32; NR], _j0: usize, out: &mut [i32]) {
        out.copy_from_slice(&v[..out.len()]);
    }

    #[inline(always)]
    fn finish_col(&self, _simd: bool, v: &[i32; NR], _j: usize, out: &mut [i32]) {
        out.copy_from_slice(&v[..out.len()]);
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn finish16(&self, v: std::arch::x86_64::__m512i, _j0: usize, out: &mut [i32]) {
        // SAFETY: forwarded from the caller.
        unsafe { super::vnni::store_i32(v, out) }
    }
}

impl Finish<f32> for Dequantize<'_> {
    #[inline(always)]
    fn finish(&self, acc: i32, j: usize) -> f32 {
        let y = acc as f32 * self.scale.at(j) + self.bias.map_or(0.0, |b| b[j]);
        match self.relu {
            true if y > 0.0 => y,
            true => 0.0,
            false => y,
        }
    }

    #[inline(always)]
    fn finish_row(&self, simd: bool, v: &[i32; NR], j0: usize, out: &mut [f32]) {
        let params = || {
            (
                self.scale.row(j0),
                self.bias.map_or([0.0; NR], |b| row(b, j0)),
            )
        };
        self.store(simd, v, params, out, |c| j0 + c);
    }

    #[inline(always)]
    fn finish_col(&self, simd: bool, v: &[i32; NR], j: usize, out: &mut [f32]) {
        let params = || {
            (
                [self.scale.at(j); NR],
                [self.bias.map_or(0.0, |b| b[j]); NR],
            )
        };
        self.store(simd, v, params, out, |_| j);
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn finish16(&self, v: std::arch::x86_64::__m512i, j0: usize, out: &mut [f32]) {
        let cols = out.len();
        // SAFETY: AVX-512 F is enabled by the caller; the bias slice is bounds-checked.
        unsafe {
            let bias = match self.bias {
                Some(b) => super::vnni::load_f32(&b[j0..j0 + cols]),
                None => std::arch::x86_64::_mm512_setzero_ps(),
            };
            let scale = scale16(&self.scale, j0, cols);
            super::vnni::dequantize16(v, scale, bias, self.relu, out);
        }
    }
}

impl Dequantize<'_> {
    /// NR values through the AVX2 form with the per-lane `(scale, bias)` of `params` when `simd`
    /// allows it and `out` is whole, else value by value with lane `c` in column `col(c)`.
    #[inline(always)]
    fn store(
        &self,
        simd: bool,
        v: &[i32; NR],
        params: impl Fn() -> ([f32; NR], [f32; NR]),
        out: &mut [f32],
        col: impl Fn(usize) -> usize,
    ) {
        #[cfg(target_arch = "x86_64")]
        if simd && out.len() == NR {
            let (scale, bias) = params();
            // SAFETY: `simd` is set only for the AVX2 kernel, chosen after AVX2 was detected.
            let y = unsafe { super::avx2::dequantize_row(v, &scale, &bias, self.relu) };
            // A fixed-size store: `copy_from_slice` on the unsized row would call `memmove`.
            if let Ok(o) = <&mut [f32; NR]>::try_from(out) {
                *o = y;
            }
            return;
        }
        let _ = (simd, &params);
        for (c, o) in out.iter_mut().enumerate() {
            *o = self.finish(v[c], col(c));
        }
    }
}

/// A [`Requantize`] with its clamp bounds for one output type.
pub(super) struct Requant<'a, T> {
    r: Requantize<'a>,
    /// Lowest output minus the zero point, as f32 (exact).
    lo: f32,
    /// Highest output minus the zero point, as f32 (exact).
    hi: f32,
    _t: std::marker::PhantomData<T>,
}

impl<'a> Requantize<'a> {
    fn bounded<T>(self, lo: i32, hi: i32) -> Requant<'a, T> {
        let lo = if self.relu {
            self.zero_point.max(lo)
        } else {
            lo
        };
        Requant {
            lo: (lo - self.zero_point) as f32,
            hi: (hi - self.zero_point) as f32,
            r: self,
            _t: std::marker::PhantomData,
        }
    }
}

impl<T> Requant<'_, T> {
    /// The ONNX QuantizeLinear step on one value, clamped to the output range.
    #[inline(always)]
    fn quantize(&self, acc: i32, j: usize) -> i32 {
        let v = acc.wrapping_add(self.r.bias.map_or(0, |b| b[j]));
        let x = (v as f32 * self.r.multiplier.at(j)).round_ties_even();
        // `max` returns `lo` for NaN; the clamped value is a small integer, exact in i32.
        x.max(self.lo).min(self.hi) as i32 + self.r.zero_point
    }

    /// A whole tile row as bytes (the s8 bits when `SIGNED`) through the AVX2 form, when
    /// `simd` allows it and the row is full; `None` otherwise.
    #[inline(always)]
    fn row_bytes<const SIGNED: bool>(
        &self,
        simd: bool,
        v: &[i32; NR],
        j0: usize,
        cols: usize,
    ) -> Option<[u8; NR]> {
        let params = || {
            let bias = self.r.bias.map_or([0; NR], |b| row(b, j0));
            (bias, self.r.multiplier.row(j0))
        };
        self.bytes_with::<SIGNED>(simd && cols == NR, v, params)
    }

    /// [`Self::row_bytes`] for NR values of the one column `j`.
    #[inline(always)]
    fn col_bytes<const SIGNED: bool>(
        &self,
        simd: bool,
        v: &[i32; NR],
        j: usize,
        cols: usize,
    ) -> Option<[u8; NR]> {
        let params = || {
            let bias = self.r.bias.map_or(0, |b| b[j]);
            ([bias; NR], [self.r.multiplier.at(j); NR])
        };
        self.bytes_with::<SIGNED>(simd && cols == NR, v, params)
    }

    /// NR values with the per-lane `(bias, multiplier)` of `params` through the AVX2 form when
    /// `simd`; `None` otherwise.
    #[inline(always)]
    fn bytes_with<const SIGNED: bool>(
        &self,
        simd: bool,
        v: &[i32; NR],
        params: impl Fn() -> ([i32; NR], [f32; NR]),
    ) -> Option<[u8; NR]> {
        #[cfg(target_arch = "x86_64")]
        if simd {
            let (bias, m) = params();
            let zp = self.r.zero_point;
            // SAFETY: `simd` is set only for the AVX2 kernels, chosen after AVX2 was detected.
            return Some(unsafe {
                super::avx2::requantize_row::<SIGNED>(v, &bias, &m, self.lo, self.hi, zp)
            });
        }
        let _ = (simd, v, &params);
        None
    }

    /// [`Finish::finish16`] into bytes (the s8 bits for `i8`).
    ///
    /// # Safety
    /// AVX-512 F/BW/VL must be enabled in the caller.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn bytes16(&self, v: std::arch::x86_64::__m512i, j0: usize, out: &mut [u8]) {
        let cols = out.len();
        // SAFETY: AVX-512 F/BW/VL are enabled by the caller; the bias slice is bounds-checked.
        unsafe {
            let bias = match self.r.bias {
                Some(b) => super::vnni::load_i32(&b[j0..j0 + cols]),
                None => std::arch::x86_64::_mm512_setzero_si512(),
            };
            let m = scale16(&self.r.multiplier, j0, cols);
            let zp = self.r.zero_point;
            super::vnni::requantize16(v, bias, m, self.lo, self.hi, zp, out);
        }
    }
}

impl Finish<u8> for Requant<'_, u8> {
    #[inline(always)]
    fn finish(&self, acc: i32, j: usize) -> u8 {
        self.quantize(acc, j) as u8
    }

    #[inline(always)]
    fn finish_row(&self, simd: bool, v: &[i32; NR], j0: usize, out: &mut [u8]) {
        let b = self.row_bytes::<false>(simd, v, j0, out.len());
        self.put(b, v, out, |c| j0 + c);
    }

    #[inline(always)]
    fn finish_col(&self, simd: bool, v: &[i32; NR], j: usize, out: &mut [u8]) {
        let b = self.col_bytes::<false>(simd, v, j, out.len());
        self.put(b, v, out, |_| j);
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn finish16(&self, v: std::arch::x86_64::__m512i, j0: usize, out: &mut [u8]) {
        // SAFETY: forwarded from the caller.
        unsafe { self.bytes16(v, j0, out) }
    }
}

impl Finish<i8> for Requant<'_, i8> {
    #[inline(always)]
    fn finish(&self, acc: i32, j: usize) -> i8 {
        self.quantize(acc, j) as i8
    }

    #[inline(always)]
    fn finish_row(&self, simd: bool, v: &[i32; NR], j0: usize, out: &mut [i8]) {
        let b = self.row_bytes::<true>(simd, v, j0, out.len());
        self.put(b, v, out, |c| j0 + c);
    }

    #[inline(always)]
    fn finish_col(&self, simd: bool, v: &[i32; NR], j: usize, out: &mut [i8]) {
        let b = self.col_bytes::<true>(simd, v, j, out.len());
        self.put(b, v, out, |_| j);
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn finish16(&self, v: std::arch::x86_64::__m512i, j0: usize, out: &mut [i8]) {
        // SAFETY: forwarded from the caller.
        unsafe { self.bytes16(v, j0, bytemuck::cast_slice_mut(out)) }
    }
}

/// An output byte type of [`Requant`]: u8, or i8 holding the s8 bits.
pub(super) trait Byte: Copy {
    /// The value whose bits are `b`.
    fn from_bits(b: u8) -> Self;
}

impl Byte for u8 {
    #[inline(always)]
    fn from_bits(b: u8) -> u8 {
        b
    }
}

impl Byte for i8 {
    #[inline(always)]
    fn from_bits(b: u8) -> i8 {
        b as i8
    }
}

impl<T: Byte> Requant<'_, T>
where
    Self: Finish<T>,
{
    /// Stores the SIMD bytes `b` when there are some (`out` is then whole), else finishes `v`
    /// value by value with lane `c` in column `col(c)`.
    #[inline(always)]
    fn put(&self, b: Option<[u8; NR]>, v: &[i32; NR], out: &mut [T], col: impl Fn(usize) -> usize) {
        match b {
            // A fixed-size store: `copy_from_slice` on the unsized row would call `memmove`.
            Some(b) => {
                if let Ok(o) = <&mut [T; NR]>::try_from(out) {
                    *o = b.map(T::from_bits);
                }
            }
            None => {
                for (c, o) in out.iter_mut().enumerate() {
                    *o = self.finish(v[c], col(c));
                }
            }
        }
    }
}

impl Output<'_> {
    /// Stores `len` finished accumulators computed outside the int8 GEMM (the binary kernels'
    /// exact dot products) through this epilogue, value by value with the arithmetic of the
    /// GEMM's own store: `acc(i)` gives output element `i`'s accumulator and its column (output
    /// channel, of `n`), so a pixel-major result can be stored channel-major directly.
    pub fn store_with(
        self,
        len: usize,
        n: usize,
        acc: impl Fn(usize) -> (i32, usize),
    ) -> Result<(), I8Error> {
        let got = self.check_params(n)?;
        if got < len {
            return Err(I8Error::Length {
                what: "output",
                expected: len,
                got,
            });
        }
        fn each<T>(
            out: &mut [T],
            acc: impl Fn(usize) -> (i32, usize),
            f: impl Fn(i32, usize) -> T,
        ) {
            for (i, o) in out.iter_mut().enumerate() {
                let (a, j) = acc(i);
                *o = f(a, j);
            }
        }
        match self {
            Output::I32(c) => each(&mut c[..len], acc, |a, _| a),
            Output::F32(c, d) => each(&mut c[..len], acc, |a, j| d.finish(a, j)),
            Output::U8(c, r) => {
                let q = r.for_u8();
                each(&mut c[..len], acc, |a, j| q.finish(a, j))
            }
            Output::S8(c, r) => {
                let q = r.for_s8();
                each(&mut c[..len], acc, |a, j| q.finish(a, j))
            }
        }
        Ok(())
    }
}
