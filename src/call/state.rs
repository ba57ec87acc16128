//! The VoIPBIN call record and its status rules, as pure functions without actix.
//!
//! Allowed moves: dialing → ringing | progressing | terminating | canceling | hangup;
//! ringing → progressing | terminating | canceling | hangup; progressing → terminating |
//! hangup; terminating → hangup; canceling → hangup; hangup is final. No self-moves.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use uuid::Uuid;

/// A call's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Dialing,
    Ringing,
    Progressing,
    Terminating,
    Canceling,
    Hangup,
}

impl Status {
    /// The status name on the wire and in events.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Dialing => "dialing",
            Status::Ringing => "ringing",
            Status::Progressing => "progressing",
            Status::Terminating => "terminating",
            Status::Canceling => "canceling",
            Status::Hangup => "hangup",
        }
    }

    /// Whether the call is on its way out (or gone): no new work may attach to it.
    pub fn is_ending(self) -> bool {
        matches!(
            self,
            Status::Terminating | Status::Canceling | Status::Hangup
        )
    }

    /// Whether `self → to` is an allowed move.
    pub fn can_move_to(self, to: Status) -> bool {
        use Status::*;
        matches!(
            (self, to),
            (
                Dialing,
                Ringing | Progressing | Terminating | Canceling | Hangup
            ) | (Ringing, Progressing | Terminating | Canceling | Hangup)
                | (Progressing, Terminating | Hangup)
                | (Terminating, Hangup)
                | (Canceling, Hangup)
        )
    }

    /// Parses a status name.
    pub fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "dialing" => Status::Dialing,
            "ringing" => Status::Ringing,
            "progressing" => Status::Progressing,
            "terminating" => Status::Terminating,
            "canceling" => Status::Canceling,
            "hangup" => Status::Hangup,
            _ => return None,
        })
    }
}

/// Which side created the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Incoming,
    Outgoing,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Incoming => "incoming",
            Direction::Outgoing => "outgoing",
        }
    }
}

/// Which end hung up first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HangupBy {
    Remote,
    Local,
}

/// Why a call hung up (VoIPBIN's reasons).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HangupReason {
    Normal,
    Failed,
    Busy,
    Cancel,
    Timeout,
    Noanswer,
    Dialout,
    Amd,
}

impl HangupReason {
    pub fn as_str(self) -> &'static str {
        match self {
            HangupReason::Normal => "normal",
            HangupReason::Failed => "failed",
            HangupReason::Busy => "busy",
            HangupReason::Cancel => "cancel",
            HangupReason::Timeout => "timeout",
            HangupReason::Noanswer => "noanswer",
            HangupReason::Dialout => "dialout",
            HangupReason::Amd => "amd",
        }
    }

    pub fn parse(s: &str) -> Option<HangupReason> {
        Some(match s {
            "normal" => HangupReason::Normal,
            "failed" => HangupReason::Failed,
            "busy" => HangupReason::Busy,
            "cancel" => HangupReason::Cancel,
            "timeout" => HangupReason::Timeout,
            "noanswer" => HangupReason::Noanswer,
            "dialout" => HangupReason::Dialout,
            "amd" => HangupReason::Amd,
            _ => return None,
        })
    }
}

/// What ended a call, before the VoIPBIN rules turn it into a `hangup_reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndCause {
    /// An ordinary end: someone hung up.
    Normal,
    /// Something failed: a protocol error, a bot that failed or could not be reached.
    Failed,
    /// The destination was busy.
    Busy,
    /// Nobody answered in time.
    NoAnswer,
    /// A time limit was reached (maximum duration, or a peer that went silent).
    Timeout,
    /// Dialing out could not proceed.
    Dialout,
    /// An answering machine was detected.
    Amd,
    /// The caller went away before the call was answered (its session closed while the call
    /// was still being admitted).
    Canceled,
}

/// A VoIPBIN address (source or destination).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    /// `tel`, `sip`, `agent`, `endpoint` (or empty when unknown).
    #[serde(rename = "type")]
    pub kind: String,
    pub target: String,
    #[serde(default)]
    pub target_name: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub detail: String,
}

