//! Fans the engine's lossless Telegram event stream out to its consumers (monitoring, CRM), each
//! of which filters what concerns it. Unbounded channels keep it lossless; every consumer drains
//! its own in order.

use jobbot_core::ids::SessionName;
use jobbot_core::telegram::AccountEvent;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub type TelegramEvents = mpsc::UnboundedReceiver<(SessionName, AccountEvent)>;

/// Forwards every event to each output until the input ends; an output whose receiver is gone
/// is dropped from the list.
pub fn fan_out(
    mut input: TelegramEvents,
    mut outputs: Vec<mpsc::UnboundedSender<(SessionName, AccountEvent)>>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(event) = input.recv().await {
            outputs.retain(|output| output.send(event.clone()).is_ok());
            if outputs.is_empty() {
                break;
            }
        }
    })
}
