//! The keyspace and the commands.
//!
//! Keys map to string values with an optional expiry, an absolute Unix time in
//! milliseconds. An expired key is deleted when a command touches it (lazy expiry)
//! or when [`Store::sweep`] finds it through the expiry index, a `BTreeSet` of
//! `(deadline, key)` pairs; an index entry whose key has since changed its deadline
//! is dropped when its time comes (the index is rebuilt if stale entries pile up).
//!
//! [`Store::exec`] runs one client command, writes its reply, and, if the command
//! changed the keyspace, appends its *effect* to the log buffer as a command with
//! absolute deadlines: `SET k v PXAT <ms>` for SET/INCR (and APPEND to a missing
//! key), `APPEND` to a live key, `PEXPIREAT k <ms>` for EXPIRE, `DEL` for the keys
//! actually deleted. Replaying the effects
//! ([`Store::apply_logged`]) with expiry ignored, then dropping what has expired by
//! the end, rebuilds the keyspace exactly, whenever the replay runs.

use crate::resp::{encode_command, parse_int, Command, Reply};
use bytes::{Bytes, BytesMut};
use std::collections::{BTreeSet, HashMap};

/// A value and its expiry (absolute Unix milliseconds).
struct Entry {
    value: Bytes,
    expires: Option<u64>,
}

/// What the connection does after a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Keep reading commands.
    Continue,
    /// Send the replies written so far, then close (QUIT).
    Close,
}

/// Settings the probe commands report.
#[derive(Clone, Debug)]
pub struct Info {
    /// `yes` or `no` (CONFIG GET appendonly).
    pub appendonly: bool,
    /// `always`, `everysec` or `no` (CONFIG GET appendfsync).
    pub appendfsync: &'static str,
    /// The libOS name (INFO).
    pub libos: &'static str,
    /// The listening port (INFO).
    pub port: u16,
}

/// The keyspace.
pub struct Store {
    map: HashMap<Bytes, Entry>,
    expiries: BTreeSet<(u64, Bytes)>,
    info: Info,
    commands: u64,
}

const ERR_SYNTAX: &str = "ERR syntax error";
const ERR_NOT_INT: &str = "ERR value is not an integer or out of range";
/// Deadlines later than this (about year 292 million) cannot be represented.
const MAX_DEADLINE: i64 = i64::MAX / 2;

fn arity(reply: &mut Reply, name: &str) -> Flow {
    reply.error(&format!("ERR wrong number of arguments for '{name}' command"));
    Flow::Continue
}

/// The command name in lower case, if it is short enough to be one of ours.
fn lower_name(arg: &[u8], buf: &mut [u8; 16]) -> Option<usize> {
    if arg.len() > buf.len() {
        return None;
    }
    for (d, s) in buf.iter_mut().zip(arg) {
        *d = s.to_ascii_lowercase();
    }
    Some(arg.len())
}

impl Store {
    /// An empty keyspace.
    pub fn new(info: Info) -> Store {
        Store { map: HashMap::new(), expiries: BTreeSet::new(), info, commands: 0 }
    }

    /// Sets the port INFO and CONFIG GET report (known once the listener is bound).
    pub fn set_port(&mut self, port: u16) {
        self.info.port = port;
    }