impl Address {
    /// A telephone-number address.
    pub fn tel(number: impl Into<String>) -> Self {
        Address {
            kind: "tel".into(),
            target: number.into(),
            ..Default::default()
        }
    }
}

/// A move the rules refuse.
#[derive(Debug, Clone, Copy, Error, PartialEq, Eq)]
#[error("call status cannot move from {from:?} to {to:?}")]
pub struct TransitionError {
    pub from: Status,
    pub to: Status,
}

/// The call record: what the REST API shows and the store keeps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallRecord {
    pub id: Uuid,
    /// The id the caller's side gave the call (SmartIVR `conversation_id`, live-call `call_id`).
    pub reference: String,
    /// The protocol the call came in on: `smartivr`, `live_call_ws`, `live_call_grpc`, …
    pub ingress: String,
    /// The configured bot the call was routed to.
    pub bot: String,
    pub workspace: String,
    pub hotline: String,
    pub master_call_id: Option<Uuid>,
    pub chained_call_ids: Vec<Uuid>,
    pub recording_id: Option<Uuid>,
    pub recording_ids: Vec<Uuid>,
    pub source: Address,
    pub destination: Address,
    pub status: Status,
    /// The bot's current action (VoIPBIN action JSON), if it reports one.
    pub action: Option<serde_json::Value>,
    pub direction: Direction,
    pub hangup_by: Option<HangupBy>,
    pub hangup_reason: Option<HangupReason>,
    /// A human-readable note on why the call ended when it was not ordinary.
    pub hangup_detail: String,
    /// What the caller's side said about the call when it connected (Ringover's first
    /// metadata frame), kept whole.
    #[serde(default)]
    pub metadata: Option<serde_json::Value>,
    /// The conference room the call is in now (its VoIPBIN `type` is then `conference`).
    #[serde(default)]
    pub room_id: Option<Uuid>,
    pub tm_create: DateTime<Utc>,
    pub tm_update: DateTime<Utc>,
    pub tm_ringing: Option<DateTime<Utc>>,
    pub tm_progressing: Option<DateTime<Utc>>,
    pub tm_hangup: Option<DateTime<Utc>>,
}

/// What a status change produced: the event name to publish.
pub type EventName = &'static str;

impl CallRecord {
    /// A new call in `status` (`dialing` for outgoing, `ringing` for an incoming stream).
    pub fn new(id: Uuid, direction: Direction, status: Status, now: DateTime<Utc>) -> Self {
        CallRecord {
            id,
            reference: String::new(),
            ingress: String::new(),
            bot: String::new(),
            workspace: String::new(),
            hotline: String::new(),
            master_call_id: None,
            chained_call_ids: Vec::new(),
            recording_id: None,
            recording_ids: Vec::new(),
            source: Address::default(),
            destination: Address::default(),
            status,
            action: None,
            direction,
            hangup_by: None,
            hangup_reason: None,
            hangup_detail: String::new(),
            metadata: None,
            room_id: None,
            tm_create: now,
            tm_update: now,
            tm_ringing: (status == Status::Ringing).then_some(now),
            tm_progressing: None,
            tm_hangup: None,
        }
    }

    /// Moves to `to` if the rules allow it, stamping the matching time.
    pub fn move_to(
        &mut self,
        to: Status,
        now: DateTime<Utc>,
    ) -> Result<EventName, TransitionError> {
        if !self.status.can_move_to(to) {
            return Err(TransitionError {
                from: self.status,
                to,
            });
        }
        self.status = to;
        self.tm_update = now;
        match to {
            Status::Ringing => self.tm_ringing = Some(now),
            Status::Progressing => self.tm_progressing = Some(now),
            Status::Hangup => self.tm_hangup = Some(now),
            _ => {}
        }
        Ok(event_name(to))
    }

