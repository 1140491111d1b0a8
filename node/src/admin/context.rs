//! What the node's wings (admin commands, the HTTP endpoint, the console) read: the broker
//! and the parts a node may run beside it. Built once when the node starts; the broker does
//! not know it exists.

use std::sync::Arc;

use fubar_logs::LogHandle;

use crate::broker::Broker;
use crate::cluster::member::ClusterMember;
use crate::cluster::monitor::MonitorRole;
use crate::cluster::shipping::LogShipping;
use crate::cluster::state_log::StateLog;
use crate::console::SignIn;

/// The broker and the node's other parts, as its wings see them.
#[derive(Debug, Clone)]
pub struct NodeContext {
    /// The broker.
    pub broker: Arc<Broker>,
    /// The node's log engine (absent in unit tests).
    pub logs: Option<LogHandle>,
    /// The cluster member, when the node is one (`fubar ctl cluster`).
    pub member: Option<Arc<ClusterMember>>,
    /// The monitor role, when the node is the monitor (`fubar monitor`).
    pub monitor: Option<Arc<MonitorRole>>,
    /// The log link to the monitor, on a cluster member that ships its events.
    pub shipping: Option<Arc<LogShipping>>,
    /// The console's sign-in door, on a monitor that serves the console.
    pub console: Option<Arc<SignIn>>,
}

impl NodeContext {
    /// Where changes to the state every member shares go: Raft on a cluster member, the
    /// node's store on a standalone node.
    pub fn state(&self) -> StateLog {
        StateLog::of(&self.broker, self.member.as_ref())
    }

    /// A node that is only a broker: no cluster, no monitor, no log engine (unit tests and
    /// the in-process benchmark).
    pub fn broker_only(broker: Arc<Broker>) -> Self {
        Self {
            broker,
            logs: None,
            member: None,
            monitor: None,
            shipping: None,
            console: None,
        }
    }
}
