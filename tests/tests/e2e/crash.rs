//! Crash safety of the real `tessera` binary: kill -9 during a mixed workload, restart, check.
