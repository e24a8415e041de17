//! Clean shutdown on SIGINT and SIGTERM. Long jobs (`run`, `profile`) poll
//! [`requested`] between units of work — a frame, a table entry — then save
//! what they have, print their summary and return [`Interrupted`]; `main`
//! exits with 128 + the signal's number (130, 143), as shells expect. A
//! second signal exits at once.
//!
//! Without [`install`] (the library used on its own, the tests) nothing
//! changes: the signals keep their default action.

use std::sync::atomic::{AtomicI32, Ordering};

static SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(signal: libc::c_int) {
    // Only async-signal-safe work here: an atomic swap and _exit.
    if SIGNAL.swap(signal, Ordering::SeqCst) != 0 {
        unsafe { libc::_exit(128 + signal) };
    }
}

/// Routes SIGINT and SIGTERM to [`requested`] (once per process).
pub fn install() {
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only touches an atomic and calls _exit.
        unsafe { libc::signal(signal, handler) };
    }
}

/// The signal that asked this process to stop, if one did.
pub fn requested() -> Option<Interrupted> {
    match SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        signal => Some(Interrupted { signal }),
    }
}

/// A job stopped by a signal after saving its work.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("interrupted by {}", signal_name(*.signal))]
pub struct Interrupted {
    pub signal: i32,
}

impl Interrupted {
    /// The shell's convention: 128 + the signal number.
    pub fn exit_code(&self) -> u8 {
        (128 + self.signal).clamp(0, 255) as u8
    }
}

fn signal_name(signal: i32) -> String {
    match signal {
        libc::SIGINT => "SIGINT".into(),
        libc::SIGTERM => "SIGTERM".into(),
        s => format!("signal {s}"),
    }
}
