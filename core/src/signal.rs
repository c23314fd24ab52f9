//! Linux signal numbers and names, as a core's notes report them.

const NAMES: [&str; 32] = [
    "",
    "SIGHUP",
    "SIGINT",
    "SIGQUIT",
    "SIGILL",
    "SIGTRAP",
    "SIGABRT",
    "SIGBUS",
    "SIGFPE",
    "SIGKILL",
    "SIGUSR1",
    "SIGSEGV",
    "SIGUSR2",
    "SIGPIPE",
    "SIGALRM",
    "SIGTERM",
    "SIGSTKFLT",
    "SIGCHLD",
    "SIGCONT",
    "SIGSTOP",
    "SIGTSTP",
    "SIGTTIN",
    "SIGTTOU",
    "SIGURG",
    "SIGXCPU",
    "SIGXFSZ",
    "SIGVTALRM",
    "SIGPROF",
    "SIGWINCH",
    "SIGIO",
    "SIGPWR",
    "SIGSYS",
];

/// The name of a Linux signal (`11` → `SIGSEGV`), `SIGRTMIN+n` for real-time signals.
pub fn name(number: u32) -> Option<String> {
    match number {
        1..=31 => Some(NAMES[number as usize].to_owned()),
        34..=64 => Some(format!("SIGRTMIN+{}", number - 34)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn names() {
        assert_eq!(super::name(11).as_deref(), Some("SIGSEGV"));
        assert_eq!(super::name(6).as_deref(), Some("SIGABRT"));
        assert_eq!(super::name(31).as_deref(), Some("SIGSYS"));
        assert_eq!(super::name(35).as_deref(), Some("SIGRTMIN+1"));
        assert_eq!(super::name(0), None);
        assert_eq!(super::name(99), None);
    }
}
