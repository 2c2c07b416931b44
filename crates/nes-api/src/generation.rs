//! The configuration generation: one sequence per agent, issued by nes-manager one step at a
//! time and enforced by the agent.
//!
//! The agent accepts exactly two generations: the one it holds, again, with the same content
//! (an idempotent re-push), and the next one ([`next`]). Anything else is a jump nobody issued
//! (a forged or buggy writer) and is refused with [`GenerationError`], so a single request can
//! no longer park the sequence at `u64::MAX`, where `saturating_add` would leave every later
//! writer behind it. The sequence wraps from `u64::MAX` to 1, so even an agent that already
//! holds `u64::MAX` (state written before this rule) takes the manager's next push.
//!
//! Both sides call these functions, so the rule lives in one place.

/// The generation an agent accepts next after holding `current` (`None`: no configuration).
///
/// 1 for an empty agent; `current + 1` otherwise, wrapping from `u64::MAX` to 1 (0 is never
/// issued, so it always means "made up").
pub fn next(current: Option<u64>) -> u64 {
    match current {
        None | Some(u64::MAX) => 1,
        Some(generation) => generation + 1,
    }
}

/// Why an agent refuses a configuration's generation. Nothing changes in any of these cases.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GenerationError {
    /// The agent holds no configuration and the request is not the first generation.
    #[error(
        "generation {sent} is not the next generation: the agent holds no configuration and accepts generation 1"
    )]
    NotFirst {
        /// The generation in the request.
        sent: u64,
    },
    /// The generation is neither the applied one nor the next one: a jump nes-manager did not
    /// issue (or a late writer that would roll the pod's network back).
    #[error(
        "generation {sent} is not the next generation: the agent holds generation {applied} and accepts {applied} again (same content) or {next}"
    )]
    NotNext {
        /// The generation in the request.
        sent: u64,
        /// The generation the agent holds.
        applied: u64,
        /// The generation it accepts next.
        next: u64,
    },
    /// The applied generation again, but with other content.
    #[error(
        "generation {sent} conflicts with the applied generation {sent}: the same generation was applied with different content; send generation {next}"
    )]
    Changed {
        /// The generation in the request (the applied one).
        sent: u64,
        /// The generation it accepts next.
        next: u64,
    },
}

/// Whether an agent holding `applied` (`None`: nothing yet) accepts generation `sent`.
/// `same_content` says whether the request holds what the agent already has (only asked when
/// `sent` is the applied generation).
pub fn check(
    applied: Option<u64>,
    sent: u64,
    same_content: impl FnOnce() -> bool,
) -> Result<(), GenerationError> {
    let next = next(applied);
    match applied {
        _ if sent == next => Ok(()),
        None => Err(GenerationError::NotFirst { sent }),
        Some(applied) if sent == applied => {
            if same_content() {
                Ok(())
            } else {
                Err(GenerationError::Changed { sent, next })
            }
        }
        Some(applied) => Err(GenerationError::NotNext {
            sent,
            applied,
            next,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sequence_starts_at_one_and_wraps_past_the_maximum() {
        assert_eq!(next(None), 1);
        assert_eq!(next(Some(1)), 2);
        assert_eq!(next(Some(u64::MAX - 1)), u64::MAX);
        assert_eq!(next(Some(u64::MAX)), 1, "wraps, skipping 0");
    }

    #[test]
    fn only_the_applied_generation_with_the_same_content_or_the_next_is_accepted() {
        assert_eq!(check(None, 1, || unreachable!()), Ok(()));
        assert_eq!(check(Some(3), 4, || unreachable!()), Ok(()));
        assert_eq!(check(Some(3), 3, || true), Ok(()), "an idempotent re-push");
        assert_eq!(
            check(Some(3), 3, || false),
            Err(GenerationError::Changed { sent: 3, next: 4 })
        );
        assert_eq!(
            check(Some(3), 2, || true),
            Err(GenerationError::NotNext {
                sent: 2,
                applied: 3,
                next: 4
            }),
            "older"
        );
        assert_eq!(
            check(Some(3), 5, || true),
            Err(GenerationError::NotNext {
                sent: 5,
                applied: 3,
                next: 4
            }),
            "a jump"
        );
        assert_eq!(
            check(None, 7, || true),
            Err(GenerationError::NotFirst { sent: 7 })
        );
    }

    #[test]
    fn a_forged_maximum_is_refused_and_a_held_maximum_does_not_lock_anyone_out() {
        // The forged request: refused whatever the agent holds.
        for applied in [None, Some(1), Some(41)] {
            let error = check(applied, u64::MAX, || true).unwrap_err();
            assert!(
                error
                    .to_string()
                    .starts_with("generation 18446744073709551615 is not the next generation"),
                "{error}"
            );
        }
        // An agent that holds the maximum anyway (state from before this rule) takes the
        // manager's next push, and the sequence goes on from there.
        let after = next(Some(u64::MAX));
        assert_eq!(check(Some(u64::MAX), after, || false), Ok(()));
        assert_eq!(check(Some(after), next(Some(after)), || false), Ok(()));
    }

    #[test]
    fn the_messages_say_what_is_accepted() {
        assert_eq!(
            check(Some(3), 9, || true).unwrap_err().to_string(),
            "generation 9 is not the next generation: the agent holds generation 3 and accepts 3 again (same content) or 4"
        );
        assert_eq!(
            check(None, 9, || true).unwrap_err().to_string(),
            "generation 9 is not the next generation: the agent holds no configuration and accepts generation 1"
        );
        assert_eq!(
            check(Some(3), 3, || false).unwrap_err().to_string(),
            "generation 3 conflicts with the applied generation 3: the same generation was applied with different content; send generation 4"
        );
    }
}