    /// Keys, expired ones not yet swept included (as Redis's DBSIZE counts).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    fn live(&mut self, key: &[u8], now: u64) -> Option<&Entry> {
        // Every key with a deadline has an entry in the index: with the index empty
        // nothing can have expired, and one lookup is enough.
        if self.expiries.is_empty() {
            return self.map.get(key);
        }
        let expired = matches!(self.map.get(key), Some(Entry { expires: Some(t), .. }) if *t <= now);
        if expired {
            self.map.remove(key);
            return None;
        }
        self.map.get(key)
    }

    fn put(&mut self, key: &[u8], value: Bytes, expires: Option<u64>) {
        if let Some(e) = self.map.get_mut(key) {
            e.value = value;
            e.expires = expires;
            if let Some(t) = expires {
                let key = self.map.get_key_value(key).map(|(k, _)| k.clone()).expect("present");
                self.index(t, key);
            }
            return;
        }
        let key = Bytes::copy_from_slice(key);
        if let Some(t) = expires {
            self.index(t, key.clone());
        }
        self.map.insert(key, Entry { value, expires });
    }

    fn index(&mut self, deadline: u64, key: Bytes) {
        self.expiries.insert((deadline, key));
        if self.expiries.len() > 2 * self.map.len() + 1024 {
            // Mostly stale entries: rebuild from the keys' own deadlines.
            self.expiries = self.map.iter().filter_map(|(k, e)| e.expires.map(|t| (t, k.clone()))).collect();
        }
    }

    /// Deletes up to `budget` keys whose deadline is at or before `now`; returns how
    /// many it deleted.
    pub fn sweep(&mut self, now: u64, budget: usize) -> usize {
        let mut deleted = 0;
        for _ in 0..budget {
            match self.expiries.first() {
                Some((t, _)) if *t <= now => {}
                _ => break,
            }
            let (t, key) = self.expiries.pop_first().expect("checked non-empty");
            if matches!(self.map.get(&key), Some(e) if e.expires == Some(t)) {
                self.map.remove(&key);
                deleted += 1;
            }
        }
        deleted
    }

    /// Runs one command at time `now` (Unix ms), writing its reply, and its effect
    /// to `log` if there is a log.
    pub fn exec(&mut self, args: &Command, now: u64, reply: &mut Reply, log: Option<&mut BytesMut>) -> Flow {
        self.commands += 1;
        let mut buf = [0u8; 16];
        let name = match lower_name(&args[0], &mut buf) {
            Some(n) => std::str::from_utf8(&buf[..n]).unwrap_or(""),
            None => "",
        };
        let n = args.len();
        let mut log = log;
        let mut logged = |parts: &[&[u8]]| {
            if let Some(out) = log.as_deref_mut() {
                encode_command(out, parts);
            }
        };
        match name {
            "get" => {
                if n != 2 {
                    return arity(reply, name);
                }
                match self.live(&args[1], now) {
                    Some(e) => reply.bulk_bytes(&e.value),
                    None => reply.null(),
                }
            }
            "set" => {
                if n < 3 {
                    return arity(reply, name);
                }
                let opts = match SetOptions::parse(&args[3..], now) {
                    Ok(o) => o,
                    Err(e) => {
                        reply.error(e);
                        return Flow::Continue;
                    }
                };
                let want_value = opts.get;
                let old = self.live(&args[1], now).map(|e| (want_value.then(|| e.value.clone()), e.expires));
                let go = match opts.cond {
                    Cond::Always => true,
                    Cond::Nx => old.is_none(),
                    Cond::Xx => old.is_some(),
                };
                if go {
                    let expires = match opts.expiry {
                        Expiry::Keep => old.as_ref().and_then(|o| o.1),
                        Expiry::None => None,
                        Expiry::At(t) => Some(t),
                    };
                    let value = Bytes::copy_from_slice(&args[2]);
                    self.put(&args[1], value, expires);
                    log_set(&mut logged, &args[1], &args[2], expires);
                }
                if opts.get {
                    match old.and_then(|o| o.0) {
                        Some(v) => reply.bulk_bytes(&v),
                        None => reply.null(),
                    }
                } else if go {
                    reply.simple("OK");
                } else {
                    reply.null();
                }
            }
            "setnx" | "setex" | "psetex" => {
                let want = if name == "setnx" { 3 } else { 4 };
                if n != want {
                    return arity(reply, name);
                }
                if name == "setnx" {
                    let exists = self.live(&args[1], now).is_some();
                    if !exists {
                        self.put(&args[1], Bytes::copy_from_slice(&args[2]), None);
                        log_set(&mut logged, &args[1], &args[2], None);
                    }
                    reply.int(!exists as i64);
                } else {
                    let Some(t) = parse_int(&args[2]) else {
                        reply.error(ERR_NOT_INT);
                        return Flow::Continue;
                    };
                    let ms = if name == "setex" { t.checked_mul(1000) } else { Some(t) };
                    let Some(deadline) = ms.filter(|&ms| ms > 0).and_then(|ms| deadline(now, ms)) else {
                        reply.error(&format!("ERR invalid expire time in '{name}' command"));
                        return Flow::Continue;
                    };
                    self.put(&args[1], Bytes::copy_from_slice(&args[3]), Some(deadline));
                    log_set(&mut logged, &args[1], &args[3], Some(deadline));
                    reply.simple("OK");
                }
            }
            "getdel" => {
                if n != 2 {
                    return arity(reply, name);
                }
                match self.live(&args[1], now).map(|e| e.value.clone()) {
                    Some(v) => {
                        self.map.remove(&args[1][..]);
                        logged(&[b"DEL", &args[1]]);
                        reply.bulk_bytes(&v);
                    }
                    None => reply.null(),
                }
            }
            "append" => {
                if n != 3 {
                    return arity(reply, name);
                }
                let old = self.live(&args[1], now).map(|e| (e.value.clone(), e.expires));
                if old.as_ref().map_or(0, |o| o.0.len()) + args[2].len() > MAX_STRING {
                    reply.error("ERR string exceeds maximum allowed size (proto-max-bulk-len)");
                    return Flow::Continue;
                }
                let (value, expires) = match &old {
                    Some((v, expires)) => (concat(v, &args[2]), *expires),
                    None => (Bytes::copy_from_slice(&args[2]), None),
                };
                reply.int(value.len() as i64);
                if old.is_some() {
                    // The appended bytes only, not the whole value: a log of
                    // repeated appends stays linear in what was appended.
                    logged(&[b"APPEND", &args[1], &args[2]]);
                } else {
                    log_set(&mut logged, &args[1], &value, expires);
                }
                self.put(&args[1], value, expires);
            }
            "strlen" => {
                if n != 2 {
                    return arity(reply, name);
                }
                let len = self.live(&args[1], now).map_or(0, |e| e.value.len());
                reply.int(len as i64);
            }
            "del" | "unlink" => {
                if n < 2 {
                    return arity(reply, name);
                }
                let mut deleted: Vec<&[u8]> = vec![b"DEL"];
                for k in &args[1..] {
                    if self.live(k, now).is_some() {
                        self.map.remove(&k[..]);
                        deleted.push(k);
                    }
                }
                if deleted.len() > 1 {
                    logged(&deleted);
                }
                reply.int(deleted.len() as i64 - 1);
            }
            "exists" => {
                if n < 2 {
                    return arity(reply, name);
                }
                let count = args[1..].iter().filter(|k| self.live(k, now).is_some()).count();
                reply.int(count as i64);
            }
            "incr" | "decr" | "incrby" | "decrby" => {
                let by = match name {
                    "incr" | "decr" if n == 2 => 1,
                    "incrby" | "decrby" if n == 3 => match parse_int(&args[2]) {
                        Some(v) => v,
                        None => {
                            reply.error(ERR_NOT_INT);
                            return Flow::Continue;
                        }
                    },
                    _ => return arity(reply, name),
                };
                let by = if name.starts_with("decr") {
                    match by.checked_neg() {
                        Some(v) => v,
                        None => {
                            reply.error("ERR decrement would overflow");
                            return Flow::Continue;
                        }
                    }
                } else {
                    by
                };
                let (cur, expires) = match self.live(&args[1], now) {
                    Some(e) => match parse_int(&e.value) {
                        Some(v) => (v, e.expires),
                        None => {
                            reply.error(ERR_NOT_INT);
                            return Flow::Continue;
                        }
                    },
                    None => (0, None),
                };
                let Some(new) = cur.checked_add(by) else {
                    reply.error("ERR increment or decrement would overflow");
                    return Flow::Continue;
                };
                let value = Bytes::from(new.to_string());
                log_set(&mut logged, &args[1], &value, expires);
                self.put(&args[1], value, expires);
                reply.int(new);
            }
            "mget" => {
                if n < 2 {
                    return arity(reply, name);
                }
                reply.array(n - 1);
                for k in &args[1..] {
                    match self.live(k, now) {
                        Some(e) => reply.bulk_bytes(&e.value),
                        None => reply.null(),
                    }
                }
            }
            "mset" => {
                if n < 3 || n.is_multiple_of(2) {
                    return arity(reply, name);
                }
                for pair in args[1..].chunks(2) {
                    self.put(&pair[0], Bytes::copy_from_slice(&pair[1]), None);
                }
                let parts: Vec<&[u8]> = args.iter().map(|a| &a[..]).collect();
                logged(&parts);
                reply.simple("OK");
            }
            "expire" | "pexpire" | "expireat" | "pexpireat" => {
                if n < 3 {
                    return arity(reply, name);
                }
                let Some(t) = parse_int(&args[2]) else {
                    reply.error(ERR_NOT_INT);
                    return Flow::Continue;
                };
                let ms = if name.starts_with('p') { Some(t) } else { t.checked_mul(1000) };
                let at = match ms {
                    Some(ms) if name.ends_with("at") => Some(ms),
                    Some(ms) => (now as i64).checked_add(ms),
                    None => None,
                };
                let Some(at) = at.filter(|&at| at <= MAX_DEADLINE) else {
                    reply.error(&format!("ERR invalid expire time in '{name}' command"));
                    return Flow::Continue;
                };
                let mut cond = None;
                for opt in &args[3..] {
                    let o = opt.to_ascii_lowercase();
                    match &o[..] {
                        b"nx" | b"xx" | b"gt" | b"lt" if cond.is_none() => cond = Some(o),
                        b"nx" | b"xx" | b"gt" | b"lt" => {
                            reply.error("ERR NX and XX, GT or LT options at the same time are not compatible");
                            return Flow::Continue;
                        }
                        _ => {
                            reply.error(&format!("ERR Unsupported option {}", String::from_utf8_lossy(opt)));
                            return Flow::Continue;
                        }
                    }
                }
                let Some(cur) = self.live(&args[1], now).map(|e| e.expires) else {
                    reply.int(0);
                    return Flow::Continue;
                };
                // A key without a TTL counts as an infinite one for GT and LT.
                let ok = match cond.as_deref() {
                    None => true,
                    Some(b"nx") => cur.is_none(),
                    Some(b"xx") => cur.is_some(),
                    Some(b"gt") => cur.is_some_and(|c| at > c as i64),
                    _ => cur.is_none_or(|c| at < c as i64),
                };
                if !ok {
                    reply.int(0);
                    return Flow::Continue;
                }
                if at <= now as i64 {
                    self.map.remove(&args[1][..]);
                    logged(&[b"DEL", &args[1]]);
                } else {
                    let at = at as u64;
                    if let Some(e) = self.map.get_mut(&args[1][..]) {
                        e.expires = Some(at);
                    }
                    let key = self.map.get_key_value(&args[1][..]).map(|(k, _)| k.clone()).expect("live above");
                    self.index(at, key);
                    logged(&[b"PEXPIREAT", &args[1], at.to_string().as_bytes()]);
                }
                reply.int(1);
            }
            "persist" => {
                if n != 2 {
                    return arity(reply, name);
                }
                let had = matches!(self.live(&args[1], now), Some(Entry { expires: Some(_), .. }));
                if had {
                    if let Some(e) = self.map.get_mut(&args[1][..]) {
                        e.expires = None;
                    }
                    logged(&[b"PERSIST", &args[1]]);
                }
                reply.int(had as i64);
            }
            "ttl" | "pttl" => {
                if n != 2 {
                    return arity(reply, name);
                }
                match self.live(&args[1], now) {
                    None => reply.int(-2),
                    Some(Entry { expires: None, .. }) => reply.int(-1),
                    Some(Entry { expires: Some(t), .. }) => {
                        let left = t.saturating_sub(now);
                        reply.int(if name == "ttl" { (left + 500) / 1000 } else { left } as i64);
                    }
                }
            }
            "dbsize" => reply.int(self.map.len() as i64),
            "flushall" | "flushdb" => {
                if n > 2 || (n == 2 && !matches!(&args[1].to_ascii_lowercase()[..], b"sync" | b"async")) {
                    reply.error(ERR_SYNTAX);
                    return Flow::Continue;
                }
                self.map.clear();
                self.expiries.clear();
                logged(&[b"FLUSHALL"]);
                reply.simple("OK");
            }
            "ping" => match n {
                1 => reply.simple("PONG"),
                2 => reply.bulk(&args[1]),
                _ => return arity(reply, name),
            },
            "echo" => {
                if n != 2 {
                    return arity(reply, name);
                }
                reply.bulk(&args[1]);
            }
            "select" => {
                if n != 2 {
                    return arity(reply, name);
                }
                match parse_int(&args[1]) {
                    Some(0) => reply.simple("OK"),
                    Some(_) => reply.error("ERR DB index is out of range"),
                    None => reply.error(ERR_NOT_INT),
                }
            }
            "quit" => {
                reply.simple("OK");
                return Flow::Close;
            }
            "command" => {
                let sub = args.get(1).map(|s| s.to_ascii_lowercase());
                match sub.as_deref() {
                    // No command table: clients then fall back to their defaults.
                    None | Some(b"docs") | Some(b"info") | Some(b"list") => reply.array(0),
                    Some(b"count") => reply.int(COMMANDS.len() as i64),
                    Some(_) => reply.error("ERR unknown subcommand or wrong number of arguments for 'command' command"),
                }
            }
            "config" => {
                let sub = args.get(1).map(|s| s.to_ascii_lowercase());
                match sub.as_deref() {
                    Some(b"get") if n >= 3 => {
                        let mut pairs: Vec<(&str, String)> = Vec::new();
                        for pat in &args[2..] {
                            for (k, v) in [
                                ("save", String::new()),
                                ("appendonly", if self.info.appendonly { "yes" } else { "no" }.to_string()),
                                ("appendfsync", self.info.appendfsync.to_string()),
                                ("databases", "1".to_string()),
                                ("port", self.info.port.to_string()),
                            ] {
                                if glob(&pat.to_ascii_lowercase(), k.as_bytes()) && !pairs.iter().any(|p| p.0 == k) {
                                    pairs.push((k, v));
                                }
                            }
                        }
                        reply.array(pairs.len() * 2);
                        for (k, v) in pairs {
                            reply.bulk(k.as_bytes());
                            reply.bulk(v.as_bytes());
                        }
                    }
                    Some(b"set") if n >= 4 => reply.error("ERR CONFIG SET is not supported by this server"),
                    Some(b"resetstat") if n == 2 => reply.simple("OK"),
                    _ => reply.error("ERR unknown subcommand or wrong number of arguments for 'config' command"),
                }
            }
            "client" => {
                let sub = args.get(1).map(|s| s.to_ascii_lowercase());
                match sub.as_deref() {
                    Some(b"setname") if n == 3 => reply.simple("OK"),
                    Some(b"setinfo") if n == 4 => reply.simple("OK"),
                    Some(b"getname") if n == 2 => reply.null(),
                    Some(b"id") if n == 2 => reply.int(1),
                    _ => reply.error("ERR unknown subcommand or wrong number of arguments for 'client' command"),
                }
            }
            "info" => {
                let expires = self.map.values().filter(|e| e.expires.is_some()).count();
                let text = format!(
                    "# Server\r\nredis_version:7.0.0\r\nserver_name:demi-kv\r\nlibos:{}\r\ntcp_port:{}\r\n\r\n\
                     # Persistence\r\naof_enabled:{}\r\nappendfsync:{}\r\n\r\n\
                     # Stats\r\ntotal_commands_processed:{}\r\n\r\n\
                     # Replication\r\nrole:master\r\nconnected_slaves:0\r\n\r\n\
                     # Keyspace\r\ndb0:keys={},expires={expires},avg_ttl=0\r\n",
                    self.info.libos,
                    self.info.port,
                    self.info.appendonly as u8,
                    self.info.appendfsync,
                    self.commands,
                    self.map.len(),
                );
                reply.bulk(text.as_bytes());
            }
            _ => {
                let mut msg = format!("ERR unknown command '{}', with args beginning with: ", String::from_utf8_lossy(&args[0]));
                for a in &args[1..] {
                    if msg.len() > 256 {
                        break;
                    }
                    msg.push_str(&format!("'{}' ", String::from_utf8_lossy(&a[..a.len().min(128)])));
                }
                reply.error(&msg);
            }
        }
        Flow::Continue
    }

    /// Applies one logged effect during replay (expiry is not checked here: call
    /// [`drop_expired`](Self::drop_expired) once the whole log is applied).
    pub fn apply_logged(&mut self, args: &Command) -> Result<(), String> {
        let name = args[0].to_ascii_uppercase();
        let bad = || format!("unexpected record {:?}", args.iter().map(|a| String::from_utf8_lossy(a).into_owned()).collect::<Vec<_>>());
        match (&name[..], args.len()) {
            (b"SET", 3) => self.put(&args[1], Bytes::copy_from_slice(&args[2]), None),
            (b"SET", 5) if args[3].eq_ignore_ascii_case(b"PXAT") => {
                let t = parse_int(&args[4]).filter(|&t| t >= 0).ok_or_else(bad)? as u64;
                self.put(&args[1], Bytes::copy_from_slice(&args[2]), Some(t));
            }
            (b"APPEND", 3) => {
                // Logged only for a key that was live: it is in the replayed state.
                let (value, expires) = match self.map.get(&args[1][..]) {
                    Some(e) => (concat(&e.value, &args[2]), e.expires),
                    None => (Bytes::copy_from_slice(&args[2]), None),
                };
                self.put(&args[1], value, expires);
            }
            (b"DEL", n) if n >= 2 => {
                for k in &args[1..] {
                    self.map.remove(&k[..]);
                }
            }
            (b"MSET", n) if n >= 3 && n % 2 == 1 => {
                for pair in args[1..].chunks(2) {
                    self.put(&pair[0], Bytes::copy_from_slice(&pair[1]), None);
                }
            }
            (b"PEXPIREAT", 3) => {
                let t = parse_int(&args[2]).filter(|&t| t >= 0).ok_or_else(bad)? as u64;
                if let Some(k) = self.map.get_key_value(&args[1][..]).map(|(k, _)| k.clone()) {
                    if let Some(entry) = self.map.get_mut(&k) {
                        entry.expires = Some(t);
                    }
                    self.index(t, k);
                }
            }
            (b"PERSIST", 2) => {
                if let Some(e) = self.map.get_mut(&args[1][..]) {
                    e.expires = None;
                }
            }
            (b"FLUSHALL", 1) => {
                self.map.clear();
                self.expiries.clear();
            }
            _ => return Err(bad()),
        }
        Ok(())
    }

    /// Deletes every key whose deadline is at or before `now`.
    pub fn drop_expired(&mut self, now: u64) {
        self.map.retain(|_, e| e.expires.is_none_or(|t| t > now));
        self.expiries = self.map.iter().filter_map(|(k, e)| e.expires.map(|t| (t, k.clone()))).collect();
    }

    /// Whether a command may carry a value into the log (its size is checked against
    /// the log's record limit before it runs).
    pub fn is_write(name: &[u8]) -> bool {
        let mut buf = [0u8; 16];
        match lower_name(name, &mut buf) {
            Some(n) => WRITES.contains(&std::str::from_utf8(&buf[..n]).unwrap_or("")),
            None => false,
        }
    }
}

