//! Fencing: a host that can no longer renew a volume's lease stops the containers using the
//! volume here before the lease can have expired, so two hosts never write it at once. Owns
//! the renewal schedule the deadline rests on, the deadline arithmetic and the stop; must not
//! touch the lease or the data (the caller's).

use crate::docker::{Action, Engine, State};
use std::time::{Duration, Instant};

/// What the stop leaves before the deadline: Docker's SIGKILL and the containers' exit.
pub const KILL_MARGIN: Duration = Duration::from_secs(1);
/// The least an engine call is given, even past the deadline (the containers must stop all
/// the same).
const MIN_WAIT: Duration = Duration::from_secs(1);

/// Renew a lease once it was renewed this long ago.
pub fn renew_after(ttl: Duration) -> Duration {
    ttl / 3
}

/// How long one renewal attempt may take.
pub fn attempt_budget(ttl: Duration) -> Duration {
    ttl / 6
}

/// Give the lease up when renewals have failed for this long. The last attempt starts before
/// then and gives up [`attempt_budget`] later: the loss is declared at most two thirds of the
/// TTL after the last renewal, leaving a third to stop the containers.
pub fn lost_after(ttl: Duration) -> Duration {
    ttl / 2
}

/// The earliest a lease last renewed at `renewed` (the start of the renewal request that
/// succeeded: etcd restarts the TTL when it arrives, later) can expire.
pub fn expiry(renewed: Instant, ttl: Duration) -> Instant {
    renewed + ttl
}

/// How long the container listing may take when `left` remains before the deadline.
fn listing_wait(left: Duration) -> Duration {
    (left / 4).max(MIN_WAIT)
}

/// Seconds between the stop signal and SIGKILL (Docker's `t`) when `left` remains: the kill
/// comes [`KILL_MARGIN`] before the deadline, at once when less is left.
pub fn kill_after(left: Duration) -> u32 {
    u32::try_from(left.saturating_sub(KILL_MARGIN).as_secs()).unwrap_or(u32::MAX)
}

/// Stop the containers using `volume` on this host, all at once, by `deadline`: each gets its
/// stop signal, then SIGKILL a [`KILL_MARGIN`] before the deadline (at once when it has
/// passed). The listing gets a quarter of the time left.
pub fn stop_containers(engine: Option<Engine>, volume: &str, deadline: Instant) {
    let Some(engine) = engine else {
        return tracing::error!(
            volume,
            "cluster: no Docker engine: containers using it keep running"
        );
    };
    let left = deadline.saturating_duration_since(Instant::now());
    let using = match engine.containers_with_volumes(&[volume], Some(listing_wait(left))) {
        Ok(using) => using,
        Err(e) => return tracing::error!(volume, "cluster: containers to stop unknown: {e}"),
    };
    let left = deadline.saturating_duration_since(Instant::now());
    let kill = kill_after(left);
    tracing::warn!(
        volume,
        containers = using.len(),
        kill_after_s = kill,
        left_ms = left.as_millis() as u64,
        "cluster: stopping the containers using it"
    );
    let results = engine.each_within(Action::StopWithin(kill), &using, Some(left.max(MIN_WAIT)));
    for (c, r) in using.iter().zip(results) {
        // Docker answers a stop once the volumes are unmounted, which can take longer than the
        // container's end (this plugin's Unmount waits for etcd): what counts is its state.
        let stopped = |e| match engine.state(&c.id) {
            Ok(Some(State::Stopped)) => Ok(()),
            _ => Err(e),
        };
        match r.or_else(stopped) {
            Ok(()) => tracing::warn!(volume, container = %c.name,
                "cluster: stopped a container: this host no longer holds the volume's lease"),
            Err(e) => tracing::error!(volume, "cluster: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kill_comes_a_margin_before_the_deadline() {
        assert_eq!(kill_after(Duration::from_secs(5)), 4);
        assert_eq!(kill_after(Duration::from_millis(2_999)), 1);
        assert_eq!(kill_after(Duration::from_millis(1_999)), 0);
        assert_eq!(kill_after(Duration::ZERO), 0);
        assert_eq!(listing_wait(Duration::from_secs(8)), Duration::from_secs(2));
        assert_eq!(listing_wait(Duration::ZERO), MIN_WAIT);
    }

    /// For every TTL: the loss is declared before the lease can expire and, even when it
    /// comes as late as the renewal schedule allows and the listing takes all its time, the
    /// kill is sent by the earliest expiry, a whole margin before it from a TTL of 6 s.
    #[test]
    fn a_late_loss_still_kills_before_the_lease_can_expire() {
        for secs in 3..=120 {
            let ttl = Duration::from_secs(secs);
            let lost = lost_after(ttl) + attempt_budget(ttl);
            assert!(
                renew_after(ttl) + attempt_budget(ttl) <= lost_after(ttl),
                "ttl {secs}"
            );
            assert!(lost < ttl, "ttl {secs}");
            let left = ttl.saturating_sub(lost);
            let listed = left.saturating_sub(listing_wait(left));
            let kill_at =
                lost + left.saturating_sub(listed) + Duration::from_secs(kill_after(listed).into());
            assert!(kill_at <= ttl, "ttl {secs}");
            assert!(secs < 6 || kill_at + KILL_MARGIN <= ttl, "ttl {secs}");
        }
        let renewed = Instant::now();
        let ttl = Duration::from_secs(15);
        assert_eq!(expiry(renewed, ttl) - renewed, ttl);
    }
}
