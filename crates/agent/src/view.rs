//! What `joulebench job` shows: a job's node records as a text table and as
//! a report document (rendered to HTML by the report crate).

use crate::record::{joules, JobNodeRecord};

/// The job as a text table: per node, and each GPU's energy.
pub fn job_table(records: &[JobNodeRecord]) -> String {
    let total: f64 = records.iter().map(|r| r.job_j).sum();
    let first = &records[0];
    let mut out = format!(
        "job {} of {} (uid {}): {} ({:.4} kWh) on {} node{}\n",
        first.job_id,
        first.user.as_deref().unwrap_or("?"),
        first.uid,
        joules(total),
        total / 3.6e6,
        records.len(),
        if records.len() == 1 { "" } else { "s" }
    );
    out += &format!(
        "{:<12} {:<11} {:>9} {:>11} {:>10} {:>12}  GPUs\n",
        "node", "method", "seconds", "job", "kWh", "node total"
    );
    for r in records {
        let gpus = r
            .gpu_j
            .iter()
            .map(|(g, j)| {
                let mark = if r.gpus.contains(g) {
                    ""
                } else {
                    " (not the job's)"
                };
                format!("gpu{g} {}{mark}", joules(*j))
            })
            .collect::<Vec<_>>()
            .join(", ");
        out += &format!(
            "{:<12} {:<11} {:>9.1} {:>11} {:>10.5} {:>12}  {}\n",
            r.node,
            r.method,
            r.duration_s,
            joules(r.job_j),
            r.job_j / 3.6e6,
            joules(r.node_measured_j),
            if gpus.is_empty() { "-".into() } else { gpus }
        );
        for missing in &r.not_attributed {
            out += &format!("  {}: not counted: {missing}\n", r.node);
        }
    }
    for r in records.iter().filter(|r| r.job_estimated_j > 0.0) {
        out += &format!(
            "  {}: {} of it estimated (a gap in a power meter's samples, bridged)\n",
            r.node,
            joules(r.job_estimated_j)
        );
    }
    out += &format!(
        "measured by joulebench agent on each node: {}\n",
        meters_used(records)
    );
    out
}

/// The meters the records were made from, in words.
fn meters_used(records: &[JobNodeRecord]) -> String {
    use power::meter::ReadingKind;
    use std::collections::BTreeSet;
    let ids = |kind: ReadingKind| -> BTreeSet<&str> {
        records
            .iter()
            .flat_map(|r| &r.meters)
            .filter(|m| m.kind == kind)
            .map(|m| m.meter_id.as_str())
            .collect()
    };
    let mut parts = Vec::new();
    let counters = ids(ReadingKind::EnergyCounter);
    if !counters.is_empty() {
        parts.push(format!(
            "energy counters ({})",
            counters.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }
    let sampled = ids(ReadingKind::PowerSample);
    if !sampled.is_empty() {
        parts.push(format!(
            "power meters, sampled and integrated ({})",
            sampled.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }
    let node_meters: BTreeSet<&str> = records
        .iter()
        .filter_map(|r| r.node_meter.as_deref())
        .collect();
    if !node_meters.is_empty() {
        parts.push(format!(
            "the node's total from {}",
            node_meters.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }
    if parts.is_empty() {
        "no meter".into()
    } else {
        parts.join("; ")
    }
}

/// The job as a report document: per node, per GPU, and what was not counted.
pub fn job_document(records: &[JobNodeRecord]) -> report::document::Document {
    use report::document::{Block, Document, Section, Table};
    let first = &records[0];
    let total: f64 = records.iter().map(|r| r.job_j).sum();
    let mut nodes = Table::new(&[
        "node",
        "method",
        "seconds",
        "job J",
        "job kWh",
        "GPUs J",
        "CPU J",
        "GPUs not given J",
        "rest of node J",
        "estimated J",
        "node measured J",
    ])
    .numeric(&[2, 3, 4, 5, 6, 7, 8, 9, 10]);
    let mut gpus = Table::new(&["node", "GPU", "J", "the job's"]).numeric(&[2]);
    let mut notes = Vec::new();
    for r in records {
        nodes.row(vec![
            r.node.clone(),
            r.method.clone(),
            format!("{:.1}", r.duration_s),
            format!("{:.1}", r.job_j),
            format!("{:.6}", r.job_j / 3.6e6),
            format!("{:.1}", r.job_gpu_j),
            format!("{:.1}", r.job_cpu_j),
            format!("{:.1}", r.unused_gpu_j),
            format!("{:.1}", r.job_rest_j),
            format!("{:.1}", r.job_estimated_j),
            format!("{:.1}", r.node_measured_j),
        ]);
        for (g, j) in &r.gpu_j {
            let owned = if r.gpus.contains(g) { "yes" } else { "no" };
            gpus.row(vec![
                r.node.clone(),
                format!("gpu{g}"),
                format!("{j:.1}"),
                owned.into(),
            ]);
        }
        notes.extend(r.not_attributed.iter().map(|n| format!("{}: {n}", r.node)));
    }
    let mut per_node = Section::new("Per node");
    per_node.blocks.push(Block::Table(nodes));
    let mut sections = vec![per_node];
    if !gpus.rows.is_empty() {
        let mut section = Section::new("Per GPU");
        section.blocks.push(Block::Table(gpus));
        sections.push(section);
    }
    let mut how = Section::new("How it was measured");
    how.blocks.push(Block::Note(format!(
        "Read by joulebench agent on each node between the job's Prolog and Epilog: {}. \
             A node meter (a BMC, an ACPI power meter) makes the node's total where there is \
             one; the rest of the node is what lies outside its GPUs, packages and DRAM (fans, \
             power supplies, disks, network). exclusive: the job had the node alone and is \
             charged all of it; cpu-time-share: each GPU to the job it was given, package and \
             DRAM energy split by the jobs' cgroup CPU time, the rest of the node by allocated \
             CPUs. Estimated: energy bridged across a gap in a power meter's samples.",
        meters_used(records)
    )));
    how.blocks.extend(notes.into_iter().map(Block::Warning));
    sections.push(how);
    Document {
        title: format!("Energy of Slurm job {}", first.job_id),
        subtitle: vec![
            format!(
                "{} (uid {}), {} node{}",
                first.user.as_deref().unwrap_or("?"),
                first.uid,
                records.len(),
                if records.len() == 1 { "" } else { "s" }
            ),
            format!("{} ({:.4} kWh)", joules(total), total / 3.6e6),
        ],
        sections,
    }
}