/// The commands [`Store::exec`] knows (COMMAND COUNT).
const COMMANDS: &[&str] = &[
    "get", "set", "setnx", "setex", "psetex", "getdel", "append", "strlen", "del", "unlink", "exists", "incr", "decr",
    "incrby", "decrby", "mget", "mset", "expire", "pexpire", "expireat", "pexpireat", "persist", "ttl", "pttl",
    "dbsize", "flushall", "flushdb", "ping", "echo", "select", "quit", "command", "config", "client", "info",
];
/// The commands that log the values they are given.
const WRITES: &[&str] = &["set", "setnx", "setex", "psetex", "append", "mset"];

fn log_set(logged: &mut impl FnMut(&[&[u8]]), key: &[u8], value: &[u8], expires: Option<u64>) {
    match expires {
        Some(t) => logged(&[b"SET", key, value, b"PXAT", t.to_string().as_bytes()]),
        None => logged(&[b"SET", key, value]),
    }
}

/// Largest string value (Redis's `proto-max-bulk-len`).
const MAX_STRING: usize = crate::resp::MAX_BULK;

fn concat(a: &[u8], b: &[u8]) -> Bytes {
    let mut v = Vec::with_capacity(a.len() + b.len());
    v.extend_from_slice(a);
    v.extend_from_slice(b);
    Bytes::from(v)
}

