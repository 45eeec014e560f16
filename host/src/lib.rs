//! sre-operator: a Kubernetes operator that diagnoses failing Pods like an on-call SRE.
//!
//! Data flows one way: Pod → [`failure`] detection → [`policy`] match → [`triage`] (one report per
//! workload and failure class) → agent → patch review → approval → apply. [`cluster`] is the
//! read-only view of a cluster (live or a dump) every step reads through; [`crd`] holds the two
//! custom resources.

pub mod agent;
pub mod alerts;
pub mod cli;
pub mod cluster;
pub mod controller;
pub mod crd;
pub mod eval;
pub mod failure;
pub mod heap;
pub mod incident;
pub mod kubectl_sre;
pub mod mcp;
pub mod names;
pub mod notify;
pub mod patch;
pub mod pipeline;
pub mod plugin;
pub mod policy;
pub mod redact;
pub mod telemetry;
pub mod terminal;
pub mod triage;
