//! Jobs this server leased as it wrote them, with their workflow row as written and that
//! row's version. A completion of such a job is decided from memory, with no read and no lock
//! round trip, and written with one statement that applies it only while the row is still
//! that version and the job still under that lease (`store::batch::complete_warm`). Any
//! other write of the row (another server, an operator, a timeout, the sweeper) changes its
//! version, and the completion takes the locking path instead. So an entry may go stale, but
//! it is never trusted without that check.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::Utc;
use serde_json::Value;
use uuid::Uuid;

use crate::store::batch::Written;
use crate::store::jobs::{JobRecord, JobState};
use crate::store::workflows::{WorkflowRecord, WorkflowStatus};

/// Most entries kept. Entries leave when their job completes here; those whose completion
/// went to another server, or never came, leave once their lease has run out.
const MAX_WARM: usize = 10_000;

/// Most memory the entries' JSON may take (input and vars can be up to a megabyte each).
const MAX_WARM_BYTES: usize = 64 << 20;

/// What an entry costs beyond its JSON.
const ENTRY_BYTES: usize = 1024;

/// A leased job with its workflow as this server last wrote it.
#[derive(Debug, Clone)]
pub(crate) struct Warm {
    /// The workflow row as written.
    pub workflow: WorkflowRecord,
    /// That row's version.
    pub version: i64,
    /// The job, as written with its lease.
    pub job: JobRecord,
}

/// Warm jobs by id.
#[derive(Debug, Default)]
pub(crate) struct WarmJobs {
    entries: Mutex<Entries>,
}

/// The entries, each with its size, and their total size.
#[derive(Debug, Default)]
struct Entries {
    by_job: HashMap<i64, (Warm, usize)>,
    bytes: usize,
}

impl Entries {
    fn remove(&mut self, job_id: i64) -> Option<Warm> {
        let (warm, size) = self.by_job.remove(&job_id)?;
        self.bytes -= size;
        Some(warm)
    }

    fn has_room(&self, size: usize) -> bool {
        self.by_job.len() < MAX_WARM && self.bytes + size <= MAX_WARM_BYTES
    }

    /// Drops the entries whose lease has run out: their job cannot be completed warm.
    fn drop_expired(&mut self) {
        let now = Utc::now();
        let expired: Vec<i64> = self
            .by_job
            .iter()
            .filter(|(_, (w, _))| w.job.lease_ran_out(now) != Some(false))
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            self.remove(id);
        }
    }
}

/// About how much memory a JSON value takes.
fn json_bytes(value: &Value) -> usize {
    16 + match value {
        Value::String(s) => s.len(),
        Value::Array(items) => items.iter().map(json_bytes).sum(),
        Value::Object(fields) => fields.iter().map(|(k, v)| k.len() + json_bytes(v)).sum(),
        Value::Null | Value::Bool(_) | Value::Number(_) => 0,
    }
}

impl WarmJobs {
    /// Remembers each written workflow that runs with a job leased to a worker.
    pub fn remember(&self, written: &[Written]) {
        let mut entries = self.entries.lock().expect("warm jobs lock");
        for w in written {
            let Some(job) = &w.job else { continue };
            let leased = job.state == JobState::Active
                && job.operation.is_some()
                && job.lease_token.is_some()
                && job.lease_expires_at.is_some();
            if w.workflow.status != WorkflowStatus::Running || !leased {
                continue;
            }
            let size = ENTRY_BYTES + json_bytes(&w.workflow.input) + json_bytes(&w.workflow.vars);
            if !entries.has_room(size) {
                entries.drop_expired();
                if !entries.has_room(size) {
                    continue;
                }
            }
            let warm = Warm {
                workflow: w.workflow.clone(),
                version: w.version,
                job: job.clone(),
            };
            if let Some((_, replaced)) = entries.by_job.insert(job.id, (warm, size)) {
                entries.bytes -= replaced;
            }
            entries.bytes += size;
        }
    }

    /// Takes the entries of every job of `leases` (job id and lease token), or None, taking
    /// nothing, unless each one is warm under that very lease and no two share a workflow.
    pub fn take_all(&self, leases: &[(i64, Uuid)]) -> Option<Vec<Warm>> {
        let mut entries = self.entries.lock().expect("warm jobs lock");
        let mut workflows = Vec::with_capacity(leases.len());
        for (id, token) in leases {
            let (warm, _) = entries.by_job.get(id)?;
            if warm.job.lease_token != Some(*token) || workflows.contains(&warm.workflow.id) {
                return None;
            }
            workflows.push(warm.workflow.id);
        }
        leases.iter().map(|(id, _)| entries.remove(*id)).collect()
    }

