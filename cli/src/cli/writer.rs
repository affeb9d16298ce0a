//! The options every command that writes a ledger takes: the mode and group of the files
//! it creates, and the background compaction policy (DESIGN.md §3).

use super::{CliError, CliResult};
use clap::Args;
use revledger::{CompactionPolicy, WriterOptions, AUTO_COMPACT_MIN_RECORDS};

/// How the writer creates files and compacts.
#[derive(Args, Debug, Clone)]
pub struct WriterArgs {
    /// Permission bits of the files the writer creates (ledger, index, compacted files),
    /// in octal; every compaction keeps them. Readers running as another user (nginx
    /// workers as www-data) need 0640 and `--group`.
    #[arg(long, value_name = "OCTAL", default_value = "600", value_parser = parse_mode)]
    pub mode: u32,
    /// Group (name or number) of the files the writer creates; default: the writer's.
    #[arg(long, value_name = "GROUP", value_parser = parse_group)]
    pub group: Option<u32>,
    /// Background compaction: `background` (default) or `off` (the shared index still
    /// grows; rules are dropped only by `revledger compact`).
    #[arg(long, value_name = "WHEN", default_value = "background", value_parser = ["background", "off"])]
    pub compaction: String,
    /// Compact once the records appended since the last compaction that added no key
    /// exceed this fraction of the rules the file started with.
    #[arg(long, value_name = "FRACTION", default_value_t = 0.75)]
    pub compact_ratio: f64,
    /// ... and at least this many records.
    #[arg(long, value_name = "N", default_value_t = AUTO_COMPACT_MIN_RECORDS)]
    pub compact_min_records: u64,
}

impl WriterArgs {
    /// Writer options with these settings, `max_token_lifetime` and `leeway`.
    pub fn options(&self, max_token_lifetime: i64, leeway: Option<i64>) -> WriterOptions {
        WriterOptions {
            max_token_lifetime,
            leeway,
            file_mode: self.mode,
            file_group: self.group,
            compaction: (self.compaction == "background").then_some(CompactionPolicy {
                ratio: self.compact_ratio,
                min_records: self.compact_min_records,
            }),
            ..WriterOptions::default()
        }
    }
}

fn parse_mode(s: &str) -> Result<u32, String> {
    let m = u32::from_str_radix(s.trim_start_matches("0o"), 8)
        .map_err(|_| format!("{s:?} is not an octal mode such as 640"))?;
    if m & !0o777 != 0 || m & 0o600 != 0o600 {
        return Err(format!(
            "mode {m:o}: give the owner read and write (600, 640, 660, 644 ...)"
        ));
    }
    Ok(m)
}

fn parse_group(s: &str) -> Result<u32, String> {
    if let Ok(gid) = s.parse::<u32>() {
        return Ok(gid);
    }
    group_id(s).ok_or_else(|| format!("no group named {s:?} on this host"))
}

/// The id of the group named `name` (getgrnam_r).
fn group_id(name: &str) -> Option<u32> {
    let cname = std::ffi::CString::new(name).ok()?;
    let mut grp: libc::group = unsafe_zeroed_group();
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut result: *mut libc::group = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call: a NUL-terminated name, a group struct
    // and a buffer of the length passed, both owned here; `result` is written by the call.
    let rc = unsafe {
        libc::getgrnam_r(
            cname.as_ptr(),
            &mut grp,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    (rc == 0 && !result.is_null()).then_some(grp.gr_gid)
}

fn unsafe_zeroed_group() -> libc::group {
    // SAFETY: `libc::group` is a plain C struct of integers and pointers; all-zero is a
    // valid value for each (NULL pointers), and getgrnam_r fills it before it is read.
    unsafe { std::mem::zeroed() }
}

/// Refuses an inconsistent policy early, with the flag's name.
pub fn check(a: &WriterArgs) -> CliResult<()> {
    if !(a.compact_ratio.is_finite() && a.compact_ratio > 0.0) {
        return Err(CliError::new("--compact-ratio must be a positive number"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_and_groups_parse() {
        assert_eq!(parse_mode("640"), Ok(0o640));
        assert_eq!(parse_mode("0o600"), Ok(0o600));
        assert!(parse_mode("400").is_err());
        assert!(parse_mode("1777").is_err());
        assert!(parse_mode("9").is_err());
        assert_eq!(parse_group("0"), Ok(0));
        assert_eq!(parse_group("root"), Ok(0));
        assert!(parse_group("no-such-group-here").is_err());
    }
}
