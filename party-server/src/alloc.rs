//! The process allocator of the servers and benchmarks: mimalloc.
//!
//! The links receive into large fresh buffers, which the system allocator
//! page-faults in on every message; and the protocols free and reallocate
//! vectors of the same few sizes thousands of times per U-Net call, so
//! memory given back to the OS is soon faulted in again.

pub use mimalloc::MiMalloc;

/// `mi_option_purge_delay`, index 15 of mimalloc v3's `mi_option_t` (not
/// exported by `libmimalloc-sys`).
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Keeps freed pages for reuse instead of returning them to the OS a second
/// later (mimalloc's default purge delay): in a secure DDIM run that purging
/// and the page faults after it cost about 8% of the CPU.  Memory then stays
/// at the session's peak, which the session limits already bound.  Call it
/// first thing in `main`.
pub fn keep_freed_memory() {
    // SAFETY: sets one integer option; mimalloc reads it atomically.
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, -1) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purge_delay_is_the_option_we_set() {
        // SAFETY: reads and sets integer options.
        unsafe {
            // mimalloc v3's default purge delay is 1000 ms (`options.c`); a
            // different index would hold another option's default.
            assert_eq!(libmimalloc_sys::mi_option_get(PURGE_DELAY), 1000);
            keep_freed_memory();
            assert_eq!(libmimalloc_sys::mi_option_get(PURGE_DELAY), -1);
        }
    }
}
