//! The caller leg of a bot sitting in a room: what the bot's call plays goes into the room,
//! and the call's end takes the bot out of it.

use actix::prelude::*;
use uuid::Uuid;

use crate::call::messages::{CallerEvent, LegCommand, RoomInput};
use crate::call::state::EndCause;

/// A room as a bot's call sees its caller.
pub struct RoomLeg {
    room: Recipient<RoomInput>,
    call: Uuid,
    call_events: Recipient<CallerEvent>,
}

impl RoomLeg {
    pub fn new(
        room: Recipient<RoomInput>,
        call: Uuid,
        call_events: Recipient<CallerEvent>,
    ) -> Self {
        RoomLeg {
            room,
            call,
            call_events,
        }
    }
}

impl Actor for RoomLeg {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(crate::call::MAILBOX_CAPACITY);
    }
}

impl Handler<LegCommand> for RoomLeg {
    type Result = ();

    fn handle(&mut self, msg: LegCommand, ctx: &mut Context<Self>) {
        match msg {
            LegCommand::Audio(samples) | LegCommand::Play { audio: samples, .. } => {
                // A full room drops the frame (the room's clock is the bound).
                let _ = self.room.try_send(RoomInput::Audio {
                    call: self.call,
                    samples: samples.to_vec(),
                });
            }
            LegCommand::End { .. } => {
                self.room.do_send(RoomInput::Gone { call: self.call });
                self.call_events.do_send(CallerEvent::Gone {
                    cause: EndCause::Normal,
                    local: true,
                    detail: String::new(),
                });
                ctx.stop();
            }
            // A room has no hold music, URL player, transfer or keys of its own.
            LegCommand::PlayUrl { .. }
            | LegCommand::StopAudio
            | LegCommand::Hold
            | LegCommand::Transfer { .. }
            | LegCommand::SendDigits { .. }
            | LegCommand::Heard { .. }
            | LegCommand::Answered => {}
        }
    }
}
