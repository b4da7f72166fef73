//! RESP2, the Redis serialisation protocol: an incremental command parser and a
//! reply writer.
//!
//! Clients send commands as arrays of bulk strings (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`)
//! or as inline lines (`PING\r\n`, what a human types over telnet). Bytes arrive in
//! chunks cut anywhere, and one chunk may hold many commands (pipelining), so the
//! [`Parser`] buffers what it was fed and hands out whole commands one at a time;
//! a half-parsed array keeps its finished arguments, so a command that trickles in
//! is never rescanned from its start.
//!
//! Sizes are bounded the way Redis bounds them: a bulk string holds at most 512 MiB,
//! an array at most 1,048,576 elements (a declared length is never allocated up
//! front), an inline line or a length line at most 64 KiB, and one command at most
//! 1 GiB in all. Anything else malformed is a [`ProtocolError`], worded as Redis
//! words it; the server replies `-ERR Protocol error: …` and closes the connection.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use std::fmt;
use std::mem::MaybeUninit;

/// Largest bulk string (Redis's `proto-max-bulk-len`).
pub const MAX_BULK: usize = 512 << 20;
/// Largest array length accepted.
pub const MAX_ARGS: usize = 1 << 20;
/// Longest inline command or length line (Redis's `PROTO_INLINE_MAX_SIZE`).
pub const MAX_INLINE: usize = 64 << 10;
/// Largest command in bytes, all arguments together (Redis's query buffer limit).
pub const MAX_COMMAND: usize = 1 << 30;
/// Arguments preallocated for an array, whatever length it declares.
const PREALLOC_ARGS: usize = 1024;
/// Bulk strings at least this long go out as their own segment rather than copied.
const ZERO_COPY_MIN: usize = 16 << 10;

/// Why a byte stream is not RESP. The server replies `-ERR Protocol error: <this>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProtocolError {
    /// `*n` with n not a number or too large.
    InvalidMultibulkLength,
    /// `$n` with n not a number, negative or over [`MAX_BULK`].
    InvalidBulkLength,
    /// An array element that is not a bulk string.
    ExpectedBulk(u8),
    /// Bulk data not followed by `\r\n`.
    MissingCrlf,
    /// No line end within [`MAX_INLINE`] bytes of a `*` line.
    TooBigMbulkCount,
    /// No line end within [`MAX_INLINE`] bytes of a `$` line.
    TooBigBulkCount,
    /// No line end within [`MAX_INLINE`] bytes of an inline command.
    TooBigInline,
    /// An inline command with an unterminated quote.
    UnbalancedQuotes,
    /// A command over [`MAX_COMMAND`] bytes.
    CommandTooLarge,
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::InvalidMultibulkLength => f.write_str("invalid multibulk length"),
            ProtocolError::InvalidBulkLength => f.write_str("invalid bulk length"),
            ProtocolError::ExpectedBulk(b) => write!(f, "expected '$', got '{}'", char::from(*b).escape_default()),
            ProtocolError::MissingCrlf => f.write_str("expected CRLF after bulk data"),
            ProtocolError::TooBigMbulkCount => f.write_str("too big mbulk count string"),
            ProtocolError::TooBigBulkCount => f.write_str("too big bulk count string"),
            ProtocolError::TooBigInline => f.write_str("too big inline request"),
            ProtocolError::UnbalancedQuotes => f.write_str("unbalanced quotes in request"),
            ProtocolError::CommandTooLarge => f.write_str("command larger than 1 GiB"),
        }
    }
}

impl std::error::Error for ProtocolError {}

/// A command: its arguments, the name first.
pub type Command = Vec<Bytes>;

/// An array being read: the elements read so far and how many are left.
struct Partial {
    args: Vec<Bytes>,
    left: usize,
    /// The next element's declared length, once its `$` line was read.
    bulk: Option<usize>,
    bytes: usize,
}

/// Incremental RESP2 command parser. [`feed`](Parser::feed) bytes as they arrive,
/// then call [`next`](Parser::next) until it returns `Ok(None)` (need more bytes).
/// After an error the stream is unusable (there is no way to resynchronise).
#[derive(Default)]
pub struct Parser {
    buf: BytesMut,
    partial: Option<Partial>,
}

impl Parser {
    /// A parser with nothing buffered.
    pub fn new() -> Parser {
        Parser::default()
    }

