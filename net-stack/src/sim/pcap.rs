//! Writing captured Ethernet frames as a classic pcap file.
//!
//! The format is the original libpcap one (version 2.4, microsecond timestamps,
//! `LINKTYPE_ETHERNET`), written little-endian, which tcpdump, tshark and Wireshark
//! all read. The writer only formats bytes into a caller-supplied
//! [`std::io::Write`]; it never opens files or reads a clock.

use core::time::Duration;
use std::io::{self, Write};

/// The pcap magic number for microsecond timestamps.
pub const PCAP_MAGIC: u32 = 0xa1b2_c3d4;
/// The largest number of bytes of a frame that gets stored (longer frames are
/// truncated; their original length is still recorded).
pub const PCAP_SNAPLEN: u32 = 65_535;
/// The pcap link type of Ethernet II frames (`LINKTYPE_ETHERNET`).
pub const LINKTYPE_ETHERNET: u32 = 1;
/// The wall-clock time the simulator's virtual clock starts at in captures:
/// 2024-01-01T00:00:00Z, as a duration since the Unix epoch.
///
/// A fixed date keeps captures reproducible byte for byte and lets packet tools show
/// sensible timestamps (`00:00:00.000010` is 10 µs into the simulation).
pub const PCAP_EPOCH: Duration = Duration::from_secs(1_704_067_200);

/// Writes frames into a classic pcap stream.
///
/// ```
/// use std::time::Duration;
/// use demi_net_stack::sim::PcapWriter;
///
/// let mut pcap = PcapWriter::new(Vec::new())?;
/// pcap.write_frame(Duration::from_secs(1_704_067_200), &[0xff; 60])?;
/// let bytes = pcap.into_inner();
/// assert_eq!(bytes.len(), 24 + 16 + 60);
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// Every frame costs two `write_all` calls; wrap a file in a
/// [`std::io::BufWriter`] (and flush it at the end) when that matters.
#[derive(Debug)]
pub struct PcapWriter<W: Write> {
    out: W,
}

impl<W: Write> PcapWriter<W> {
    /// Writes the pcap global header into `out` and returns a writer for frames.
    pub fn new(mut out: W) -> io::Result<Self> {
        let mut header = [0u8; 24];
        header[0..4].copy_from_slice(&PCAP_MAGIC.to_le_bytes());
        header[4..6].copy_from_slice(&2u16.to_le_bytes()); // version major
        header[6..8].copy_from_slice(&4u16.to_le_bytes()); // version minor
        header[8..12].copy_from_slice(&0i32.to_le_bytes()); // thiszone: UTC
        header[12..16].copy_from_slice(&0u32.to_le_bytes()); // sigfigs
        header[16..20].copy_from_slice(&PCAP_SNAPLEN.to_le_bytes());
        header[20..24].copy_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
        out.write_all(&header)?;
        Ok(PcapWriter { out })
    }

