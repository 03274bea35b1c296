//! Clock checks against an NTP server (SNTP, RFC 4330), without ever setting
//! the clock.
//!
//! MLPerf Power compares timestamps taken on two machines (LoadGen's
//! `power_begin`/`power_end` on the system under test, the analyzer's samples
//! on the director), so both sides query one NTP server before each stage and
//! refuse to go on when their clock is off by [`MAX_OFFSET`] or more.
//! power-dev then runs `ntpdate` to set the clock; joulebench only measures
//! and says by how much the clock is off: setting a system clock is the
//! administrator's decision, not a benchmark's.
//!
//! [`SntpResponder`] is the other side: a minimal SNTP server answering with
//! this host's clock (optionally shifted). A rehearsal or a test on one
//! machine needs one on 127.0.0.1:123, because power-dev's tools cannot be
//! pointed at another port.

use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// An offset this large or larger stops the session (MLPerf's bound).
pub const MAX_OFFSET: Duration = Duration::from_millis(400);
/// The NTP port.
pub const NTP_PORT: u16 = 123;
/// Seconds from 1900-01-01 (NTP's epoch) to 1970-01-01.
const NTP_UNIX_OFFSET_S: f64 = 2_208_988_800.0;
const PACKET_BYTES: usize = 48;

#[derive(Debug, thiserror::Error)]
pub enum NtpError {
    #[error("NTP server `{server}`: {reason}")]
    Address { server: String, reason: String },
    #[error("NTP server {addr}: {reason}")]
    Io { addr: String, reason: String },
    #[error("NTP server {addr}: no answer within {timeout_ms} ms")]
    Timeout { addr: String, timeout_ms: u128 },
    #[error("NTP server {addr}: bad answer: {reason}")]
    BadReply { addr: String, reason: String },
    #[error(
        "clock offset against NTP server {addr} is {offset_ms:+.1} ms, at or above the \
         {bound_ms} ms bound; synchronise this machine's clock (e.g. chrony or ntpdate) and \
         retry (joulebench never sets the clock itself)"
    )]
    OffsetTooLarge {
        addr: String,
        offset_ms: f64,
        bound_ms: u128,
    },
}

/// One SNTP exchange: how far the server's clock is from ours.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NtpReading {
    /// Server clock minus local clock, in seconds.
    pub offset_s: f64,
    /// Round-trip delay, in seconds.
    pub delay_s: f64,
}

/// `HOST` or `HOST:PORT` (port 123 when not given) to a socket address.
pub fn resolve(server: &str) -> Result<SocketAddr, NtpError> {
    let bad = |reason: String| NtpError::Address {
        server: server.to_string(),
        reason,
    };
    // A bare IPv6 address ("::1") also contains colons: it takes the default port.
    if let Ok(ip) = server.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, NTP_PORT));
    }
    let with_port = match server.rsplit_once(':') {
        Some((_, port)) if !server.ends_with(']') && port.parse::<u16>().is_ok() => {
            server.to_string()
        }
        _ if server.contains(':') && !server.starts_with('[') => {
            format!("[{server}]:{NTP_PORT}")
        }
        _ => format!("{server}:{NTP_PORT}"),
    };
    with_port
        .to_socket_addrs()
        .map_err(|e| bad(e.to_string()))?
        .next()
        .ok_or_else(|| bad("resolves to no address".into()))
}

fn unix_now_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn to_ntp(unix_s: f64) -> [u8; 8] {
    let t = unix_s + NTP_UNIX_OFFSET_S;
    let secs = t.floor();
    let frac = ((t - secs) * 4_294_967_296.0) as u64;
    let mut out = [0u8; 8];
    out[..4].copy_from_slice(&(secs as u64 as u32).to_be_bytes());
    out[4..].copy_from_slice(&(frac.min(u64::from(u32::MAX)) as u32).to_be_bytes());
    out
}

fn from_ntp(bytes: &[u8]) -> f64 {
    let secs = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let frac = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    f64::from(secs) + f64::from(frac) / 4_294_967_296.0 - NTP_UNIX_OFFSET_S
}

/// One SNTP query.
pub fn query(server: &str, timeout: Duration) -> Result<NtpReading, NtpError> {
    let addr = resolve(server)?;
    let name = addr.to_string();
    let io = |e: std::io::Error| NtpError::Io {
        addr: name.clone(),
        reason: e.to_string(),
    };
    let bind = if addr.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let socket = UdpSocket::bind(bind).map_err(io)?;
    socket.set_read_timeout(Some(timeout)).map_err(io)?;
    socket.connect(addr).map_err(io)?;
    let mut request = [0u8; PACKET_BYTES];
    request[0] = 0x23; // LI 0, version 4, mode 3 (client)
    let t1 = unix_now_s();
    let t1_bytes = to_ntp(t1);
    request[40..48].copy_from_slice(&t1_bytes);
    socket.send(&request).map_err(io)?;
    let mut reply = [0u8; 512];
    let n = match socket.recv(&mut reply) {
        Ok(n) => n,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            return Err(NtpError::Timeout {
                addr: name,
                timeout_ms: timeout.as_millis(),
            })
        }
        Err(e) => return Err(io(e)),
    };
    let t4 = unix_now_s();
    let bad = |reason: &str| NtpError::BadReply {
        addr: name.clone(),
        reason: reason.to_string(),
    };
    if n < PACKET_BYTES {
        return Err(bad(&format!("{n} bytes, expected at least {PACKET_BYTES}")));
    }
    if reply[0] & 0x07 != 4 {
        return Err(bad("not a server reply (mode is not 4)"));
    }
    if reply[0] >> 6 == 3 {
        return Err(bad(
            "the server says its clock is not synchronised (leap indicator 3)",
        ));
    }
    if reply[1] == 0 {
        return Err(bad("kiss-of-death (stratum 0)"));
    }
    if reply[24..32] != t1_bytes {
        return Err(bad(
            "the reply does not answer our request (originate time differs)",
        ));
    }
    let t2 = from_ntp(&reply[32..40]);
    let t3 = from_ntp(&reply[40..48]);
    Ok(NtpReading {
        offset_s: ((t2 - t1) + (t3 - t4)) / 2.0,
        delay_s: (t4 - t1) - (t3 - t2),
    })
}

