//! A call as the REST API and the flow's webhooks show it: VoIPBIN's JSON shape, separate
//! from the record (`state`). Below both the API and the bots, so neither imports the other.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::state::{Address, CallRecord};

/// VoIPBIN's timestamp format, for example `2022-05-01 15:10:38.785510`.
pub const TIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S%.6f";

pub fn time(t: &DateTime<Utc>) -> String {
    t.format(TIME_FORMAT).to_string()
}

fn opt_time(t: &Option<DateTime<Utc>>) -> Option<String> {
    t.as_ref().map(time)
}

/// A call in VoIPBIN's JSON shape, plus `reference` and where it came from. Unset ids are the
/// nil UUID and unset hang-up fields are empty strings, as in VoIPBIN; unset times are null.
#[derive(Debug, Serialize, ToSchema)]
pub struct CallView {
    pub id: Uuid,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub reference: String,
    pub ingress: String,
    pub bot: String,
    pub workspace: String,
    pub hotline: String,
    pub master_call_id: Uuid,
    pub chained_call_ids: Vec<Uuid>,
    pub recording_id: Uuid,
    pub recording_ids: Vec<Uuid>,
    #[schema(value_type = AddressSchema)]
    pub source: Address,
    #[schema(value_type = AddressSchema)]
    pub destination: Address,
    pub status: &'static str,
    /// The flow action the call is on (`{}` when none).
    #[schema(value_type = Object)]
    pub action: serde_json::Value,
    pub direction: &'static str,
    pub hangup_by: &'static str,
    pub hangup_reason: &'static str,
    pub hangup_detail: String,
    /// The caller side's connection metadata (Ringover), null when there was none.
    #[schema(value_type = Object, nullable)]
    pub metadata: serde_json::Value,
    /// The conference room the call is in now (nil when none).
    pub room_id: Uuid,
    pub tm_create: String,
    pub tm_update: String,
    pub tm_progressing: Option<String>,
    pub tm_ringing: Option<String>,
    pub tm_hangup: Option<String>,
}

impl From<&CallRecord> for CallView {
    fn from(r: &CallRecord) -> Self {
        CallView {
            id: r.id,
            kind: if r.room_id.is_some() {
                "conference"
            } else {
                "flow"
            },
            reference: r.reference.clone(),
            ingress: r.ingress.clone(),
            bot: r.bot.clone(),
            workspace: r.workspace.clone(),
            hotline: r.hotline.clone(),
            master_call_id: r.master_call_id.unwrap_or(Uuid::nil()),
            chained_call_ids: r.chained_call_ids.clone(),
            recording_id: r.recording_id.unwrap_or(Uuid::nil()),
            recording_ids: r.recording_ids.clone(),
            source: r.source.clone(),
            destination: r.destination.clone(),
            status: r.status.as_str(),
            action: r.action.clone().unwrap_or_else(|| serde_json::json!({})),
            direction: r.direction.as_str(),
            hangup_by: match r.hangup_by {
                Some(super::state::HangupBy::Local) => "local",
                Some(super::state::HangupBy::Remote) => "remote",
                None => "",
            },
            hangup_reason: r.hangup_reason.map(|h| h.as_str()).unwrap_or(""),
            hangup_detail: r.hangup_detail.clone(),
            metadata: r.metadata.clone().unwrap_or(serde_json::Value::Null),
            room_id: r.room_id.unwrap_or(Uuid::nil()),
            tm_create: time(&r.tm_create),
            tm_update: time(&r.tm_update),
            tm_progressing: opt_time(&r.tm_progressing),
            tm_ringing: opt_time(&r.tm_ringing),
            tm_hangup: opt_time(&r.tm_hangup),
        }
    }
}

/// A VoIPBIN address (source or destination).
#[derive(Serialize, ToSchema)]
#[schema(as = Address)]
pub struct AddressSchema {
    /// `tel`, `sip`, `agent`, `endpoint` (or empty when unknown).
    #[serde(rename = "type")]
    pub kind: String,
    pub target: String,
    #[schema(default = "")]
    pub target_name: String,
    #[schema(default = "")]
    pub name: String,
    #[schema(default = "")]
    pub detail: String,
}