    /// Appends one frame captured at `timestamp` (a duration since the Unix epoch;
    /// see [`PCAP_EPOCH`]).
    ///
    /// Timestamps are stored with microsecond resolution (the nanoseconds below a
    /// microsecond are dropped). Frames longer than [`PCAP_SNAPLEN`] are stored
    /// truncated. A timestamp past the format's 32-bit seconds (year 2106) is
    /// rejected with [`io::ErrorKind::InvalidInput`] and nothing is written.
    pub fn write_frame(&mut self, timestamp: Duration, frame: &[u8]) -> io::Result<()> {
        let secs = u32::try_from(timestamp.as_secs()).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "pcap timestamp does not fit in 32-bit seconds",
            )
        })?;
        let micros = timestamp.subsec_micros();
        let orig_len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
        let incl_len = orig_len.min(PCAP_SNAPLEN);
        let mut record = [0u8; 16];
        record[0..4].copy_from_slice(&secs.to_le_bytes());
        record[4..8].copy_from_slice(&micros.to_le_bytes());
        record[8..12].copy_from_slice(&incl_len.to_le_bytes());
        record[12..16].copy_from_slice(&orig_len.to_le_bytes());
        self.out.write_all(&record)?;
        // incl_len <= frame.len(), so this slice is in bounds.
        self.out.write_all(&frame[..incl_len as usize])
    }

    /// Flushes the underlying writer.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// The underlying writer.
    pub fn get_ref(&self) -> &W {
        &self.out
    }

    /// The underlying writer, mutably (writing into it directly corrupts the
    /// capture).
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.out
    }

    /// Gives the underlying writer back (without flushing it).
    pub fn into_inner(self) -> W {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn global_and_record_headers_byte_by_byte() {
        let mut pcap = PcapWriter::new(Vec::new()).unwrap();
        let f1: Vec<u8> = (0..60).collect();
        let f2: Vec<u8> = vec![0xab; 1514];
        pcap.write_frame(PCAP_EPOCH + Duration::from_micros(10), &f1)
            .unwrap();
        pcap.write_frame(
            PCAP_EPOCH + Duration::new(2, 345_678_999), // sub-µs part is dropped
            &f2,
        )
        .unwrap();
        let b = pcap.into_inner();

        #[rustfmt::skip]
        let global = [
            0xd4, 0xc3, 0xb2, 0xa1, // magic, little-endian
            0x02, 0x00, 0x04, 0x00, // version 2.4
            0x00, 0x00, 0x00, 0x00, // thiszone
            0x00, 0x00, 0x00, 0x00, // sigfigs
            0xff, 0xff, 0x00, 0x00, // snaplen 65535
            0x01, 0x00, 0x00, 0x00, // LINKTYPE_ETHERNET
        ];
        assert_eq!(&b[..24], &global);

        // 1_704_067_200 = 0x6592_0080
        #[rustfmt::skip]
        let rec1 = [
            0x80, 0x00, 0x92, 0x65, // ts_sec
            0x0a, 0x00, 0x00, 0x00, // ts_usec = 10
            0x3c, 0x00, 0x00, 0x00, // incl_len = 60
            0x3c, 0x00, 0x00, 0x00, // orig_len = 60
        ];
        assert_eq!(&b[24..40], &rec1);
        assert_eq!(&b[40..100], &f1[..]);

        #[rustfmt::skip]
        let rec2 = [
            0x82, 0x00, 0x92, 0x65, // ts_sec = epoch + 2
            0x4e, 0x46, 0x05, 0x00, // ts_usec = 345_678 = 0x0005_464e
            0xea, 0x05, 0x00, 0x00, // incl_len = 1514
            0xea, 0x05, 0x00, 0x00, // orig_len = 1514
        ];
        assert_eq!(&b[100..116], &rec2);
        assert_eq!(&b[116..], &f2[..]);
        assert_eq!(b.len(), 24 + 16 + 60 + 16 + 1514);
    }

    #[test]
    fn long_frames_are_truncated_to_snaplen() {
        let mut pcap = PcapWriter::new(Vec::new()).unwrap();
        let frame = vec![1u8; 70_000];
        pcap.write_frame(PCAP_EPOCH, &frame).unwrap();
        let b = pcap.into_inner();
        assert_eq!(&b[32..36], &65_535u32.to_le_bytes());
        assert_eq!(&b[36..40], &70_000u32.to_le_bytes());
        assert_eq!(b.len(), 24 + 16 + 65_535);
    }

    #[test]
    fn timestamps_past_2106_are_rejected() {
        let mut pcap = PcapWriter::new(Vec::new()).unwrap();
        let err = pcap
            .write_frame(Duration::from_secs(u64::from(u32::MAX) + 1), &[0; 60])
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(pcap.get_ref().len(), 24, "nothing written");
    }

    /// Opens a small capture with tshark or tcpdump when one is installed. Skips
    /// (with a message on stderr, shown with `--nocapture`) when neither is.
    #[test]
    fn capture_opens_in_packet_tools() {
        use std::process::Command;

        let mut pcap = PcapWriter::new(Vec::new()).unwrap();
        let mut frame = vec![0u8; 60];
        frame[0..6].copy_from_slice(&[0xff; 6]); // broadcast destination
        frame[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 1]); // local source
        frame[12..14].copy_from_slice(&[0x88, 0xb5]); // local experimental EtherType
        pcap.write_frame(PCAP_EPOCH, &frame).unwrap();
        pcap.write_frame(PCAP_EPOCH + Duration::from_micros(10), &frame)
            .unwrap();
        let bytes = pcap.into_inner();

        let mut path = std::env::temp_dir();
        path.push(format!("demi-sim-pcap-test-{}.pcap", std::process::id()));
        std::fs::write(&path, &bytes).unwrap();
        // Each tool prints one line per frame (tcpdump adds indented hex dumps of
        // the unknown EtherType's payload) starting with the epoch timestamp.
        let tools: [(&str, &[&str]); 2] = [
            (
                "tshark",
                &["-n", "-T", "fields", "-e", "frame.time_epoch", "-r"],
            ),
            ("tcpdump", &["-n", "-tt", "-r"]),
        ];
        let outputs: Vec<_> = tools
            .iter()
            .filter_map(|(tool, args)| {
                let out = Command::new(tool).args(*args).arg(&path).output().ok()?;
                Some((*tool, out))
            })
            .collect();
        let _ = std::fs::remove_file(&path);
        let checked = !outputs.is_empty();
        for (tool, out) in outputs {
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "{tool} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let records: Vec<&str> = stdout
                .lines()
                .filter(|l| !l.starts_with(char::is_whitespace))
                .collect();
            assert_eq!(records.len(), 2, "{tool} output: {stdout}");
            assert!(
                records[0].starts_with("1704067200.000000"),
                "{tool}: {stdout}"
            );
            assert!(
                records[1].starts_with("1704067200.000010"),
                "{tool}: {stdout}"
            );
        }
        if !checked {
            eprintln!(
                "SKIPPED capture_opens_in_packet_tools: neither tshark nor tcpdump is installed"
            );
        }
    }

    #[test]
    fn write_errors_are_reported() {
        struct Full;
        impl Write for Full {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::other("full"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        assert!(PcapWriter::new(Full).is_err());
    }
}
