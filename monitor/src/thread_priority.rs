//! Lowering the CPU priority of background threads that other libraries start (tantivy's
//! merge thread), so that on a small machine they take the cores' slack instead of time from
//! the threads that make events searchable.

use std::fs;

/// Gives every thread of this process whose name starts with `prefix` the nice value `nice`
/// (Linux: a thread's priority is set through its thread id); returns how many were changed.
/// Raising nice needs no privilege. Elsewhere, or if `/proc` cannot be read, does nothing.
pub(crate) fn lower_threads_named(prefix: &str, nice: i32) -> usize {
    let Ok(tasks) = fs::read_dir("/proc/self/task") else {
        return 0;
    };
    let mut changed = 0;
    for task in tasks.flatten() {
        let Some(tid) = task
            .file_name()
            .to_str()
            .and_then(|t| t.parse::<i32>().ok())
        else {
            continue;
        };
        let named = fs::read_to_string(task.path().join("comm"))
            .is_ok_and(|comm| comm.trim_end().starts_with(prefix));
        let pid = rustix::process::Pid::from_raw(tid);
        if named && rustix::process::setpriority_process(pid, nice).is_ok() {
            changed += 1;
        }
    }
    changed
}

/// The nice values of this process's threads named `name`.
#[cfg(test)]
pub(crate) fn nice_of(name: &str) -> Vec<i32> {
    let mut found = Vec::new();
    for task in fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let comm = fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        let stat = fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // After the parenthesised name, nice is the 17th field (the 19th of the line).
        let nice = stat
            .rfind(')')
            .and_then(|at| stat.get(at + 2..))
            .and_then(|rest| rest.split(' ').nth(16))
            .and_then(|n| n.parse().ok());
        if let (true, Some(nice)) = (comm.trim_end() == name, nice) {
            found.push(nice);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_named_thread_gets_the_lower_priority() {
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::Builder::new()
            .name("fubar-prio-test".into())
            .spawn(move || {
                tx.send(()).unwrap();
                let _ = done_rx.recv();
            })
            .unwrap();
        rx.recv().unwrap();
        assert_eq!(nice_of("fubar-prio-test"), [0]);
        assert_eq!(lower_threads_named("fubar-prio-te", 10), 1);
        assert_eq!(nice_of("fubar-prio-test"), [10]);
        done_tx.send(()).unwrap();
        t.join().unwrap();
    }

    #[test]
    fn the_index_merge_thread_runs_at_lower_priority() {
        let dir = tempfile::tempdir().unwrap();
        let index = crate::index::EventIndex::open_or_create(dir.path(), 0).unwrap();
        index.commit().unwrap();
        let merge = nice_of("merge_thread_0");
        assert!(!merge.is_empty(), "tantivy's merge thread is found by name");
        // (Other tests' indexes may have merge threads not lowered yet.)
        assert!(merge.contains(&10), "{merge:?}");
    }
}
