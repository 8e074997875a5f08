#![allow(unreachable_pub, dead_code)]
//! End-to-end tests over real QUIC on loopback: one binary, one module per area.

mod common;
mod conformance;
mod crash;
mod flows;
mod hardening;
mod hostile;
mod http_api;
mod identity;
mod nodes;
mod probes;
mod recovery;
mod resumption;
mod rollover;
mod security;
mod service;
