//! One process per data directory: `jobbot run` (and `jobbot demo`, for its own directory) holds
//! an exclusive `flock` on a lock file for as long as it runs, with who holds it written inside.
//! A second process is refused before it opens anything, with a message naming the holder. Two
//! processes on one directory would each own the same sessions (Telegram burns a key used from
//! two connections), resume the same outbox (sending twice) and write the same files.
//!
//! The kernel releases the lock when the holder exits, however it exits (`kill -9` included), so
//! a stale file never blocks a restart; the holder text is only there to explain a refusal.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

/// Held until dropped (or the process ends).
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

/// Who holds a lock, as written into the lock file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub pid: u32,
    pub host: String,
    /// Unix seconds.
    pub started_at: u64,
    pub command: String,
}

impl DataDirLock {
    /// The lock file's name in the directory it guards.
    pub const FILE_NAME: &'static str = "jobbot.lock";

    /// Takes the lock at `path` (creating the file and its directory), for `command`. Fails
    /// without waiting when another process holds it, naming that process.
    pub fn acquire(path: &Path, command: &str) -> anyhow::Result<Self> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("could not create {}", parent.display()))?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)
            .with_context(|| format!("could not open the lock file {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                let holder = file
                    .read_to_string(&mut text)
                    .ok()
                    .and_then(|_| serde_json::from_str::<Holder>(&text).ok());
                bail!("{}", refusal(path, holder.as_ref(), now_unix()));
            }
            Err(TryLockError::Error(error)) => {
                return Err(error).with_context(|| format!("could not lock {}", path.display()));
            }
        }
        let holder = Holder {
            pid: std::process::id(),
            host: host_name(),
            started_at: now_unix(),
            command: command.to_owned(),
        };
        let text = serde_json::to_string(&holder).expect("a holder serialises");
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)).map(|_| ()))
            .and_then(|()| file.write_all(text.as_bytes()))
            .and_then(|()| file.sync_all())
            .with_context(|| format!("could not write {}", path.display()))?;
        Ok(Self { _file: file })
    }
}

/// The message for a refused lock.
fn refusal(path: &Path, holder: Option<&Holder>, now: u64) -> String {
    let data_dir = path.parent().unwrap_or(path).display();
    match holder {
        Some(holder) => format!(
            "{data_dir} is in use by another jobbot: `jobbot {}` (pid {} on {}, started {} UTC, {} ago); \
             stop it first, or use another --data-dir (lock file {})",
            holder.command,
            holder.pid,
            holder.host,
            utc_time(holder.started_at),
            elapsed(now.saturating_sub(holder.started_at)),
            path.display()
        ),
        None => format!(
            "{data_dir} is in use by another jobbot process (lock file {}); stop it first, or use another --data-dir",
            path.display()
        ),
    }
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// The machine's name (Linux keeps it in `/proc`; elsewhere `$HOSTNAME`), for the holder text.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "an unknown host".to_owned())
}

/// `YYYY-MM-DD HH:MM:SS` of Unix seconds, in UTC (the civil-from-days algorithm of
/// H. Hinnant's "chrono-Compatible Low-Level Date Algorithms").
fn utc_time(unix: u64) -> String {
    let days = i64::try_from(unix / 86_400).unwrap_or(i64::MAX);
    let seconds = unix % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    )
}

fn elapsed(seconds: u64) -> String {
    match seconds {
        0..120 => format!("{seconds} s"),
        120..7_200 => format!("{} min", seconds / 60),
        _ => format!("{} h", seconds / 3_600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_times() {
        let check = |unix: u64, expected: &str| assert_eq!(utc_time(unix), expected, "{unix}");
        check(0, "1970-01-01 00:00:00");
        check(951_782_400, "2000-02-29 00:00:00");
        check(1_750_000_000, "2025-06-15 15:06:40");
        check(4_102_444_799, "2099-12-31 23:59:59");
    }

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_name_and_the_lock_frees_on_drop() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("data").join("jobbot.lock");
        let first = DataDirLock::acquire(&path, "run").unwrap();
        // `flock` locks belong to an open file description: a second open in this process is
        // refused like another process would be.
        let error = DataDirLock::acquire(&path, "run").unwrap_err().to_string();
        assert!(
            error.contains(&format!("pid {}", std::process::id())),
            "{error}"
        );
        assert!(error.contains("`jobbot run`"), "{error}");
        assert!(error.contains("is in use by another jobbot"), "{error}");
        drop(first);
        DataDirLock::acquire(&path, "run").unwrap();
    }

    #[test]
    fn a_refusal_without_a_readable_holder_still_says_what_to_do() {
        let text = refusal(Path::new("/srv/jobbot/data/jobbot.lock"), None, 0);
        assert_eq!(
            text,
            "/srv/jobbot/data is in use by another jobbot process (lock file /srv/jobbot/data/jobbot.lock); stop it first, or use another --data-dir"
        );
        let holder = Holder {
            pid: 42,
            host: "box".into(),
            started_at: 1_750_000_000,
            command: "demo".into(),
        };
        let text = refusal(
            Path::new("/srv/demo.lock"),
            Some(&holder),
            1_750_000_000 + 300,
        );
        assert!(
            text.starts_with("/srv is in use by another jobbot: `jobbot demo` (pid 42 on box, started 2025-06-15 15:06:40 UTC, 5 min ago)"),
            "{text}"
        );
    }
}
