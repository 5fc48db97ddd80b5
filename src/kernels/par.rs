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
