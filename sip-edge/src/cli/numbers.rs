//! `tollgate numbers --region CC [--metadata DIR]`: the numbering plan as a filter (DESIGN §5);
//! with `--metadata`, the plan of that directory's `PhoneNumberMetadata.xml` and
//! `ShortNumberMetadata.xml` (as `[numbering].metadata` would give the daemon), to try newer
//! metadata before pointing the daemon at it.

use std::io::{BufRead, Write};

use anyhow::Context;
use tollgate_engine::numbering::{NumberingPlan, Region};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The caller's region (ISO 3166 alpha-2), which decides national and IDD formats.
    #[arg(long)]
    pub region: String,
    /// A directory holding newer libphonenumber metadata (default: the copy built in).
    #[arg(long)]
    pub metadata: Option<std::path::PathBuf>,
}

/// One output line. Field names are pinned by DESIGN §5.
#[derive(serde::Serialize)]
struct Line<'a> {
    input: &'a str,
    e164: Option<&'a str>,
    region: Option<&'a str>,
    #[serde(rename = "type")]
    number_type: Option<&'static str>,
    error: Option<String>,
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    let Some(region) = Region::new(&args.region) else {
        eprintln!(
            "tollgate numbers: --region {:?} is not an ISO 3166 alpha-2 code",
            args.region
        );
        return Ok(2);
    };
    let plan = match &args.metadata {
        None => NumberingPlan::builtin().context("compiling the numbering plan")?,
        Some(dir) => {
            // Resolved as given (not against a tollgate.toml).
            let here = std::path::Path::new("tollgate.toml");
            match super::setup::numbering_plan(here, &dir.display().to_string()) {
                Ok(plan) => plan,
                Err(e) => {
                    eprintln!(
                        "tollgate numbers: --metadata: {}",
                        e.replace("tollgate.toml: [numbering].metadata: ", "")
                    );
                    return Ok(2);
                }
            }
        }
    };
    let stdin = std::io::stdin().lock();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for line in stdin.split(b'\n') {
        let raw = line.context("reading stdin")?;
        // Invalid UTF-8 is an input error for that line, not a crash.
        let text = String::from_utf8_lossy(&raw);
        let input = text.trim_end_matches('\r');
        let line = match plan.classify(input, region) {
            Ok(d) => {
                let region = d.region;
                serde_json::to_string(&Line {
                    input,
                    e164: Some(d.e164()),
                    region: Some(region.as_str()),
                    number_type: Some(d.number_type.as_str()),
                    error: None,
                })?
            }
            Err(e) => serde_json::to_string(&Line {
                input,
                e164: None,
                region: None,
                number_type: None,
                error: Some(e.to_string()),
            })?,
        };
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    Ok(0)
}
