//! Ctrl-C, SIGTERM and SIGHUP end a session cleanly: the first one sets a
//! flag that the measured thing polls (LoadGen stops issuing, a training loop
//! stops after its step), its logs are written and the result is marked
//! `interrupted`. A second one leaves at once with status 130.
//!
//! One handler per process (the `ctrlc` crate's rule): a front end that
//! forwards signals itself (`joulebench measure` passes them to its child)
//! does not install this one.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

/// The process's one interrupt flag, shared by everything that polls it.
#[derive(Debug, Clone)]
pub struct Interrupt(Arc<AtomicBool>);

static PROCESS_FLAG: OnceLock<Interrupt> = OnceLock::new();

impl Interrupt {
    /// A flag no signal sets (tests, or front ends that handle signals
    /// themselves).
    pub fn detached() -> Self {
        Interrupt(Arc::new(AtomicBool::new(false)))
    }

    /// The flag Ctrl-C/SIGTERM/SIGHUP set, installing the handler on first
    /// use; `what` says what finishing means ("the run's logs").
    pub fn on_signals(what: &'static str) -> Self {
        PROCESS_FLAG
            .get_or_init(|| {
                let flag = Interrupt::detached();
                let set = Arc::clone(&flag.0);
                let installed = ctrlc::set_handler(move || {
                    if set.swap(true, Ordering::SeqCst) {
                        std::process::exit(130);
                    }
                    eprintln!("\ninterrupted: finishing {what} (Ctrl-C again to quit at once)");
                });
                if let Err(e) = installed {
                    tracing::warn!("cannot install the Ctrl-C/SIGTERM handler: {e}");
                }
                flag
            })
            .clone()
    }

    /// The flag itself, for code that polls an `AtomicBool` (LoadGen's
    /// `RunControl::interrupt`).
    pub fn flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.0)
    }

    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    pub fn set(&self) {
        self.0.store(true, Ordering::SeqCst)
    }
}
