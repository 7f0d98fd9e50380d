//! The admin side shared by both gateways: roles, accounts and sessions, billing and uptime
//! arithmetic, history and management over the shared stores, the admin API and the
//! dashboard, and [`AdminServer`] to mount them in a binary.
//!
//! Enabled by the `admin` feature (on by default).

pub mod accounts;
pub mod api;
pub mod archive;
pub mod billing;
pub mod directory;
pub mod embedded;
pub mod history;
mod lifecycle;
mod manage;
pub mod metrics;
pub mod mount;
pub mod observe;
mod policy_api;
pub mod policy_editor;
pub mod rbac;
pub mod server;
pub mod settings;
pub mod sources;
pub mod switches;
pub mod telemetry;
pub mod ui;
pub mod uptime;

pub use server::{AdminServer, bootstrap_owner};
