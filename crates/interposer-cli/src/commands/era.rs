//! `interposer era attach|checkpoint|changed|status|detach|enable|disable`

use anyhow::Context;
use blk_interposer::{EraAttachReport, EraBoot, EraChanges, EraInfo};

use crate::cli::{
    EraArgs, EraAttachArgs, EraChangedArgs, EraCommand, EraDetachArgs, EraDeviceArgs, EraEnableArgs,
};
use crate::output;

pub fn exec(args: EraArgs, json: bool) -> anyhow::Result<()> {
    match args.command {
        EraCommand::Attach(a) => attach(a, json),
        EraCommand::Checkpoint(a) => checkpoint(a, json),
        EraCommand::Changed(a) => changed(a, json),
        EraCommand::Status(a) => status(a, json),
        EraCommand::Detach(a) => detach(a, json),
        EraCommand::Enable(a) => enable(a, json),
        EraCommand::Disable(a) => disable(a, json),
    }
}

fn attach(a: EraAttachArgs, json: bool) -> anyhow::Result<()> {
    if let Some(generation) = a.at_boot {
        return attach_at_boot(a, generation, json);
    }
    let r = super::with_system(&[&a.device, &a.metadata], |ops| {
        // parse_size gives 512-byte sectors; the library takes bytes.
        ops.era_attach(
            &a.device,
            &a.metadata,
            a.block_size.saturating_mul(512),
            a.name.as_deref(),
        )
    })
    .with_context(|| format!("cannot attach dm-era to {}", a.device.display()))?;
    if json {
        return output::json(&r);
    }
    output::report(attach_human(&r))
}

fn attach_at_boot(a: EraAttachArgs, generation: u64, json: bool) -> anyhow::Result<()> {
    let r = super::with_system(&[&a.device, &a.metadata], |ops| {
        ops.era_attach_at_boot(
            &a.device,
            &a.metadata,
            a.block_size.saturating_mul(512),
            generation,
        )
    })
    .with_context(|| format!("cannot attach dm-era to {} at boot", a.device.display()))?;
    if json {
        return output::json(&r);
    }
    match r {
        EraBoot::Attached(r) => output::report(attach_human(&r)),
        EraBoot::Already { name, device } => {
            output::report([format!("{name} tracks {device} already; nothing to do")])
        }
    }
}

fn attach_human(r: &EraAttachReport) -> Vec<String> {
    vec![
        format!(
            "{} ({}) now tracks {} ({}): era {}, {} blocks of {}.",
            r.create.name,
            r.create.dm_dev,
            r.create.device,
            r.create.dev,
            r.era,
            r.nr_blocks,
            output::size(r.block_sectors.0)
        ),
        format!(
            "metadata: {} (dm-era on {}, the tracking record in its last 64 KiB)",
            r.metadata, r.metadata_slice
        ),
        match &r.previous {
            _ if r.resumed => format!(
                "tracked from {} on: tracking goes on from the clean shutdown of the last boot (no gap)",
                r.tracked_since
            ),
            Some(p) => format!(
                "tracked from {} on; before that, {p}: changes since an earlier checkpoint are refused (take a full backup)",
                r.tracked_since
            ),
            None => format!("tracked from {} on", r.tracked_since),
        },
        format!("next: `interposer era checkpoint {}`", r.create.name),
    ]
}

fn checkpoint(a: EraDeviceArgs, json: bool) -> anyhow::Result<()> {
    let r = super::with_system(&[a.device.as_ref()], |ops| ops.era_checkpoint(&a.device))
        .with_context(|| format!("cannot checkpoint {}", a.device))?;
    if json {
        return output::json(&r);
    }
    // The checkpoint alone, for `E=$(interposer era checkpoint vdb1)`.
    output::lines([r.checkpoint.to_string()])
}

fn changed(a: EraChangedArgs, json: bool) -> anyhow::Result<()> {
    let since: blk_interposer::Checkpoint = a.since.parse().map_err(anyhow::Error::msg)?;
    let r = super::with_system(&[a.device.as_ref()], |ops| {
        ops.era_changed(&a.device, since)
    })
    .with_context(|| format!("cannot list the changes of {}", a.device))?;
    if json {
        return output::json(&r);
    }
    output::note(&summary(&r));
    output::lines(
        r.ranges
            .iter()
            .map(|x| format!("{} {}", x.offset, x.length)),
    )
}

fn summary(r: &EraChanges) -> String {
    format!(
        "{}: {} range(s), {} of {} blocks of {} ({} bytes) written since era {}; writes from now on are in era {} or later",
        r.device,
        r.ranges.len(),
        r.changed_blocks,
        r.nr_blocks,
        output::size(r.block_sectors.0),
        r.changed_bytes,
        r.since,
        r.era
    )
}

fn status(a: EraDeviceArgs, json: bool) -> anyhow::Result<()> {
    let r = super::with_system(&[a.device.as_ref()], |ops| ops.era_status(&a.device))
        .with_context(|| format!("cannot show the era of {}", a.device))?;
    if json {
        return output::json(&r);
    }
    output::lines(status_human(&r))
}

