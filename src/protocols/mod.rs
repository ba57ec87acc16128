//! Caller protocols. Each turns its wire frames into typed call messages and back; no wire
//! type crosses into `call` or `bots`.

pub mod live_call_grpc;
pub mod live_call_ws;
pub mod ringover;
pub mod smartivr;
pub mod upgrade;
