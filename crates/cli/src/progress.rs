//! Progress on stderr while a run goes: phase, elapsed time against the
//! minimum duration, queries issued. Polls the load generator's counters from
//! its own thread, so the issuing thread never waits for the terminal.

use indicatif::{ProgressBar, ProgressStyle};
use loadgen::Progress;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

pub struct ProgressDisplay {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ProgressDisplay {
    pub fn start(progress: Arc<Progress>) -> ProgressDisplay {
        let stop = Arc::new(AtomicBool::new(false));
        let stop_flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            while !stop_flag.load(Ordering::Relaxed) {
                let elapsed = progress.elapsed().map_or(0.0, |d| d.as_secs_f64());
                let min_s = progress.min_duration_ms.load(Ordering::Relaxed) as f64 / 1000.0;
                let issued = progress.queries_issued.load(Ordering::Relaxed);
                let planned = progress.queries_planned.load(Ordering::Relaxed);
                bar.set_message(format!(
                    "{}: {elapsed:.1}/{min_s:.0} s, {issued}/{planned} queries issued",
                    progress.phase()
                ));
                bar.tick();
                std::thread::sleep(Duration::from_millis(200));
            }
            bar.finish_and_clear();
        });
        ProgressDisplay {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for ProgressDisplay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