/// Queries `server` and fails with [`NtpError::OffsetTooLarge`] when the
/// offset is [`MAX_OFFSET`] or more. Never touches the clock.
pub fn check(server: &str, timeout: Duration) -> Result<NtpReading, NtpError> {
    let reading = query(server, timeout)?;
    if reading.offset_s.abs() >= MAX_OFFSET.as_secs_f64() {
        return Err(NtpError::OffsetTooLarge {
            addr: resolve(server)?.to_string(),
            offset_ms: reading.offset_s * 1000.0,
            bound_ms: MAX_OFFSET.as_millis(),
        });
    }
    Ok(reading)
}

/// A minimal SNTP server: answers every request with this host's clock plus
/// `shift_s`. Stops when dropped.
pub struct SntpResponder {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl SntpResponder {
    /// Binds `addr` (e.g. `127.0.0.1:123`, or port 0 for any free port).
    pub fn bind(addr: &str, shift_s: f64) -> std::io::Result<SntpResponder> {
        let socket = UdpSocket::bind(addr)?;
        socket.set_read_timeout(Some(Duration::from_millis(50)))?;
        let local = socket.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("sntp-responder".into())
            .spawn(move || serve(&socket, shift_s, &flag))?;
        Ok(SntpResponder {
            addr: local,
            stop,
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for SntpResponder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(socket: &UdpSocket, shift_s: f64, stop: &AtomicBool) {
    let mut buf = [0u8; 512];
    while !stop.load(Ordering::SeqCst) {
        let (n, peer) = match socket.recv_from(&mut buf) {
            Ok(x) => x,
            Err(_) => continue,
        };
        if n < PACKET_BYTES || buf[0] & 0x07 != 3 {
            continue;
        }
        let received = to_ntp(unix_now_s() + shift_s);
        let mut reply = [0u8; PACKET_BYTES];
        reply[0] = (buf[0] & 0x38) | 0x04; // LI 0, client's version, mode 4
        reply[1] = 1; // stratum 1: a primary reference (our own clock)
        reply[2] = buf[2];
        reply[3] = 0xEC; // precision about 2^-20 s
        reply[12..16].copy_from_slice(b"LOCL");
        reply[16..24].copy_from_slice(&received);
        reply[24..32].copy_from_slice(&buf[40..48]);
        reply[32..40].copy_from_slice(&received);
        reply[40..48].copy_from_slice(&to_ntp(unix_now_s() + shift_s));
        let _ = socket.send_to(&reply, peer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ntp_timestamps_round_trip() {
        let t = 1_800_000_000.25;
        assert!((from_ntp(&to_ntp(t)) - t).abs() < 1e-6);
    }

    #[test]
    fn offset_of_a_shifted_responder_is_measured_and_bounded() {
        let fine = SntpResponder::bind("127.0.0.1:0", 0.0).unwrap();
        let r = check(&fine.addr().to_string(), Duration::from_secs(2)).unwrap();
        assert!(r.offset_s.abs() < 0.05, "{r:?}");
        let ahead = SntpResponder::bind("127.0.0.1:0", 0.75).unwrap();
        let r = query(&ahead.addr().to_string(), Duration::from_secs(2)).unwrap();
        assert!((r.offset_s - 0.75).abs() < 0.05, "{r:?}");
        match check(&ahead.addr().to_string(), Duration::from_secs(2)) {
            Err(NtpError::OffsetTooLarge { offset_ms, .. }) => {
                assert!((offset_ms - 750.0).abs() < 50.0)
            }
            other => panic!("expected OffsetTooLarge, got {other:?}"),
        }
    }

    #[test]
    fn silent_server_times_out() {
        let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = silent.local_addr().unwrap().to_string();
        let e = query(&addr, Duration::from_millis(100)).unwrap_err();
        assert!(matches!(e, NtpError::Timeout { .. }), "{e}");
    }

    #[test]
    fn addresses_default_to_port_123() {
        assert_eq!(resolve("127.0.0.1").unwrap().port(), 123);
        assert_eq!(resolve("127.0.0.1:1234").unwrap().port(), 1234);
        assert_eq!(resolve("::1").unwrap().port(), 123);
        assert!(resolve("no such host.invalid").is_err());
    }
}
