//! Datasets, model manifests and the accuracy and agreement metrics computed on them.
