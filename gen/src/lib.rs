//! Rust types and tonic stubs generated from `proto/rondo/v1/*.proto`, and the conversion of
//! the protobuf `Graph` to and from the engine's model.
//!
//! `rondo.v1.rs` and `rondo_descriptor.bin` are generated and checked in, so a build needs no
//! `protoc`. `make gen` regenerates them; the `codegen` test fails when they are stale.
//! `convert.rs` is hand-written: it lives here because the server and the worker SDK both need
//! it, and the engine itself must not see generated types.

pub mod convert;

/// Version 1 of the Rondo API (generated).
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod v1 {
    include!("rondo.v1.rs");

    /// Encoded `FileDescriptorSet` of the API, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!("rondo_descriptor.bin");
}
