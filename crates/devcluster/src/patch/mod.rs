//! Patch formats the server applies itself. JSON merge patch and JSON patch come from the
//! `json-patch` crate; strategic merge patch needs the schema and lives here.

pub mod strategic;
