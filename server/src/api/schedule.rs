//! ScheduleService, and the conversion of schedules between the wire and the domain.

use std::time::Duration;

use rondo_gen::v1::{self, schedule_service_server::ScheduleService};
use tonic::{Request, Response, Status};

use super::ApiResult;
use super::convert::{duration, from_duration, timestamp};
use crate::service::Service;
use crate::service::schedules::CreateSchedule;
use crate::store::schedules::{Overlap, ScheduleRecord};

/// ScheduleService over the use cases.
#[derive(Clone)]
pub struct ScheduleApi(pub Service);

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

fn overlap(policy: i32) -> Result<Overlap, Status> {
    match v1::OverlapPolicy::try_from(policy) {
        Ok(v1::OverlapPolicy::Unspecified | v1::OverlapPolicy::Skip) => Ok(Overlap::Skip),
        Ok(v1::OverlapPolicy::Allow) => Ok(Overlap::Allow),
        Err(_) => Err(Status::invalid_argument(format!(
            "`overlap` {policy} is not an overlap policy; use SKIP or ALLOW"
        ))),
    }
}

fn create_request(s: v1::Schedule) -> Result<CreateSchedule, Status> {
    Ok(CreateSchedule {
        overlap: overlap(s.overlap)?,
        id: s.id,
        graph: s.graph,
        graph_version: s.graph_version,
        input: s.input,
        cron: non_empty(s.cron),
        time_zone: non_empty(s.time_zone),
        interval: s.interval.as_ref().map(from_duration),
        paused: s.paused,
    })
}

/// A schedule on the wire.
fn schedule(s: &ScheduleRecord) -> v1::Schedule {
    let overlap = match s.overlap {
        Overlap::Skip => v1::OverlapPolicy::Skip,
        Overlap::Allow => v1::OverlapPolicy::Allow,
    };
    v1::Schedule {
        id: s.id.clone(),
        graph: s.graph_name.clone(),
        graph_version: u32::try_from(s.graph_version).unwrap_or(0),
        input: s.input.to_string(),
        cron: s.cron.clone().unwrap_or_default(),
        time_zone: s.time_zone.clone().unwrap_or_default(),
        interval: s
            .interval_ms
            .map(|ms| duration(Duration::from_millis(u64::try_from(ms).unwrap_or(0)))),
        overlap: overlap.into(),
        paused: s.paused,
        next_fire_at: Some(timestamp(s.next_fire_at)),
        last_fired_at: s.last_fired_at.map(timestamp),
        last_workflow_id: s
            .last_workflow_id
            .map(|id| id.to_string())
            .unwrap_or_default(),
        created_at: Some(timestamp(s.created_at)),
    }
}

#[tonic::async_trait]
impl ScheduleService for ScheduleApi {
    async fn create_schedule(
        &self,
        req: Request<v1::CreateScheduleRequest>,
    ) -> ApiResult<v1::CreateScheduleResponse> {
        let s = req.into_inner().schedule.ok_or_else(|| {
            Status::invalid_argument("`schedule` is required: send the schedule to create")
        })?;
        let created = self.0.create_schedule(create_request(s)?).await?;
        tracing::info!(schedule_id = %created.id, next_fire_at = %created.next_fire_at, "schedule created");
        Ok(Response::new(v1::CreateScheduleResponse {
            schedule: Some(schedule(&created)),
        }))
    }

    async fn get_schedule(
        &self,
        req: Request<v1::GetScheduleRequest>,
    ) -> ApiResult<v1::GetScheduleResponse> {
        let s = self.0.get_schedule(&req.into_inner().id).await?;
        Ok(Response::new(v1::GetScheduleResponse {
            schedule: Some(schedule(&s)),
        }))
    }

    async fn list_schedules(
        &self,
        req: Request<v1::ListSchedulesRequest>,
    ) -> ApiResult<v1::ListSchedulesResponse> {
        let req = req.into_inner();
        let page = self
            .0
            .list_schedules(req.page_size, &req.page_token)
            .await?;
        Ok(Response::new(v1::ListSchedulesResponse {
            schedules: page.schedules.iter().map(schedule).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }

    async fn pause_schedule(
        &self,
        req: Request<v1::PauseScheduleRequest>,
    ) -> ApiResult<v1::PauseScheduleResponse> {
        let s = self.0.pause_schedule(&req.into_inner().id).await?;
        tracing::info!(schedule_id = %s.id, "schedule paused");
        Ok(Response::new(v1::PauseScheduleResponse {
            schedule: Some(schedule(&s)),
        }))
    }

    async fn resume_schedule(
        &self,
        req: Request<v1::ResumeScheduleRequest>,
    ) -> ApiResult<v1::ResumeScheduleResponse> {
        let s = self.0.resume_schedule(&req.into_inner().id).await?;
        tracing::info!(schedule_id = %s.id, next_fire_at = %s.next_fire_at, "schedule resumed");
        Ok(Response::new(v1::ResumeScheduleResponse {
            schedule: Some(schedule(&s)),
        }))
    }

    async fn delete_schedule(
        &self,
        req: Request<v1::DeleteScheduleRequest>,
    ) -> ApiResult<v1::DeleteScheduleResponse> {
        let id = req.into_inner().id;
        self.0.delete_schedule(&id).await?;
        tracing::info!(schedule_id = %id, "schedule deleted");
        Ok(Response::new(v1::DeleteScheduleResponse {}))
    }
}