    /// Appends received bytes.
    pub fn feed(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Room for at least `min` more bytes after what is buffered, to receive into
    /// directly (then [`filled`](Self::filled) says how many arrived).
    pub fn spare(&mut self, min: usize) -> &mut [MaybeUninit<u8>] {
        self.buf.reserve(min);
        self.buf.spare_capacity_mut()
    }

    /// Takes the first `n` bytes of [`spare`](Self::spare) as received.
    ///
    /// # Safety
    /// Those `n` bytes must have been written (initialised) since `spare` was called.
    pub unsafe fn filled(&mut self, n: usize) {
        assert!(n <= self.buf.capacity() - self.buf.len(), "more bytes than the spare room");
        // SAFETY: in capacity (checked), initialised (the caller's promise).
        unsafe { self.buf.set_len(self.buf.len() + n) };
    }

    /// True when no command is half-read (the stream is at a command boundary).
    pub fn at_boundary(&self) -> bool {
        self.partial.is_none() && self.buf.is_empty()
    }

    /// The next whole command, `Ok(None)` if more bytes are needed.
    pub fn next(&mut self) -> Result<Option<Command>, ProtocolError> {
        loop {
            if self.partial.is_none() {
                let Some(&first) = self.buf.first() else { return Ok(None) };
                if first != b'*' {
                    match self.inline()? {
                        Some(args) if args.is_empty() => continue, // blank line
                        other => return Ok(other),
                    }
                }
                let Some(n) = take_line(&mut self.buf, ProtocolError::TooBigMbulkCount)? else { return Ok(None) };
                let n = parse_int(&n[1..]).ok_or(ProtocolError::InvalidMultibulkLength)?;
                if n > MAX_ARGS as i64 {
                    return Err(ProtocolError::InvalidMultibulkLength);
                }
                if n <= 0 {
                    continue; // `*0` and `*-1` are no command at all (as in Redis)
                }
                let n = n as usize;
                self.partial = Some(Partial { args: Vec::with_capacity(n.min(PREALLOC_ARGS)), left: n, bulk: None, bytes: 0 });
            }
            let p = self.partial.as_mut().expect("set above");
            while p.left > 0 {
                let len = match p.bulk {
                    Some(len) => len,
                    None => {
                        let Some(&first) = self.buf.first() else { return Ok(None) };
                        if first != b'$' {
                            return Err(ProtocolError::ExpectedBulk(first));
                        }
                        let Some(line) = take_line(&mut self.buf, ProtocolError::TooBigBulkCount)? else {
                            return Ok(None);
                        };
                        let len = parse_int(&line[1..]).ok_or(ProtocolError::InvalidBulkLength)?;
                        if !(0..=MAX_BULK as i64).contains(&len) {
                            return Err(ProtocolError::InvalidBulkLength);
                        }
                        let len = len as usize;
                        p.bytes += len;
                        if p.bytes > MAX_COMMAND {
                            return Err(ProtocolError::CommandTooLarge);
                        }
                        p.bulk = Some(len);
                        len
                    }
                };
                if self.buf.len() < len + 2 {
                    // Make room for the rest of a large value once, not by doubling.
                    if len >= ZERO_COPY_MIN {
                        self.buf.reserve(len + 2 - self.buf.len());
                    }
                    return Ok(None);
                }
                if &self.buf[len..len + 2] != b"\r\n" {
                    return Err(ProtocolError::MissingCrlf);
                }
                let arg = self.buf.split_to(len).freeze();
                self.buf.advance(2);
                p.args.push(arg);
                p.left -= 1;
                p.bulk = None;
            }
            return Ok(self.partial.take().map(|p| p.args));
        }
    }

    /// An inline command: one line split into words (quotes as Redis reads them).
    fn inline(&mut self) -> Result<Option<Command>, ProtocolError> {
        let Some(pos) = self.buf.iter().position(|&b| b == b'\n') else {
            if self.buf.len() > MAX_INLINE {
                return Err(ProtocolError::TooBigInline);
            }
            return Ok(None);
        };
        if pos > MAX_INLINE {
            return Err(ProtocolError::TooBigInline);
        }
        let mut line = self.buf.split_to(pos + 1);
        line.truncate(pos);
        if line.last() == Some(&b'\r') {
            line.truncate(pos - 1);
        }
        split_inline(&line).map(Some)
    }
}

/// Takes a `\r\n`-terminated line off `buf`.
fn take_line(buf: &mut BytesMut, too_long: ProtocolError) -> Result<Option<Bytes>, ProtocolError> {
    let window = &buf[..buf.len().min(MAX_INLINE + 2)];
    match window.windows(2).position(|w| w == b"\r\n") {
        Some(pos) => {
            let line = buf.split_to(pos).freeze();
            buf.advance(2);
            Ok(Some(line))
        }
        None if buf.len() > MAX_INLINE => Err(too_long),
        None => Ok(None),
    }
}

/// A decimal integer as RESP writes it (optional `-`, digits only, fits in i64).
pub fn parse_int(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    if digits.is_empty() || digits.len() > 19 || (digits.len() > 1 && digits[0] == b'0') {
        return None;
    }
    let mut v: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?;
        v = if neg { v.checked_sub((d - b'0') as i64)? } else { v.checked_add((d - b'0') as i64)? };
    }
    if neg && v == 0 {
        return None; // "-0" is not an integer Redis accepts
    }
    Some(v)
}

