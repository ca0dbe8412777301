//! The run's gate and fence: the half-open probe of the provider circuit, the lease renewed before every
//! provider call and write phase, the deadline check before a phase starts, and the circuit stored at the
//! end when the run changed it.

use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::report::log_call;
use super::{Drain, DrainError, Idle, Run, chrono_duration};
use crate::ports::{
    CircuitStore, DrainLease, DrainPorts, PortError, Provider, ProviderError, QuotaKind,
};

impl<P: DrainPorts> Drain<P> {
    /// The half-open probe: one request that touches no subscriber and no message. `true` when the
    /// provider answered (the circuit closes and the run goes on), `false` when it is still down.
    pub(super) async fn probe(&self, run: &mut Run) -> Result<bool, DrainError> {
        let kind = if self.settings.limits.individual_per_window > 0 {
            QuotaKind::Individual
        } else {
            QuotaKind::Batch
        };
        if !self.fence(run).await? {
            return Ok(false);
        }
        if self.reserve(run, kind, 1).await? == 0 {
            run.report.idle = Some(Idle::NoQuota);
            return Ok(false);
        }
        let started = Instant::now();
        let reply = self.ports.provider().probe().await;
        run.report.calls.probe += 1;
        log_call("probe", 0, &reply, started.elapsed(), 1);
        let now = self.now();
        match &reply.result {
            Err(e @ (ProviderError::Transient { .. } | ProviderError::Misconfigured(_))) => {
                let retry_after = match e {
                    ProviderError::Transient { retry_after, .. } => *retry_after,
                    _ => None,
                };
                run.circuit.failures = run.circuit.failures.saturating_add(1);
                let until =
                    self.settings
                        .circuit
                        .open(&mut run.circuit, now, &e.to_string(), retry_after);
                warn!(%until, error = %e, "provider probe failed; the circuit stays open");
                run.report.idle = Some(Idle::CircuitOpen);
                run.report.provider_errors += 1;
                Ok(false)
            }
            other => {
                if let Err(ProviderError::RateLimited { retry_after }) = other {
                    self.spend(run, kind, *retry_after).await?;
                } else {
                    self.adopt(run, kind, [&reply.info]).await;
                }
                info!("provider probe answered; closing the circuit");
                self.settings.circuit.success(&mut run.circuit);
                run.report.circuit_closed = true;
                Ok(true)
            }
        }
    }

    /// Renews the lease before a provider call or a write phase; `false` (and the run stops writing) when
    /// it is lost — another run may hold it now.
    pub(super) async fn fence(&self, run: &mut Run) -> Result<bool, DrainError> {
        if run.lease_lost {
            return Ok(false);
        }
        let now = self.now();
        let until = now + chrono_duration(self.settings.lease_length);
        let held = self
            .ports
            .lease()
            .renew_lease(&run.holder, now, until)
            .await?;
        if held {
            run.lease_renewed = now;
        } else {
            warn!("the drain lease was lost; this run stops without writing or deleting anything");
            run.lease_lost = true;
            run.report.lease_lost = true;
        }
        Ok(held)
    }

    /// Errors when less than `margin` is left before the deadline: the phase must not start.
    pub(super) fn check_time(&self, run: &Run, margin: Duration) -> Result<(), DrainError> {
        if self.now() + chrono_duration(margin) >= run.deadline {
            return Err(DrainError::Port(PortError::transient(
                "drain deadline",
                anyhow::anyhow!("the run's deadline {} is too close", run.deadline),
            )));
        }
        Ok(())
    }

    /// Writes the circuit if this run changed it.
    pub(super) async fn store_circuit(&self, run: &mut Run) -> Result<(), DrainError> {
        if run.circuit != run.circuit_stored {
            self.ports.circuit().set_circuit(&run.circuit).await?;
            run.circuit_stored = run.circuit.clone();
        }
        Ok(())
    }
}
