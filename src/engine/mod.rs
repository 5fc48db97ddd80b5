//! The native executor: plan a graph once, then run it many times on quench's kernels.
