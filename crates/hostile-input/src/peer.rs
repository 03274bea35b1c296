//! Loopback peers that misbehave, for testing code that talks to other
//! machines: a PTDaemon, a BMC, a power-dev director or client, a scraper.
//!
//! A test runs the normal conversation up to some step, then hands the
//! stream to [`misbehave`], which does one [`Misbehaviour`] until the other
//! side closes the connection or a limit passes, and reports what it got
//! out ([`Outcome`]). The test then asserts on the other side's error and on
//! the outcome: that it gave up within its bound (`after`), and that it
//! stopped taking bytes (`bytes_sent` bounded: it did not buffer an endless
//! line).

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// What a hostile peer does once it reaches the step where it misbehaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Misbehaviour {
    /// Sends nothing, keeping the connection open.
    Silent,
    /// Sends these bytes (the start of a line, no line end), then nothing,
    /// keeping the connection open.
    StallMidLine(Vec<u8>),
    /// Sends one byte (never a line end) every interval: each read the other
    /// side makes succeeds, yet no line ever ends.
    Trickle(Duration),
    /// Sends bytes with no line end as fast as the other side takes them.
    EndlessLine,
    /// Sends these bytes, then closes.
    Garbage(Vec<u8>),
    /// Closes the connection.
    Close,
}

impl Misbehaviour {
    /// One of each kind (garbage: a few lines of non-UTF-8 and control
    /// bytes), for tests that try them all at each step.
    pub fn each() -> Vec<Misbehaviour> {
        vec![
            Misbehaviour::Silent,
            Misbehaviour::StallMidLine(b"OK 12".to_vec()),
            Misbehaviour::Trickle(Duration::from_millis(50)),
            Misbehaviour::EndlessLine,
            Misbehaviour::Garbage(b"\xff\xfe\x00garbage\r\n\x1b[2J,,,\r\n-1e999\n".to_vec()),
            Misbehaviour::Close,
        ]
    }

    /// Whether the other side can only notice this by waiting (a bound on
    /// time), rather than at once (a close, a bad line, a size limit).
    pub fn needs_a_timeout(&self) -> bool {
        matches!(
            self,
            Misbehaviour::Silent | Misbehaviour::StallMidLine(_) | Misbehaviour::Trickle(_)
        )
    }
}

/// How a misbehaviour ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The other side closed the connection (or reset it).
    OtherSideClosed,
    /// The limit passed with the connection still open: the other side
    /// neither gave up nor closed.
    LimitPassed,
    /// This peer closed ([`Misbehaviour::Close`], [`Misbehaviour::Garbage`]).
    WeClosed,
}

/// What a misbehaving peer got out before it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Bytes written by the misbehaviour (not counting the conversation
    /// before it).
    pub bytes_sent: u64,
    /// Bytes the other side sent meanwhile (read and dropped, so its writes
    /// never block on us).
    pub bytes_received: u64,
    pub ended: Ended,
    /// From the start of the misbehaviour to its end.
    pub after: Duration,
}