/// Splits an inline line into arguments: words separated by blanks; `"…"` with
/// `\n \r \t \b \a \\ \" \xHH` escapes, and `'…'` with `\'` only. A closing quote
/// must be followed by a blank or the end of the line.
fn split_inline(line: &[u8]) -> Result<Command, ProtocolError> {
    let mut args = Vec::new();
    let mut i = 0;
    let blank = |b: u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c);
    loop {
        while i < line.len() && blank(line[i]) {
            i += 1;
        }
        if i == line.len() {
            return Ok(args);
        }
        let mut word = Vec::new();
        match line[i] {
            b'"' => {
                i += 1;
                loop {
                    match line.get(i) {
                        None => return Err(ProtocolError::UnbalancedQuotes),
                        Some(b'"') => {
                            i += 1;
                            break;
                        }
                        Some(b'\\') if i + 3 < line.len() && line[i + 1] == b'x' => {
                            match (hex(line[i + 2]), hex(line[i + 3])) {
                                (Some(h), Some(l)) => {
                                    word.push(h << 4 | l);
                                    i += 4;
                                }
                                _ => {
                                    word.push(b'x');
                                    i += 2;
                                }
                            }
                        }
                        Some(b'\\') if i + 1 < line.len() => {
                            word.push(match line[i + 1] {
                                b'n' => b'\n',
                                b'r' => b'\r',
                                b't' => b'\t',
                                b'b' => 0x08,
                                b'a' => 0x07,
                                other => other,
                            });
                            i += 2;
                        }
                        Some(&b) => {
                            word.push(b);
                            i += 1;
                        }
                    }
                }
                if i < line.len() && !blank(line[i]) {
                    return Err(ProtocolError::UnbalancedQuotes);
                }
            }
            b'\'' => {
                i += 1;
                loop {
                    match line.get(i) {
                        None => return Err(ProtocolError::UnbalancedQuotes),
                        Some(b'\'') => {
                            i += 1;
                            break;
                        }
                        Some(b'\\') if line.get(i + 1) == Some(&b'\'') => {
                            word.push(b'\'');
                            i += 2;
                        }
                        Some(&b) => {
                            word.push(b);
                            i += 1;
                        }
                    }
                }
                if i < line.len() && !blank(line[i]) {
                    return Err(ProtocolError::UnbalancedQuotes);
                }
            }
            _ => {
                while i < line.len() && !blank(line[i]) {
                    word.push(line[i]);
                    i += 1;
                }
            }
        }
        args.push(Bytes::from(word));
    }
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

// ---------------------------------------------------------------------------------
// Replies
// ---------------------------------------------------------------------------------

/// Replies being written: small ones are copied into one buffer, large bulk
/// strings are kept as their own segments (no copy). [`take`](Reply::take) hands
/// everything written so far out as one scatter-gather list, for one push.
#[derive(Default)]
pub struct Reply {
    segs: Vec<Bytes>,
    cur: BytesMut,
}

impl Reply {
    /// No replies written yet.
    pub fn new() -> Reply {
        Reply::default()
    }

    /// True if nothing was written since the last take.
    pub fn is_empty(&self) -> bool {
        self.segs.is_empty() && self.cur.is_empty()
    }

