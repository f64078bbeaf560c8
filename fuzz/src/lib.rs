//! Helpers shared by the fuzz targets.

use std::panic::{self, AssertUnwindSafe, PanicHookInfo};
use std::sync::Once;

/// Panics already reported (file suffix, message start). With `MYRR_FUZZ_SKIP_KNOWN=1` in the
/// environment, [`run`] treats them as uninteresting so fuzzing can go on past them; without it
/// (the default) every panic is a crash, so the inputs in `regressions/` still reproduce.
pub const KNOWN_PANICS: &[(&str, &str)] = &[
    // Empty: the panics found so far (see README.md) are fixed; list new ones here while they
    // are open so long runs can get past them.
];

fn is_known(info: &PanicHookInfo<'_>) -> bool {
    let Some(loc) = info.location() else { return false };
    let msg = info
        .payload()
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| info.payload().downcast_ref::<&str>().copied())
        .unwrap_or("");
    KNOWN_PANICS
        .iter()
        .any(|(file, m)| loc.file().ends_with(file) && msg.starts_with(m))
}

pub fn skip_known() -> bool {
    std::env::var_os("MYRR_FUZZ_SKIP_KNOWN").is_some_and(|v| v == "1")
}

pub fn debug() -> bool {
    std::env::var_os("MYRR_FUZZ_DEBUG").is_some()
}

/// Runs `f`; a known panic (see [`KNOWN_PANICS`]) ends it quietly when skipping is on.
/// Returns false when `f` was cut short that way.
pub fn run(f: impl FnOnce()) -> bool {
    if !skip_known() {
        f();
        return true;
    }
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        // libfuzzer-sys's hook aborts the process; let known panics unwind instead.
        let prev = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !is_known(info) {
                prev(info)
            }
        }));
    });
    panic::catch_unwind(AssertUnwindSafe(f)).is_ok()
}
