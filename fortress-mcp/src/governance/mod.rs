//! Governance of every relayed MCP message: the core stack plus what only MCP needs.
//!
//! ```text
//! edge (authenticated Subject) ─▶ describe ─▶ [audit ▸ guard ▸ policy ▸ redaction ▸ credential]
//!     ─▶ item gate (list filtering, tool pinning) ─▶ virtual server
//! ```
//!
//! Why this order:
//! - **describe** turns the JSON-RPC request into the core [`Call`](fortress_core::call::Call)
//!   every layer reads, and refuses actions outside the API key's scopes (recording each
//!   such refusal, with its decision, in the stack's audit trail before answering).
//! - the **core stack** ([`GovernanceStack`]) audits every message with its decision and
//!   latency, applies the kill switch and rate limits, decides policy (with tool arguments
//!   in the Cedar context), redacts results with [`McpResultRedaction`], and resolves the
//!   connector credential innermost.
//! - the **item gate** sits inside the stack, so what it hides or refuses is audited and its
//!   filtered lists are redacted like any answer; it needs the virtual server to resolve
//!   item names to connectors.
//!
//! [`assemble`] builds all of it from the configuration file.

pub mod assemble;
pub mod gate;
pub mod redaction;

use std::sync::Arc;

use fortress_core::layer::credential::ExtensionInjector;
use fortress_core::policy::PolicyEngine;
use fortress_core::stack::GovernanceStack;

use crate::pinning::PinStore;
use crate::seam::{DescribeLayer, SeamService};
use crate::virtual_server::{VirtualServer, VirtualService};

pub use gate::ItemGateLayer;
pub use redaction::McpResultRedaction;

/// The governance of an MCP gateway: the core stack, the policy engine (for list
/// filtering) and the tool pins.
#[derive(Clone)]
pub struct Governance {
    stack: GovernanceStack,
    policy: Arc<dyn PolicyEngine>,
    pins: Option<PinStore>,
}

impl Governance {
    /// Governance by `stack`, filtering lists with `policy` and enforcing `pins` if given.
    /// Build the stack with [`McpResultRedaction`] as its body redaction and
    /// [`JsonRpcResponder`](crate::seam::JsonRpcResponder) as its responder.
    pub fn new(
        stack: GovernanceStack,
        policy: Arc<dyn PolicyEngine>,
        pins: Option<PinStore>,
    ) -> Self {
        Self {
            stack,
            policy,
            pins,
        }
    }

    /// The seam: describe ▸ core stack ▸ item gate ▸ virtual server. What `describe` refuses
    /// itself (actions outside an API key's scopes) is recorded in the stack's audit trail.
    pub fn seam(&self, server: Arc<VirtualServer>, describe: DescribeLayer) -> SeamService {
        SeamService::new(
            tower::ServiceBuilder::new()
                .layer(describe.with_audit(self.stack.audit_sink()))
                .layer(self.stack.layer(ExtensionInjector))
                .layer(ItemGateLayer::new(
                    server.clone(),
                    self.policy.clone(),
                    self.pins.clone(),
                ))
                .service(VirtualService::new(server)),
        )
    }
}
