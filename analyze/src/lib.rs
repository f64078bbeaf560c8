//! myrr-analyze: fingerprints, latency histograms, result comparison, verdict and reports.

pub mod fingerprint;
