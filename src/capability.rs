//! Agent and model profiles, scoring, cost matrix.
