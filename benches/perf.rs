//! Criterion: PerformanceTracker::record (placeholder, filled in below).
fn main() {}