    /// `+OK`-style status.
    pub fn simple(&mut self, s: &str) {
        self.cur.reserve(s.len() + 3);
        self.cur.put_u8(b'+');
        self.cur.put_slice(s.as_bytes());
        self.cur.put_slice(b"\r\n");
    }

    /// `-ERR …`-style error; `msg` carries its own prefix (`ERR`, `WRONGTYPE`, …).
    /// Line ends in it are replaced by blanks (an error is one line).
    pub fn error(&mut self, msg: &str) {
        self.cur.put_u8(b'-');
        for b in msg.bytes() {
            self.cur.put_u8(if b == b'\r' || b == b'\n' { b' ' } else { b });
        }
        self.cur.put_slice(b"\r\n");
    }

    /// `:n`.
    pub fn int(&mut self, n: i64) {
        self.cur.put_u8(b':');
        self.put_decimal(n);
    }

    /// `$len\r\n…\r\n`.
    pub fn bulk(&mut self, data: &[u8]) {
        self.cur.put_u8(b'$');
        self.put_decimal(data.len() as i64);
        self.cur.put_slice(data);
        self.cur.put_slice(b"\r\n");
    }

    /// A bulk string from a shared buffer: copied if small, else its own segment.
    pub fn bulk_bytes(&mut self, data: &Bytes) {
        if data.len() < ZERO_COPY_MIN {
            return self.bulk(data);
        }
        self.cur.put_u8(b'$');
        self.put_decimal(data.len() as i64);
        self.segs.push(self.cur.split().freeze());
        self.segs.push(data.clone());
        self.cur.put_slice(b"\r\n");
    }

    /// `$-1`, the null bulk string.
    pub fn null(&mut self) {
        self.cur.put_slice(b"$-1\r\n");
    }

    /// `*n`, the header of an array of `n` replies that follow.
    pub fn array(&mut self, n: usize) {
        self.cur.put_u8(b'*');
        self.put_decimal(n as i64);
    }