    /// The bot answered: ringing/dialing → progressing. Answering twice changes nothing.
    pub fn answer(&mut self, now: DateTime<Utc>) -> Option<EventName> {
        if self.status == Status::Progressing {
            return None;
        }
        self.move_to(Status::Progressing, now).ok()
    }

    /// We hang the call up ourselves: an outgoing call still dialing/ringing goes to
    /// `canceling`, anything else to `terminating`. A call already ending is left alone.
    pub fn start_local_hangup(&mut self, now: DateTime<Utc>) -> Option<EventName> {
        if self.status.is_ending() {
            return None;
        }
        let to = if self.direction == Direction::Outgoing
            && matches!(self.status, Status::Dialing | Status::Ringing)
        {
            Status::Canceling
        } else {
            Status::Terminating
        };
        self.move_to(to, now).ok()
    }

    /// The call is gone: moves to `hangup` and settles `hangup_by` and `hangup_reason` by the
    /// VoIPBIN rules. A cause already recorded by `start_local_hangup`'s caller wins over the
    /// one given here only when this one is ordinary. Returns `None` if already hung up.
    pub fn finish(&mut self, cause: EndCause, now: DateTime<Utc>) -> Option<EventName> {
        if self.status == Status::Hangup {
            return None;
        }
        let before = self.status;
        self.hangup_by = Some(hangup_by(before));
        self.hangup_reason = Some(hangup_reason(self.direction, before, cause));
        self.move_to(Status::Hangup, now).ok()
    }
}

/// The event published when a call reaches `status`.
pub fn event_name(status: Status) -> EventName {
    match status {
        Status::Dialing => "call_dialing",
        Status::Ringing => "call_ringing",
        Status::Progressing => "call_progressing",
        Status::Terminating => "call_terminating",
        Status::Canceling => "call_canceling",
        Status::Hangup => "call_hangup",
    }
}

/// `local` if the call was already terminating or canceling (we started the hangup), else
/// `remote`.
pub fn hangup_by(before: Status) -> HangupBy {
    match before {
        Status::Terminating | Status::Canceling => HangupBy::Local,
        _ => HangupBy::Remote,
    }
}

