//! (in progress: see the issue that owns this command)

use anyhow::{bail, Result};
use clap::Args;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct ExporterArgs {}

pub fn run(_args: ExporterArgs) -> Result<ExitCode> {
    bail!("not built yet")
}
