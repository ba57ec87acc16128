//! A transfer the caller's side could not make (`CallerEvent::TransferRefused`): a SIP peer
//! that does not take REFER, refuses it, or whose new call failed. The call is still up, so
//! the switch makes the transfer itself where it can dial the destination (a `tel` number
//! through a SIP trunk, a `sip` URI): it rings it on a chained call and bridges the caller to
//! it, as a flow's `connect` does, and the call ends when that bridge ends. Where it cannot,
//! the call ends `failed`.

use actix::prelude::*;

use super::messages::BridgeTarget;
use super::state::{Address, EndCause};
use super::CallActor;
use crate::room::RoomError;

impl CallActor {
    /// The caller's side refused the transfer to `destination`: bridge through the trunk, or
    /// end the call `failed`.
    pub(super) fn transfer_refused(
        &mut self,
        destination: Address,
        detail: String,
        ctx: &mut Context<Self>,
    ) {
        if self.is_over() {
            return;
        }
        let dialable = self.services.config.sip.can_dial(&destination.kind)
            && !destination.target.trim().is_empty();
        tracing::info!(
            call = %self.record.id,
            kind = %destination.kind,
            target = %destination.target,
            %detail,
            bridged = dialable && !self.transfer_bridge && self.room.is_none(),
            "transfer refused by the caller's side"
        );
        if !dialable || self.transfer_bridge || self.room.is_some() {
            return self.end_with(EndCause::Failed, format!("transfer refused: {detail}"), ctx);
        }
        self.transfer_bridge = true;
        self.start_ringback(None, ctx);
        self.bridge(vec![BridgeTarget::Dial(destination)], ctx);
    }

    /// The bridge a refused transfer was made with has ended (or could not be made): so does
    /// the call.
    pub(super) fn transfer_bridge_ended(
        &mut self,
        error: Option<RoomError>,
        ctx: &mut Context<Self>,
    ) {
        self.transfer_bridge = false;
        match error {
            None => self.end_with(
                EndCause::Normal,
                "transferred through the switch; the bridge ended".into(),
                ctx,
            ),
            Some(e) => self.end_with(
                EndCause::Failed,
                format!("transfer refused, and bridging it failed: {e}"),
                ctx,
            ),
        }
    }
}
