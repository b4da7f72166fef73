//! # demi-storage
//!
//! demi's storage engine: a block-device trait with io_uring (O_DIRECT) and memory
//! backends, and a log-structured engine whose files are queues (`open`/`creat` give
//! a queue descriptor; `push` appends a durable record; `pop` reads records in order).
//!
//! Status: not built yet; it arrives with the storage issue. This crate exists so the
//! workspace has its final shape.
