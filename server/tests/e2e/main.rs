//! End-to-end tests: a real `rondo serve` in-process on port 0, real PostgreSQL (a fresh
//! database per test), and real workers built on the SDK. One test binary for the crate, so
//! it links once.

mod support;

mod cli;
mod dispatch;
mod failures;
mod graphs;
mod notifications;
mod ops;
mod planner;
mod races;
mod schedules;
mod warm;
mod workflows;
