//! Code generated from `proto/`: the only place prost types are defined.

#![allow(clippy::all, missing_docs)]

/// Both protos' descriptors, encoded, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    tonic::include_file_descriptor_set!("switchboard_descriptor");

/// SmartIVR phone-gateway protocol.
pub mod smartivr {
    tonic::include_proto!("smartivrphonegateway");
}

/// Live-call AI-service protocol.
pub mod live_call {
    tonic::include_proto!("live_call");
}
