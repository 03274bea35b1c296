//! Shared by the `prom://` loopback tests: an exporter on loopback serving
//! whatever page the test sets, and a DCGM exporter page of the shape
//! dcgm-exporter 3.x writes.
#![allow(dead_code)]

use power::meter::prom::PromConfig;
use power::meter::{Meter, MeterError, Probe, Reading};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// An exporter on loopback serving whatever page (and status) the test sets.
pub struct FakeExporter {
    pub port: u16,
    page: Arc<Mutex<(u16, String)>>,
    pub hits: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Drop for FakeExporter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

impl FakeExporter {
    pub fn start(body: &str) -> FakeExporter {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let page = Arc::new(Mutex::new((200, body.to_string())));
        let hits = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, h, s) = (page.clone(), hits.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    return;
                }
                if let Ok(stream) = stream {
                    h.fetch_add(1, Ordering::SeqCst);
                    let (status, body) = p.lock().unwrap().clone();
                    serve(stream, status, &body);
                }
            }
        });
        FakeExporter {
            port,
            page,
            hits,
            stop,
        }
    }

    pub fn set(&self, body: &str) {
        *self.page.lock().unwrap() = (200, body.to_string());
    }

    pub fn set_status(&self, status: u16) {
        self.page.lock().unwrap().0 = status;
    }

    pub fn spec(&self, rest: &str) -> String {
        format!("prom://127.0.0.1:{}/metrics{rest}", self.port)
    }

    /// A config that fetches on every read, so that each read sees the page
    /// the test just set.
    pub fn config(&self, rest: &str) -> PromConfig {
        let mut c = PromConfig::from_spec(&self.spec(rest)).unwrap();
        c.share_within = Duration::ZERO;
        c.timeout = Duration::from_secs(3);
        c
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/metrics", self.port)
    }
}

pub fn serve(stream: TcpStream, status: u16, body: &str) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
    }
    let mut out = stream;
    let _ = write!(
        out,
        "HTTP/1.1 {status} X\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

pub fn split(probes: Vec<Probe>) -> (Vec<Box<dyn Meter>>, Vec<MeterError>) {
    let mut meters = Vec::new();
    let mut errors = Vec::new();
    for p in probes {
        match p {
            Probe::Usable(m) => meters.push(m),
            Probe::Unusable { error, .. } => errors.push(error),
        }
    }
    (meters, errors)
}

pub fn meter<'a>(meters: &'a mut [Box<dyn Meter>], id: &str) -> &'a mut Box<dyn Meter> {
    let ids: Vec<String> = meters.iter().map(|m| m.info().id.clone()).collect();
    meters
        .iter_mut()
        .find(|m| m.info().id == id)
        .unwrap_or_else(|| panic!("no meter {id} among {ids:?}"))
}

pub fn counter_uj(r: Reading) -> u64 {
    match r {
        Reading::Energy {
            counter_uj,
            wrap_uj,
        } => {
            assert_eq!(wrap_uj, None);
            counter_uj
        }
        other => panic!("not a counter: {other:?}"),
    }
}

pub const UUIDS: [&str; 2] = [
    "GPU-5fd4e2a1-8c3b-4f1e-9d2a-7b6c5e4d3f21",
    "GPU-a93b0c77-21de-4a55-8e0f-3c2b1a09f8e7",
];

/// A DCGM exporter page for two H100s with energy counters (mJ) and power
/// (W) as given.
pub fn dcgm_page(energy_mj: [u64; 2], watts: [f64; 2]) -> String {
    let labels = |g: usize| {
        format!(
            "gpu=\"{g}\",UUID=\"{}\",pci_bus_id=\"00000000:{:02X}:00.0\",device=\"nvidia{g}\",\
             modelName=\"NVIDIA H100 80GB HBM3\",Hostname=\"node1\",\
             DCGM_FI_DRIVER_VERSION=\"550.54.15\"",
            UUIDS[g],
            0x18 + g * 0x20
        )
    };
    let mut o = String::new();
    let mut family = |name: &str, kind: &str, help: &str, value: &dyn Fn(usize) -> String| {
        o.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for g in 0..2 {
            o.push_str(&format!("{name}{{{}}} {}\n", labels(g), value(g)));
        }
    };
    family(
        "DCGM_FI_DEV_SM_CLOCK",
        "gauge",
        "SM frequency (in MHz).",
        &|_| "1980".into(),
    );
    family(
        "DCGM_FI_DEV_GPU_TEMP",
        "gauge",
        "GPU temperature (in C).",
        &|g| format!("{}", 41 + g),
    );
    family(
        "DCGM_FI_DEV_POWER_USAGE",
        "gauge",
        "Power draw (in W).",
        &|g| format!("{:.6}", watts[g]),
    );
    family(
        "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
        "counter",
        "Total energy consumption since boot (in mJ).",
        &|g| energy_mj[g].to_string(),
    );
    family(
        "DCGM_FI_DEV_GPU_UTIL",
        "gauge",
        "GPU utilization (in %).",
        &|_| "97".into(),
    );
    o.push_str(
        "# HELP DCGM_FI_DEV_XID_ERRORS Value of the last XID error encountered.\n\
         # TYPE DCGM_FI_DEV_XID_ERRORS gauge\n\
         DCGM_FI_DEV_XID_ERRORS{gpu=\"0\",UUID=\"GPU-5fd4e2a1-8c3b-4f1e-9d2a-7b6c5e4d3f21\",\
         err_code=\"0\",err_msg=\"No \\\"Error\\\"\",Hostname=\"node1\"} 0\n",
    );
    o
}