fn status_human(r: &EraInfo) -> Vec<String> {
    [
        ("era device", r.name.clone()),
        ("device", format!("{} ({})", r.device, r.dev)),
        ("metadata", r.metadata.clone()),
        (
            "block size",
            format!(
                "{} sectors ({})",
                r.block_sectors,
                output::size(r.block_sectors.0)
            ),
        ),
        ("era", r.status.era.to_string()),
        (
            "tracked since",
            match (&r.tracked_since, &r.gap) {
                (Some(c), _) => {
                    format!("{c} (changes since it or later checkpoints can be listed)")
                }
                (None, Some(g)) => format!("no checkpoint: {g}"),
                (None, None) => "unknown".into(),
            },
        ),
        (
            "metadata use",
            format!(
                "{}/{} blocks of 4 KiB",
                r.status.metadata_used, r.status.metadata_total
            ),
        ),
        (
            "snapshot",
            r.status
                .metadata_snap
                .map_or_else(|| "-".into(), |b| format!("held at block {b}")),
        ),
    ]
    .into_iter()
    .map(|(k, v)| format!("{:<15}{v}", format!("{k}:")))
    .collect()
}

fn detach(a: EraDetachArgs, json: bool) -> anyhow::Result<()> {
    if a.shutdown {
        return detach_at_shutdown(a, json);
    }
    let r = super::with_system(&[a.device.as_ref()], |ops| ops.era_detach(&a.device))
        .with_context(|| format!("cannot detach dm-era from {}", a.device))?;
    if json {
        return output::json(&r);
    }
    output::report(super::remove::human(&r))
}

fn detach_at_shutdown(a: EraDetachArgs, json: bool) -> anyhow::Result<()> {
    let r = super::with_system(&[a.device.as_ref()], |ops| {
        ops.era_detach_at_shutdown(&a.device)
    })
    .with_context(|| format!("cannot detach dm-era from {}", a.device))?;
    if json {
        return output::json(&r);
    }
    let mut lines = super::remove::human(&r.remove);
    lines.push(match &r.gap {
        None => "tracking ended cleanly: the next boot's `era attach --at-boot` goes on from here"
            .into(),
        Some(why) => format!(
            "tracking ended as with `era detach` ({why}): the next backup will be a full one"
        ),
    });
    output::report(lines)
}

fn enable(a: EraEnableArgs, json: bool) -> anyhow::Result<()> {
    let r = super::with_system(&[&a.device, &a.metadata], |ops| {
        ops.era_enable(&a.device, &a.metadata, a.block_size.saturating_mul(512))
    })
    .with_context(|| format!("cannot enable tracking of {} at boot", a.device.display()))?;
    if json {
        return output::json(&r);
    }
    let mut lines = match &r.attached {
        Some(at) => {
            let mut l = attach_human(at);
            l.pop(); // its `next:` hint: the checkpoint comes after enabling
            l
        }
        None => vec![format!("dm-era tracks {} already", r.device)],
    };
    lines.push(format!(
        "{} is enabled and started: it attaches dm-era (metadata {}, generation {}) early in every boot and detaches it cleanly at shutdown; its settings: {}",
        r.unit, r.metadata, r.generation, r.dropin
    ));
    output::report(lines)
}

fn disable(a: EraDeviceArgs, json: bool) -> anyhow::Result<()> {
    let r = super::with_system(&[a.device.as_ref()], |ops| {
        ops.era_disable(std::path::Path::new(&a.device))
    })
    .with_context(|| format!("cannot disable tracking of {} at boot", a.device))?;
    if json {
        return output::json(&r);
    }
    let mut lines = vec![format!(
        "{} is disabled and stopped: {} is no longer tracked at boot",
        r.unit, r.device
    )];
    if r.still_attached {
        lines.push(format!(
            "dm-era is still on {} (its stop could not detach it, see `journalctl -u {}`): `interposer era detach {}`",
            r.device, r.unit, r.device
        ));
    }
    output::report(lines)
}

#[cfg(test)]
mod tests {
    use super::*;
    use blk_interposer::era::{ChangedRange, EraStatus};
    use blk_interposer::{DevNo, Sectors};

    #[test]
    fn renders_changes_and_status() {
        let r = EraChanges {
            name: "vdb1-era".into(),
            device: "/dev/vdb1".into(),
            since: "3@00000000000000a1".parse().unwrap(),
            era: 5,
            block_sectors: Sectors(128),
            block_bytes: 65536,
            nr_blocks: 100,
            changed_blocks: 2,
            changed_bytes: 131072,
            ranges: vec![ChangedRange {
                begin: 4,
                end: 6,
                offset: 262144,
                length: 131072,
            }],
        };
        assert_eq!(
            summary(&r),
            "/dev/vdb1: 1 range(s), 2 of 100 blocks of 64.0 KiB (131072 bytes) written since era 3@00000000000000a1; writes from now on are in era 5 or later"
        );
        let s = EraInfo {
            name: "vdb1-era".into(),
            device: "/dev/vdb1".into(),
            dev: DevNo::new(254, 17),
            metadata: "/dev/vdd".into(),
            metadata_dev: DevNo::new(254, 48),
            block_sectors: Sectors(128),
            block_bytes: 65536,
            status: EraStatus {
                metadata_used: 20,
                metadata_total: 16384,
                era: 5,
                metadata_snap: None,
            },
            tracked_since: Some("2@00000000000000a1".parse().unwrap()),
            gap: None,
        };
        let l = status_human(&s);
        assert_eq!(l[4], "era:           5");
        assert_eq!(
            l[5],
            "tracked since: 2@00000000000000a1 (changes since it or later checkpoints can be listed)"
        );
        assert_eq!(l[7], "snapshot:      -");
        let s = EraInfo {
            tracked_since: None,
            gap: Some(blk_interposer::GapReason::Ended { era: 9 }),
            ..s
        };
        assert_eq!(
            status_human(&s)[5],
            "tracked since: no checkpoint: tracking ended at era 9 (`era detach`) and has not begun again"
        );
    }
}