/// VoIPBIN's hangup reason for a call that was in `before` when `cause` ended it.
pub fn hangup_reason(direction: Direction, before: Status, cause: EndCause) -> HangupReason {
    let unanswered = matches!(before, Status::Dialing | Status::Ringing);
    match cause {
        EndCause::Failed => HangupReason::Failed,
        EndCause::Busy => HangupReason::Busy,
        EndCause::NoAnswer => HangupReason::Noanswer,
        EndCause::Dialout => HangupReason::Dialout,
        EndCause::Amd => HangupReason::Amd,
        EndCause::Canceled => HangupReason::Cancel,
        EndCause::Timeout if unanswered => HangupReason::Noanswer,
        EndCause::Timeout => HangupReason::Timeout,
        EndCause::Normal => {
            if direction == Direction::Outgoing && before == Status::Canceling {
                HangupReason::Cancel
            } else {
                HangupReason::Normal
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Status::*;

    const ALL: [Status; 6] = [
        Dialing,
        Ringing,
        Progressing,
        Terminating,
        Canceling,
        Hangup,
    ];

    #[test]
    fn allowed_moves_are_exactly_voipbins() {
        let allowed = [
            (Dialing, Ringing),
            (Dialing, Progressing),
            (Dialing, Terminating),
            (Dialing, Canceling),
            (Dialing, Hangup),
            (Ringing, Progressing),
            (Ringing, Terminating),
            (Ringing, Canceling),
            (Ringing, Hangup),
            (Progressing, Terminating),
            (Progressing, Hangup),
            (Terminating, Hangup),
            (Canceling, Hangup),
        ];
        for from in ALL {
            for to in ALL {
                assert_eq!(
                    from.can_move_to(to),
                    allowed.contains(&(from, to)),
                    "{from:?} -> {to:?}"
                );
            }
        }
    }

    fn call(direction: Direction, status: Status) -> CallRecord {
        CallRecord::new(Uuid::new_v4(), direction, status, Utc::now())
    }

    #[test]
    fn local_hangup_cancels_unanswered_outgoing_and_terminates_the_rest() {
        let cases = [
            (Direction::Outgoing, Dialing, Canceling),
            (Direction::Outgoing, Ringing, Canceling),
            (Direction::Outgoing, Progressing, Terminating),
            (Direction::Incoming, Ringing, Terminating),
            (Direction::Incoming, Progressing, Terminating),
        ];
        for (direction, from, to) in cases {
            let mut c = call(direction, from);
            c.start_local_hangup(Utc::now()).unwrap();
            assert_eq!(c.status, to, "{direction:?} {from:?}");
        }
    }

    #[test]
    fn hangup_request_on_ending_call_changes_nothing() {
        for from in [Terminating, Canceling, Hangup] {
            let mut c = call(Direction::Incoming, from);
            assert_eq!(c.start_local_hangup(Utc::now()), None);
            assert_eq!(c.status, from);
        }
    }

    #[test]
    fn hangup_by_and_reason_follow_the_rules() {
        // (direction, status before, cause, by, reason)
        let cases = [
            (
                Direction::Incoming,
                Progressing,
                EndCause::Normal,
                HangupBy::Remote,
                HangupReason::Normal,
            ),
            (
                Direction::Incoming,
                Terminating,
                EndCause::Normal,
                HangupBy::Local,
                HangupReason::Normal,
            ),
            (
                Direction::Incoming,
                Ringing,
                EndCause::NoAnswer,
                HangupBy::Remote,
                HangupReason::Noanswer,
            ),
            (
                Direction::Incoming,
                Progressing,
                EndCause::Timeout,
                HangupBy::Remote,
                HangupReason::Timeout,
            ),
            (
                Direction::Incoming,
                Ringing,
                EndCause::Timeout,
                HangupBy::Remote,
                HangupReason::Noanswer,
            ),
            (
                Direction::Incoming,
                Terminating,
                EndCause::Failed,
                HangupBy::Local,
                HangupReason::Failed,
            ),
            (
                Direction::Outgoing,
                Canceling,
                EndCause::Normal,
                HangupBy::Local,
                HangupReason::Cancel,
            ),
            (
                Direction::Incoming,
                Ringing,
                EndCause::Canceled,
                HangupBy::Remote,
                HangupReason::Cancel,
            ),
            (
                Direction::Outgoing,
                Dialing,
                EndCause::Busy,
                HangupBy::Remote,
                HangupReason::Busy,
            ),
            (
                Direction::Outgoing,
                Dialing,
                EndCause::Dialout,
                HangupBy::Remote,
                HangupReason::Dialout,
            ),
            (
                Direction::Outgoing,
                Progressing,
                EndCause::Amd,
                HangupBy::Remote,
                HangupReason::Amd,
            ),
        ];
        for (direction, before, cause, by, reason) in cases {
            let mut c = call(direction, before);
            assert_eq!(c.finish(cause, Utc::now()), Some("call_hangup"));
            assert_eq!(c.hangup_by, Some(by), "{direction:?} {before:?} {cause:?}");
            assert_eq!(
                c.hangup_reason,
                Some(reason),
                "{direction:?} {before:?} {cause:?}"
            );
            assert!(c.tm_hangup.is_some());
        }
    }

    #[test]
    fn finish_is_final() {
        let mut c = call(Direction::Incoming, Progressing);
        c.finish(EndCause::Normal, Utc::now());
        assert_eq!(c.finish(EndCause::Failed, Utc::now()), None);
        assert_eq!(c.hangup_reason, Some(HangupReason::Normal));
        assert!(c.move_to(Progressing, Utc::now()).is_err());
    }

    #[test]
    fn answer_stamps_progressing_once() {
        let mut c = call(Direction::Incoming, Ringing);
        assert!(c.tm_ringing.is_some());
        assert_eq!(c.answer(Utc::now()), Some("call_progressing"));
        assert!(c.tm_progressing.is_some());
        assert_eq!(c.answer(Utc::now()), None);
    }
}
