//! Unit tests of examples/kv's RESP parser and writer and of its keyspace (the
//! modules are compiled here from the example's sources).

#[allow(dead_code)]
#[path = "../examples/kv/resp.rs"]
mod resp;

#[allow(dead_code)]
#[path = "../examples/kv/store.rs"]
mod store;