/// `now + ms`, if it is a representable deadline.
fn deadline(now: u64, ms: i64) -> Option<u64> {
    (now as i64).checked_add(ms).filter(|&t| t <= MAX_DEADLINE).map(|t| t as u64)
}

enum Cond {
    Always,
    Nx,
    Xx,
}

enum Expiry {
    None,
    Keep,
    At(u64),
}

struct SetOptions {
    cond: Cond,
    expiry: Expiry,
    get: bool,
}

impl SetOptions {
    fn parse(opts: &[Bytes], now: u64) -> Result<SetOptions, &'static str> {
        let mut o = SetOptions { cond: Cond::Always, expiry: Expiry::None, get: false };
        let (mut has_cond, mut has_expiry) = (false, false);
        let mut i = 0;
        while i < opts.len() {
            let opt = opts[i].to_ascii_lowercase();
            match &opt[..] {
                b"nx" | b"xx" if !has_cond => {
                    o.cond = if &opt[..] == b"nx" { Cond::Nx } else { Cond::Xx };
                    has_cond = true;
                }
                b"get" if !o.get => o.get = true,
                b"keepttl" if !has_expiry => {
                    o.expiry = Expiry::Keep;
                    has_expiry = true;
                }
                b"ex" | b"px" | b"exat" | b"pxat" if !has_expiry && i + 1 < opts.len() => {
                    i += 1;
                    let v = parse_int(&opts[i]).ok_or(ERR_NOT_INT)?;
                    if v <= 0 {
                        return Err("ERR invalid expire time in 'set' command");
                    }
                    let ms = if opt[0] == b'e' { v.checked_mul(1000) } else { Some(v) };
                    let at = match ms {
                        Some(ms) if opt.ends_with(b"at") => Some(ms).filter(|&t| t <= MAX_DEADLINE).map(|t| t as u64),
                        Some(ms) => deadline(now, ms),
                        None => None,
                    };
                    o.expiry = Expiry::At(at.ok_or("ERR invalid expire time in 'set' command")?);
                    has_expiry = true;
                }
                _ => return Err(ERR_SYNTAX),
            }
            i += 1;
        }
        Ok(o)
    }
}

