//! The asynchronous key-frame worker (`run --async-key`, 2 threads or more):
//! the key (spatial) net runs on its own thread while temporal nets keep
//! every frame on time on the caller's. A key frame's image is copied to the
//! worker; its pose comes back some frames later and the next propagated
//! frame starts from it (a pose a few frames old, which temporal nets are
//! trained to carry over gaps of several frames).

use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError};
use std::thread::JoinHandle;

use anyhow::{anyhow, Context, Result};

use super::frame::Frame;
use super::model::PoseModel;
use super::pose::Pose;
use super::preprocess::Roi;

struct Job {
    frame: Frame,
    roi: Roi,
    /// The caller's generation when submitted (a restart makes older jobs stale).
    generation: u64,
}

/// A key net on its own thread, one job at a time.
pub struct KeyWorker {
    jobs: Option<SyncSender<Job>>,
    results: Receiver<(u64, Result<Pose>)>,
    busy: bool,
    handle: Option<JoinHandle<()>>,
}

impl KeyWorker {
    /// Moves `model` (a spatial net) to a new thread.
    pub fn spawn(mut model: PoseModel) -> Result<KeyWorker> {
        let (jobs, inbox) = sync_channel::<Job>(1);
        let (outbox, results) = sync_channel(1);
        let handle = std::thread::Builder::new()
            .name("vipnas-key".into())
            .spawn(move || {
                for job in inbox {
                    let mut pose = Pose::default();
                    let r = model.estimate(&job.frame, &job.roi, &mut pose).map(|_| pose);
                    if outbox.send((job.generation, r)).is_err() {
                        break;
                    }
                }
            })
            .context("cannot start the key-frame worker thread")?;
        Ok(KeyWorker { jobs: Some(jobs), results, busy: false, handle: Some(handle) })
    }

    /// A job is in flight.
    pub fn busy(&self) -> bool {
        self.busy
    }

    /// Starts the key net on a copy of `frame` (the worker must be idle).
    pub fn submit(&mut self, frame: &Frame, roi: Roi, generation: u64) -> Result<()> {
        debug_assert!(!self.busy);
        let jobs = self.jobs.as_ref().context("the key-frame worker has stopped")?;
        jobs.send(Job { frame: frame.clone(), roi, generation })
            .map_err(|_| anyhow!("the key-frame worker has stopped"))?;
        self.busy = true;
        Ok(())
    }

    /// The finished job's pose and generation, if one has finished.
    pub fn poll(&mut self) -> Result<Option<(u64, Pose)>> {
        if !self.busy {
            return Ok(None);
        }
        match self.results.try_recv() {
            Ok((generation, pose)) => {
                self.busy = false;
                Ok(Some((generation, pose.context("key-frame worker")?)))
            }
            Err(TryRecvError::Empty) => Ok(None),
            Err(TryRecvError::Disconnected) => Err(anyhow!("the key-frame worker stopped (it panicked)")),
        }
    }
}

impl Drop for KeyWorker {
    fn drop(&mut self) {
        self.jobs = None; // ends the worker's loop
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
