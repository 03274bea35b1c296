//! A session's stages, in power-dev's order: what the director does to the
//! analyzers when the client starts and stops ranging and testing, and when
//! it is done or gives up. A stage either succeeds, refuses a command out of
//! order ([`StageError::WrongState`]: the session stays as it was), or fails
//! (any other error: the session is abandoned and its folder marked
//! incomplete, saying why).

use super::spl::{merge_analyzers, spl_line};
use super::{Conn, Refusal, Reply, Server};
use crate::analyzer::{self, Analyzer, AnalyzerError};
use crate::ntp;
use crate::protocol::Mode;
use crate::ranging::{testing_ranges, RangingError, TestingRanges};
use crate::result_folder;
use crate::session_log::SessionLog;
use crate::summary::Summary;
use power::meter::ptd::parse_sample_log;
use serde_json::json;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    Initial,
    Ranging,
    RangingDone,
    Testing,
    TestingDone,
}

pub(super) struct Session {
    pub(super) id: String,
    pub(super) dir: PathBuf,
    pub(super) state: State,
    pub(super) analyzers: Vec<Analyzer>,
    pub(super) ranges: Vec<Option<(String, String)>>,
    pub(super) go_time: Option<Instant>,
    pub(super) rehearsal: bool,
}

/// Why a stage did not happen.
#[derive(Debug, thiserror::Error)]
pub(super) enum StageError {
    #[error("command not valid in state {0:?}")]
    WrongState(State),
    #[error("server clock: {0}")]
    Clock(#[source] ntp::NtpError),
    #[error(transparent)]
    Analyzer(#[from] AnalyzerError),
    #[error("Error setting {setting} range: {source}")]
    Range {
        setting: &'static str,
        source: AnalyzerError,
    },
    #[error("analyzer {analyzer}: LOGFILE {}: {source}", path.display())]
    LogFile {
        analyzer: usize,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the ranging measurement ended too fast (less than 1 second), no PTDaemon logs generated for {session:?}"
    )]
    RangingTooShort { session: String },
    #[error("analyzer {analyzer}: {source}")]
    Ranging {
        analyzer: usize,
        source: RangingError,
    },
    #[error("analyzer {0}: no testing ranges")]
    NoRanges(usize),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Write(#[from] atomic_file::AtomicWriteError),
}

impl Server {
    pub(super) fn check_clock(&self, c: &mut Conn) -> Result<(), StageError> {
        match ntp::check(&self.config.ntp_server, Duration::from_secs(5)) {
            Ok(r) => {
                c.log.info(format!(
                    "NTP: offset = {:.3} s, delay = {:.3} s",
                    r.offset_s, r.delay_s
                ));
                Ok(())
            }
            Err(e) => Err(StageError::Clock(e)),
        }
    }

    pub(super) fn summary(c: &mut Conn) -> &mut Summary {
        c.summary.get_or_insert_with(Summary::default)
    }

    pub(super) fn start_ranging(
        &mut self,
        s: &mut Session,
        c: &mut Conn,
    ) -> Result<(), StageError> {
        match s.state {
            State::Ranging => return Ok(()),
            State::Initial => {}
            other => return Err(StageError::WrongState(other)),
        }
        self.check_clock(c)?;
        Self::summary(c).phase(Mode::Ranging, 0);
        let n = self.config.analyzers.len();
        let stdout_paths: Vec<PathBuf> = (1..=n)
            .map(|i| {
                if n == 1 {
                    s.dir.join("power/ptd_logs.txt")
                } else {
                    s.dir.join(format!("power/ptd_logs_analyzer_{i}.txt"))
                }
            })
            .collect();
        for (i, cfg) in self.config.analyzers.iter().enumerate() {
            c.log.info(format!(
                "Analyzer [{}] is running PTDaemon: {:?}",
                i + 1,
                cfg.command(
                    &self.config.ptd_path,
                    &analyzer::logfile_path(&self.config.out_dir, i + 1)
                )
            ));
            let a = Analyzer::start(
                i + 1,
                cfg,
                &self.config.ptd_path,
                &analyzer::logfile_path(&self.config.out_dir, i + 1),
                &stdout_paths[i],
                self.config.ptd_timeouts,
                self.config.ptd_start_timeout,
            )?;
            c.log.info(format!(
                "Analyzer [{}] identifies as {:?}",
                i + 1,
                a.identify_reply
            ));
            if a.identify_reply.contains("joulebench virtual analyzer") {
                let rehearsal = a.identify_reply.contains("REHEARSAL");
                s.rehearsal |= rehearsal;
                c.log.warn(if rehearsal {
                    "the analyzer is joulebench's virtual analyzer in REHEARSAL mode: this \
                     session is a rehearsal, not a measurement"
                } else {
                    "the analyzer is joulebench's virtual analyzer: readings come from a software \
                     meter, not a power analyzer"
                });
                let sm = Self::summary(c);
                sm.joulebench.insert("virtual_analyzer".into(), json!(true));
                if rehearsal {
                    sm.joulebench.insert("rehearsal".into(), json!(true));
                    sm.joulebench.insert(
                        "note".into(),
                        json!(
                            "REHEARSAL: not a measurement; readings come from a joulebench meter"
                        ),
                    );
                }
            }
            s.analyzers.push(a);
        }
        for a in &mut s.analyzers {
            a.cmd_ok("SR,V,Auto")?;
            a.cmd_ok("SR,A,Auto")?;
        }
        for a in &mut s.analyzers {
            a.cmd_ok("SR,A,Auto")?;
        }
        std::thread::sleep(self.config.settle);
        c.log.info("Starting ranging mode");
        let mark = format!("{}_ranging", s.id);
        for a in &mut s.analyzers {
            a.cmd_ok(&format!("Go,1000,0,{mark}"))?;
        }
        s.go_time = Some(Instant::now());
        s.state = State::Ranging;
        Self::summary(c).phase(Mode::Ranging, 1);
        Ok(())
    }

    pub(super) fn read_stage(
        &self,
        s: &mut Session,
        mode: Mode,
        c: &mut Conn,
    ) -> Result<Vec<(String, String)>, StageError> {
        let mark = format!("{}_{}", s.id, mode.as_str());
        let mut per_analyzer = Vec::new();
        let mut outs = Vec::new();
        for a in &mut s.analyzers {
            let (mut watts, mut unc) = (String::new(), String::new());
            if mode == Mode::Testing {
                watts = a.cmd("Watts")?;
                unc = a.cmd("Uncertainty")?;
            }
            a.cmd_ok("Stop")?;
            let lines = a.read_lines()?;
            a.cmd("Uncertainty")?;
            a.cmd("Watts")?;
            c.log
                .info(format!("read {} samples for {mark}", lines.len()));
            per_analyzer.push(lines.iter().map(|l| spl_line(l, &mark)).collect::<Vec<_>>());
            outs.push((watts, unc));
        }
        let dir = s.dir.join(mode.dir());
        std::fs::create_dir_all(&dir).map_err(|source| StageError::Io {
            path: dir.clone(),
            source,
        })?;
        let mut text = String::new();
        if s.rehearsal {
            text.push_str("# joulebench REHEARSAL: these samples come from a software meter, not a power analyzer\n");
        }
        for l in merge_analyzers(&per_analyzer) {
            text.push_str(&l);
            text.push('\n');
        }
        let spl = dir.join("spl.txt");
        atomic_file::write(&spl, text.as_bytes())?;
        Ok(outs)
    }

    pub(super) fn stop_ranging(&mut self, s: &mut Session, c: &mut Conn) -> Result<(), StageError> {
        match s.state {
            State::RangingDone => return Ok(()),
            State::Ranging => {}
            other => return Err(StageError::WrongState(other)),
        }
        Self::summary(c).phase(Mode::Ranging, 2);
        std::thread::sleep(self.config.settle);
        self.read_stage(s, Mode::Ranging, c)?;
        let mark = format!("{}_ranging", s.id);
        for (i, cfg) in self.config.analyzers.iter().enumerate() {
            let path = analyzer::logfile_path(&self.config.out_dir, i + 1);
            let text = std::fs::read_to_string(&path).map_err(|source| StageError::LogFile {
                analyzer: i + 1,
                path: path.clone(),
                source,
            })?;
            let (samples, _) = parse_sample_log(&text);
            let cap = analyzer::max_current_for_device(cfg.device_type);
            let r: TestingRanges = match testing_ranges(&samples, &mark, cap) {
                Ok(r) => r,
                Err(err) => {
                    let short = s
                        .go_time
                        .is_some_and(|t| t.elapsed() < Duration::from_secs(1));
                    return Err(if short {
                        StageError::RangingTooShort {
                            session: s.id.clone(),
                        }
                    } else {
                        StageError::Ranging {
                            analyzer: i + 1,
                            source: err,
                        }
                    });
                }
            };
            if r.amps_capped {
                c.log.warn(format!(
                    "Analyzer [{}] current range capped at the model's {} A",
                    i + 1,
                    r.amps_a
                ));
            }
            let (v, a) = r.settings();
            c.log.info(format!(
                "Analyzer [{}] testing ranges: {} V, {} A (max {} V, 1.1 x max amps)",
                i + 1,
                v.to_command_value(),
                a.to_command_value(),
                r.volts_v
            ));
            s.ranges[i] = Some((v.to_command_value(), a.to_command_value()));
        }
        s.go_time = None;
        s.state = State::RangingDone;
        Self::summary(c).phase(Mode::Ranging, 3);
        Ok(())
    }

    pub(super) fn start_testing(
        &mut self,
        s: &mut Session,
        c: &mut Conn,
    ) -> Result<(), StageError> {
        match s.state {
            State::Testing => return Ok(()),
            State::RangingDone => {}
            other => return Err(StageError::WrongState(other)),
        }
        self.check_clock(c)?;
        Self::summary(c).phase(Mode::Testing, 0);
        for (i, a) in s.analyzers.iter_mut().enumerate() {
            let Some((v, amps)) = s.ranges.get(i).cloned().flatten() else {
                return Err(StageError::NoRanges(i + 1));
            };
            a.cmd_ok(&format!("SR,V,{v}"))
                .map_err(|source| StageError::Range {
                    setting: "voltage",
                    source,
                })?;
            a.cmd_ok(&format!("SR,A,{amps}"))
                .map_err(|source| StageError::Range {
                    setting: "current",
                    source,
                })?;
        }
        std::thread::sleep(self.config.settle);
        c.log.info("Starting testing mode");
        let mark = format!("{}_testing", s.id);
        for a in &mut s.analyzers {
            a.cmd_ok(&format!("Go,1000,0,{mark}"))?;
        }
        s.state = State::Testing;
        Self::summary(c).phase(Mode::Testing, 1);
        Ok(())
    }

    pub(super) fn stop_testing(&mut self, s: &mut Session, c: &mut Conn) -> Result<(), StageError> {
        match s.state {
            State::TestingDone => return Ok(()),
            State::Testing => {}
            other => return Err(StageError::WrongState(other)),
        }
        Self::summary(c).phase(Mode::Testing, 2);
        std::thread::sleep(self.config.settle);
        let outs = self.read_stage(s, Mode::Testing, c)?;
        let mut text = String::new();
        if s.rehearsal {
            text.push_str("# joulebench REHEARSAL: not a measurement\n");
        }
        for (i, (w, u)) in outs.iter().enumerate() {
            text.push_str(&format!(
                "Analyzer {}:\nPower: {w} \nUncertainty: {u}\n",
                i + 1
            ));
        }
        let path = s.dir.join("run_1/ptd_out.txt");
        atomic_file::write(&path, text.as_bytes())?;
        s.state = State::TestingDone;
        Self::summary(c).phase(Mode::Testing, 3);
        Ok(())
    }

    /// Stops the analyzers and collects their transcripts.
    pub(super) fn stop_analyzers(s: &mut Session, log: &mut SessionLog) -> Vec<(String, String)> {
        let mut ptd_messages = Vec::new();
        for (i, a) in s.analyzers.iter_mut().enumerate() {
            if let Some(e) = a.terminate() {
                log.error(format!("Analyzer [{}]: restoring ranges: {e}", i + 1));
            } else {
                log.info(format!(
                    "Analyzer [{}] set initial values for Amps {} and Volts {}",
                    i + 1,
                    a.initial_amps,
                    a.initial_volts
                ));
            }
            ptd_messages.extend(
                a.transcript()
                    .iter()
                    .map(|x| (x.command.clone(), x.reply.clone())),
            );
        }
        let n = s.analyzers.len();
        s.analyzers.clear();
        if n > 1 {
            let mut all = String::new();
            for i in 1..=n {
                let p = s.dir.join(format!("power/ptd_logs_analyzer_{i}.txt"));
                all.push_str(&format!("Analyzer {i}\n"));
                all.push_str(&std::fs::read_to_string(&p).unwrap_or_default());
            }
            let _ = std::fs::write(s.dir.join("power/ptd_logs.txt"), all);
        }
        ptd_messages
    }

    pub(super) fn finish(&mut self, mut s: Session, c: &mut Conn) -> Reply {
        if s.state != State::TestingDone {
            let state = s.state;
            self.session = Some(s);
            return Err(Refusal::DoneTooEarly { state });
        }
        let ptd_messages = Self::stop_analyzers(&mut s, &mut c.log);
        let mut summary = c.summary.take().unwrap_or_default();
        summary.ptd_messages = Some(ptd_messages);
        let mut write = || -> std::io::Result<PathBuf> {
            c.log.write(&s.dir.join("power/server.log"))?;
            summary.results = crate::summary::hash_dir(&s.dir)?;
            summary.save(&s.dir.join("power/server.json"))?;
            if s.rehearsal {
                atomic_file::write(
                    &s.dir.join(result_folder::REHEARSAL_FILE),
                    b"REHEARSAL: this session ran on joulebench's virtual analyzer in rehearsal mode; \
                      it is not a measurement and must not be submitted.\n",
                )?;
            }
            result_folder::finish(&s.dir)
        };
        match write() {
            Ok(done) => {
                self.last_session = Some((s.id.clone(), done));
                Ok("OK".into())
            }
            Err(e) => {
                let refusal = Refusal::WriteFiles(e);
                let _ = result_folder::mark_incomplete(&s.dir, &refusal.to_string());
                Err(refusal)
            }
        }
    }

    pub(super) fn abandon(&mut self, mut s: Session, reason: &str, log: &mut SessionLog) {
        log.error(format!("session {} abandoned: {reason}", s.id));
        let ptd_messages = Self::stop_analyzers(&mut s, log);
        let _ = log.write(&s.dir.join("power/server.log"));
        let mut summary = Summary::new("server");
        summary.session_name = Some(s.id.clone());
        summary.ptd_messages = Some(ptd_messages);
        summary
            .joulebench
            .insert("incomplete".into(), json!(reason));
        let _ = summary.save(&s.dir.join("power/server.json"));
        let _ = result_folder::mark_incomplete(&s.dir, reason);
    }
}
