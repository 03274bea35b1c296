//! The Redfish meter against a loopback HTTP server that serves a BMC-like
//! Redfish tree (one chassis per resource shape) and checks basic auth.

use power::meter::redfish::{probe, Credentials, RedfishConfig};
use power::meter::{MeterError, Probe, Reading, Scope};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// (path, Authorization header) of every request the fake BMC served.
type RequestLog = Arc<Mutex<Vec<(String, Option<String>)>>>;
type Probed = (Vec<Box<dyn power::meter::Meter>>, Vec<(String, MeterError)>);

const USER: &str = "joule";
const PASSWORD: &str = "bench-pw";
/// base64("joule:bench-pw")
const GOOD_AUTH: &str = "Basic am91bGU6YmVuY2gtcHc=";

struct FakeBmc {
    port: u16,
    requests: RequestLog,
    /// The EnvironmentMetrics reading, in milliwatts, so the test can change it.
    env_mw: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for FakeBmc {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn tree(env_w: f64) -> HashMap<&'static str, String> {
    let mut t = HashMap::new();
    t.insert(
        "/redfish/v1/Chassis",
        r##"{"@odata.id":"/redfish/v1/Chassis","@odata.type":"#ChassisCollection.ChassisCollection",
            "Name":"Chassis Collection","Members@odata.count":4,"Members":[
            {"@odata.id":"/redfish/v1/Chassis/1"},
            {"@odata.id":"/redfish/v1/Chassis/GPU_Board"},
            {"@odata.id":"/redfish/v1/Chassis/PSU_Shelf"},
            {"@odata.id":"/redfish/v1/Chassis/Backplane"}]}"##
            .to_string(),
    );
    t.insert(
        "/redfish/v1/Chassis/1",
        r##"{"@odata.id":"/redfish/v1/Chassis/1","@odata.type":"#Chassis.v1_21_0.Chassis",
            "Id":"1","Name":"Computer System Chassis","ChassisType":"RackMount",
            "EnvironmentMetrics":{"@odata.id":"/redfish/v1/Chassis/1/EnvironmentMetrics"},
            "Power":{"@odata.id":"/redfish/v1/Chassis/1/Power"}}"##
            .to_string(),
    );
    t.insert(
        "/redfish/v1/Chassis/1/EnvironmentMetrics",
        format!(
            r##"{{"@odata.id":"/redfish/v1/Chassis/1/EnvironmentMetrics",
                "@odata.type":"#EnvironmentMetrics.v1_3_0.EnvironmentMetrics",
                "Id":"EnvironmentMetrics","Name":"Chassis Environment Metrics",
                "PowerWatts":{{"DataSourceUri":"/redfish/v1/Chassis/1/Sensors/TotalPower",
                "Reading":{env_w}}}}}"##
        ),
    );
    t.insert(
        "/redfish/v1/Chassis/1/Power",
        r##"{"PowerControl":[{"PowerConsumedWatts":999}]}"##.to_string(),
    );
    t.insert(
        "/redfish/v1/Chassis/GPU_Board",
        r##"{"@odata.id":"/redfish/v1/Chassis/GPU_Board","Id":"GPU_Board","ChassisType":"Module",
            "Power":{"@odata.id":"/redfish/v1/Chassis/GPU_Board/Power"}}"##
            .to_string(),
    );
    t.insert(
        "/redfish/v1/Chassis/GPU_Board/Power",
        r##"{"@odata.id":"/redfish/v1/Chassis/GPU_Board/Power","@odata.type":"#Power.v1_7_1.Power",
            "Id":"Power","Name":"Power","PowerControl":[
            {"@odata.id":"/redfish/v1/Chassis/GPU_Board/Power#/PowerControl/0","MemberId":"0",
             "Name":"Board Power Control","PowerConsumedWatts":288,
             "PowerMetrics":{"AverageConsumedWatts":280,"IntervalInMin":1}}]}"##
            .to_string(),
    );
    t.insert(
        "/redfish/v1/Chassis/PSU_Shelf",
        r##"{"Id":"PSU_Shelf","ChassisType":"Shelf",
            "PowerSubsystem":{"@odata.id":"/redfish/v1/Chassis/PSU_Shelf/PowerSubsystem"}}"##
            .to_string(),
    );
    t.insert(
        "/redfish/v1/Chassis/PSU_Shelf/PowerSubsystem",
        r##"{"Id":"PowerSubsystem","PowerSupplies":
            {"@odata.id":"/redfish/v1/Chassis/PSU_Shelf/PowerSubsystem/PowerSupplies"}}"##
            .to_string(),
    );
    t.insert(
        "/redfish/v1/Chassis/PSU_Shelf/PowerSubsystem/PowerSupplies",
        r##"{"Members":[
            {"@odata.id":"/redfish/v1/Chassis/PSU_Shelf/PowerSubsystem/PowerSupplies/PSU1"},
            {"@odata.id":"/redfish/v1/Chassis/PSU_Shelf/PowerSubsystem/PowerSupplies/PSU2"}]}"##
            .to_string(),
    );
    for (n, path) in [
        (
            1,
            "/redfish/v1/Chassis/PSU_Shelf/PowerSubsystem/PowerSupplies/PSU1",
        ),
        (
            2,
            "/redfish/v1/Chassis/PSU_Shelf/PowerSubsystem/PowerSupplies/PSU2",
        ),
    ] {
        t.insert(
            path,
            format!(r##"{{"Id":"PSU{n}","Metrics":{{"@odata.id":"{path}/Metrics"}}}}"##),
        );
    }
    t.insert(
        "/redfish/v1/Chassis/PSU_Shelf/PowerSubsystem/PowerSupplies/PSU1/Metrics",
        r##"{"InputPowerWatts":{"Reading":151.0}}"##.to_string(),
    );
    t.insert(
        "/redfish/v1/Chassis/PSU_Shelf/PowerSubsystem/PowerSupplies/PSU2/Metrics",
        r##"{"InputPowerWatts":{"Reading":149.5}}"##.to_string(),
    );
    t.insert(
        "/redfish/v1/Chassis/Backplane",
        r##"{"Id":"Backplane","ChassisType":"Backplane"}"##.to_string(),
    );
    t
}

