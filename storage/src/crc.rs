//! CRC-32C (Castagnoli), the checksum of records and superblocks.
//!
//! Uses the SSE4.2 `crc32` instruction when the CPU has it (detected once), and a
//! byte-wise table otherwise. Both give the standard CRC-32C (reflected polynomial
//! 0x82F63B78, initial and final XOR with all ones).

use std::sync::OnceLock;

const POLY: u32 = 0x82F6_3B78;

fn table() -> &'static [u32; 256] {
    static TABLE: OnceLock<[u32; 256]> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (i, e) in t.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 { (c >> 1) ^ POLY } else { c >> 1 };
            }
            *e = c;
        }
        t
    })
}

fn update_table(mut crc: u32, data: &[u8]) -> u32 {
    let t = table();
    for &b in data {
        crc = t[((crc ^ b as u32) & 0xff) as usize] ^ (crc >> 8);
    }
    crc
}

#[cfg(target_arch = "x86_64")]
mod hw {
    /// # Safety
    /// The CPU must support SSE4.2.
    #[target_feature(enable = "sse4.2")]
    pub(super) unsafe fn update(mut crc: u32, data: &[u8]) -> u32 {
        use std::arch::x86_64::{_mm_crc32_u64, _mm_crc32_u8};
        let mut chunks = data.chunks_exact(8);
        let mut c = crc as u64;
        for ch in &mut chunks {
            let v = u64::from_le_bytes(ch.try_into().expect("8-byte chunk"));
            c = _mm_crc32_u64(c, v);
        }
        crc = c as u32;
        for &b in chunks.remainder() {
            crc = _mm_crc32_u8(crc, b);
        }
        crc
    }
}

fn has_sse42() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static HAS: OnceLock<bool> = OnceLock::new();
        *HAS.get_or_init(|| std::arch::is_x86_feature_detected!("sse4.2"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Continues a CRC-32C over `data`. `crc` is a previous result (or 0 to start).
pub fn crc32c_append(crc: u32, data: &[u8]) -> u32 {
    let c = !crc;
    let c = if has_sse42() {
        #[cfg(target_arch = "x86_64")]
        {
            // SAFETY: SSE4.2 support was detected at run time just above.
            unsafe { hw::update(c, data) }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            update_table(c, data)
        }
    } else {
        update_table(c, data)
    };
    !c
}

/// CRC-32C of `data`.
pub fn crc32c(data: &[u8]) -> u32 {
    crc32c_append(0, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_value() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(update_table(!0, b"123456789") ^ !0, 0xE306_9283);
    }

    #[test]
    fn append_equals_whole_and_table_equals_hw() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 31 + 7) as u8).collect();
        for split in [0, 1, 7, 8, 9, 500, 1000] {
            let (a, b) = data.split_at(split);
            assert_eq!(crc32c_append(crc32c(a), b), crc32c(&data));
        }
        assert_eq!(!update_table(!0, &data), crc32c(&data));
    }
}
