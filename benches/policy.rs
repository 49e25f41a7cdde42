//! What enforcing agreements costs (being written).

#![allow(missing_docs, reason = "a benchmark binary")]

fn main() {}
