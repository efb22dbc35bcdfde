//! The core's `log` records (target `modelrouter`: a shared backend lost or regained) go to
//! Python's `logging`, logger `modelrouter`.
//!
//! The core logs from any thread, possibly one that holds a core lock while a Python thread
//! holding the GIL waits for that lock: taking the GIL there could deadlock. So `log()` only
//! queues the record (never blocks; a full queue drops it), and one forwarding thread, which
//! holds nothing else, takes the GIL to hand each record to Python. A forked child starts its
//! own forwarding thread on its first record.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Mutex;

use log::{Level, LevelFilter, Log, Metadata, Record};
use pyo3::prelude::*;

use crate::LOG_TARGET;

/// Records waiting for the forwarding thread; past this the newest are dropped.
const QUEUE: usize = 1024;

type Entry = (Level, String, String);

struct Forward {
    /// The forwarding thread's queue and the process it belongs to.
    queue: Mutex<Option<(u32, SyncSender<Entry>)>>,
}

impl Log for Forward {
    fn enabled(&self, meta: &Metadata<'_>) -> bool {
        meta.target().starts_with(LOG_TARGET) && meta.level() <= Level::Info
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        // A record is rare (one per transition): formatting it here costs nothing that matters.
        let entry = (
            record.level(),
            record.target().to_string(),
            record.args().to_string(),
        );
        let Ok(mut queue) = self.queue.try_lock() else {
            return; // another thread is starting the forwarder: never block a core thread
        };
        let pid = std::process::id();
        if !matches!(*queue, Some((owner, _)) if owner == pid) {
            let (tx, rx) = sync_channel(QUEUE);
            if std::thread::Builder::new()
                .name("modelrouter-log".into())
                .spawn(move || forward(rx))
                .is_err()
            {
                return;
            }
            *queue = Some((pid, tx));
        }
        if let Some((_, tx)) = queue.as_ref() {
            let _ = tx.try_send(entry);
        }
    }

    fn flush(&self) {}
}

/// Python's level number for a `log` level.
fn levelno(level: Level) -> u8 {
    match level {
        Level::Error => 40,
        Level::Warn => 30,
        Level::Info => 20,
        Level::Debug => 10,
        Level::Trace => 5,
    }
}

fn forward(rx: Receiver<Entry>) {
    for (level, target, message) in rx {
        // Not once the interpreter is shutting down: the record is dropped then.
        Python::try_attach(|py| {
            let sent = py
                .import("logging")
                .and_then(|logging| logging.call_method1("getLogger", (target.as_str(),)))
                .and_then(|logger| logger.call_method1("log", (levelno(level), "%s", message)));
            if let Err(e) = sent {
                e.write_unraisable(py, None);
            }
        });
    }
}

/// Installs the forwarding logger once per process (unless a Rust host installed its own).
pub fn install() {
    static FORWARD: Forward = Forward {
        queue: Mutex::new(None),
    };
    if log::set_logger(&FORWARD).is_ok() {
        log::set_max_level(LevelFilter::Info);
    }
}
