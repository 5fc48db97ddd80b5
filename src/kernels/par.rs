//! The one place kernels split work over threads: over rayon's current pool when it has more
//! than one thread and the caller is not inside [`super::serial`], serially (no rayon overhead)
//! otherwise.

use rayon::prelude::*;

/// Calls `f(index, chunk)` for every `size`-element chunk of `data` (the last may be shorter).
pub(crate) fn for_each_chunk<T: Send>(
    data: &mut [T],
    size: usize,
    f: impl Fn(usize, &mut [T]) + Sync + Send,
) {
    if size == 0 {
        return;
    }
    if super::threads() > 1 && data.len() > size {
        data.par_chunks_mut(size)
            .enumerate()
            .for_each(|(i, c)| f(i, c));
    } else {
        data.chunks_mut(size).enumerate().for_each(|(i, c)| f(i, c));
    }
}

/// Calls `f(index, a_chunk, b_chunk)` for the `index`-th `size_a`-element chunk of `a` together
/// with the `index`-th `size_b`-element chunk of `b` (for work that writes two outputs per item,
/// such as a row's bits and its scale), as many times as both have chunks.
pub(crate) fn for_each_chunk_pair<T: Send, U: Send>(
    a: &mut [T],
    size_a: usize,
    b: &mut [U],
    size_b: usize,
    f: impl Fn(usize, &mut [T], &mut [U]) + Sync + Send,
) {
    if size_a == 0 || size_b == 0 {
        return;
    }
    if super::threads() > 1 && a.len() > size_a {
        a.par_chunks_mut(size_a)
            .zip(b.par_chunks_mut(size_b))
            .enumerate()
            .for_each(|(i, (x, y))| f(i, x, y));
    } else {
        a.chunks_mut(size_a)
            .zip(b.chunks_mut(size_b))
            .enumerate()
            .for_each(|(i, (x, y))| f(i, x, y));
    }
}