/// Glob match with `*` and `?` (enough for CONFIG GET patterns).
fn glob(pat: &[u8], s: &[u8]) -> bool {
    match pat.split_first() {
        None => s.is_empty(),
        Some((b'*', rest)) => (0..=s.len()).any(|i| glob(rest, &s[i..])),
        Some((b'?', rest)) => !s.is_empty() && glob(rest, &s[1..]),
        Some((c, rest)) => s.first() == Some(c) && glob(rest, &s[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resp::Parser;

    fn info() -> Info {
        Info { appendonly: true, appendfsync: "always", libos: "test", port: 0 }
    }

    fn cmd(s: &str) -> Command {
        s.split(' ').map(|a| Bytes::copy_from_slice(a.as_bytes())).collect()
    }

    /// Runs `line` at `now`; returns the reply's bytes.
    fn run(store: &mut Store, log: &mut BytesMut, now: u64, line: &str) -> String {
        let mut r = Reply::new();
        store.exec(&cmd(line), now, &mut r, Some(log));
        let segs = r.take();
        String::from_utf8(segs.iter().flat_map(|s| s.iter().copied()).collect()).unwrap()
    }

    fn replay(log: &BytesMut, now: u64) -> Store {
        let mut s = Store::new(info());
        let mut p = Parser::new();
        p.feed(log);
        while let Some(c) = p.next().unwrap() {
            s.apply_logged(&c).unwrap();
        }
        assert!(p.at_boundary());
        s.drop_expired(now);
        s
    }

    /// The live keys at `now`, sorted.
    fn dump(s: &mut Store, now: u64) -> Vec<(Vec<u8>, Vec<u8>, Option<u64>)> {
        let mut v: Vec<_> = s.map.iter().filter(|(_, e)| e.expires.is_none_or(|t| t > now)).map(|(k, e)| (k.to_vec(), e.value.to_vec(), e.expires)).collect();
        v.sort();
        v
    }

    #[test]
    fn commands_and_replies() {
        let (mut s, mut log) = (Store::new(info()), BytesMut::new());
        let t = 1_000_000;
        assert_eq!(run(&mut s, &mut log, t, "SET k 10"), "+OK\r\n");
        assert_eq!(run(&mut s, &mut log, t, "SET k 11 NX"), "$-1\r\n");
        assert_eq!(run(&mut s, &mut log, t, "SET k 12 XX GET"), "$2\r\n10\r\n");
        assert_eq!(run(&mut s, &mut log, t, "INCRBY k 30"), ":42\r\n");
        assert_eq!(run(&mut s, &mut log, t, "SET k 1 EX 0"), "-ERR invalid expire time in 'set' command\r\n");
        assert_eq!(run(&mut s, &mut log, t, "SET k 1 EX 5 PX 5"), "-ERR syntax error\r\n");
        assert_eq!(run(&mut s, &mut log, t, "SET k 9223372036854775807"), "+OK\r\n");
        assert_eq!(run(&mut s, &mut log, t, "INCR k"), "-ERR increment or decrement would overflow\r\n");
        assert_eq!(run(&mut s, &mut log, t, "SET s abc"), "+OK\r\n");
        assert_eq!(run(&mut s, &mut log, t, "DECR s"), "-ERR value is not an integer or out of range\r\n");
        assert_eq!(run(&mut s, &mut log, t, "EXPIRE s 10"), ":1\r\n");
        assert_eq!(run(&mut s, &mut log, t + 2_400, "TTL s"), ":8\r\n");
        assert_eq!(run(&mut s, &mut log, t + 10_000, "GET s"), "$-1\r\n");
        assert_eq!(run(&mut s, &mut log, t, "TTL nope"), ":-2\r\n");
        assert_eq!(run(&mut s, &mut log, t, "TTL k"), ":-1\r\n");
        assert_eq!(run(&mut s, &mut log, t, "MSET a 1 b 2"), "+OK\r\n");
        assert_eq!(run(&mut s, &mut log, t, "MGET a nope b"), "*3\r\n$1\r\n1\r\n$-1\r\n$1\r\n2\r\n");
        assert_eq!(run(&mut s, &mut log, t, "EXISTS a a nope"), ":2\r\n");
        assert_eq!(run(&mut s, &mut log, t, "DEL a nope"), ":1\r\n");
        assert_eq!(run(&mut s, &mut log, t, "GET"), "-ERR wrong number of arguments for 'get' command\r\n");
        assert_eq!(
            run(&mut s, &mut log, t, "NOPE x y"),
            "-ERR unknown command 'NOPE', with args beginning with: 'x' 'y' \r\n"
        );
        assert_eq!(run(&mut s, &mut log, t, "DBSIZE"), ":2\r\n");
        assert_eq!(run(&mut s, &mut log, t, "CONFIG GET save"), "*2\r\n$4\r\nsave\r\n$0\r\n\r\n");
        assert_eq!(run(&mut s, &mut log, t, "FLUSHALL"), "+OK\r\n");
        assert_eq!(run(&mut s, &mut log, t, "DBSIZE"), ":0\r\n");
    }

    #[test]
    fn sweep_deletes_expired_keys_only() {
        let (mut s, mut log) = (Store::new(info()), BytesMut::new());
        run(&mut s, &mut log, 0, "SET a 1 PX 100");
        run(&mut s, &mut log, 0, "SET b 1 PX 300");
        run(&mut s, &mut log, 0, "SET a 2"); // a loses its TTL: its index entry is stale
        assert_eq!(s.sweep(200, 100), 0);
        assert_eq!(s.sweep(300, 100), 1);
        assert_eq!(s.len(), 1);
        assert!(s.expiries.is_empty());
    }

    /// Replaying the logged effects at any later time gives the state the live
    /// store has at that time, TTLs included.
    #[test]
    fn replay_rebuilds_the_keyspace() {
        let (mut s, mut log) = (Store::new(info()), BytesMut::new());
        let t = 5_000_000;
        for (dt, line) in [
            (0, "SET n 5 PX 1000"),
            (10, "INCR n"),          // 6, still expiring at t+1000
            (2000, "INCR m"),        // m = 1, no TTL
            (2000, "SET e x PX 500"),
            (2100, "EXPIRE e 100"),  // now expires at t+102100
            (2200, "SET gone y EX 1"),
            (2300, "APPEND e z"),
            (2400, "MSET p 1 q 2"),
            (2500, "DEL q"),
            (2600, "SET r 1 EX 10"),
            (2700, "PERSIST r"),
            (2800, "SET k v KEEPTTL"),
            (2900, "EXPIRE k -1"),   // deletes k
            (3000, "SET n 7"),       // n had expired: a fresh key
            (3400, "APPEND gone w"), // gone had expired: a fresh key without TTL
            (3500, "APPEND m 0"),    // m = "10"
        ] {
            run(&mut s, &mut log, t + dt, line);
        }
        let keys: Vec<Vec<u8>> = dump(&mut s, t + 3300).into_iter().map(|e| e.0).collect();
        assert_eq!(keys, [b"e".to_vec(), b"gone".to_vec(), b"m".to_vec(), b"n".to_vec(), b"p".to_vec(), b"r".to_vec()]);
        assert_eq!(s.map[&b"gone"[..]].value, "w");
        assert_eq!(s.map[&b"m"[..]].value, "10");
        for later in [t + 3500, t + 4000, t + 200_000] {
            assert_eq!(dump(&mut replay(&log, later), later), dump(&mut s, later), "replayed at {later}");
        }
    }
}
