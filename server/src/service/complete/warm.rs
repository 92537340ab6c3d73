//! The warm way of a batch of completions: every job was leased by this server as it wrote
//! it (see `warm_jobs`), so the steps are decided from the rows as written and written with
//! ONE statement that first checks each workflow row is still that version.

use chrono::Utc;

use super::super::Service;
use super::super::group::BatchError;
use super::super::plan::{self, Judged};
use super::super::step::Outbox;
use super::super::types::Pending;
use super::super::warm_jobs::Warm;
use super::Decided;
use crate::store::batch::{self, Expected};
use crate::store::jobs::LockedJob;

impl Service {
    /// Applies a batch of warm completions with one statement. None, with nothing written,
    /// when a step cannot be decided from memory (a refusal, say): the locking way decides it
    /// from the stored rows. A completion whose workflow row changed since it was written
    /// here is answered None, for the next batch.
    pub(super) async fn try_warm(
        &self,
        batch: &[&Pending],
        warm: Vec<Warm>,
    ) -> Result<Option<Decided>, BatchError> {
        let client = self.pool().get().await?;
        let now = Utc::now();
        let mut rows = Vec::with_capacity(warm.len());
        for Warm {
            workflow,
            version,
            job,
        } in warm
        {
            let graph = self.graph_of(&client, &workflow).await?;
            rows.push((LockedJob { job, workflow, now }, version, graph));
        }
        let mut plans = Vec::with_capacity(batch.len());
        for (&pending, (locked, _, graph)) in batch.iter().zip(&rows) {
            match plan::judge(pending, locked, graph, self.limits(), rand::random()) {
                Judged::Step(plan) => plans.push(*plan),
                Judged::Repeat { .. } | Judged::Refused { .. } => return Ok(None),
            }
        }
        let mut expected = Vec::with_capacity(batch.len());
        let mut steps = Vec::with_capacity(batch.len());
        let mut writes = batch::Writes::default();
        for ((&pending, (_, version, _)), plan) in batch.iter().zip(&rows).zip(plans) {
            let id = plan.workflow.id;
            let mut step = Outbox::new();
            let completed = self.stage_completion(&client, plan, &mut step).await?;
            expected.push(Expected {
                workflow_id: id,
                version: *version,
                job_id: pending.job_id,
                token: pending.token,
            });
            writes.extend(std::mem::take(&mut step.writes));
            steps.push((completed, id, step));
        }
        let written = batch::complete_warm(&client, &expected, writes).await?;
        drop(client);
        self.metrics()
            .completion_batch(batch.len(), "warm", written.len());
        let mut outbox = Outbox::new();
        let mut results = Vec::with_capacity(batch.len());
        for (completed, id, step) in steps {
            if written.iter().any(|w| w.workflow.id == id) {
                outbox.extend(step);
                results.push(Some(Ok((completed, id))));
            } else {
                // Dropping the step hands its reserved poller back, uncounted.
                results.push(None);
            }
        }
        let created: Vec<_> = written.iter().filter_map(|w| w.job.clone()).collect();
        let leased = self.after_commit(
            &written,
            outbox.notices,
            outbox.leases,
            &outbox.counts,
            &created,
        );
        Ok(Some((results, leased)))
    }
}