    fn put_decimal(&mut self, n: i64) {
        let mut tmp = [0u8; 20];
        let mut i = tmp.len();
        let mut v = n.unsigned_abs();
        loop {
            i -= 1;
            tmp[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        if n < 0 {
            self.cur.put_u8(b'-');
        }
        self.cur.put_slice(&tmp[i..]);
        self.cur.put_slice(b"\r\n");
    }

    /// Everything written since the last take or clear, as slices in order.
    pub fn slices(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.segs.iter().map(|b| &b[..]).chain((!self.cur.is_empty()).then_some(&self.cur[..]))
    }

    /// Forgets everything written (after it was sent); keeps the buffer's memory
    /// for the next replies.
    pub fn clear(&mut self) {
        self.segs.clear();
        self.cur.clear();
    }

    /// Everything written since the last take, as segments in order.
    #[cfg_attr(not(test), allow(dead_code))] // the server writes slices(); tests take
    pub fn take(&mut self) -> Vec<Bytes> {
        let mut segs = std::mem::take(&mut self.segs);
        if !self.cur.is_empty() {
            segs.push(self.cur.split().freeze());
        }
        segs
    }
}

/// Appends `args` as a RESP array of bulk strings (the append-only log's format).
pub fn encode_command(out: &mut BytesMut, args: &[&[u8]]) {
    let mut r = Reply { segs: Vec::new(), cur: std::mem::take(out) };
    r.array(args.len());
    for a in args {
        r.bulk(a);
    }
    *out = r.cur;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(args: &[&str]) -> Command {
        args.iter().map(|a| Bytes::copy_from_slice(a.as_bytes())).collect()
    }

    fn encode(args: &[&str]) -> Vec<u8> {
        let mut out = BytesMut::new();
        encode_command(&mut out, &args.iter().map(|a| a.as_bytes()).collect::<Vec<_>>());
        out.to_vec()
    }

    fn parse_all(p: &mut Parser) -> Result<Vec<Command>, ProtocolError> {
        let mut v = Vec::new();
        while let Some(c) = p.next()? {
            v.push(c);
        }
        Ok(v)
    }

    #[test]
    fn one_command() {
        let mut p = Parser::new();
        p.feed(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\n");
        assert_eq!(parse_all(&mut p).unwrap(), vec![cmd(&["SET", "k", "hello"])]);
        assert!(p.at_boundary());
    }

    #[test]
    fn split_at_every_byte() {
        let mut stream = Vec::new();
        let cmds = [cmd(&["SET", "key", "a\r\nvalue with\0 binary"]), cmd(&["GET", "key"]), cmd(&["PING"]), cmd(&["ECHO", ""])];
        for c in &cmds {
            let strs: Vec<&[u8]> = c.iter().map(|b| &b[..]).collect();
            let mut out = BytesMut::new();
            encode_command(&mut out, &strs);
            stream.extend_from_slice(&out);
        }
        stream.extend_from_slice(b"PING inline\r\n");
        let mut want = cmds.to_vec();
        want.push(cmd(&["PING", "inline"]));
        for cut in 0..=stream.len() {
            for cut2 in cut..=stream.len() {
                let mut p = Parser::new();
                let mut got = Vec::new();
                for part in [&stream[..cut], &stream[cut..cut2], &stream[cut2..]] {
                    p.feed(part);
                    got.extend(parse_all(&mut p).unwrap());
                }
                assert_eq!(got, want, "cuts at {cut} and {cut2}");
                assert!(p.at_boundary());
            }
        }
        // And one byte at a time.
        let mut p = Parser::new();
        let mut got = Vec::new();
        for b in &stream {
            p.feed(std::slice::from_ref(b));
            got.extend(parse_all(&mut p).unwrap());
        }
        assert_eq!(got, want);
    }

    #[test]
    fn pipelined_commands_in_one_chunk() {
        let mut stream = Vec::new();
        for i in 0..100 {
            stream.extend(encode(&["SET", &format!("k{i}"), &format!("v{i}")]));
        }
        let mut p = Parser::new();
        p.feed(&stream);
        let got = parse_all(&mut p).unwrap();
        assert_eq!(got.len(), 100);
        assert_eq!(got[42], cmd(&["SET", "k42", "v42"]));
    }

    #[test]
    fn inline_commands() {
        let mut p = Parser::new();
        p.feed(b"PING\r\n\r\nset  k \"a b\\x41\\n\"\n'it''s'\r\nGET 'it\\'s'\r\n");
        let got = parse_all(&mut p);
        // 'it''s' is not two words joined: the closing quote must be followed by a blank.
        assert_eq!(got, Err(ProtocolError::UnbalancedQuotes));
        let mut p = Parser::new();
        p.feed(b"PING\r\n\r\nset  k \"a b\\x41\\n\"\nGET 'it\\'s'\r\n");
        assert_eq!(parse_all(&mut p).unwrap(), vec![cmd(&["PING"]), cmd(&["set", "k", "a bA\n"]), cmd(&["GET", "it's"])]);
        let mut p = Parser::new();
        p.feed(b"ECHO \"open\r\n");
        assert_eq!(parse_all(&mut p), Err(ProtocolError::UnbalancedQuotes));
    }

    #[test]
    fn empty_arrays_are_skipped() {
        let mut p = Parser::new();
        p.feed(b"*0\r\n*-1\r\n*1\r\n$4\r\nPING\r\n");
        assert_eq!(parse_all(&mut p).unwrap(), vec![cmd(&["PING"])]);
    }

    #[test]
    fn hostile_lengths_are_refused_without_allocating() {
        for (input, err) in [
            (&b"*99999999999\r\n"[..], ProtocolError::InvalidMultibulkLength),
            (b"*1048577\r\n", ProtocolError::InvalidMultibulkLength),
            (b"*9223372036854775808\r\n", ProtocolError::InvalidMultibulkLength),
            (b"*abc\r\n", ProtocolError::InvalidMultibulkLength),
            (b"*\r\n", ProtocolError::InvalidMultibulkLength),
            (b"*1\r\n$536870913\r\n", ProtocolError::InvalidBulkLength),
            (b"*1\r\n$-1\r\n", ProtocolError::InvalidBulkLength),
            (b"*1\r\n$1x\r\n", ProtocolError::InvalidBulkLength),
            (b"*1\r\n:5\r\n", ProtocolError::ExpectedBulk(b':')),
            (b"*1\r\n$3\r\nabcXY", ProtocolError::MissingCrlf),
        ] {
            let mut p = Parser::new();
            p.feed(input);
            assert_eq!(parse_all(&mut p), Err(err.clone()), "{:?}", String::from_utf8_lossy(input));
        }
        // A huge declared array allocates for at most PREALLOC_ARGS elements.
        let mut p = Parser::new();
        p.feed(b"*1048576\r\n$1\r\na\r\n");
        assert_eq!(p.next(), Ok(None));
        assert!(p.partial.as_ref().unwrap().args.capacity() <= PREALLOC_ARGS);
        // A declared 512 MiB bulk string is waited for, not allocated.
        let mut p = Parser::new();
        p.feed(b"*2\r\n$3\r\nSET\r\n$536870912\r\nabc");
        assert_eq!(p.next(), Ok(None));
    }

    #[test]
    fn endless_lines_are_refused() {
        let mut p = Parser::new();
        p.feed(&vec![b'a'; MAX_INLINE + 1]);
        assert_eq!(p.next(), Err(ProtocolError::TooBigInline));
        let mut p = Parser::new();
        p.feed(b"*");
        p.feed(&vec![b'1'; MAX_INLINE + 10]);
        assert_eq!(p.next(), Err(ProtocolError::TooBigMbulkCount));
        let mut p = Parser::new();
        p.feed(b"*1\r\n$");
        p.feed(&vec![b'1'; MAX_INLINE + 10]);
        assert_eq!(p.next(), Err(ProtocolError::TooBigBulkCount));
    }

    /// Random byte soup built from RESP's own tokens, fed in random pieces: the
    /// parser returns commands or an error, never panics, and agrees with itself
    /// however the input is cut.
    #[test]
    fn random_input_never_panics() {
        let tokens: &[&[u8]] = &[
            b"*", b"$", b"\r\n", b"\r", b"\n", b"-", b"0", b"1", b"3", b"12", b"99999999999999999999", b"SET",
            b" ", b"\"", b"'", b"\\x4", b"a", b":", b"+", b"\0",
        ];
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut rand = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        for _ in 0..5000 {
            let mut input = Vec::new();
            for _ in 0..rand(40) {
                input.extend_from_slice(tokens[rand(tokens.len())]);
            }
            let mut whole = Parser::new();
            whole.feed(&input);
            let expect = parse_all(&mut whole);
            let mut p = Parser::new();
            let mut got = Vec::new();
            let mut rest = &input[..];
            let outcome = loop {
                let n = rand(rest.len() + 1);
                p.feed(&rest[..n]);
                rest = &rest[n..];
                match parse_all(&mut p) {
                    Ok(cmds) => got.extend(cmds),
                    Err(e) => break Err(e),
                }
                if rest.is_empty() {
                    break Ok(got);
                }
            };
            match (&expect, &outcome) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{:?}", String::from_utf8_lossy(&input)),
                (Err(a), Err(b)) => assert_eq!(a, b, "{:?}", String::from_utf8_lossy(&input)),
                _ => panic!("{:?}: whole {expect:?}, in pieces {outcome:?}", String::from_utf8_lossy(&input)),
            }
        }
    }

    #[test]
    fn integers() {
        assert_eq!(parse_int(b"0"), Some(0));
        assert_eq!(parse_int(b"-12"), Some(-12));
        assert_eq!(parse_int(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_int(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [&b""[..], b"-", b"01", b"-0", b"9223372036854775808", b"1 ", b"+1", b"1.5"] {
            assert_eq!(parse_int(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn replies() {
        let mut r = Reply::new();
        r.simple("OK");
        r.error("ERR bad\r\nthing");
        r.int(-42);
        r.bulk(b"hi");
        r.null();
        r.array(2);
        let big = Bytes::from(vec![b'x'; ZERO_COPY_MIN]);
        r.bulk_bytes(&big);
        r.int(0);
        let segs = r.take();
        assert_eq!(segs.len(), 3);
        let all: Vec<u8> = segs.iter().flat_map(|s| s.iter().copied()).collect();
        let mut want = b"+OK\r\n-ERR bad  thing\r\n:-42\r\n$2\r\nhi\r\n$-1\r\n*2\r\n$16384\r\n".to_vec();
        want.extend_from_slice(&big);
        want.extend_from_slice(b"\r\n:0\r\n");
        assert_eq!(all, want);
        assert!(r.is_empty());
    }
}