    /// Forgets jobs that ended here by another path.
    pub fn forget(&self, job_ids: impl IntoIterator<Item = i64>) {
        let mut entries = self.entries.lock().expect("warm jobs lock");
        for id in job_ids {
            entries.remove(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::Duration;
    use serde_json::json;

    use super::*;

    fn written(job_id: i64, workflow: Uuid, status: WorkflowStatus, state: JobState) -> Written {
        let now = Utc::now();
        Written {
            workflow: WorkflowRecord {
                id: workflow,
                graph_name: "g".into(),
                graph_version: 1,
                status,
                current_node: Some("work".into()),
                input: json!({}),
                vars: json!({}),
                step_count: 0,
                streaks: BTreeMap::new(),
                outcome: None,
                idempotency_key: None,
                request_hash: None,
                schedule_id: None,
                start_at: None,
                deadline_at: None,
                incident: None,
                current_job_id: Some(job_id),
                created_at: now,
                updated_at: now,
                ended_at: None,
            },
            version: 7,
            job: Some(JobRecord {
                state,
                ..JobRecord::leased_for_test(
                    job_id,
                    workflow,
                    Uuid::from_u128(job_id as u128),
                    now + Duration::seconds(30),
                )
            }),
        }
    }

    fn lease(job_id: i64) -> (i64, Uuid) {
        (job_id, Uuid::from_u128(job_id as u128))
    }

    fn running(job_id: i64) -> Written {
        let workflow = Uuid::from_u128(1000 + job_id as u128);
        written(job_id, workflow, WorkflowStatus::Running, JobState::Active)
    }

    #[test]
    fn only_running_workflows_with_a_leased_job_are_remembered() {
        let warm = WarmJobs::default();
        let mut ready = running(3);
        ready.job.as_mut().unwrap().lease_token = None;
        warm.remember(&[
            running(1),
            written(
                2,
                Uuid::from_u128(2),
                WorkflowStatus::Completed,
                JobState::Completed,
            ),
            ready,
        ]);
        assert!(warm.take_all(&[lease(2)]).is_none(), "a finished workflow");
        assert!(warm.take_all(&[lease(3)]).is_none(), "a job not leased");
        let taken = warm.take_all(&[lease(1)]).unwrap();
        assert_eq!(taken[0].job.id, 1);
        assert_eq!(taken[0].version, 7);
        assert!(warm.take_all(&[lease(1)]).is_none(), "taken once");
    }

    #[test]
    fn a_batch_is_taken_whole_or_not_at_all() {
        let warm = WarmJobs::default();
        warm.remember(&[running(1), running(2)]);
        assert!(
            warm.take_all(&[lease(1), lease(9)]).is_none(),
            "job 9 is not warm"
        );
        let other_token = (2, Uuid::from_u128(99));
        assert!(
            warm.take_all(&[lease(1), other_token]).is_none(),
            "another lease"
        );
        let taken = warm.take_all(&[lease(2), lease(1)]).unwrap();
        let ids: Vec<i64> = taken.iter().map(|w| w.job.id).collect();
        assert_eq!(ids, [2, 1], "in the order asked");
    }

    #[test]
    fn two_jobs_of_one_workflow_are_not_taken_together() {
        let warm = WarmJobs::default();
        let workflow = Uuid::from_u128(5);
        warm.remember(&[
            written(1, workflow, WorkflowStatus::Running, JobState::Active),
            written(2, workflow, WorkflowStatus::Running, JobState::Active),
        ]);
        assert!(warm.take_all(&[lease(1), lease(2)]).is_none());
        assert!(warm.take_all(&[lease(1)]).is_some());
    }

    #[test]
    fn forgotten_jobs_are_not_taken() {
        let warm = WarmJobs::default();
        warm.remember(&[running(1), running(2)]);
        warm.forget([1]);
        assert!(warm.take_all(&[lease(1)]).is_none());
        assert!(warm.take_all(&[lease(2)]).is_some());
    }

    #[test]
    fn large_vars_count_against_a_memory_budget() {
        let warm = WarmJobs::default();
        let big = |job_id| {
            let mut w = running(job_id);
            w.workflow.vars = json!({ "blob": "x".repeat(1 << 20) });
            w
        };
        let fit = MAX_WARM_BYTES / (ENTRY_BYTES + (1 << 20) + 64);
        let many: Vec<Written> = (1..=fit as i64 + 5).map(big).collect();
        warm.remember(&many);
        let bytes = warm.entries.lock().unwrap().bytes;
        assert!(bytes <= MAX_WARM_BYTES, "{bytes} bytes kept");
        assert!(
            warm.take_all(&[lease(1)]).is_some(),
            "the first ones are kept"
        );
        assert!(
            warm.take_all(&[lease(fit as i64 + 5)]).is_none(),
            "past the budget"
        );
        warm.remember(&[running(100_000)]);
        assert!(
            warm.take_all(&[lease(100_000)]).is_some(),
            "a small one fits in the room the taken one left"
        );
        assert_eq!(
            warm.entries.lock().unwrap().bytes,
            bytes - warm_size(&big(1))
        );
    }

    fn warm_size(w: &Written) -> usize {
        ENTRY_BYTES + json_bytes(&w.workflow.input) + json_bytes(&w.workflow.vars)
    }

    #[test]
    fn when_full_expired_leases_make_room_and_live_ones_stay() {
        let warm = WarmJobs::default();
        let mut expired = running(1);
        expired.job.as_mut().unwrap().lease_expires_at = Some(Utc::now() - Duration::seconds(1));
        warm.remember(&[expired]);
        let live: Vec<Written> = (2..=MAX_WARM as i64).map(running).collect();
        warm.remember(&live);
        warm.remember(&[running(100_000)]);
        assert!(
            warm.take_all(&[lease(1)]).is_none(),
            "the expired lease made room"
        );
        assert!(warm.take_all(&[lease(100_000)]).is_some());
        warm.remember(&[running(100_001), running(100_002)]);
        assert!(
            warm.take_all(&[lease(100_002)]).is_none(),
            "full of live leases"
        );
        assert!(warm.take_all(&[lease(2)]).is_some(), "live entries stay");
    }
}