/// Carries out `how` on `stream` until the other side closes or `limit`
/// passes.
pub fn misbehave(mut stream: TcpStream, how: &Misbehaviour, limit: Duration) -> Outcome {
    let started = Instant::now();
    let mut out = Outcome {
        bytes_sent: 0,
        bytes_received: 0,
        ended: Ended::LimitPassed,
        after: Duration::ZERO,
    };
    let _ = stream.set_write_timeout(Some(Duration::from_millis(100)));
    let send = |stream: &mut TcpStream, bytes: &[u8], out: &mut Outcome| -> bool {
        match stream.write(bytes) {
            Ok(n) => {
                out.bytes_sent += n as u64;
                true
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => true,
            Err(_) => false,
        }
    };
    match how {
        Misbehaviour::Close => {
            out.ended = Ended::WeClosed;
            return out;
        }
        Misbehaviour::Garbage(bytes) => {
            let _ = stream.write_all(bytes);
            out.bytes_sent = bytes.len() as u64;
            // Let the other side read it before the close, so that it meets
            // the garbage rather than a reset.
            std::thread::sleep(Duration::from_millis(100));
            out.ended = Ended::WeClosed;
            out.after = started.elapsed();
            return out;
        }
        Misbehaviour::StallMidLine(bytes) if !send(&mut stream, bytes, &mut out) => {
            out.ended = Ended::OtherSideClosed;
            out.after = started.elapsed();
            return out;
        }
        _ => {}
    }
    let endless = vec![b'x'; 64 * 1024];
    let mut last_trickle = Instant::now() - Duration::from_secs(1);
    let mut last_look = Instant::now() - Duration::from_secs(1);
    while started.elapsed() < limit {
        let ok = match how {
            Misbehaviour::EndlessLine => send(&mut stream, &endless, &mut out),
            Misbehaviour::Trickle(every) if last_trickle.elapsed() >= *every => {
                last_trickle = Instant::now();
                send(&mut stream, b"7", &mut out)
            }
            _ => true,
        };
        // Looking for a close waits up to 10 ms; an endless line looks only
        // every 10 ms, so that it goes as fast as the other side reads.
        let look =
            *how != Misbehaviour::EndlessLine || last_look.elapsed() >= Duration::from_millis(10);
        let closed = look && other_side_closed(&mut stream, &mut out);
        if look {
            last_look = Instant::now();
        }
        if !ok || closed {
            out.ended = Ended::OtherSideClosed;
            break;
        }
    }
    out.after = started.elapsed();
    out
}

/// Sends `message` over and over and never reads what comes back (a
/// client that pipelines requests and ignores the replies), until the other
/// side closes (or resets) the connection or `limit` passes. Its replies
/// pile up in the kernel's buffers until its writes block: it must give up
/// on us, not wait for ever. `bytes_received` stays 0.
pub fn flood_without_reading(mut stream: TcpStream, message: &[u8], limit: Duration) -> Outcome {
    let started = Instant::now();
    let mut out = Outcome {
        bytes_sent: 0,
        bytes_received: 0,
        ended: Ended::LimitPassed,
        after: Duration::ZERO,
    };
    let _ = stream.set_write_timeout(Some(Duration::from_millis(100)));
    let batch = message.repeat((16 * 1024 / message.len().max(1)).max(1));
    while started.elapsed() < limit {
        match stream.write(&batch) {
            Ok(0) => {
                out.ended = Ended::OtherSideClosed;
                break;
            }
            Ok(n) => out.bytes_sent += n as u64,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => {
                out.ended = Ended::OtherSideClosed;
                break;
            }
        }
    }
    out.after = started.elapsed();
    out
}

/// Reads (and drops) what the other side sent within a short wait; true
/// when it has closed the connection.
fn other_side_closed(stream: &mut TcpStream, out: &mut Outcome) -> bool {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(10)));
    let mut buf = [0u8; 4096];
    match stream.read(&mut buf) {
        Ok(0) => true,
        Ok(n) => {
            out.bytes_received += n as u64;
            false
        }
        Err(e) => !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
    }
}

/// Reads one line (without its `\n` or `\r\n`) of at most 64 KiB, waiting
/// at most `wait`: the well-behaved part of a scripted peer's conversation.
/// `None` when the other side closed, went silent or sent too much.
pub fn read_line(stream: &mut TcpStream, wait: Duration) -> Option<String> {
    let _ = stream.set_read_timeout(Some(wait));
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match stream.read(&mut byte) {
            Ok(1) if byte[0] == b'\n' => break,
            Ok(1) if line.len() < 64 * 1024 => line.push(byte[0]),
            _ => return None,
        }
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Some(String::from_utf8_lossy(&line).into_owned())
}

/// Resident memory of a process in KiB (`VmRSS` in `/proc/PID/status`).
pub fn resident_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmRSS:")
}

/// Resident anonymous memory of a process in KiB (`RssAnon`): the heap and
/// stacks, where a buffered hostile line would be, without the file pages
/// (the executable, read files) that come and go with the page cache. A
/// test's bound on what a server buffers for a hostile client.
pub fn resident_anonymous_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "RssAnon:")
}

fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Threads of a process (`Threads` in `/proc/PID/status`): a test's bound
/// on what a server spawns for hostile clients.
pub fn thread_count(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))?
        .trim()
        .parse()
        .ok()
}

/// Samples a process's resident memory in the background (every 20 ms)
/// and keeps the peak: what a server held while a hostile client sent an
/// endless line, even if it freed it once the client left.
pub struct ResidentWatch {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<Option<u64>>>,
    /// Resident KiB when the watch began.
    pub start_kib: u64,
}

impl ResidentWatch {
    /// Starts watching `pid`; `None` when its resident size cannot be read.
    pub fn start(pid: u32) -> Option<ResidentWatch> {
        use std::sync::atomic::{AtomicBool, Ordering};
        let start_kib = resident_kib(pid)?;
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let flag = std::sync::Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut peak = resident_kib(pid)?;
            while !flag.load(Ordering::SeqCst) {
                if let Some(now) = resident_kib(pid) {
                    peak = peak.max(now);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Some(peak.max(resident_kib(pid).unwrap_or(0)))
        });
        Some(ResidentWatch {
            stop,
            thread: Some(thread),
            start_kib,
        })
    }

    /// Stops watching; the largest growth seen over the start, in KiB
    /// (`None` when the process went away).
    pub fn peak_growth_kib(mut self) -> Option<u64> {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let peak = self.thread.take()?.join().ok()??;
        Some(peak.saturating_sub(self.start_kib))
    }
}

