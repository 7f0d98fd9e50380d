//! The admin side shared by both gateways: roles, accounts and sessions, billing and uptime
//! arithmetic, and the admin API.
//!
//! Enabled by the `admin` feature (on by default).

pub mod accounts;
pub mod api;
pub mod billing;
pub mod observe;
pub mod rbac;
pub mod settings;
pub mod sources;
pub mod telemetry;
pub mod ui;
pub mod uptime;