impl FakeBmc {
    fn start() -> FakeBmc {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let env_mw = Arc::new(AtomicU64::new(312_500));
        let stop = Arc::new(AtomicBool::new(false));
        let (log, env, stopping) = (requests.clone(), env_mw.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !stopping.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let watts = env.load(Ordering::SeqCst) as f64 / 1000.0;
                        serve(stream, &log, watts);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        FakeBmc {
            port,
            requests,
            env_mw,
            stop,
            thread: Some(thread),
        }
    }

    fn config(&self, credentials: Option<Credentials>) -> RedfishConfig {
        RedfishConfig {
            base_url: format!("http://127.0.0.1:{}", self.port),
            credentials,
            accept_invalid_certs: false,
            timeout: Duration::from_secs(3),
        }
    }
}

fn serve(stream: TcpStream, log: &Mutex<Vec<(String, Option<String>)>>, env_w: f64) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string();
    let mut auth = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("authorization") {
                auth = Some(value.trim().to_string());
            }
        }
    }
    log.lock().unwrap().push((path.clone(), auth.clone()));
    let (status, body) = if auth.as_deref() != Some(GOOD_AUTH) {
        (
            "401 Unauthorized",
            r##"{"error":{"code":"Base.1.8.GeneralError","message":"Unauthorized"}}"##.to_string(),
        )
    } else {
        match tree(env_w).remove(path.as_str()) {
            Some(body) => ("200 OK", body),
            None => (
                "404 Not Found",
                r##"{"error":{"code":"NotFound"}}"##.to_string(),
            ),
        }
    };
    let mut out = stream;
    let extra = if status.starts_with("401") {
        "WWW-Authenticate: Basic realm=\"Redfish\"\r\n"
    } else {
        ""
    };
    let _ = write!(
        out,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

fn usable(probes: Vec<Probe>) -> Probed {
    let mut ok = Vec::new();
    let mut not = Vec::new();
    for p in probes {
        match p {
            Probe::Usable(m) => ok.push(m),
            Probe::Unusable { domain, error, .. } => not.push((domain, error)),
        }
    }
    (ok, not)
}

#[test]
fn every_resource_shape_is_discovered_and_read_with_basic_auth() {
    let bmc = FakeBmc::start();
    let (mut meters, unusable) = usable(probe(&bmc.config(Some(Credentials::new(USER, PASSWORD)))));
    let ids: Vec<&str> = meters.iter().map(|m| m.info().id.as_str()).collect();
    assert_eq!(ids, ["redfish-1", "redfish-GPU_Board", "redfish-PSU_Shelf"]);
    assert_eq!(meters[0].info().scope, Scope::Node);
    assert_eq!(meters[0].info().domain, "1");
    assert_eq!(meters[1].info().scope, Scope::Other);
    assert_eq!(meters[0].read().unwrap(), Reading::watts(312.5));
    assert_eq!(meters[1].read().unwrap(), Reading::watts(288.0));
    assert_eq!(meters[2].read().unwrap(), Reading::watts(300.5));

    assert_eq!(unusable.len(), 1);
    let (domain, error) = &unusable[0];
    assert_eq!(domain, "/redfish/v1/Chassis/Backplane");
    assert!(matches!(error, MeterError::NotPresent { .. }), "{error}");
    assert!(error.to_string().contains("Backplane"), "{error}");

    // Readings follow the BMC.
    bmc.env_mw.store(401_000, Ordering::SeqCst);
    assert_eq!(meters[0].read().unwrap(), Reading::watts(401.0));

    let requests = bmc.requests.lock().unwrap().clone();
    assert!(requests.len() > 10);
    for (path, auth) in &requests {
        assert_eq!(auth.as_deref(), Some(GOOD_AUTH), "{path}");
    }
    // EnvironmentMetrics wins over the legacy Power resource of chassis 1.
    assert!(!requests
        .iter()
        .any(|(p, _)| p == "/redfish/v1/Chassis/1/Power"));
}

#[test]
fn wrong_password_gives_a_clear_401_message() {
    let bmc = FakeBmc::start();
    let (meters, unusable) = usable(probe(&bmc.config(Some(Credentials::new(USER, "wrong")))));
    assert!(meters.is_empty());
    assert_eq!(unusable.len(), 1);
    let (domain, error) = &unusable[0];
    assert_eq!(domain, &format!("127.0.0.1:{}", bmc.port));
    match error {
        MeterError::Permission { reason, remedy, .. } => {
            assert!(reason.contains("401"), "{reason}");
            assert!(remedy.contains("REDFISH_USER"), "{remedy}");
            assert!(remedy.contains("refused"), "{remedy}");
        }
        other => panic!("expected Permission, got {other}"),
    }
    assert!(!error.to_string().contains("wrong"));
}

#[test]
fn missing_credentials_say_how_to_give_them() {
    let bmc = FakeBmc::start();
    let (_, unusable) = usable(probe(&bmc.config(None)));
    match &unusable[0].1 {
        MeterError::Permission { remedy, .. } => {
            assert!(remedy.contains("wants credentials"), "{remedy}")
        }
        other => panic!("expected Permission, got {other}"),
    }
    let requests = bmc.requests.lock().unwrap().clone();
    assert_eq!(requests, [("/redfish/v1/Chassis".to_string(), None)]);
}

#[test]
fn credentials_file_and_spec_build_a_working_config() {
    let bmc = FakeBmc::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bmc.cred");
    std::fs::write(&file, format!("{USER}:{PASSWORD}\n")).unwrap();
    let spec = format!("redfish+http://127.0.0.1:{}", bmc.port);
    let config = RedfishConfig::from_spec(&spec, Some(&file)).unwrap();
    let (meters, _) = usable(probe(&config));
    assert_eq!(meters.len(), 3);
    let missing = RedfishConfig::from_spec(&spec, Some(&dir.path().join("absent")));
    assert!(matches!(missing, Err(MeterError::Config { .. })));
}

#[test]
fn unreachable_bmc_is_not_present() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let config = RedfishConfig {
        base_url: format!("http://127.0.0.1:{port}"),
        credentials: Some(Credentials::new(USER, PASSWORD)),
        accept_invalid_certs: false,
        timeout: Duration::from_secs(2),
    };
    let (_, unusable) = usable(probe(&config));
    assert_eq!(unusable.len(), 1);
    assert!(
        matches!(unusable[0].1, MeterError::NotPresent { .. }),
        "{}",
        unusable[0].1
    );
}