impl Drop for ResidentWatch {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (b, _) = l.accept().unwrap();
        (a, b)
    }

    #[test]
    fn a_stall_lasts_until_the_other_side_closes() {
        let (ours, theirs) = pair();
        let closer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            drop(theirs);
        });
        let out = misbehave(
            ours,
            &Misbehaviour::StallMidLine(b"abc".to_vec()),
            Duration::from_secs(10),
        );
        closer.join().unwrap();
        assert_eq!(out.ended, Ended::OtherSideClosed);
        assert_eq!(out.bytes_sent, 3);
        assert!(out.after >= Duration::from_millis(250), "{out:?}");
        assert!(out.after < Duration::from_secs(5), "{out:?}");
    }

    #[test]
    fn an_endless_line_stops_when_the_reader_stops_reading_and_the_limit_passes() {
        let (ours, theirs) = pair();
        let out = misbehave(ours, &Misbehaviour::EndlessLine, Duration::from_millis(300));
        assert_eq!(out.ended, Ended::LimitPassed);
        // The kernel's buffers take a few MB at most; then writes block.
        assert!(out.bytes_sent > 0 && out.bytes_sent < 64 << 20, "{out:?}");
        drop(theirs);
    }

    #[test]
    fn a_flood_ends_when_the_other_side_closes_or_the_limit_passes() {
        let (ours, theirs) = pair();
        let closer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            drop(theirs);
        });
        let out = flood_without_reading(ours, b"GET / HTTP/1.1\r\n\r\n", Duration::from_secs(10));
        closer.join().unwrap();
        assert_eq!(out.ended, Ended::OtherSideClosed, "{out:?}");
        assert!(out.after >= Duration::from_millis(250), "{out:?}");
        assert!(out.after < Duration::from_secs(5), "{out:?}");
        assert_eq!(out.bytes_received, 0);

        // A reader that neither reads nor closes: the writes block, the
        // limit ends it.
        let (ours, theirs) = pair();
        let out = flood_without_reading(ours, b"x", Duration::from_millis(300));
        assert_eq!(out.ended, Ended::LimitPassed, "{out:?}");
        assert!(out.bytes_sent > 0 && out.bytes_sent < 64 << 20, "{out:?}");
        drop(theirs);
    }

    #[test]
    fn an_endless_line_goes_as_fast_as_the_other_side_reads() {
        let (ours, mut theirs) = pair();
        let reader = std::thread::spawn(move || {
            let mut buf = vec![0u8; 1 << 16];
            let mut got = 0u64;
            let started = Instant::now();
            while got < 64 << 20 && started.elapsed() < Duration::from_secs(8) {
                match theirs.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got += n as u64,
                }
            }
            (got, started.elapsed())
        });
        let out = misbehave(ours, &Misbehaviour::EndlessLine, Duration::from_secs(30));
        let (got, took) = reader.join().unwrap();
        assert_eq!(out.ended, Ended::OtherSideClosed, "{out:?}");
        // 64 MiB within 8 s: not 64 KiB per 10 ms wait for a close (6.4 MB/s).
        assert!(got >= 64 << 20, "{got} bytes in {took:?}");
    }

    #[test]
    fn read_line_strips_the_line_end_and_sees_a_close() {
        let (mut ours, mut theirs) = pair();
        theirs.write_all(b"hello\r\nrest").unwrap();
        drop(theirs);
        assert_eq!(
            read_line(&mut ours, Duration::from_secs(5)).as_deref(),
            Some("hello")
        );
        assert_eq!(read_line(&mut ours, Duration::from_secs(5)), None);
    }

    #[test]
    fn this_process_has_a_resident_size() {
        let pid = std::process::id();
        assert!(resident_kib(pid).unwrap() >= resident_anonymous_kib(pid).unwrap());
        assert!(resident_anonymous_kib(pid).unwrap() > 0);
    }

    #[test]
    fn thread_count_sees_a_new_thread() {
        let pid = std::process::id();
        let before = thread_count(pid).unwrap();
        assert!(before >= 1);
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || rx.recv().ok());
        // Other tests' threads come and go; ours is there at least.
        assert!(thread_count(pid).unwrap() >= 2);
        drop(tx);
        t.join().unwrap();
        assert_eq!(thread_count(u32::MAX), None);
    }

    #[test]
    fn a_resident_watch_sees_a_peak_that_was_freed() {
        let watch = ResidentWatch::start(std::process::id()).unwrap();
        {
            // 64 MiB touched, held a while, then freed.
            let v = vec![1u8; 64 << 20];
            std::thread::sleep(Duration::from_millis(200));
            assert_eq!(v[v.len() - 1], 1);
        }
        std::thread::sleep(Duration::from_millis(50));
        let growth = watch.peak_growth_kib().unwrap();
        assert!(growth >= 32 << 10, "{growth} KiB");
        assert!(ResidentWatch::start(u32::MAX).is_none());
    }
}
