//! Byte writers of the response builder: decimal numbers, addresses, and copied or generated
//! text made safe to send (no control characters, folds written as one space: RFC 3261
//! §7.3.1, §25.1), all appending to a reused buffer without the formatting machinery.

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};

use super::lex::any_byte;

/// `;received=<address>;rport=<port>` of the source address (RFC 3581 §4).
pub(crate) fn write_source(out: &mut Vec<u8>, source: SocketAddr) {
    match source.ip() {
        IpAddr::V4(v4) => {
            // Formatted on the stack from a table, copied once with its `;received=`.
            const PREFIX: &[u8; 10] = b";received=";
            let mut text = [0u8; 26];
            text[..PREFIX.len()].copy_from_slice(PREFIX);
            let mut len = PREFIX.len();
            for octet in v4.octets() {
                let [n, digits @ ..] = OCTETS[usize::from(octet)];
                let n = usize::from(n);
                if let Some(dst) = text.get_mut(len..len + n) {
                    dst.copy_from_slice(&digits[..n]);
                }
                len += n;
                if let Some(dot) = text.get_mut(len) {
                    *dot = b'.';
                }
                len += 1;
            }
            // Without the last dot.
            out.extend_from_slice(text.get(..len - 1).unwrap_or_default());
        }
        // Writing to a Vec cannot fail.
        IpAddr::V6(v6) => {
            out.extend_from_slice(b";received=");
            drop(write!(out, "{v6}"))
        }
    }
    out.extend_from_slice(b";rport=");
    write_u32(out, u32::from(source.port()));
}

/// Each octet 0..=255 in decimal: the number of digits, then the digits.
static OCTETS: [[u8; 4]; 256] = {
    let mut t = [[0u8; 4]; 256];
    let mut i = 0;
    while i < 256 {
        let n = i as u8;
        t[i] = match n {
            0..=9 => [1, b'0' + n, 0, 0],
            10..=99 => [2, b'0' + n / 10, b'0' + n % 10, 0],
            _ => [3, b'0' + n / 100, b'0' + n / 10 % 10, b'0' + n % 10],
        };
        i += 1;
    }
    t
};

/// `name value CRLF`, the value's folds written as spaces.
pub(crate) fn header(out: &mut Vec<u8>, name: &[u8], value: &str) {
    out.extend_from_slice(name);
    write_lws(out, value);
    out.extend_from_slice(b"\r\n");
}

/// `name number CRLF`.
pub(crate) fn number_header(out: &mut Vec<u8>, name: &[u8], n: u32) {
    out.extend_from_slice(name);
    write_u32(out, n);
    out.extend_from_slice(b"\r\n");
}

/// A copied value with each fold (CR LF and the white space around it) written as one space.
pub(crate) fn write_lws(out: &mut Vec<u8>, value: &str) {
    let b = value.as_bytes();
    if !b.contains(&b'\r') {
        out.extend_from_slice(b);
        return;
    }
    let mut in_fold = false;
    for &c in b {
        match c {
            b'\r' | b'\n' => in_fold = true,
            b' ' | b'\t' if in_fold => {}
            _ => {
                if in_fold {
                    if out.last() != Some(&b' ') {
                        out.push(b' ');
                    }
                    in_fold = false;
                }
                out.push(c);
            }
        }
    }
}

/// Text we generate or pass on, without control characters.
pub(crate) fn write_text(out: &mut Vec<u8>, s: &str) {
    let clean = |c: u8| (c >= b' ' || c == b'\t') && c != 0x7f;
    if !any_byte(s.as_bytes(), |c| ((c < b' ') & (c != b'\t')) | (c == 0x7f)) {
        out.extend_from_slice(s.as_bytes());
        return;
    }
    out.extend(s.bytes().filter(|&c| clean(c)));
}

/// A decimal number.
pub(crate) fn write_u32(out: &mut Vec<u8>, n: u32) {
    write_decimal(out, u64::from(n));
}

/// Appends the decimal digits of `n`, without the formatting machinery (no `fmt::Write`
/// dispatch on the hot path). Also the load generator's (`benches/src/load/invite.rs`).
#[inline]
pub fn write_decimal(out: &mut Vec<u8>, mut n: u64) {
    if n < 10_000 {
        // Ports, durations, counts: four digits at most, two at a time from a table, then
        // the leading zeros dropped.
        let (hi, lo) = (PAIRS[(n / 100) as usize], PAIRS[(n % 100) as usize]);
        let digits = [hi[0], hi[1], lo[0], lo[1]];
        let skip = match n {
            0..=9 => 3,
            10..=99 => 2,
            100..=999 => 1,
            _ => 0,
        };
        out.extend_from_slice(digits.get(skip..).unwrap_or_default());
        return;
    }
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// The numbers 0..=99 as two decimal digits.
static PAIRS: [[u8; 2]; 100] = {
    let mut t = [[0u8; 2]; 100];
    let mut i = 0;
    while i < 100 {
        t[i] = [b'0' + (i / 10) as u8, b'0' + (i % 10) as u8];
        i += 1;
    }
    t
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_folds() {
        let mut out = Vec::new();
        write_u32(&mut out, 0);
        out.push(b' ');
        write_u32(&mut out, u32::MAX);
        assert_eq!(out, b"0 4294967295");
        for n in [
            1, 9, 10, 99, 100, 302, 999, 1000, 1800, 5060, 9999, 10_000, 65_535,
        ] {
            out.clear();
            write_u32(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
        out.clear();
        write_lws(&mut out, "SIP  /   2.0\r\n /UDP\r\n    192.0.2.2");
        assert_eq!(out, b"SIP  /   2.0 /UDP 192.0.2.2");
    }

    #[test]
    fn source_addresses() {
        for (addr, text) in [
            ("0.0.0.0:0", ";received=0.0.0.0;rport=0"),
            ("10.9.100.255:5060", ";received=10.9.100.255;rport=5060"),
            ("[2001:db8::1]:5061", ";received=2001:db8::1;rport=5061"),
        ] {
            let mut out = Vec::new();
            write_source(&mut out, addr.parse().unwrap());
            assert_eq!(String::from_utf8(out).unwrap(), text);
        }
    }
}
